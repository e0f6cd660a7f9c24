// Reads one OCI layer blob entry by entry (tar, gzip or zstd), verifying its digest and size, within an image's extraction limits.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/image/extract.h"
#include "runtime/image/oci.h"

struct archive;
struct archive_entry;

namespace kvcri::runtime::image {

// What an image's layers have used of ExtractLimits so far (they are
// bounded together, not per layer).
struct LayerBudget {
  int64_t bytes = 0;    // decompressed tar bytes of the layers already read
  int64_t entries = 0;  // tar entries seen
};

// Called for each entry with the archive positioned at its data (read it
// with archive_read_data_block, or leave it: it is skipped).
using LayerEntryFn = std::function<absl::Status(archive* a, archive_entry* e)>;

// Reads `layer` from `source`, calling `on_entry` for each entry in order.
// Bounds the work before doing it: an entry whose declared size does not
// fit what is left of limits.max_bytes, or one entry past max_entries, is
// InvalidArgument naming the limit. A blob whose digest or size differs is
// InvalidArgument (a read error of libarchive is reported as that when the
// blob is the cause). `budget` carries the totals from layer to layer.
absl::Status ReadLayer(BlobSource& source, const Descriptor& layer, const ExtractLimits& limits, LayerBudget* budget,
                       const LayerEntryFn& on_entry);

// Hands each data block of the entry `e` (at `a`'s position) to `write` as
// (bytes, length, offset in the file); sparse entries come as blocks at
// offsets, the gaps are holes. Data past the entry's declared size is
// InvalidArgument (the budget was checked against the declared size), as
// is a libarchive read error; `write`'s error ends the loop. The end of the
// file (the furthest block or the declared size) in *end.
absl::Status ForEachDataBlock(archive* a, archive_entry* e,
                              const std::function<absl::Status(const char* data, size_t len, int64_t off)>& write,
                              int64_t* end);

// Cleans a tar entry name to "a/b/c" (no leading "./", no "//"); refuses
// absolute names and "..". An empty result means the root itself. `what`
// describes the name in the error ("entry", "hardlink \"x\" to").
absl::StatusOr<std::string> NormalizeEntryName(std::string_view name, std::string_view layer, std::string_view what);

inline constexpr std::string_view kWhiteoutPrefix = ".wh.";
inline constexpr std::string_view kOpaqueWhiteout = ".wh..wh..opq";

}  // namespace kvcri::runtime::image
