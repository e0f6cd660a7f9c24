// Fuzz target tar_extract: image layers (tar, gzip, zstd) through ExtractBootArtifacts, as the extraction child runs.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <vector>

#include "config/base/str.h"
#include "config/base/unique_fd.h"
#include "runtime/image/digest.h"
#include "runtime/image/extract.h"
#include "test/fuzz/fuzz_targets.h"
#include "test/fuzz/scratch_file.h"

namespace kvcri::fuzz {

constexpr std::string_view kTarget = "tar_extract";
// Splits one input into several layers, applied in order (whiteouts, overrides).
constexpr std::string_view kLayerSeparator = "\n--kvcri-next-layer--\n";

namespace {

namespace fs = std::filesystem;

// Blobs are the layers of this input, by digest.
class InputBlobs : public runtime::image::BlobSource {
 public:
  absl::StatusOr<base::UniqueFd> Open(std::string_view digest) override {
    for (size_t i = 0; i < digests_.size(); ++i) {
      if (digests_[i] != digest) continue;
      base::UniqueFd fd(::open(paths_[i].c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd.valid()) FuzzFail(kTarget, "open scratch layer");
      return fd;
    }
    return absl::NotFoundError(std::string(digest));
  }
  runtime::image::Descriptor Add(std::string_view bytes) {
    fs::path path = ScratchPath(base::StrCat("layer", paths_.size()));
    base::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd.valid() || ::write(fd.get(), bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) {
      FuzzFail(kTarget, "write scratch layer");
    }
    runtime::image::Descriptor d;
    d.media_type = "application/vnd.oci.image.layer.v1.tar";
    d.digest = runtime::image::Sha256Digest(bytes);
    d.size = static_cast<int64_t>(bytes.size());
    digests_.push_back(d.digest);
    paths_.push_back(path);
    return d;
  }

 private:
  std::vector<std::string> digests_;
  std::vector<fs::path> paths_;
};

}  // namespace

void FuzzTarExtract(FuzzInput in) {
  InputBlobs blobs;
  std::vector<runtime::image::Descriptor> layers;
  std::string_view rest = AsText(in);
  while (layers.size() < 4) {
    size_t sep = rest.find(kLayerSeparator);
    if (sep == std::string_view::npos || layers.size() == 3) {
      layers.push_back(blobs.Add(rest));
      break;
    }
    layers.push_back(blobs.Add(rest.substr(0, sep)));
    rest.remove_prefix(sep + kLayerSeparator.size());
  }
  const fs::path out = ScratchPath("out");
  std::error_code ec;
  fs::remove_all(out, ec);
  fs::create_directory(out);
  absl::StatusOr<runtime::image::BootArtifacts> a = runtime::image::ExtractBootArtifacts(blobs, layers, out);
  if (!a.ok()) {
    KVCRI_FUZZ_CHECK(kTarget, absl::IsInvalidArgument(a.status()));
    fs::remove_all(out, ec);
    return;
  }
  // Only the chosen boot artifacts are left, each a regular file; an image
  // with none says why.
  std::vector<std::string> want;
  for (const std::string* rel : {&a->disk, &a->kernel, &a->initrd}) {
    if (rel->empty()) continue;
    want.push_back(*rel);
    KVCRI_FUZZ_CHECK(kTarget, fs::is_regular_file(fs::symlink_status(out / *rel)));
  }
  KVCRI_FUZZ_CHECK(kTarget, want.empty() != a->unbootable_reason.empty());
  KVCRI_FUZZ_CHECK(kTarget, a->disk.empty() || a->disk.rfind("disk/", 0) == 0);
  size_t files = 0;
  for (const fs::directory_entry& e : fs::recursive_directory_iterator(out)) {
    KVCRI_FUZZ_CHECK(kTarget, !e.is_symlink());
    if (!e.is_directory()) ++files;
  }
  KVCRI_FUZZ_CHECK(kTarget, files == want.size());
  fs::remove_all(out, ec);
}

}  // namespace kvcri::fuzz

KVCRI_FUZZ_ENTRY(kvcri::fuzz::FuzzTarExtract)
