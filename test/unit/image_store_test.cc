// LocalImageStore: umoci-built layout imports, references, tags, refused layers, crash clean-up, pulls.
#include "runtime/image/image_store.h"

#include <archive.h>
#include <archive_entry.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "config/base/file_util.h"
#include "runtime/image/digest.h"
#include "config/base/metrics.h"
#include "runtime/image/puller.h"
#include "runtime/vm_confinement.h"

namespace kvcri::runtime::image {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

std::string Sh(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  EXPECT_EQ(::pclose(p), 0) << cmd << ": " << out;
  return out;
}

// ---- A hand-made OCI layout, for layers no tool would write ----

struct TarEntry {
  enum Type { kFile, kDir, kSymlink, kHardlink, kCharDev, kFifo };
  std::string name;
  Type type = kFile;
  std::string data;
  std::string link;
};
enum class Compression { kNone, kGzip, kZstd };

std::string MakeTar(const std::vector<TarEntry>& entries, Compression c) {
  std::string out;
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (c == Compression::kGzip) archive_write_add_filter_gzip(a);
  if (c == Compression::kZstd) {
    EXPECT_EQ(archive_write_add_filter_zstd(a), ARCHIVE_OK);
  }
  archive_write_set_bytes_in_last_block(a, 1);
  archive_write_open(
      a, &out, nullptr,
      [](archive*, void* o, const void* buf, size_t n) -> la_ssize_t {
        static_cast<std::string*>(o)->append(static_cast<const char*>(buf), n);
        return static_cast<la_ssize_t>(n);
      },
      nullptr);
  for (const TarEntry& t : entries) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, t.name.c_str());
    archive_entry_set_perm(e, 0644);
    switch (t.type) {
      case TarEntry::kFile:
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, static_cast<la_int64_t>(t.data.size()));
        break;
      case TarEntry::kDir:
        archive_entry_set_filetype(e, AE_IFDIR);
        archive_entry_set_perm(e, 0755);
        break;
      case TarEntry::kSymlink:
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_symlink(e, t.link.c_str());
        break;
      case TarEntry::kHardlink:
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_hardlink(e, t.link.c_str());
        archive_entry_set_size(e, 0);
        break;
      case TarEntry::kCharDev:
        archive_entry_set_filetype(e, AE_IFCHR);
        archive_entry_set_rdev(e, makedev(1, 3));
        break;
      case TarEntry::kFifo:
        archive_entry_set_filetype(e, AE_IFIFO);
        break;
    }
    EXPECT_EQ(archive_write_header(a, e), ARCHIVE_OK) << archive_error_string(a);
    if (!t.data.empty()) archive_write_data(a, t.data.data(), t.data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

class LayoutBuilder {
 public:
  explicit LayoutBuilder(fs::path dir) : dir_(std::move(dir)) {
    EXPECT_TRUE(base::MakeDirs(dir_ / "blobs" / "sha256").ok());
    config_ = {{"architecture", std::string(HostArchitecture())},
               {"os", "linux"},
               {"config", json::object()},
               {"rootfs", {{"type", "layers"}, {"diff_ids", json::array()}}}};
  }

  json Blob(const std::string& content, const std::string& media_type) {
    std::string digest = Sha256Digest(content);
    EXPECT_TRUE(
        base::WriteFileAtomic(dir_ / "blobs" / "sha256" / std::string(DigestHex(digest)), content)
            .ok());
    return {{"mediaType", media_type}, {"digest", digest}, {"size", content.size()}};
  }

  LayoutBuilder& Layer(const std::vector<TarEntry>& entries, Compression c = Compression::kGzip) {
    static const char* kTypes[] = {"application/vnd.oci.image.layer.v1.tar",
                                   "application/vnd.oci.image.layer.v1.tar+gzip",
                                   "application/vnd.oci.image.layer.v1.tar+zstd"};
    std::string tar = MakeTar(entries, Compression::kNone);
    config_["rootfs"]["diff_ids"].push_back(Sha256Digest(tar));
    layers_.push_back(
        Blob(c == Compression::kNone ? tar : MakeTar(entries, c), kTypes[static_cast<int>(c)]));
    return *this;
  }
  json& config() { return config_["config"]; }
  json& layers() { return layers_; }

  // Writes config, manifest and index.json (one entry named `tag`); returns the manifest digest.
  std::string Finish(const std::string& tag = "latest") {
    json manifest = {{"schemaVersion", 2},
                     {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                     {"config", Blob(config_.dump(), "application/vnd.oci.image.config.v1+json")},
                     {"layers", layers_}};
    json desc = Blob(manifest.dump(), "application/vnd.oci.image.manifest.v1+json");
    desc["annotations"] = {{"org.opencontainers.image.ref.name", tag}};
    index_["manifests"].push_back(desc);
    EXPECT_TRUE(base::WriteFileAtomic(dir_ / "index.json", index_.dump()).ok());
    EXPECT_TRUE(
        base::WriteFileAtomic(dir_ / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})").ok());
    return desc["digest"];
  }
  fs::path BlobPath(const json& desc) const {
    return dir_ / "blobs" / "sha256" / std::string(DigestHex(desc["digest"].get<std::string>()));
  }

 private:
  fs::path dir_;
  json config_;
  json layers_ = json::array();
  json index_ = {{"schemaVersion", 2}, {"manifests", json::array()}};
};

std::string Qcow2Bytes(const fs::path& tmp, const std::string& extra_args = "") {
  Sh("qemu-img create -q -f qcow2 " + extra_args + " " + tmp.string() + " 16M");
  return *base::ReadFile(tmp);
}

class ImageStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kvcri-images-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    tmp_ = tmpl;
    for (const char* tool : {"umoci", "qemu-img"}) {
      ASSERT_EQ(std::system((std::string("command -v ") + tool + " >/dev/null").c_str()), 0)
          << tool << " is missing (scripts/install-deps.sh --test)";
    }
    store_ = Open();
  }
  void TearDown() override { ASSERT_TRUE(base::RemoveAll(tmp_).ok()); }

  std::unique_ptr<LocalImageStore> Open(bool gc = true) {
    absl::StatusOr<std::unique_ptr<LocalImageStore>> s =
        LocalImageStore::Open(tmp_ / "images", {.collect_garbage = gc});
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  // A containerDisk built the way build-guest.sh does it: umoci + a GNU tar layer.
  fs::path UmociDiskLayout(const std::string& name) {
    fs::path layout = tmp_ / name;
    fs::path root = tmp_ / (name + "-root");
    Sh("umoci init --layout " + layout.string());
    Sh("umoci new --image " + layout.string() + ":latest");
    Sh("mkdir -p " + root.string() + "/disk");
    Sh("qemu-img create -q -f qcow2 " + root.string() + "/disk/disk.qcow2 32M");
    Sh("tar -C " + root.string() + " -cf " + root.string() + ".tar --format=ustar disk");
    Sh("umoci raw add-layer --image " + layout.string() + ":latest " + root.string() + ".tar");
    Sh("umoci config --image " + layout.string() +
       ":latest --config.user 107:107 --config.env A=1 "
       "--config.entrypoint /init --config.label team=vm");
    return layout;
  }

  // A kernel-boot image: /boot/vmlinuz + /boot/initrd.img + cmdline label.
  fs::path UmociKernelLayout(const std::string& name) {
    fs::path layout = tmp_ / name;
    fs::path root = tmp_ / (name + "-root");
    Sh("umoci init --layout " + layout.string());
    Sh("umoci new --image " + layout.string() + ":v1");
    Sh("mkdir -p " + root.string() + "/boot");
    Sh("printf 'KERNEL' > " + root.string() + "/boot/vmlinuz");
    Sh("printf 'INITRD' > " + root.string() + "/boot/initrd.img");
    Sh("tar -C " + root.string() + " -czf " + root.string() + ".tar.gz boot");
    Sh("umoci raw add-layer --image " + layout.string() + ":v1 " + root.string() + ".tar.gz");
    Sh("umoci config --image " + layout.string() +
       ":v1 --config.user qemu "
       "--config.label 'io.kubevirt-cri.cmdline=console=ttyS0 panic=-1'");
    return layout;
  }

  // What is left in the store besides bookkeeping files.
  std::vector<std::string> StoreContents() {
    std::vector<std::string> out;
    for (const char* sub : {"store", "tmp"}) {
      for (const auto& e : fs::directory_iterator(tmp_ / "images" / sub))
        out.push_back(e.path().string());
    }
    return out;
  }

  void ExpectImportFails(const fs::path& layout, absl::StatusCode code, const std::string& substr) {
    absl::StatusOr<ImageInfo> info = store_->Import(layout, "bad:latest", "");
    ASSERT_FALSE(info.ok()) << "imported " << info->id;
    EXPECT_EQ(info.status().code(), code) << info.status();
    EXPECT_THAT(std::string(info.status().message()), HasSubstr(substr));
    EXPECT_THAT(StoreContents(), IsEmpty());
    EXPECT_EQ(store_->Resolve("bad").status().code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(*store_->List(), IsEmpty());
  }

  fs::path tmp_;
  std::unique_ptr<LocalImageStore> store_;
};

TEST_F(ImageStoreTest, ImportsUmociContainerDisk) {
  fs::path layout = UmociDiskLayout("disk");
  absl::StatusOr<ImageInfo> info = store_->Import(layout, "localhost:5000/vm/disk:1", "");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_THAT(info->id, HasSubstr("sha256:"));
  EXPECT_THAT(info->repo_tags, ElementsAre("localhost:5000/vm/disk:1"));
  ASSERT_EQ(info->repo_digests.size(), 1u);
  EXPECT_EQ(info->repo_digests[0], "localhost:5000/vm/disk@" + info->manifest_digest);
  EXPECT_EQ(info->boot.kind, BootKind::kDisk);
  EXPECT_EQ(info->boot.disk_format, DiskFormat::kQcow2);
  EXPECT_EQ(info->boot.disk_virtual_size, 32u << 20);
  EXPECT_EQ(info->boot.disk,
            tmp_ / "images" / "store" / std::string(DigestHex(info->id)) / "disk" / "disk.qcow2");
  EXPECT_EQ(info->uid, 107);
  EXPECT_EQ(info->username, "");
  EXPECT_THAT(info->env, ElementsAre("A=1"));
  EXPECT_THAT(info->entrypoint, ElementsAre("/init"));
  EXPECT_EQ(info->labels.at("team"), "vm");
  EXPECT_GT(info->size, 0);
  struct stat st;
  ASSERT_EQ(::stat(info->boot.disk.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0444u);
  Sh("qemu-img check -f qcow2 " + info->boot.disk.string());
}

TEST_F(ImageStoreTest, ImportsUmociKernelImage) {
  fs::path layout = UmociKernelLayout("kernel");
  absl::StatusOr<ImageInfo> info = store_->Import(layout, "kernel:v1", "v1");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->boot.kind, BootKind::kKernel);
  EXPECT_EQ(*base::ReadFile(info->boot.kernel), "KERNEL");
  EXPECT_EQ(*base::ReadFile(info->boot.initrd), "INITRD");
  EXPECT_EQ(info->boot.cmdline, "console=ttyS0 panic=-1");
  EXPECT_FALSE(info->uid.has_value());
  EXPECT_EQ(info->username, "qemu");
  EXPECT_THAT(info->repo_tags, ElementsAre("docker.io/library/kernel:v1"));
}

TEST_F(ImageStoreTest, ImportsUmociInsertLayerWithoutTarFooter) {
  // umoci 0.4.7's insert leaves out the end-of-archive blocks (umoci#436).
  fs::path layout = tmp_ / "ins";
  Sh("umoci init --layout " + layout.string());
  Sh("umoci new --image " + layout.string() + ":latest");
  Sh("truncate -s 4M " + (tmp_ / "d.raw").string());
  Sh("umoci insert --image " + layout.string() + ":latest " + (tmp_ / "d.raw").string() +
     " /disk/d.raw");
  absl::StatusOr<ImageInfo> info = store_->Import(layout, "ins", "");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->boot.kind, BootKind::kDisk);
  EXPECT_EQ(info->boot.disk_format, DiskFormat::kRaw);
  EXPECT_EQ(info->boot.disk_virtual_size, 4u << 20);
}

TEST_F(ImageStoreTest, ResolvesEveryReferenceForm) {
  absl::StatusOr<ImageInfo> info = store_->Import(UmociDiskLayout("d"), "busybox", "");
  ASSERT_TRUE(info.ok()) << info.status();
  const std::string hex(DigestHex(info->id));
  for (const std::string& ref :
       {std::string("busybox"), std::string("busybox:latest"),
        std::string("docker.io/library/busybox"), std::string("docker.io/library/busybox:latest"),
        std::string("library/busybox"), "busybox@" + info->manifest_digest,
        "docker.io/library/busybox@" + info->manifest_digest,
        "busybox:latest@" + info->manifest_digest, info->id, hex, hex.substr(0, 12),
        "sha256:" + hex.substr(0, 6)}) {
    absl::StatusOr<ImageInfo> r = store_->Resolve(ref);
    ASSERT_TRUE(r.ok()) << ref << ": " << r.status();
    EXPECT_EQ(r->id, info->id) << ref;
  }
  for (const std::string& ref :
       {std::string("busybox:1"), std::string("quay.io/library/busybox"),
        "busybox@sha256:" + std::string(64, '0'), "sha256:" + std::string(64, '0')}) {
    absl::StatusOr<ImageInfo> r = store_->Resolve(ref);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << ref;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("\"" + ref + "\"")) << ref;
  }
  EXPECT_EQ(store_->Resolve("Not_Valid").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ImageStoreTest, AmbiguousIdPrefixIsRefused) {
  // 17 images: two ids share a first hex digit.
  std::map<char, std::string> by_first;
  std::string ambiguous;
  for (int i = 0; i < 17 && ambiguous.empty(); ++i) {
    LayoutBuilder b(tmp_ / ("l" + std::to_string(i)));
    b.Layer({{.name = "disk/d.raw", .data = "x"}});
    b.config()["Labels"] = {{"n", std::to_string(i)}};
    b.Finish();
    absl::StatusOr<ImageInfo> info =
        store_->Import(tmp_ / ("l" + std::to_string(i)), "img:" + std::to_string(i), "");
    ASSERT_TRUE(info.ok()) << info.status();
    char first = DigestHex(info->id)[0];
    if (by_first.count(first)) ambiguous = std::string(1, first);
    by_first[first] = info->id;
  }
  ASSERT_FALSE(ambiguous.empty());
  absl::StatusOr<ImageInfo> r = store_->Resolve(ambiguous);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("ambiguous"));
}

TEST_F(ImageStoreTest, TagsUntagsAndRemoves) {
  fs::path layout = UmociDiskLayout("d");
  absl::StatusOr<ImageInfo> a = store_->Import(layout, "a:1", "");
  ASSERT_TRUE(a.ok()) << a.status();
  fs::path image_dir = a->boot.disk.parent_path().parent_path();
  struct stat before;
  ASSERT_EQ(::stat(a->boot.disk.c_str(), &before), 0);
  absl::StatusOr<ImageInfo> b = store_->Import(layout, "b:2", "");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->id, b->id);
  struct stat after;
  ASSERT_EQ(::stat(b->boot.disk.c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino) << "a known image must not be extracted again";
  EXPECT_THAT(b->repo_tags, UnorderedElementsAre("docker.io/library/a:1", "docker.io/library/b:2"));
  EXPECT_THAT(b->repo_digests, UnorderedElementsAre("docker.io/library/a@" + a->manifest_digest,
                                                    "docker.io/library/b@" + a->manifest_digest));
  ASSERT_EQ(store_->List()->size(), 1u);

  // Untagging is allowed while in use; deleting is not.
  auto in_use = [&](std::string_view id) { return id == a->id; };
  ASSERT_TRUE(store_->Remove("a:1", in_use).ok());
  absl::StatusOr<ImageInfo> left = store_->Resolve("b:2");
  ASSERT_TRUE(left.ok());
  EXPECT_THAT(left->repo_tags, ElementsAre("docker.io/library/b:2"));
  EXPECT_THAT(left->repo_digests, ElementsAre("docker.io/library/b@" + a->manifest_digest));
  EXPECT_EQ(store_->Resolve("a:1").status().code(), absl::StatusCode::kNotFound);

  absl::Status s = store_->Remove("b:2", in_use);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr(a->id));
  EXPECT_TRUE(fs::exists(image_dir));

  ASSERT_TRUE(store_->Remove("b:2", [](std::string_view) { return false; }).ok());
  EXPECT_FALSE(fs::exists(image_dir));
  EXPECT_THAT(*store_->List(), IsEmpty());
  EXPECT_EQ(store_->Remove("b:2", nullptr).code(), absl::StatusCode::kNotFound);
  // Only bookkeeping is left: no blobs, no directories.
  EXPECT_TRUE(fs::is_empty(tmp_ / "images" / "blobs" / "sha256"));
  EXPECT_THAT(StoreContents(), IsEmpty());
}

TEST_F(ImageStoreTest, RemoveByIdDeletesAllTags) {
  fs::path layout = UmociDiskLayout("d");
  ASSERT_TRUE(store_->Import(layout, "a:1", "").ok());
  absl::StatusOr<ImageInfo> b = store_->Import(layout, "b:1", "");
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(store_->Remove(std::string(DigestHex(b->id)).substr(0, 10), nullptr).ok());
  EXPECT_THAT(*store_->List(), IsEmpty());
}

TEST_F(ImageStoreTest, TagMovesToNewImage) {
  ASSERT_TRUE(store_->Import(UmociDiskLayout("d"), "vm:latest", "").ok());
  absl::StatusOr<ImageInfo> k = store_->Import(UmociKernelLayout("k"), "vm:latest", "");
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ(store_->Resolve("vm")->id, k->id);
  absl::StatusOr<std::vector<ImageInfo>> all = store_->List();
  ASSERT_EQ(all->size(), 2u);
  for (const ImageInfo& i : *all) {
    if (i.id != k->id) {
      EXPECT_THAT(i.repo_tags, IsEmpty());  // still reachable by its digest ref
    }
  }
}

TEST_F(ImageStoreTest, SecondProcessImportIsSeenByTheDaemon) {
  std::unique_ptr<LocalImageStore> cli = Open(/*gc=*/false);
  ASSERT_TRUE(cli);
  EXPECT_EQ(store_->Resolve("vm").status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<ImageInfo> info = cli->Import(UmociDiskLayout("d"), "vm", "");
  ASSERT_TRUE(info.ok()) << info.status();
  absl::StatusOr<ImageInfo> seen = store_->Resolve("vm");
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(seen->id, info->id);
  ASSERT_TRUE(cli->Remove("vm", nullptr).ok());
  EXPECT_EQ(store_->Resolve("vm").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(*store_->List(), IsEmpty());
}

TEST_F(ImageStoreTest, ImportsByDigestReferenceOnlyWhenItMatches) {
  LayoutBuilder b(tmp_ / "l");
  b.Layer({{.name = "disk/", .type = TarEntry::kDir}, {.name = "disk/d.raw", .data = "raw"}});
  std::string manifest = b.Finish("x");
  absl::StatusOr<ImageInfo> info = store_->Import(tmp_ / "l", "quay.io/a/b@" + manifest, "");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_THAT(info->repo_tags, IsEmpty());
  EXPECT_THAT(info->repo_digests, ElementsAre("quay.io/a/b@" + manifest));
  absl::StatusOr<ImageInfo> bad =
      store_->Import(tmp_ / "l", "quay.io/a/c@sha256:" + std::string(64, '1'), "x");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ImageStoreTest, PicksLayoutImageByTag) {
  LayoutBuilder b(tmp_ / "l");
  b.Layer({{.name = "disk/a.raw", .data = "a"}});
  b.Finish("one");
  b.Layer({{.name = "disk/.wh.a.raw"}, {.name = "disk/b.raw", .data = "b"}});
  b.Finish("two");
  absl::Status ambiguous = store_->Import(tmp_ / "l", "x:latest", "").status();
  EXPECT_EQ(ambiguous.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ambiguous.message()), HasSubstr("\"one\", \"two\""));
  absl::StatusOr<ImageInfo> two = store_->Import(tmp_ / "l", "x:two", "");  // by the ref's tag
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->boot.disk.filename(), "b.raw");
  absl::StatusOr<ImageInfo> one = store_->Import(tmp_ / "l", "y", "one");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->boot.disk.filename(), "a.raw");
}

TEST_F(ImageStoreTest, AppliesWhiteoutsAndLaterLayers) {
  LayoutBuilder b(tmp_ / "l");
  b.Layer({{.name = "disk/", .type = TarEntry::kDir},
           {.name = "disk/a.raw", .data = "a"},
           {.name = "disk/b.raw", .data = "b"},
           {.name = "boot/vmlinuz", .data = "old"}});
  b.Layer({{.name = "./disk/.wh.a.raw"},
           {.name = "disk/b.raw", .data = "B2"},
           {.name = "boot/.wh.vmlinuz"}},
          Compression::kNone);
  b.Finish();
  absl::StatusOr<ImageInfo> info = store_->Import(tmp_ / "l", "wh", "");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->boot.kind, BootKind::kDisk);
  EXPECT_EQ(*base::ReadFile(info->boot.disk), "B2");

  LayoutBuilder o(tmp_ / "o");
  o.Layer({{.name = "disk/a.raw", .data = "a"}, {.name = "disk/b.raw", .data = "b"}});
  o.Layer({{.name = "disk/.wh..wh..opq"},
           {.name = "disk/c.qcow2", .data = Qcow2Bytes(tmp_ / "c.qcow2")}},
          Compression::kZstd);
  o.Finish();
  info = store_->Import(tmp_ / "o", "opaque", "");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->boot.disk.filename(), "c.qcow2");
  EXPECT_EQ(info->boot.disk_format, DiskFormat::kQcow2);
}

TEST_F(ImageStoreTest, ZstdGzipAndPlainLayersImport) {
  for (Compression c : {Compression::kNone, Compression::kGzip, Compression::kZstd}) {
    std::string name = "c" + std::to_string(static_cast<int>(c));
    LayoutBuilder b(tmp_ / name);
    b.Layer({{.name = "boot/vmlinuz", .data = std::string(100000, 'k') + name}}, c);
    b.config()["Labels"] = {{std::string(kCmdlineLabel), "quiet"}};
    b.Finish();
    absl::StatusOr<ImageInfo> info = store_->Import(tmp_ / name, name, "");
    ASSERT_TRUE(info.ok()) << name << ": " << info.status();
    EXPECT_EQ(info->boot.kind, BootKind::kKernel);
    EXPECT_EQ(*base::ReadFile(info->boot.kernel), std::string(100000, 'k') + name);
    EXPECT_EQ(info->boot.cmdline, "quiet");
    EXPECT_TRUE(info->boot.initrd.empty());
  }
}

TEST_F(ImageStoreTest, SparseRawDiskStaysSparse) {
  LayoutBuilder b(tmp_ / "l");
  std::string disk(8 << 20, '\0');
  disk[0] = 'M';
  b.Layer({{.name = "disk/d.raw", .data = disk}});
  b.Finish();
  absl::StatusOr<ImageInfo> info = store_->Import(tmp_ / "l", "sparse", "");
  ASSERT_TRUE(info.ok()) << info.status();
  struct stat st;
  ASSERT_EQ(::stat(info->boot.disk.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 8 << 20);
  EXPECT_LT(st.st_blocks * 512, 1 << 20);
  EXPECT_EQ(*base::ReadFile(info->boot.disk), disk);
}

TEST_F(ImageStoreTest, UnbootableImagesAreStoredWithReason) {
  struct Case {
    std::vector<TarEntry> entries;
    std::string reason;
  };
  std::vector<Case> cases = {
      {{{.name = "etc/hostname", .data = "x"}}, "neither /boot/vmlinuz nor a disk file"},
      {{{.name = "disk/a.raw", .data = "a"}, {.name = "disk/b.qcow2", .data = "b"}},
       "/disk/ holds 2 entries (a.raw, b.qcow2)"},
      {{{.name = "disk/sub/x.raw", .data = "a"}}, "/disk/sub is a directory"},
      {{{.name = "disk/l.raw", .type = TarEntry::kSymlink, .link = "../etc/x"}},
       "/disk/l.raw is a symlink"},
      {{{.name = "boot/vmlinuz-6.1", .data = "k"},
        {.name = "boot/vmlinuz", .type = TarEntry::kSymlink, .link = "vmlinuz-6.1"}},
       "/boot/vmlinuz is a symlink to \"vmlinuz-6.1\"; only regular files"},
      {{{.name = "usr/vmlinuz", .data = "k"},
        {.name = "boot/vmlinuz", .type = TarEntry::kHardlink, .link = "usr/vmlinuz"}},
       "/boot/vmlinuz is a hardlink to /usr/vmlinuz"},
      {{{.name = "disk/f", .type = TarEntry::kFifo}}, "/disk/f is a FIFO"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string name = "u" + std::to_string(i);
    LayoutBuilder b(tmp_ / name);
    b.Layer(cases[i].entries);
    b.config()["Labels"] = {{"case", name}};
    b.Finish();
    absl::StatusOr<ImageInfo> info = store_->Import(tmp_ / name, name, "");
    ASSERT_TRUE(info.ok()) << name << ": " << info.status();
    EXPECT_EQ(info->boot.kind, BootKind::kNone) << name;
    EXPECT_THAT(info->boot.unbootable_reason, HasSubstr(cases[i].reason)) << name;
    EXPECT_TRUE(info->boot.disk.empty() && info->boot.kernel.empty()) << name;
    // Nothing but image.json was materialized.
    fs::path dir = tmp_ / "images" / "store" / std::string(DigestHex(info->id));
    std::vector<std::string> files;
    for (const auto& e : fs::recursive_directory_iterator(dir))
      files.push_back(e.path().filename());
    EXPECT_THAT(files, ElementsAre("image.json")) << name;
  }
}

TEST_F(ImageStoreTest, HardlinkToExtractedFileIsCopied) {
  LayoutBuilder b(tmp_ / "l");
  b.Layer({{.name = "boot/vmlinuz", .data = "K"},
           {.name = "boot/initrd.img", .type = TarEntry::kHardlink, .link = "boot/vmlinuz"}});
  b.Layer({{.name = "boot/.wh.vmlinuz"}, {.name = "boot/vmlinuz", .data = "K2"}});
  b.Finish();
  absl::StatusOr<ImageInfo> info = store_->Import(tmp_ / "l", "hl", "");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(*base::ReadFile(info->boot.kernel), "K2");
  EXPECT_EQ(*base::ReadFile(info->boot.initrd), "K");
}

TEST_F(ImageStoreTest, RefusesPathTraversal) {
  LayoutBuilder b(tmp_ / "l");
  b.Layer({{.name = "disk/d.raw", .data = "x"}, {.name = "../x", .data = "evil"}});
  b.Finish();
  ExpectImportFails(tmp_ / "l", absl::StatusCode::kInvalidArgument, "\"../x\" contains \"..\"");
  EXPECT_FALSE(fs::exists(tmp_ / "x"));
  EXPECT_FALSE(fs::exists(tmp_ / "images" / "x"));
}

TEST_F(ImageStoreTest, RefusesDotDotInsideNamesAndAbsoluteNames) {
  for (const std::string& bad : {std::string("disk/../../x"), std::string("/disk/d.raw")}) {
    LayoutBuilder b(tmp_ / "l");
    b.Layer({{.name = bad, .data = "x"}});
    b.Finish();
    ExpectImportFails(tmp_ / "l", absl::StatusCode::kInvalidArgument, bad);
    ASSERT_TRUE(base::RemoveAll(tmp_ / "l").ok());
  }
}

TEST_F(ImageStoreTest, RefusesHardlinkOutsideAbsoluteSymlinkAndDevice) {
  struct Case {
    TarEntry entry;
    std::string error;
  };
  std::vector<Case> cases = {
      {{.name = "disk/d.raw", .type = TarEntry::kHardlink, .link = "../../etc/passwd"},
       "contains \"..\""},
      {{.name = "usr/x", .type = TarEntry::kHardlink, .link = "/etc/shadow"}, "absolute path"},
      {{.name = "disk/d.raw", .type = TarEntry::kSymlink, .link = "/etc/passwd"},
       "symlink to the absolute path"},
      {{.name = "boot", .type = TarEntry::kSymlink, .link = "/usr/boot"},
       "symlink to the absolute path"},
      {{.name = "boot/vmlinuz", .type = TarEntry::kCharDev}, "device node"},
  };
  for (const Case& c : cases) {
    LayoutBuilder b(tmp_ / "l");
    b.Layer({c.entry});
    b.Finish();
    ExpectImportFails(tmp_ / "l", absl::StatusCode::kInvalidArgument, c.error);
    ASSERT_TRUE(base::RemoveAll(tmp_ / "l").ok());
  }
}

TEST_F(ImageStoreTest, RefusesQcow2WithBackingFile) {
  Sh("qemu-img create -q -f raw " + (tmp_ / "base.raw").string() + " 16M");
  LayoutBuilder b(tmp_ / "l");
  b.Layer({{.name = "disk/top.qcow2",
            .data = Qcow2Bytes(tmp_ / "top.qcow2", "-F raw -b " + (tmp_ / "base.raw").string())}});
  b.Finish();
  ExpectImportFails(tmp_ / "l", absl::StatusCode::kInvalidArgument, "has a backing file");
}

TEST_F(ImageStoreTest, RefusesLayerWhoseDigestDoesNotMatch) {
  LayoutBuilder b(tmp_ / "l");
  b.Layer({{.name = "disk/d.raw", .data = "good"}}, Compression::kNone);
  b.Finish();
  // Same length, different bytes: only the digest can tell.
  fs::path blob = b.BlobPath(b.layers()[0]);
  std::string tar = *base::ReadFile(blob);
  size_t pos = tar.find("good");
  ASSERT_NE(pos, std::string::npos);
  tar.replace(pos, 4, "evil");
  ASSERT_TRUE(base::WriteFileAtomic(blob, tar).ok());
  ExpectImportFails(tmp_ / "l", absl::StatusCode::kInvalidArgument, "does not match its digest");
}

TEST_F(ImageStoreTest, RefusesCorruptCompressedLayerAndWrongSize) {
  LayoutBuilder b(tmp_ / "l");
  b.Layer({{.name = "disk/d.raw", .data = std::string(10000, 'x')}}, Compression::kGzip);
  b.Finish();
  fs::path blob = b.BlobPath(b.layers()[0]);
  std::string gz = *base::ReadFile(blob);
  gz[gz.size() / 2] ^= 0x55;
  ASSERT_TRUE(base::WriteFileAtomic(blob, gz).ok());
  ExpectImportFails(tmp_ / "l", absl::StatusCode::kInvalidArgument, "does not match its digest");

  ASSERT_TRUE(base::WriteFileAtomic(blob, gz + "trailing").ok());
  ExpectImportFails(tmp_ / "l", absl::StatusCode::kInvalidArgument, "larger than its descriptor");
}

TEST_F(ImageStoreTest, RefusesMissingBlobAndNonLayout) {
  LayoutBuilder b(tmp_ / "l");
  b.Layer({{.name = "disk/d.raw", .data = "x"}});
  b.Finish();
  ASSERT_TRUE(base::RemoveFile(b.BlobPath(b.layers()[0])).ok());
  ExpectImportFails(tmp_ / "l", absl::StatusCode::kNotFound, "not found");
  ExpectImportFails(tmp_, absl::StatusCode::kInvalidArgument, "is not an OCI image layout");
}

TEST_F(ImageStoreTest, StartupCollectsCrashLeftoversAndHidesCorruptImages) {
  absl::StatusOr<ImageInfo> keep = store_->Import(UmociDiskLayout("d"), "keep", "");
  ASSERT_TRUE(keep.ok()) << keep.status();
  absl::StatusOr<ImageInfo> corrupt = store_->Import(UmociKernelLayout("k"), "corrupt", "");
  ASSERT_TRUE(corrupt.ok()) << corrupt.status();
  fs::path images = tmp_ / "images";
  // A crash mid-import: work dir, an image dir never indexed, an orphan blob,
  // a temp index; and a damaged image.json.
  ASSERT_TRUE(base::MakeDirs(images / "tmp" / "import-dead" / "disk").ok());
  ASSERT_TRUE(base::MakeDirs(images / "store" / std::string(64, 'e')).ok());
  ASSERT_TRUE(
      base::WriteFileAtomic(images / "blobs" / "sha256" / std::string(64, 'f'), "orphan").ok());
  ASSERT_TRUE(base::WriteFileAtomic(images / ".index.json.tmpABCDEF", "{").ok());
  fs::path corrupt_json = images / "store" / std::string(DigestHex(corrupt->id)) / "image.json";
  ::chmod(corrupt_json.c_str(), 0644);
  ASSERT_TRUE(base::WriteFileAtomic(corrupt_json, "{not json").ok());

  // The CLI does not collect, and never lists the corrupt image.
  std::unique_ptr<LocalImageStore> cli = Open(/*gc=*/false);
  ASSERT_TRUE(cli);
  EXPECT_TRUE(fs::exists(images / "tmp" / "import-dead"));
  EXPECT_EQ(cli->List()->size(), 1u);
  EXPECT_EQ(cli->Resolve("corrupt").status().code(), absl::StatusCode::kNotFound);

  std::unique_ptr<LocalImageStore> daemon = Open(/*gc=*/true);
  ASSERT_TRUE(daemon);
  EXPECT_FALSE(fs::exists(images / "tmp" / "import-dead"));
  EXPECT_FALSE(fs::exists(images / "store" / std::string(64, 'e')));
  EXPECT_FALSE(fs::exists(images / "blobs" / "sha256" / std::string(64, 'f')));
  EXPECT_FALSE(fs::exists(images / ".index.json.tmpABCDEF"));
  EXPECT_FALSE(fs::exists(corrupt_json.parent_path()));
  absl::StatusOr<std::vector<ImageInfo>> all = daemon->List();
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].id, keep->id);
  EXPECT_TRUE(fs::exists(keep->boot.disk));
  EXPECT_TRUE(fs::exists(images / "blobs" / "sha256" / std::string(DigestHex(keep->id))));
  EXPECT_TRUE(
      fs::exists(images / "blobs" / "sha256" / std::string(DigestHex(keep->manifest_digest))));
  // The corrupt image can be imported again.
  EXPECT_TRUE(daemon->Import(tmp_ / "k", "corrupt", "").ok());
}

TEST_F(ImageStoreTest, FsUsageCountsWhatImportsAdd) {
  absl::StatusOr<ImageFsUsage> empty = store_->FsUsage();
  ASSERT_TRUE(empty.ok()) << empty.status();
  LayoutBuilder b(tmp_ / "l");
  b.Layer({{.name = "disk/d.raw", .data = std::string(1 << 20, 'x')}});
  b.Finish();
  ASSERT_TRUE(store_->Import(tmp_ / "l", "u", "").ok());
  absl::StatusOr<ImageFsUsage> used = store_->FsUsage();
  ASSERT_TRUE(used.ok());
  EXPECT_GE(used->used_bytes, empty->used_bytes + (1 << 20));
  EXPECT_GE(used->inodes_used, empty->inodes_used + 4);  // store/<id>, disk/, d.raw, image.json
}

TEST_F(ImageStoreTest, BlobWriterVerifiesBeforeCommitting) {
  std::string content = "{\"hello\":1}";
  Descriptor d{.media_type = "x",
               .digest = Sha256Digest(content),
               .size = static_cast<int64_t>(content.size())};
  absl::StatusOr<BlobWriter> w = store_->NewBlobWriter(d);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE(w->Write(content.substr(0, 3)).ok());
  ASSERT_TRUE(w->Write(content.substr(3)).ok());
  ASSERT_TRUE(w->Commit().ok());
  EXPECT_TRUE(store_->HasBlob(d.digest));

  Descriptor bad = d;
  bad.digest = Sha256Digest("other");
  {
    absl::StatusOr<BlobWriter> w2 = store_->NewBlobWriter(bad);
    ASSERT_TRUE(w2.ok());
    ASSERT_TRUE(w2->Write(content).ok());
    EXPECT_THAT(std::string(w2->Commit().message()), HasSubstr("does not match its digest"));
  }
  EXPECT_FALSE(store_->HasBlob(bad.digest));
  EXPECT_TRUE(fs::is_empty(tmp_ / "images" / "tmp"));
}

TEST_F(ImageStoreTest, CommitFromStoreBlobsLikeAPuller) {
  LayoutBuilder b(tmp_ / "l");
  b.Layer({{.name = "disk/d.raw", .data = "pulled"}});
  std::string manifest_digest = b.Finish();
  // Copy every blob of the layout in through BlobWriter, as a puller would.
  Descriptor manifest;
  for (const auto& e : fs::directory_iterator(tmp_ / "l" / "blobs" / "sha256")) {
    std::string content = *base::ReadFile(e.path());
    Descriptor d{.digest = "sha256:" + e.path().filename().string(),
                 .size = static_cast<int64_t>(content.size())};
    if (d.digest == manifest_digest) manifest = d;
    absl::StatusOr<BlobWriter> w = store_->NewBlobWriter(d);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w->Write(content).ok());
    ASSERT_TRUE(w->Commit().ok());
  }
  absl::StatusOr<Reference> ref = ParseReference("registry.example/vm:1");
  absl::StatusOr<ImageInfo> info = store_->Commit(store_->blobs(), manifest, manifest_digest, *ref);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(*base::ReadFile(info->boot.disk), "pulled");
  EXPECT_THAT(info->repo_digests, ElementsAre("registry.example/vm@" + manifest_digest));
}

TEST_F(ImageStoreTest, ConcurrentImportsFromTwoInstancesLoseNothing) {
  constexpr int kPerWriter = 6;
  for (int i = 0; i < 2 * kPerWriter; ++i) {
    LayoutBuilder b(tmp_ / ("l" + std::to_string(i)));
    b.Layer({{.name = "disk/d.raw", .data = std::string(200000, static_cast<char>('a' + i))}});
    b.Finish();
  }
  std::unique_ptr<LocalImageStore> other = Open(/*gc=*/false);
  ASSERT_TRUE(other);
  auto import = [&](LocalImageStore* s, int first) {
    for (int i = first; i < first + kPerWriter; ++i) {
      absl::StatusOr<ImageInfo> info =
          s->Import(tmp_ / ("l" + std::to_string(i)), "img:" + std::to_string(i), "");
      EXPECT_TRUE(info.ok()) << info.status();
    }
  };
  std::thread t1(import, store_.get(), 0);
  std::thread t2(import, other.get(), kPerWriter);
  t1.join();
  t2.join();
  for (LocalImageStore* s : {store_.get(), other.get()}) {
    EXPECT_EQ(s->List()->size(), 2u * kPerWriter);
    for (int i = 0; i < 2 * kPerWriter; ++i)
      EXPECT_TRUE(s->Resolve("img:" + std::to_string(i)).ok()) << i;
  }
  EXPECT_TRUE(fs::is_empty(tmp_ / "images" / "tmp"));
}

}  // namespace
}  // namespace kvcri::runtime::image

namespace kvcri::runtime::image {
namespace {

// Pulled images are kubelet's to garbage-collect; imported ones are pinned,
// and an import pins an image that was pulled before. Survives a reopen.
TEST_F(ImageStoreTest, PulledImagesAreUnpinnedUntilImported) {
  LayoutBuilder b(tmp_ / "l");
  b.Layer({{.name = "disk/", .type = TarEntry::kDir}, {.name = "disk/d.raw", .data = "raw"}});
  std::string digest = b.Finish("x");
  DirBlobSource source(tmp_ / "l");
  Descriptor manifest;
  manifest.media_type = "application/vnd.oci.image.manifest.v1+json";
  manifest.digest = digest;
  manifest.size = static_cast<int64_t>(fs::file_size(source.BlobPath(digest)));
  absl::StatusOr<Reference> ref = ParseReference("registry.example/vm:1");
  ASSERT_TRUE(ref.ok()) << ref.status();

  absl::StatusOr<ImageInfo> pulled = store_->Commit(source, manifest, digest, *ref, LocalImageStore::Origin::kPull);
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_FALSE(pulled->pinned);
  store_ = Open();
  ASSERT_TRUE(store_->Resolve("registry.example/vm:1").ok());
  EXPECT_FALSE(store_->Resolve("registry.example/vm:1")->pinned);

  absl::StatusOr<ImageInfo> imported = store_->Import(tmp_ / "l", "local/vm:1", "x");
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->id, pulled->id);
  EXPECT_TRUE(imported->pinned);
  // A later pull of the same image keeps it pinned.
  pulled = store_->Commit(source, manifest, digest, *ref, LocalImageStore::Origin::kPull);
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_TRUE(pulled->pinned);
}

// A registry over HTTP, served from an OCI layout: the manifest for any tag
// (the first GET waits until released) and blobs by digest.
class LayoutRegistryHttp : public HttpFetcher {
 public:
  LayoutRegistryHttp(fs::path layout, std::string manifest_digest)
      : layout_(std::move(layout)), manifest_digest_(std::move(manifest_digest)) {}

  absl::StatusOr<HttpResponse> Get(const HttpRequest& req, const BodySink& sink) override {
    HttpResponse resp;
    resp.effective_url = req.url;
    std::string digest;
    if (req.url.find("/manifests/") != std::string::npos) {
      if (manifest_gets_.fetch_add(1) == 0) release_.WaitForNotification();
      digest = manifest_digest_;
      resp.headers["content-type"] = "application/vnd.oci.image.manifest.v1+json";
      resp.headers["docker-content-digest"] = digest;
    } else if (size_t at = req.url.find("/blobs/"); at != std::string::npos) {
      digest = req.url.substr(at + 7);
    } else {
      resp.status = 200;  // the /v2/ probe
      return resp;
    }
    absl::StatusOr<std::string> body = base::ReadFile(layout_ / "blobs" / "sha256" / std::string(DigestHex(digest)));
    if (!body.ok()) {
      resp.status = 404;
      return resp;
    }
    resp.status = 200;
    if (sink) {
      if (absl::Status s = sink(*body); !s.ok()) return s;
    } else {
      resp.body = *body;
    }
    return resp;
  }

  void Release() { release_.Notify(); }
  int manifest_gets() const { return manifest_gets_.load(); }

 private:
  const fs::path layout_;
  const std::string manifest_digest_;
  absl::Notification release_;
  std::atomic<int> manifest_gets_{0};
};

// Concurrent pulls of one reference share one download: the registry sees one
// manifest request, and both callers get the image.
TEST_F(ImageStoreTest, ConcurrentPullsOfOneReferenceShareOneDownload) {
  LayoutBuilder b(tmp_ / "l");
  b.Layer({{.name = "disk/", .type = TarEntry::kDir}, {.name = "disk/d.raw", .data = "raw"}});
  LayoutRegistryHttp http(tmp_ / "l", b.Finish("x"));
  RegistryPuller puller(store_.get(), &http, PullerOptions{});

  absl::StatusOr<ImageInfo> first, second;
  std::thread a([&] { first = puller.Pull("127.0.0.1:5000/vm:1", {}); });
  while (http.manifest_gets() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::thread c([&] { second = puller.Pull("127.0.0.1:5000/vm:1", {}); });
  // Give the second caller time to join the flight before the first proceeds.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  http.Release();
  a.join();
  c.join();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(first->id, second->id);
  EXPECT_EQ(http.manifest_gets(), 1);
  EXPECT_FALSE(first->pinned);
}

}  // namespace
}  // namespace kvcri::runtime::image

// ---- Hostile registries and layers (issue 13) ----

namespace kvcri::runtime::image {
namespace {

// A registry over a fake HTTP seam: blobs from an OCI layout, the manifest
// (and anything else) from `answer`, which the test may change between pulls.
// Records every request.
class ScriptedRegistry : public HttpFetcher {
 public:
  struct Answer {
    long status = 200;
    std::map<std::string, std::string> headers;
    std::string body;
  };
  using Handler = std::function<std::optional<Answer>(const HttpRequest&)>;

  explicit ScriptedRegistry(fs::path layout) : layout_(std::move(layout)) {}

  absl::StatusOr<HttpResponse> Get(const HttpRequest& req, const BodySink& sink) override {
    Handler h;
    {
      std::lock_guard<std::mutex> l(mu_);
      requests_.push_back(req);
      h = handler_;
    }
    Answer a;
    if (std::optional<Answer> got = h ? h(req) : std::nullopt; got.has_value()) {
      a = *got;
    } else if (size_t at = req.url.find("/blobs/"); at != std::string::npos) {
      absl::StatusOr<std::string> body =
          base::ReadFile(layout_ / "blobs" / "sha256" / std::string(DigestHex(req.url.substr(at + 7))));
      a.status = body.ok() ? 200 : 404;
      a.body = body.ok() ? *body : "";
    } else {
      a.status = 404;
    }
    HttpResponse resp;
    resp.status = a.status;
    resp.headers = a.headers;
    resp.effective_url = req.url;
    if (a.status >= 200 && a.status < 300 && sink && !req.head) {
      if (absl::Status s = sink(a.body); !s.ok()) return s;
    } else if (!req.head) {
      resp.body = a.body;
    }
    return resp;
  }

  void Serve(Handler h) {
    std::lock_guard<std::mutex> l(mu_);
    handler_ = std::move(h);
  }
  std::vector<HttpRequest> Requests() {
    std::lock_guard<std::mutex> l(mu_);
    return requests_;
  }
  int Count(const std::string& part) {
    int n = 0;
    for (const HttpRequest& r : Requests()) n += r.url.find(part) != std::string::npos;
    return n;
  }

 private:
  const fs::path layout_;
  std::mutex mu_;
  Handler handler_;
  std::vector<HttpRequest> requests_;
};

bool HasHeader(const HttpRequest& r, const std::string& prefix) {
  for (const std::string& h : r.headers) {
    if (h.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

ScriptedRegistry::Handler ManifestFrom(const fs::path& layout, const std::string& digest) {
  return [layout, digest](const HttpRequest& req) -> std::optional<ScriptedRegistry::Answer> {
    if (req.url.find("/manifests/") == std::string::npos) return std::nullopt;
    ScriptedRegistry::Answer a;
    a.headers["content-type"] = "application/vnd.oci.image.manifest.v1+json";
    a.body = *base::ReadFile(layout / "blobs" / "sha256" / std::string(DigestHex(digest)));
    return a;
  };
}

class HostileImageTest : public ImageStoreTest {
 protected:
  // A small bootable image in layout `l`; returns its manifest digest.
  std::string GoodImage() {
    LayoutBuilder b(tmp_ / "l");
    b.Layer({{.name = "disk/", .type = TarEntry::kDir}, {.name = "disk/d.raw", .data = "raw"}});
    return b.Finish("x");
  }
  std::unique_ptr<LocalImageStore> OpenWith(const ExtractLimits& limits) {
    LocalImageStore::Options o;
    o.limits = limits;
    absl::StatusOr<std::unique_ptr<LocalImageStore>> s = LocalImageStore::Open(tmp_ / "images", o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }
  void ExpectStoreEmpty() {
    EXPECT_THAT(StoreContents(), IsEmpty());
    EXPECT_THAT(*store_->List(), IsEmpty());
  }
};

// Each malformed JSON answer fails its pull with a message (no exception
// escapes, no flight stays behind), and a good pull of the same reference
// works right after.
TEST_F(HostileImageTest, MalformedRegistryAnswersFailCleanlyAndTheReferenceRecovers) {
  const std::string digest = GoodImage();
  ScriptedRegistry http(tmp_ / "l");
  RegistryPuller puller(store_.get(), &http, PullerOptions{});
  const std::string image = "127.0.0.1:5000/vm:1";
  struct Case {
    std::string name;
    long status;
    std::string content_type;
    std::string body;
  };
  const std::vector<Case> cases = {
      {"manifest mediaType is a number", 200, "application/json", R"({"mediaType": 5, "config": {}, "layers": []})"},
      {"manifest config digest is a number", 200, "application/vnd.oci.image.manifest.v1+json",
       R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":5,"size":"x"},"layers":{}})"},
      {"manifest is an array", 200, "application/vnd.oci.image.manifest.v1+json", "[1,2,3]"},
      {"manifest is not JSON", 200, "application/vnd.oci.image.manifest.v1+json", "{\"config\": "},
      {"index entries are strings", 200, "application/vnd.oci.image.index.v1+json", R"({"manifests": ["a", 5]})"},
      {"index entry size is a string", 200, "application/vnd.oci.image.index.v1+json",
       R"({"manifests": [{"digest": "sha256:)" + std::string(64, 'a') + R"(", "size": "1", "platform": 7}]})"},
      {"error body codes are numbers", 404, "application/json", R"({"errors": [{"code": 5, "message": [1]}, 7]})"},
      {"error body is an array", 500, "application/json", R"([{"errors": 1}])"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    http.Serve([&c](const HttpRequest& req) -> std::optional<ScriptedRegistry::Answer> {
      if (req.url.find("/manifests/") == std::string::npos) return std::nullopt;
      return ScriptedRegistry::Answer{c.status, {{"content-type", c.content_type}}, c.body};
    });
    for (int attempt = 0; attempt < 2; ++attempt) {  // the second would hang behind a leaked flight
      auto pulled = std::async(std::launch::async, [&] { return puller.Pull(image, {}); });
      ASSERT_EQ(pulled.wait_for(std::chrono::seconds(60)), std::future_status::ready) << "pull hangs";
      absl::StatusOr<ImageInfo> info = pulled.get();
      ASSERT_FALSE(info.ok());
      EXPECT_NE(info.status().code(), absl::StatusCode::kOk);
      EXPECT_FALSE(info.status().message().empty());
      RecordProperty(c.name, std::string(info.status().message()));
    }
    ExpectStoreEmpty();
  }
  http.Serve(ManifestFrom(tmp_ / "l", digest));
  absl::StatusOr<ImageInfo> info = puller.Pull(image, {});
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->boot.kind, BootKind::kDisk);
}

// A malformed image config (right digest, wrong shape) fails the pull too.
TEST_F(HostileImageTest, MalformedConfigFailsCleanly) {
  LayoutBuilder b(tmp_ / "l");
  b.Layer({{.name = "disk/", .type = TarEntry::kDir}, {.name = "disk/d.raw", .data = "raw"}});
  std::string bad_config = R"({"config": 5, "os": ["linux"]})";
  json config = b.Blob(bad_config, "application/vnd.oci.image.config.v1+json");
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"config", config},
                   {"layers", b.layers()}};
  ScriptedRegistry http(tmp_ / "l");
  http.Serve([&](const HttpRequest& req) -> std::optional<ScriptedRegistry::Answer> {
    if (req.url.find("/manifests/") == std::string::npos) return std::nullopt;
    return ScriptedRegistry::Answer{
        200, {{"content-type", "application/vnd.oci.image.manifest.v1+json"}}, manifest.dump()};
  });
  RegistryPuller puller(store_.get(), &http, PullerOptions{});
  absl::StatusOr<ImageInfo> info = puller.Pull("127.0.0.1:5000/vm:1", {});
  ASSERT_FALSE(info.ok());
  EXPECT_THAT(std::string(info.status().message()), HasSubstr("config"));
  ExpectStoreEmpty();
}

// kvcri_image_pull_bytes_total counts the blob bytes received, and
// kvcri_image_pull_duration_seconds one observation per pull, by result.
TEST_F(HostileImageTest, PullsAreCountedInBytesAndDurationsByResult) {
  const std::string digest = GoodImage();
  base::MetricsRegistry registry;
  PullerOptions options;
  options.pulled_bytes = *registry.Counter("kvcri_image_pull_bytes_total", "h");
  options.pull_durations =
      *registry.Histogram("kvcri_image_pull_duration_seconds", "h", {"result"}, base::DurationBuckets());
  ScriptedRegistry http(tmp_ / "l");
  RegistryPuller puller(store_.get(), &http, options);
  http.Serve([](const HttpRequest&) -> std::optional<ScriptedRegistry::Answer> {
    return ScriptedRegistry::Answer{404, {{"content-type", "application/json"}}, R"({"errors":[]})"};
  });
  ASSERT_FALSE(puller.Pull("127.0.0.1:5000/vm:1", {}).ok());
  http.Serve(ManifestFrom(tmp_ / "l", digest));
  absl::StatusOr<ImageInfo> info = puller.Pull("127.0.0.1:5000/vm:1", {});
  ASSERT_TRUE(info.ok()) << info.status();
  const std::string text = registry.Expose();
  EXPECT_THAT(text, HasSubstr("kvcri_image_pull_duration_seconds_count{result=\"error\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("kvcri_image_pull_duration_seconds_count{result=\"ok\"} 1\n"));
  // The blobs: the config and every layer, as the manifest lists them
  // (the image's size), whatever the manifest itself weighed.
  EXPECT_THAT(text, HasSubstr("kvcri_image_pull_bytes_total " + std::to_string(info->size) + "\n"));
}

// Sizes a manifest declares are bounded before a byte is downloaded.
TEST_F(HostileImageTest, HugeDeclaredLayerOrConfigIsRefusedBeforeDownload) {
  GoodImage();
  ScriptedRegistry http(tmp_ / "l");
  RegistryPuller puller(store_.get(), &http, PullerOptions{});
  const std::string config = R"({"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:)" +
                             std::string(64, 'c') + R"(","size":)";
  const std::string layer = R"({"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"sha256:)" +
                            std::string(64, 'd') + R"(","size":)";
  for (const std::string& body : {R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","config":)" + config +
                                      "100},\"layers\":[" + layer + "1099511627776}]}",
                                  R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","config":)" + config +
                                      "1000000000},\"layers\":[" + layer + "1}]}",
                                  R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","config":)" + config +
                                      "100},\"layers\":[" + layer + "68719476000}," + layer + "68719476000}]}"}) {
    SCOPED_TRACE(body);
    http.Serve([&](const HttpRequest& req) -> std::optional<ScriptedRegistry::Answer> {
      if (req.url.find("/manifests/") == std::string::npos) return std::nullopt;
      return ScriptedRegistry::Answer{200, {{"content-type", "application/vnd.oci.image.manifest.v1+json"}}, body};
    });
    absl::StatusOr<ImageInfo> info = puller.Pull("127.0.0.1:5000/vm:1", {});
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument) << info.status();
    EXPECT_THAT(std::string(info.status().message()), HasSubstr("declares"));
    EXPECT_EQ(http.Count("/blobs/"), 0);
    ExpectStoreEmpty();
  }
}

// A registry that wants basic auth for repository vm: 401 without it.
ScriptedRegistry::Handler BasicAuthRegistry(const fs::path& layout, const std::string& digest) {
  ScriptedRegistry::Handler good = ManifestFrom(layout, digest);
  return [good](const HttpRequest& req) -> std::optional<ScriptedRegistry::Answer> {
    if (!HasHeader(req, "Authorization: Basic dTpw")) {  // u:p
      return ScriptedRegistry::Answer{401, {{"www-authenticate", "Basic realm=\"r\""}}, ""};
    }
    return good(req);
  };
}

// Concurrent pulls with different credentials never share one answer.
TEST_F(HostileImageTest, ConcurrentPullsWithOtherCredentialsDoNotShareAFlight) {
  const std::string digest = GoodImage();
  ScriptedRegistry http(tmp_ / "l");
  absl::Notification release;
  std::atomic<int> manifest_gets{0};
  ScriptedRegistry::Handler auth = BasicAuthRegistry(tmp_ / "l", digest);
  http.Serve([&](const HttpRequest& req) -> std::optional<ScriptedRegistry::Answer> {
    if (req.url.find("/manifests/") != std::string::npos && HasHeader(req, "Authorization:")) {
      if (manifest_gets.fetch_add(1) == 0) release.WaitForNotification();
    }
    return auth(req);
  });
  RegistryPuller puller(store_.get(), &http, PullerOptions{});
  absl::StatusOr<ImageInfo> with, without;
  std::thread a([&] { with = puller.Pull("127.0.0.1:5000/vm:1", {.username = "u", .password = "p"}); });
  while (manifest_gets.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::thread c([&] { without = puller.Pull("127.0.0.1:5000/vm:1", {}); });
  c.join();  // not behind the authenticated flight: it asks on its own and is refused
  release.Notify();
  a.join();
  ASSERT_TRUE(with.ok()) << with.status();
  EXPECT_EQ(without.status().code(), absl::StatusCode::kUnauthenticated) << without.status();
}

// A digest pull answered from the store checks the caller's credentials
// when the image came with credentials; images pulled anonymously are served
// without asking.
TEST_F(HostileImageTest, DigestPullOfAnImagePulledWithCredentialsAsksTheRegistry) {
  const std::string digest = GoodImage();
  ScriptedRegistry http(tmp_ / "l");
  http.Serve(BasicAuthRegistry(tmp_ / "l", digest));
  RegistryPuller puller(store_.get(), &http, PullerOptions{});
  const RegistryCredentials creds{.username = "u", .password = "p"};
  absl::StatusOr<ImageInfo> info = puller.Pull("127.0.0.1:5000/vm:1", creds);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(info->pulled_with_credentials);
  EXPECT_TRUE(store_->Resolve("127.0.0.1:5000/vm:1")->pulled_with_credentials);

  const std::string by_digest = "127.0.0.1:5000/vm@" + digest;
  const size_t before = http.Requests().size();
  absl::StatusOr<ImageInfo> anonymous = puller.Pull(by_digest, {});
  ASSERT_FALSE(anonymous.ok());
  EXPECT_EQ(anonymous.status().code(), absl::StatusCode::kUnauthenticated) << anonymous.status();
  EXPECT_THAT(std::string(anonymous.status().message()), HasSubstr(by_digest));
  std::vector<HttpRequest> reqs = http.Requests();
  ASSERT_GT(reqs.size(), before);
  EXPECT_TRUE(reqs[before].head);
  EXPECT_THAT(reqs[before].url, HasSubstr("/manifests/" + digest));
  EXPECT_EQ(http.Count("/blobs/"), 2);  // the first pull's config and layer only

  absl::StatusOr<ImageInfo> wrong = puller.Pull(by_digest, {.username = "u", .password = "wrong"});
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kUnauthenticated) << wrong.status();
  absl::StatusOr<ImageInfo> right = puller.Pull(by_digest, creds);
  ASSERT_TRUE(right.ok()) << right.status();
  EXPECT_EQ(right->id, info->id);
}

TEST_F(HostileImageTest, DigestPullOfAnAnonymousImageNeedsNoRegistry) {
  const std::string digest = GoodImage();
  ScriptedRegistry http(tmp_ / "l");
  http.Serve(ManifestFrom(tmp_ / "l", digest));
  RegistryPuller puller(store_.get(), &http, PullerOptions{});
  ASSERT_TRUE(puller.Pull("127.0.0.1:5000/vm:1", {}).ok());
  EXPECT_FALSE(store_->Resolve("127.0.0.1:5000/vm:1")->pulled_with_credentials);
  const size_t before = http.Requests().size();
  ASSERT_TRUE(puller.Pull("127.0.0.1:5000/vm@" + digest, {}).ok());
  EXPECT_EQ(http.Requests().size(), before);
}

// Credentials given for one registry are not offered to another, nor to a mirror.
TEST_F(HostileImageTest, CredentialsAreOfferedOnlyWhereTheyWereGivenFor) {
  const std::string digest = GoodImage();
  ScriptedRegistry http(tmp_ / "l");
  ScriptedRegistry::Handler auth = BasicAuthRegistry(tmp_ / "l", digest);
  http.Serve(auth);
  PullerOptions options;
  options.registry.mirrors["127.0.0.1:5000"] = {"http://127.0.0.1:6000"};
  RegistryPuller puller(store_.get(), &http, options);
  absl::StatusOr<ImageInfo> other =
      puller.Pull("127.0.0.1:5000/vm:1", {.username = "u", .password = "p", .server_address = "other.example"});
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), absl::StatusCode::kUnauthenticated) << other.status();
  EXPECT_THAT(std::string(other.status().message()), HasSubstr("other.example"));
  for (const HttpRequest& r : http.Requests()) EXPECT_FALSE(HasHeader(r, "Authorization:")) << r.url;

  // Without a server_address: the registry gets them, its mirror does not.
  absl::StatusOr<ImageInfo> info = puller.Pull("127.0.0.1:5000/vm:1", {.username = "u", .password = "p"});
  ASSERT_TRUE(info.ok()) << info.status();
  int to_registry = 0;
  for (const HttpRequest& r : http.Requests()) {
    if (r.url.find(":6000/") != std::string::npos) {
      EXPECT_FALSE(HasHeader(r, "Authorization:")) << r.url;
    }
    if (r.url.find(":5000/") != std::string::npos) to_registry += HasHeader(r, "Authorization: Basic");
  }
  EXPECT_GT(to_registry, 0);
}


TEST_F(HostileImageTest, DecompressionBombIsRefusedAtTheByteLimit) {
  store_ = OpenWith({.max_bytes = 8 << 20});
  for (const std::string name : {"disk/bomb.raw", "junk/skipped.bin"}) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(base::RemoveAll(tmp_ / "bomb").ok());
    LayoutBuilder b(tmp_ / "bomb");
    b.Layer({{.name = name, .data = std::string(64 << 20, 'A')}}, Compression::kZstd);
    b.Finish("x");
    EXPECT_LT(fs::file_size(b.BlobPath(b.layers()[0])), 64u << 10);  // a small layer
    ExpectImportFails(tmp_ / "bomb", absl::StatusCode::kInvalidArgument, "max_image_bytes");
  }
  // Many small entries add up too.
  ASSERT_TRUE(base::RemoveAll(tmp_ / "bomb").ok());
  LayoutBuilder b(tmp_ / "bomb");
  std::vector<TarEntry> entries;
  for (int i = 0; i < 16; ++i) entries.push_back({.name = "f" + std::to_string(i), .data = std::string(1 << 20, 'A')});
  b.Layer(entries, Compression::kZstd);
  b.Finish("x");
  ExpectImportFails(tmp_ / "bomb", absl::StatusCode::kInvalidArgument, "max_image_bytes");
  // Under the limit, the same store imports.
  GoodImage();
  absl::StatusOr<ImageInfo> ok = store_->Import(tmp_ / "l", "ok:1", "x");
  EXPECT_TRUE(ok.ok()) << ok.status();
}

TEST_F(HostileImageTest, LayerOfCountlessEntriesIsRefusedAtTheEntryLimit) {
  store_ = OpenWith({.max_entries = 100});
  LayoutBuilder b(tmp_ / "many");
  std::vector<TarEntry> entries;
  for (int i = 0; i < 101; ++i) entries.push_back({.name = "e" + std::to_string(i), .data = "x"});
  b.Layer(entries);
  b.Finish("x");
  ExpectImportFails(tmp_ / "many", absl::StatusCode::kInvalidArgument, "max_image_entries");
  // Files written are bounded whatever the entry limit.
  ASSERT_TRUE(base::RemoveAll(tmp_ / "many").ok());
  store_ = OpenWith({});
  LayoutBuilder d(tmp_ / "many");
  entries.clear();
  for (int i = 0; i < kMaxExtractedFiles + 1; ++i)
    entries.push_back({.name = "disk/d" + std::to_string(i), .data = "x"});
  d.Layer(entries);
  d.Finish("x");
  ExpectImportFails(tmp_ / "many", absl::StatusCode::kInvalidArgument, "files under /disk/");
}

// Layer blobs served through pipes the test feeds: extraction waits for it.
class PipeLayerSource : public BlobSource {
 public:
  PipeLayerSource(fs::path layout, std::string layer) : dir_(std::move(layout)), layer_(std::move(layer)) {
    int p[2];
    EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
    read_ = base::UniqueFd(p[0]);
    write_ = base::UniqueFd(p[1]);
  }
  absl::StatusOr<base::UniqueFd> Open(std::string_view digest) override {
    if (digest != layer_) return dir_.Open(digest);
    absl::MutexLock l(&mu_);  // the store's thread opens, the test's feeds (TSan saw the race)
    return base::UniqueFd(::fcntl(read_.get(), F_DUPFD_CLOEXEC, 0));
  }
  // Writes the layer and closes the pipe: extraction can finish.
  void Feed() {
    std::string data = *base::ReadFile(dir_.BlobPath(layer_));
    {
      absl::MutexLock l(&mu_);
      read_.Reset();
    }
    for (size_t done = 0; done < data.size();) {
      ssize_t n = ::write(write_.get(), data.data() + done, data.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    write_.Reset();
  }
  void Close() {
    {
      absl::MutexLock l(&mu_);
      read_.Reset();
    }
    write_.Reset();
  }

 private:
  DirBlobSource dir_;
  std::string layer_;
  absl::Mutex mu_;
  base::UniqueFd read_ ABSL_GUARDED_BY(mu_);
  base::UniqueFd write_;  // the test's thread only
};

// The running extraction child: pid of the process whose argv[0] is kvcri-extract and whose parent is us.
pid_t FindExtractChild() {
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    absl::StatusOr<std::string> cmdline = base::ReadFile(e.path() / "cmdline");
    if (!cmdline.ok() || cmdline->rfind(std::string("kvcri-extract\0", 14), 0) != 0) continue;
    absl::StatusOr<std::string> status = base::ReadFile(e.path() / "status");
    if (!status.ok()) continue;
    if (status->find("PPid:\t" + std::to_string(::getpid()) + "\n") == std::string::npos) continue;
    return static_cast<pid_t>(std::stoi(name));
  }
  return -1;
}

struct PipeImage {
  std::string manifest_digest;
  Descriptor manifest;
  std::string layer;
};

PipeImage BuildPipeImage(const fs::path& dir) {
  LayoutBuilder b(dir);
  b.Layer({{.name = "disk/", .type = TarEntry::kDir}, {.name = "disk/d.raw", .data = "raw-disk"}});
  PipeImage out;
  out.manifest_digest = b.Finish("x");
  out.layer = b.layers()[0]["digest"];
  out.manifest.media_type = "application/vnd.oci.image.manifest.v1+json";
  out.manifest.digest = out.manifest_digest;
  out.manifest.size = static_cast<int64_t>(fs::file_size(DirBlobSource(dir).BlobPath(out.manifest_digest)));
  return out;
}

// While one image extracts: the store's lock is free (another import and a
// Remove finish), the child runs as the unprivileged uid with its rlimits,
// and what someone else drops into its work directory is not committed.
TEST_F(HostileImageTest, ExtractionRunsUnlockedUnprivilegedAndCommitsOnlyItsArtifacts) {
  ASSERT_EQ(::geteuid(), 0u) << "this test checks the extraction child's uid change, which needs root";
  LayoutBuilder other(tmp_ / "other");
  other.Layer({{.name = "boot/vmlinuz", .data = "K"}});
  other.Finish("x");
  ASSERT_TRUE(store_->Import(tmp_ / "other", "other:1", "x").ok());

  PipeImage img = BuildPipeImage(tmp_ / "slow");
  PipeLayerSource source(tmp_ / "slow", img.layer);
  absl::StatusOr<Reference> ref = ParseReference("slow:1");
  ASSERT_TRUE(ref.ok());
  auto commit = std::async(std::launch::async, [&] {
    return store_->Commit(source, img.manifest, img.manifest_digest, *ref, LocalImageStore::Origin::kImport);
  });
  pid_t child = -1;
  for (int i = 0; i < 400 && child < 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
    child = FindExtractChild();
  }
  ASSERT_GT(child, 0) << "no extraction child found";
  // Give it time to drop privileges (it blocks reading the pipe after).
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  std::string status = *base::ReadFile(fs::path("/proc") / std::to_string(child) / "status");
  EXPECT_THAT(status, HasSubstr("Uid:\t65534\t65534\t65534\t65534"));
  EXPECT_THAT(status, HasSubstr("Gid:\t65534\t65534\t65534\t65534"));
  EXPECT_THAT(status, HasSubstr("CapEff:\t0000000000000000"));
  std::string limits = *base::ReadFile(fs::path("/proc") / std::to_string(child) / "limits");
  EXPECT_THAT(limits, ::testing::ContainsRegex("Max file size +68719476736 +68719476736"));
  EXPECT_THAT(limits, ::testing::ContainsRegex("Max open files +[0-9]{1,2} "));

  // Files appear where the child could write (its own directory; on an
  // unconfined extraction, the whole work directory): none may be committed.
  // The parent's own image/ directory is out of the child's reach (chroot).
  std::vector<fs::path> plant_in;
  for (const auto& e : fs::recursive_directory_iterator(tmp_ / "images" / "tmp")) {
    const fs::path rel = fs::relative(e.path(), tmp_ / "images" / "tmp");
    bool in_image = false;
    for (const fs::path& part : rel) in_image |= part == "image";
    if (e.is_directory() && !in_image) plant_in.push_back(e.path());
  }
  ASSERT_FALSE(plant_in.empty());
  for (const fs::path& d : plant_in) std::ofstream(d / "planted") << "x";

  // The lock is free: another import and a Remove finish meanwhile.
  auto other_ops = std::async(std::launch::async, [&] {
    absl::Status s = store_->Remove("other:1", nullptr);
    if (!s.ok()) return s;
    return store_->Import(tmp_ / "other", "other:2", "x").status();
  });
  const bool finished = other_ops.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
  EXPECT_TRUE(finished) << "Remove/Import waited behind an extraction";
  source.Feed();
  if (finished) {
    EXPECT_TRUE(other_ops.get().ok());
  }
  absl::StatusOr<ImageInfo> info = commit.get();
  ASSERT_TRUE(info.ok()) << info.status();
  if (!finished) other_ops.wait();

  std::set<std::string> committed;
  const fs::path dir = tmp_ / "images" / "store" / info->id.substr(7);
  for (const auto& e : fs::recursive_directory_iterator(dir)) committed.insert(fs::relative(e.path(), dir));
  EXPECT_THAT(committed, UnorderedElementsAre("image.json", "disk", "disk/d.raw"));
  struct stat st;
  ASSERT_EQ(::stat(info->boot.disk.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_gid, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0444u);
  EXPECT_EQ(*base::ReadFile(info->boot.disk), "raw-disk");
  EXPECT_TRUE(fs::is_empty(tmp_ / "images" / "tmp"));
}

// The pull timeout covers extraction: a layer that never ends is cut off.
TEST_F(HostileImageTest, ExtractionStopsAtTheDeadline) {
  PipeImage img = BuildPipeImage(tmp_ / "slow");
  PipeLayerSource source(tmp_ / "slow", img.layer);
  absl::StatusOr<Reference> ref = ParseReference("slow:1");
  ASSERT_TRUE(ref.ok());
  LocalImageStore::CommitOptions options;
  options.deadline = absl::Now() + absl::Seconds(1);
  auto commit = std::async(std::launch::async,
                           [&] { return store_->Commit(source, img.manifest, img.manifest_digest, *ref, options); });
  // Today's code would wait for the layer forever; end it after a while.
  if (commit.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    ADD_FAILURE() << "extraction ignored its deadline";
    source.Close();
  }
  absl::StatusOr<ImageInfo> info = commit.get();
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status().code(), absl::StatusCode::kDeadlineExceeded) << info.status();
  EXPECT_THAT(std::string(info.status().message()), HasSubstr("pull_timeout_seconds"));
  EXPECT_EQ(FindExtractChild(), -1);
  ExpectStoreEmpty();
}

// Every directory of the store is 0700, also one made wider before.
TEST_F(HostileImageTest, StoreDirectoriesAreOwnerOnly) {
  GoodImage();
  ASSERT_TRUE(store_->Import(tmp_ / "l", "vm:1", "x").ok());
  ASSERT_EQ(::chmod((tmp_ / "images").c_str(), 0755), 0);
  ASSERT_EQ(::chmod((tmp_ / "images" / "store").c_str(), 0755), 0);
  store_.reset();
  const mode_t old = ::umask(0);
  store_ = Open();
  ::umask(old);
  ASSERT_NE(store_, nullptr);
  for (const auto& e : fs::recursive_directory_iterator(tmp_ / "images")) {
    if (!e.is_directory()) continue;
    struct stat st;
    ASSERT_EQ(::lstat(e.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0700u) << e.path();
  }
  struct stat st;
  ASSERT_EQ(::lstat((tmp_ / "images").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
}

// A confined VM's traverse entry on the way to its base disk survives the
// store's tightening at the next start-up: chmod 0700 would set the ACL mask
// to nothing and lock the running VM out.
TEST_F(HostileImageTest, ReopeningKeepsAConfinedVmsTraverseEntry) {
  constexpr uid_t kVmUid = 2000000123;
  store_.reset();
  ASSERT_TRUE(AddAclEntry(tmp_ / "images" / "store", kVmUid, Access::kTraverse).ok());
  store_ = Open();
  ASSERT_NE(store_, nullptr);
  struct stat st;
  ASSERT_EQ(::lstat((tmp_ / "images" / "store").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0710u) << "the ACL mask (group bits) lost its x";
  EXPECT_TRUE(HasAclEntry(tmp_ / "images" / "store", kVmUid));
}

}  // namespace
}  // namespace kvcri::runtime::image
