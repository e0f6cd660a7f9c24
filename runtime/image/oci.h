// OCI image layout types: descriptors, index, manifest, image config, blob sources.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/base/unique_fd.h"
#include "runtime/image/digest.h"

namespace kvcri::runtime::image {

// An OCI content descriptor (also used for Docker schema 2 manifests).
struct Descriptor {
  std::string media_type;
  std::string digest;  // validated "sha256:<hex>"
  int64_t size = 0;
  // From an index: platform and org.opencontainers.image.ref.name.
  std::string os;
  std::string architecture;
  std::string ref_name;
};

struct Manifest {
  Descriptor config;
  std::vector<Descriptor> layers;
};

// The parts of an image config the runtime uses.
struct ImageConfig {
  std::string os;
  std::string architecture;
  std::string created;
  std::string user;
  std::vector<std::string> env;
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::string working_dir;
  std::map<std::string, std::string> labels;
};

bool IsIndexMediaType(std::string_view media_type);
bool IsManifestMediaType(std::string_view media_type);

// Parses an image index (or an OCI layout's index.json). Entries whose digest
// is malformed are errors; entries of unknown media types are kept.
absl::StatusOr<std::vector<Descriptor>> ParseIndex(std::string_view json);
// Parses an image manifest; rejects non-image configs and unknown layer
// media types (InvalidArgument).
absl::StatusOr<Manifest> ParseManifest(std::string_view json);
absl::StatusOr<ImageConfig> ParseImageConfig(std::string_view json);

// The platform this binary runs on, as OCI spells it ("amd64", "arm64").
std::string_view HostArchitecture();

// Where blobs come from: an OCI layout being imported, or the store's own
// blob directory (which has the same layout) after a registry pull.
class BlobSource {
 public:
  virtual ~BlobSource() = default;
  // Opens blob `digest` for reading; NotFound when it is absent.
  virtual absl::StatusOr<base::UniqueFd> Open(std::string_view digest) = 0;
};

// Blobs in `<dir>/blobs/sha256/<hex>`: an OCI image layout or the store.
class DirBlobSource : public BlobSource {
 public:
  explicit DirBlobSource(std::filesystem::path dir) : dir_(std::move(dir)) {}
  absl::StatusOr<base::UniqueFd> Open(std::string_view digest) override;
  std::filesystem::path BlobPath(std::string_view digest) const;

 private:
  std::filesystem::path dir_;
};

// Reads a blob while hashing it; Finish() checks the digest and size of the
// whole blob (reading what the consumer left).
class VerifyingReader {
 public:
  VerifyingReader(base::UniqueFd fd, Descriptor desc)
      : fd_(std::move(fd)), desc_(std::move(desc)) {}
  // Up to `len` bytes; 0 at the end of the blob.
  absl::StatusOr<size_t> Read(void* buf, size_t len);
  // Drains the rest; InvalidArgument on a digest or size mismatch.
  absl::Status Finish();
  const Descriptor& descriptor() const { return desc_; }

 private:
  base::UniqueFd fd_;
  Descriptor desc_;
  Sha256 hash_;
  int64_t read_ = 0;
};

// Reads a whole blob of at most `max_size` bytes and verifies it.
absl::StatusOr<std::string> ReadBlob(BlobSource& source, const Descriptor& desc, int64_t max_size);

}  // namespace kvcri::runtime::image
