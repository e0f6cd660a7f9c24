// Big-endian (network order) integers into and out of byte strings, for the wire formats the daemon frames itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvcri::base {

inline void PutBe16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v & 0xff));
}

inline void PutBe32(std::string* out, uint32_t v) {
  PutBe16(out, static_cast<uint16_t>(v >> 16));
  PutBe16(out, static_cast<uint16_t>(v & 0xffff));
}

inline uint16_t GetBe16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

inline uint32_t GetBe32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | p[3];
}

// The caller has checked that `at` + 2 (or + 4) is within `s`.
inline uint16_t GetBe16(std::string_view s, size_t at) { return GetBe16(reinterpret_cast<const uint8_t*>(s.data()) + at); }
inline uint32_t GetBe32(std::string_view s, size_t at) { return GetBe32(reinterpret_cast<const uint8_t*>(s.data()) + at); }

}  // namespace kvcri::base
