// ParseReference: Docker/CRI image references normalized and validated.
#include "runtime/image/reference.h"

#include <cctype>

#include "config/base/file_util.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "runtime/image/digest.h"

namespace kvcri::runtime::image {
namespace {

constexpr std::string_view kDefaultDomain = "docker.io";
constexpr std::string_view kLegacyDefaultDomain = "index.docker.io";
constexpr std::string_view kOfficialRepoPrefix = "library/";
constexpr size_t kMaxNameLen = 255;
constexpr size_t kMaxTagLen = 128;

absl::Status Invalid(std::string_view ref, std::string_view why) {
  return absl::InvalidArgumentError(base::StrCat("invalid image reference \"", ref, "\": ", why));
}

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

// path-component := [a-z0-9]+ (([._]|__|[-]+) [a-z0-9]+)*
bool ValidPathComponent(std::string_view c) {
  size_t i = 0;
  auto alnum_run = [&] {
    size_t start = i;
    while (i < c.size() && IsLowerAlnum(c[i])) ++i;
    return i > start;
  };
  if (!alnum_run()) return false;
  while (i < c.size()) {
    if (c[i] == '.' || c[i] == '_') {
      // "_" , "__" or "."; "._" and "..." are not separators.
      if (c[i] == '_' && i + 1 < c.size() && c[i + 1] == '_') ++i;
      ++i;
    } else if (c[i] == '-') {
      while (i < c.size() && c[i] == '-') ++i;
    } else {
      return false;
    }
    if (!alnum_run()) return false;
  }
  return true;
}

// domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
bool ValidDomainComponent(std::string_view c) {
  if (c.empty() || !IsAlnum(c.front()) || !IsAlnum(c.back())) return false;
  for (char ch : c) {
    if (!IsAlnum(ch) && ch != '-') return false;
  }
  return true;
}

// host[:port], host a dotted domain name or an IPv4 address or [IPv6].
bool ValidDomain(std::string_view d) {
  std::string_view host = d;
  if (!d.empty() && d.front() == '[') {
    size_t close = d.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (char ch : d.substr(1, close - 1)) {
      if (!std::isxdigit(static_cast<unsigned char>(ch)) && ch != ':' && ch != '.') return false;
    }
    host = {};
    d.remove_prefix(close + 1);
    if (d.empty()) return true;
    if (d.front() != ':') return false;
  } else {
    size_t colon = d.find(':');
    host = d.substr(0, colon);
    d = colon == std::string_view::npos ? std::string_view() : d.substr(colon);
    size_t start = 0;
    while (true) {
      size_t dot = host.find('.', start);
      if (!ValidDomainComponent(host.substr(start, dot - start))) return false;
      if (dot == std::string_view::npos) break;
      start = dot + 1;
    }
  }
  if (d.empty()) return true;
  std::string_view port = d.substr(1);  // after ':'
  if (port.empty()) return false;
  for (char ch : port) {
    if (ch < '0' || ch > '9') return false;
  }
  return true;
}

// tag := [\w][\w.-]{0,127}
bool ValidTag(std::string_view t) {
  if (t.empty() || t.size() > kMaxTagLen) return false;
  auto word = [](char c) { return IsAlnum(c) || c == '_'; };
  if (!word(t.front())) return false;
  for (char c : t) {
    if (!word(c) && c != '.' && c != '-') return false;
  }
  return true;
}

}  // namespace

std::string Reference::String() const {
  std::string out = Name();
  if (!tag.empty()) out += ":" + tag;
  if (!digest.empty()) out += "@" + digest;
  return out;
}

std::string Reference::TagRef() const { return tag.empty() ? std::string() : Name() + ":" + tag; }

std::string Reference::DigestRef() const {
  return digest.empty() ? std::string() : Name() + "@" + digest;
}

absl::StatusOr<Reference> ParseReference(std::string_view ref) {
  if (ref.empty()) return absl::InvalidArgumentError("image reference is empty");
  if (base::IsLowerHex(ref, kSha256HexLen)) {
    return Invalid(ref, "a 64-character hexadecimal string is an image ID, not a name");
  }
  Reference out;
  std::string_view rest = ref;
  if (size_t at = rest.find('@'); at != std::string_view::npos) {
    std::string_view digest = rest.substr(at + 1);
    if (absl::Status s = ValidateDigest(digest, "digest"); !s.ok()) {
      return Invalid(ref, base::Sv(s.message()));
    }
    out.digest = std::string(digest);
    rest = rest.substr(0, at);
  }
  // A tag follows the last ':' that comes after the last '/'; an earlier ':'
  // is a registry port.
  size_t last_slash = rest.rfind('/');
  size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos &&
      (last_slash == std::string_view::npos || colon > last_slash)) {
    std::string_view tag = rest.substr(colon + 1);
    if (!ValidTag(tag)) return Invalid(ref, base::StrCat("invalid tag \"", tag, "\""));
    out.tag = std::string(tag);
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) return Invalid(ref, "repository name is empty");

  std::string_view remote = rest;
  size_t slash = rest.find('/');
  if (slash != std::string_view::npos) {
    std::string_view first = rest.substr(0, slash);
    bool has_upper = false;
    for (char c : first) has_upper |= (c >= 'A' && c <= 'Z');
    if (first.find_first_of(".:") != std::string_view::npos || first == "localhost" || has_upper) {
      if (!ValidDomain(first))
        return Invalid(ref, base::StrCat("invalid registry \"", first, "\""));
      out.domain = std::string(first);
      remote = rest.substr(slash + 1);
    }
  }
  if (out.domain.empty() || out.domain == kLegacyDefaultDomain)
    out.domain = std::string(kDefaultDomain);
  if (remote.empty()) return Invalid(ref, "repository path is empty");
  size_t start = 0;
  while (true) {
    size_t next = remote.find('/', start);
    std::string_view component = remote.substr(start, next - start);
    if (!ValidPathComponent(component)) {
      for (char c : component) {
        if (c >= 'A' && c <= 'Z') return Invalid(ref, "repository name must be lowercase");
      }
      return Invalid(ref, base::StrCat("invalid repository path component \"", component, "\""));
    }
    if (next == std::string_view::npos) break;
    start = next + 1;
  }
  out.path = std::string(remote);
  if (out.domain == kDefaultDomain && out.path.find('/') == std::string::npos) {
    out.path = base::StrCat(kOfficialRepoPrefix, out.path);
  }
  if (out.Name().size() > kMaxNameLen) {
    return Invalid(ref,
                   base::StrCat("repository name is longer than ", kMaxNameLen, " characters"));
  }
  if (out.tag.empty() && out.digest.empty()) out.tag = "latest";
  return out;
}

}  // namespace kvcri::runtime::image
