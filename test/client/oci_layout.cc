// Hand-made OCI image layers and layouts for tests (oci_layout.h).
#include "test/client/oci_layout.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <sys/sysmacros.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "config/base/file_util.h"
#include "runtime/image/digest.h"
#include "test/client/host_util.h"

namespace kvcri::testing {

namespace fs = std::filesystem;
using runtime::image::DigestHex;
using runtime::image::Sha256Digest;

std::string Tar(const std::vector<Entry>& entries) {
  std::string out;
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_set_bytes_in_last_block(a, 1);
  archive_write_open(
      a, &out, nullptr,
      [](archive*, void* o, const void* buf, size_t n) -> la_ssize_t {
        static_cast<std::string*>(o)->append(static_cast<const char*>(buf), n);
        return static_cast<la_ssize_t>(n);
      },
      nullptr);
  for (const Entry& t : entries) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, t.name.c_str());
    archive_entry_set_filetype(e, t.type);
    archive_entry_set_perm(e, t.perm);
    archive_entry_set_uid(e, t.uid);
    archive_entry_set_gid(e, t.gid);
    archive_entry_set_mtime(e, t.mtime, 0);
    if (t.hardlink) {
      archive_entry_set_hardlink(e, t.link.c_str());
      archive_entry_set_size(e, 0);
    } else if (t.type == AE_IFLNK) {
      archive_entry_set_symlink(e, t.link.c_str());
    } else if (t.type == AE_IFREG) {
      archive_entry_set_size(e, static_cast<la_int64_t>(t.data.size()));
    } else if (t.type == AE_IFCHR) {
      archive_entry_set_rdev(e, makedev(8, 0));
    }
    if (!t.capability.empty()) {
      archive_entry_xattr_add_entry(e, "security.capability", t.capability.data(), t.capability.size());
    }
    EXPECT_EQ(archive_write_header(a, e), ARCHIVE_OK) << archive_error_string(a);
    if (!t.data.empty()) archive_write_data(a, t.data.data(), t.data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

void WriteLayout(const fs::path& dir, const std::vector<std::string>& layers, const std::vector<std::string>& cmd) {
  using json = nlohmann::json;
  EXPECT_TRUE(base::MakeDirs(dir / "blobs/sha256").ok());
  auto blob = [&](const std::string& content, const std::string& type) {
    const std::string digest = Sha256Digest(content);
    EXPECT_TRUE(base::WriteFileAtomic(dir / "blobs/sha256" / std::string(DigestHex(digest)), content).ok());
    return json{{"mediaType", type}, {"digest", digest}, {"size", content.size()}};
  };
  json config = {{"architecture", "amd64"},
                 {"os", "linux"},
                 {"config", {{"Cmd", cmd}, {"Env", {"PATH=/bin"}}}},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", json::array()}}}};
  json descs = json::array();
  for (const std::string& l : layers) {
    config["rootfs"]["diff_ids"].push_back(Sha256Digest(l));
    descs.push_back(blob(l, "application/vnd.oci.image.layer.v1.tar"));
  }
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"config", blob(config.dump(), "application/vnd.oci.image.config.v1+json")},
                   {"layers", descs}};
  json m = blob(manifest.dump(), "application/vnd.oci.image.manifest.v1+json");
  m["annotations"] = {{"org.opencontainers.image.ref.name", "latest"}};
  EXPECT_TRUE(base::WriteFileAtomic(dir / "index.json", json{{"schemaVersion", 2}, {"manifests", {m}}}.dump()).ok());
  EXPECT_TRUE(base::WriteFileAtomic(dir / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})").ok());
}

std::string BusyboxLayer() {
  std::vector<Entry> entries = {{.name = "bin", .type = AE_IFDIR, .perm = 0755},
                                {.name = "bin/busybox", .perm = 0755, .data = ReadFileOrEmpty("/bin/busybox")},
                                {.name = "etc/passwd", .data = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home:/bin/sh\n"},
                                {.name = "etc/group", .data = "root:x:0:\napp:x:1000:\nstaff:x:50:app\n"},
                                {.name = "tmp", .type = AE_IFDIR, .perm = 01777}};
  EXPECT_FALSE(entries[1].data.empty()) << "/bin/busybox is missing (busybox-static)";
  FILE* p = ::popen("/bin/busybox --list", "r");
  char line[256];
  while (p != nullptr && std::fgets(line, sizeof line, p) != nullptr) {
    std::string applet(line);
    while (!applet.empty() && (applet.back() == '\n' || applet.back() == '\r')) applet.pop_back();
    if (applet.empty() || applet == "busybox") continue;
    entries.push_back({.name = "bin/" + applet, .type = AE_IFLNK, .link = "busybox"});
  }
  if (p != nullptr) ::pclose(p);
  return Tar(entries);
}

}  // namespace kvcri::testing
