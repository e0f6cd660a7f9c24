// CNI_ARGS of a Pod, and the kubernetes.io bandwidth annotations turned into CNI bandwidth limits.
#include "cni/cni_runner.h"

#include <cctype>
#include <limits>

#include "config/base/str.h"

namespace kvcri::cni {
using base::StrCat;

namespace {

constexpr char kIngressAnnotation[] = "kubernetes.io/ingress-bandwidth";
constexpr char kEgressAnnotation[] = "kubernetes.io/egress-bandwidth";

absl::Status BadQuantity(std::string_view text, std::string_view why) {
  return absl::InvalidArgumentError(StrCat("quantity \"", text, "\": ", why));
}

absl::StatusOr<uint64_t> Rate(
    const std::map<std::string, std::string>& annotations, const char* key) {
  auto it = annotations.find(key);
  if (it == annotations.end()) return 0;
  absl::StatusOr<int64_t> v = ParseQuantity(it->second);
  if (!v.ok()) {
    return absl::InvalidArgumentError(
        StrCat("annotation ", key, ": ", base::Sv(v.status().message())));
  }
  // Kubernetes' own sanity range for these annotations.
  if (*v < 1000) {
    return absl::InvalidArgumentError(
        StrCat("annotation ", key, " \"", it->second,
               "\" is unreasonably small (< 1kbit)"));
  }
  if (*v > 1000000000000000LL) {
    return absl::InvalidArgumentError(
        StrCat("annotation ", key, " \"", it->second,
               "\" is unreasonably large (> 1Pbit)"));
  }
  return static_cast<uint64_t>(*v);
}

}  // namespace

std::vector<std::pair<std::string, std::string>> CniArgsFor(
    const AttachSpec& spec) {
  return {{"IgnoreUnknown", "1"},
          {"K8S_POD_NAMESPACE", spec.pod_namespace},
          {"K8S_POD_NAME", spec.pod_name},
          {"K8S_POD_INFRA_CONTAINER_ID", spec.container_id},
          {"K8S_POD_UID", spec.pod_uid}};
}

absl::StatusOr<int64_t> ParseQuantity(std::string_view text) {
  std::string_view s = text;
  if (s.empty()) return BadQuantity(text, "empty");
  bool negative = false;
  if (s.front() == '+' || s.front() == '-') {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  __int128 mantissa = 0;
  int digits = 0, frac = 0;
  bool seen_dot = false;
  while (!s.empty() && (std::isdigit(static_cast<unsigned char>(s.front())) ||
                        s.front() == '.')) {
    if (s.front() == '.') {
      if (seen_dot) return BadQuantity(text, "two decimal points");
      seen_dot = true;
    } else {
      if (++digits > 30) return BadQuantity(text, "too many digits");
      mantissa = mantissa * 10 + (s.front() - '0');
      if (seen_dot) ++frac;
    }
    s.remove_prefix(1);
  }
  if (digits == 0) return BadQuantity(text, "no digits");
  int exp10 = 0, exp2 = 0;
  if (s.empty()) {
  } else if (s.size() == 2 && s[1] == 'i') {
    static constexpr std::string_view kBinary = "KMGTPE";
    size_t k = kBinary.find(s[0]);
    if (k == std::string_view::npos) return BadQuantity(text, "unknown suffix");
    exp2 = 10 * static_cast<int>(k + 1);
  } else if (s.size() == 1 && std::string_view("numkMGTPE").find(s[0]) !=
                                  std::string_view::npos) {
    switch (s[0]) {
      case 'n':
        exp10 = -9;
        break;
      case 'u':
        exp10 = -6;
        break;
      case 'm':
        exp10 = -3;
        break;
      case 'k':
        exp10 = 3;
        break;
      case 'M':
        exp10 = 6;
        break;
      case 'G':
        exp10 = 9;
        break;
      case 'T':
        exp10 = 12;
        break;
      case 'P':
        exp10 = 15;
        break;
      case 'E':
        exp10 = 18;
        break;
    }
  } else if (s.front() == 'e' || s.front() == 'E') {
    s.remove_prefix(1);
    bool neg_exp = false;
    if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
      neg_exp = s.front() == '-';
      s.remove_prefix(1);
    }
    if (s.empty() || s.size() > 3) return BadQuantity(text, "bad exponent");
    for (char c : s) {
      if (!std::isdigit(static_cast<unsigned char>(c)))
        return BadQuantity(text, "bad exponent");
      exp10 = exp10 * 10 + (c - '0');
    }
    if (neg_exp) exp10 = -exp10;
  } else {
    return BadQuantity(text, "unknown suffix");
  }
  exp10 -= frac;
  const __int128 kMax = std::numeric_limits<int64_t>::max();
  __int128 num = mantissa;
  auto too_big = [&] { return BadQuantity(text, "out of range"); };
  for (int i = 0; i < exp2; ++i) {
    num *= 2;
    if (num > kMax * 1000000000000LL) return too_big();
  }
  for (int i = 0; i < exp10; ++i) {
    num *= 10;
    if (num > kMax) return too_big();
  }
  if (exp10 < 0) {
    __int128 den = 1;
    for (int i = 0; i < -exp10 && den <= num; ++i) den *= 10;
    if (den > num) {
      // |value| < 1: rounds up to 1 for positive, 0 for negative.
      return (num == 0 || negative) ? 0 : 1;
    }
    // Ceiling toward +infinity, like Quantity.Value().
    __int128 q = num / den;
    if (num % den != 0 && !negative) ++q;
    num = q;
  }
  if (num > kMax) return too_big();
  int64_t v = static_cast<int64_t>(num);
  return negative ? -v : v;
}

absl::StatusOr<CniBandwidth> BandwidthFromAnnotations(
    const std::map<std::string, std::string>& annotations) {
  CniBandwidth bw;
  absl::StatusOr<uint64_t> in = Rate(annotations, kIngressAnnotation);
  if (!in.ok()) return in.status();
  absl::StatusOr<uint64_t> out = Rate(annotations, kEgressAnnotation);
  if (!out.ok()) return out.status();
  // containerd passes bursts of 2^32-1 bits: effectively "no burst limit".
  if (*in != 0) {
    bw.ingress_rate = *in;
    bw.ingress_burst = std::numeric_limits<uint32_t>::max();
  }
  if (*out != 0) {
    bw.egress_rate = *out;
    bw.egress_burst = std::numeric_limits<uint32_t>::max();
  }
  return bw;
}

}  // namespace kvcri::cni
