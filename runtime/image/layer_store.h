// LayerStore: image layers unpacked once per layer digest (overlayfs lower layers), shared by every image and container that uses them.
#pragma once

// <dir>/sha256/<hex>/         one unpacked layer (layer_unpack.h), never
//                             changed once renamed into place
// <dir>/sha256/.tmp-<hex>-*   a layer being unpacked; removed by Collect
//
// Layers are keyed by the digest of their blob as the manifest names it.
// Two images sharing a layer share its directory; the image store keeps
// the list per image and calls Collect with what its images still use.

#include <filesystem>
#include <set>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "runtime/image/layer_reader.h"
#include "runtime/image/oci.h"
#include "runtime/image/sandboxed_extract.h"

namespace kvcri::runtime::image {

class LayerStore {
 public:
  explicit LayerStore(std::filesystem::path dir) : dir_(std::move(dir)) {}

  std::filesystem::path PathOf(std::string_view digest) const;
  bool Has(std::string_view digest) const;
  // Unpacks `layer` from `source` unless it is there (UnpackLayerSandboxed
  // into a staging directory, renamed into place: a crash leaves no half
  // layer under its name). Concurrent calls for one digest may both unpack;
  // the first rename wins and the other's copy is dropped.
  absl::Status Ensure(BlobSource& source, const Descriptor& layer, const SandboxOptions& options,
                      LayerBudget* budget) const;
  // Removes every layer whose digest is not in `keep`, and staging
  // leftovers older than a running unpack could be (or all, `all_staging`).
  absl::Status Collect(const std::set<std::string>& keep, bool all_staging) const;

 private:
  std::filesystem::path dir_;
};

}  // namespace kvcri::runtime::image
