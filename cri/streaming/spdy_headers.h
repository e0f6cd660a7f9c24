// SPDY/3 header blocks: the name/value block format and its zlib compression with the SPDY/3 dictionary, bounded for untrusted peers.
#pragma once

// A header block is a 32-bit pair count, then per pair a 32-bit length and a
// lowercase name, a 32-bit length and a value (NUL separates several values).
// Each direction of a connection compresses all its blocks with one zlib
// stream (sync-flushed per block), so one HeaderEncoder and one
// HeaderDecoder live as long as the connection and see every block in order;
// after a decoding error the context is unusable and the connection must end.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace kvcri::streaming::spdy {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

inline constexpr size_t kMaxHeaderPairs = 128;

// The first value of `name` (lowercase), or "" when it is absent.
std::string_view FindHeader(const HeaderList& headers, std::string_view name);

// The SPDY/3 compression dictionary (1423 bytes, from the spec).
std::string_view HeaderDictionary();

// Uncompressed block encoding and parsing. Parsing refuses: a truncated
// block, trailing bytes, more than kMaxHeaderPairs pairs, an empty or
// non-lowercase name, a NUL in a name, a repeated name.
std::string EncodeHeaderBlock(const HeaderList& headers);
absl::StatusOr<HeaderList> ParseHeaderBlock(std::string_view block);

class HeaderEncoder {
 public:
  static absl::StatusOr<std::unique_ptr<HeaderEncoder>> Create();
  ~HeaderEncoder();
  HeaderEncoder(const HeaderEncoder&) = delete;
  HeaderEncoder& operator=(const HeaderEncoder&) = delete;
  // The compressed block for the next frame of this direction.
  absl::StatusOr<std::string> Encode(const HeaderList& headers);

 private:
  struct State;
  explicit HeaderEncoder(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

class HeaderDecoder {
 public:
  // `max_block_bytes`: the largest decompressed block accepted
  // (StreamLimits::max_header_block_bytes); inflation stops there, so a
  // zlib bomb costs at most that much memory.
  static absl::StatusOr<std::unique_ptr<HeaderDecoder>> Create(size_t max_block_bytes);
  ~HeaderDecoder();
  HeaderDecoder(const HeaderDecoder&) = delete;
  HeaderDecoder& operator=(const HeaderDecoder&) = delete;
  // Decompresses and parses the next block of this direction.
  absl::StatusOr<HeaderList> Decode(std::string_view compressed);

 private:
  struct State;
  explicit HeaderDecoder(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace kvcri::streaming::spdy
