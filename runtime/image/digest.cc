// OCI digest validation and streaming SHA-256 (OpenSSL).
#include "runtime/image/digest.h"

#include "config/base/file_util.h"
#include "config/base/str.h"

namespace kvcri::runtime::image {

absl::Status ValidateDigest(std::string_view digest, std::string_view what) {
  constexpr std::string_view kPrefix = "sha256:";
  if (digest.substr(0, kPrefix.size()) != kPrefix ||
      !base::IsLowerHex(digest.substr(kPrefix.size()), kSha256HexLen)) {
    return absl::InvalidArgumentError(base::StrCat(
        what, " \"", digest, "\" is not a digest of the form sha256:<64 lowercase hex>"));
  }
  return absl::OkStatus();
}

std::string_view DigestHex(std::string_view digest) {
  size_t colon = digest.find(':');
  return colon == std::string_view::npos ? digest : digest.substr(colon + 1);
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  // Allocation failure or a libcrypto without sha256 is not recoverable.
  if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1) std::abort();
}

void Sha256::Update(const void* data, size_t len) {
  if (len > 0) EVP_DigestUpdate(ctx_.get(), data, len);
}

std::string Sha256::Finish() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  EVP_DigestFinal_ex(ctx_.get(), md, &md_len);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned int i = 0; i < md_len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 0xf]);
  }
  return out;
}

std::string Sha256Digest(std::string_view data) {
  Sha256 h;
  h.Update(data.data(), data.size());
  return h.Finish();
}

}  // namespace kvcri::runtime::image
