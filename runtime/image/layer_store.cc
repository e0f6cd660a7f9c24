// LayerStore (layer_store.h): content-addressed unpacked layers, staged and renamed into place.
#include "runtime/image/layer_store.h"

#include <sys/stat.h>

#include <cerrno>
#include <vector>

#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "runtime/image/digest.h"

namespace kvcri::runtime::image {

namespace fs = std::filesystem;

fs::path LayerStore::PathOf(std::string_view digest) const { return dir_ / "sha256" / std::string(DigestHex(digest)); }

bool LayerStore::Has(std::string_view digest) const {
  if (!ValidateDigest(digest, "layer digest").ok()) return false;
  struct stat st {};
  return ::lstat(PathOf(digest).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

absl::Status LayerStore::Ensure(BlobSource& source, const Descriptor& layer, const SandboxOptions& options,
                                LayerBudget* budget) const {
  RETURN_IF_ERROR(ValidateDigest(layer.digest, "layer digest"));
  if (Has(layer.digest)) return absl::OkStatus();
  RETURN_IF_ERROR(base::MakeDirs(dir_ / "sha256", 0700));
  ASSIGN_OR_RETURN(std::string rnd, base::RandomHex(8));
  const fs::path staging = dir_ / "sha256" / base::StrCat(".tmp-", DigestHex(layer.digest), "-", rnd);
  // The root of a container's filesystem: 0755 and root's, as runc's is.
  if (::mkdir(staging.c_str(), 0755) != 0) return absl::ErrnoToStatus(errno, base::StrCat("mkdir \"", staging.string(), "\""));
  absl::StatusOr<UnpackStats> st = UnpackLayerSandboxed(source, layer, staging, options, budget);
  if (!st.ok()) {
    base::LogIfError(base::RemoveAll(staging), "remove a failed layer's staging directory");
    return st.status();
  }
  RETURN_IF_ERROR(base::SyncDir(staging));
  if (::rename(staging.c_str(), PathOf(layer.digest).c_str()) != 0) {
    const int err = errno;
    base::LogIfError(base::RemoveAll(staging), "remove a layer's staging directory");
    // Another unpack of the same layer won: its copy is the same layer.
    if ((err == EEXIST || err == ENOTEMPTY) && Has(layer.digest)) return absl::OkStatus();
    return absl::ErrnoToStatus(err, base::StrCat("rename layer ", layer.digest, " into place"));
  }
  base::LogInfo("image layer unpacked", {{"digest", layer.digest},
                                         {"entries", base::StrCat(st->entries)},
                                         {"skipped_devices", base::StrCat(st->skipped_devices)}});
  return base::SyncDir(dir_ / "sha256");
}

absl::Status LayerStore::Collect(const std::set<std::string>& keep, bool all_staging) const {
  std::error_code ec;
  fs::directory_iterator it(dir_ / "sha256", ec);
  if (ec) return ec == std::errc::no_such_file_or_directory ? absl::OkStatus()
                                                             : absl::InternalError(base::StrCat("list layers: ", ec.message()));
  std::set<std::string> keep_hex;
  for (const std::string& d : keep) keep_hex.insert(std::string(DigestHex(d)));
  std::vector<fs::path> drop;
  for (const fs::directory_entry& e : it) {
    const std::string name = e.path().filename().string();
    if (name.rfind(".tmp-", 0) == 0) {
      if (all_staging) drop.push_back(e.path());
      continue;
    }
    if (!keep_hex.count(name)) drop.push_back(e.path());
  }
  absl::Status first;
  for (const fs::path& p : drop) {
    absl::Status s = base::RemoveAll(p);
    if (s.ok()) {
      base::LogInfo("image layer removed", {{"dir", p.string()}});
    } else if (first.ok()) {
      first = s;
    }
  }
  return first;
}

}  // namespace kvcri::runtime::image
