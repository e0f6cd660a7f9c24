// OCI digests: validation of "sha256:<hex>" and a streaming SHA-256.
#pragma once

#include <openssl/evp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvcri::runtime::image {

// Length of a sha256 digest in lowercase hex.
inline constexpr size_t kSha256HexLen = 64;

// Validates an OCI digest. Only "sha256:<64 lowercase hex>" is accepted;
// InvalidArgument names `what` and quotes the value otherwise.
absl::Status ValidateDigest(std::string_view digest, std::string_view what);

// The hex part of a validated "sha256:<hex>" digest.
std::string_view DigestHex(std::string_view digest);

// Incremental sha256 over libcrypto's EVP interface.
class Sha256 {
 public:
  Sha256();
  Sha256(Sha256&&) = default;
  Sha256& operator=(Sha256&&) = default;

  void Update(const void* data, size_t len);
  // "sha256:<hex>" of everything updated so far; the hasher is spent afterwards.
  std::string Finish();

 private:
  struct CtxFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, CtxFree> ctx_;
};

// "sha256:<hex>" of `data`.
std::string Sha256Digest(std::string_view data);

}  // namespace kvcri::runtime::image
