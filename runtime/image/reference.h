// Image references as Docker and the CRI spell them, normalized.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kvcri::runtime::image {

// A normalized image reference, as Docker and the CRI spell it:
// "busybox" is docker.io/library/busybox:latest.
struct Reference {
  std::string domain;  // "docker.io", "localhost:5000", "quay.io"
  std::string path;    // "library/busybox"
  std::string tag;     // "latest"; empty only when `digest` is set
  std::string digest;  // "sha256:<64 hex>" or empty

  // "docker.io/library/busybox".
  std::string Name() const { return domain + "/" + path; }
  // "name:tag", "name@digest" or "name:tag@digest".
  std::string String() const;
  // "name:tag", or empty without a tag.
  std::string TagRef() const;
  // "name@digest", or empty without a digest.
  std::string DigestRef() const;
};

// Parses and normalizes `ref` like Docker's ParseNormalizedNamed + TagNameOnly:
// a domain is the first component when it has a '.' or ':', is "localhost",
// or has upper case; otherwise docker.io (with "library/" for single-component
// names); index.docker.io becomes docker.io; ":latest" is added when there is
// neither tag nor digest. Only sha256 digests are accepted. Errors are
// InvalidArgument and quote `ref`.
absl::StatusOr<Reference> ParseReference(std::string_view ref);

}  // namespace kvcri::runtime::image
