// ImageLabels: the config labels of a container's image, read from containerd's image and content services.
#pragma once

// A VM image's labels choose how it boots (io.kubevirt-cri.cmdline, the
// firmware: docs/images.md); in containerd-shim mode the image is
// containerd's, and the container spec names it only by the
// io.kubernetes.cri.image-name annotation (containerd's image record name:
// a reference, or the image ID "sha256:<config digest>" that kubelet uses).
// The shim asks containerd itself, over its gRPC socket (the shim's
// -address) in the task's namespace: Images.Get(name) → the target manifest
// (an index resolved to linux/amd64) → the config → its Labels. Every blob
// read is bounded (kMaxBlobBytes); the JSON is the image author's.

#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kvcri::shim::containerd {

inline constexpr size_t kMaxBlobBytes = 4 << 20;

// The pure steps, tested alone. From a manifest: config.digest. From an
// index (OCI or Docker manifest list): the digest of the linux/amd64
// manifest. From an image config: config.Labels. InvalidArgument naming
// what is missing or malformed.
absl::StatusOr<std::string> ConfigDigestOfManifest(std::string_view manifest_json);
absl::StatusOr<std::string> PlatformManifestOfIndex(std::string_view index_json);
absl::StatusOr<std::map<std::string, std::string>> LabelsOfImageConfig(std::string_view config_json);
// Whether a media type names an index (OCI image index, Docker manifest list).
bool IsIndexMediaType(std::string_view media_type);

// The whole lookup against containerd at `address` (a unix socket path) in
// `ns`. NotFound when containerd has no such image; Unavailable when it
// does not answer within `timeout` (per call).
absl::StatusOr<std::map<std::string, std::string>> ImageLabels(const std::string& address, const std::string& ns,
                                                               const std::string& image,
                                                               absl::Duration timeout = absl::Seconds(10));

}  // namespace kvcri::shim::containerd
