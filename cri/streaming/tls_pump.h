// TLS termination for the streaming server: a pump between a TLS socket and a plain socketpair end.
#pragma once

// Why a pump: the HTTP front, the WebSocket sessions and ServeSpdyConnection
// all work on a plain fd. Terminating TLS in one place, on a thread of the
// connection's own, lets each of them stay unaware of TLS.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "config/base/unique_fd.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace kvcri::streaming {

// The server's certificate and key, loaded once at start-up.
class TlsContext {
 public:
  // InvalidArgument naming the file when either cannot be read or parsed, or
  // when the key does not belong to the certificate.
  static absl::StatusOr<std::unique_ptr<TlsContext>> Load(const std::string& cert_file,
                                                          const std::string& key_file);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // Runs until both directions are closed or either side fails: decrypts
  // what arrives on `tls` into `plain` and encrypts what arrives on `plain`
  // to `tls`. A handshake that takes longer than `handshake_timeout_ms` ends
  // it. Blocks; closes both fds at the end.
  void Pump(base::UniqueFd tls, base::UniqueFd plain, int handshake_timeout_ms) const;

 private:
  explicit TlsContext(SSL_CTX* ctx) : ctx_(ctx) {}
  SSL_CTX* ctx_;
};

}  // namespace kvcri::streaming
