// Exception-free field reads from nlohmann::json values that came from an untrusted party.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace kvcri::runtime::image {

// nlohmann's value() and get<>() throw on a type mismatch; a registry, token
// endpoint or extraction child controls these documents, so every read of
// theirs goes through these: a missing or mistyped field reads as absent.

// The string at `key` of `obj`, or "" when `obj` is no object or the field is no string.
inline std::string JsonString(const nlohmann::json& obj, const char* key) {
  if (!obj.is_object()) return "";
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The boolean at `key`, or nullopt.
inline std::optional<bool> JsonBool(const nlohmann::json& obj, const char* key) {
  if (!obj.is_object()) return std::nullopt;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_boolean()) return std::nullopt;
  return it->get<bool>();
}

// The integer at `key` (within int64), or nullopt.
inline std::optional<int64_t> JsonInt(const nlohmann::json& obj, const char* key) {
  if (!obj.is_object()) return std::nullopt;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number_integer()) return std::nullopt;
  if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
  return it->get<int64_t>();
}

}  // namespace kvcri::runtime::image
