// TLS through a socketpair for the test clients: OpenSSL on one thread per connection, plain bytes on the other end.
#include "test/client/tls_pipe.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string_view>
#include <thread>

#include "config/base/str.h"

namespace kvcri::testing {
namespace {

struct CtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
using CtxPtr = std::unique_ptr<SSL_CTX, CtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;

absl::Status SslError(std::string_view what) {
  char buf[256];
  ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
  return absl::UnavailableError(base::StrCat(what, ": ", buf));
}

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// SSL_write on the non-blocking socket, retried until all of it is sent.
bool SslWriteAll(SSL* ssl, int fd, const char* p, int n) {
  while (true) {
    const int w = SSL_write(ssl, p, n);
    if (w > 0) return true;  // partial writes are off: all of it
    const int e = SSL_get_error(ssl, w);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) return false;
    pollfd pf{fd, static_cast<short>(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
    ::poll(&pf, 1, -1);
  }
}

// Carries bytes both ways until either side ends. One thread, so the SSL
// object is never used concurrently; the TCP socket is non-blocking so a
// record that is not application data (a TLS 1.3 session ticket) cannot
// leave us stuck in SSL_read.
void Pump(CtxPtr ctx, SslPtr ssl, base::UniqueFd tcp, base::UniqueFd plain) {
  ::fcntl(tcp.get(), F_SETFL, ::fcntl(tcp.get(), F_GETFL) | O_NONBLOCK);
  char buf[16384];
  while (true) {
    if (SSL_pending(ssl.get()) == 0) {
      pollfd p[2] = {{tcp.get(), POLLIN, 0}, {plain.get(), POLLIN, 0}};
      if (::poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
        ssize_t n = ::read(plain.get(), buf, sizeof buf);
        if (n <= 0) break;
        if (!SslWriteAll(ssl.get(), tcp.get(), buf, static_cast<int>(n))) break;
      }
      if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    }
    const int n = SSL_read(ssl.get(), buf, sizeof buf);
    if (n <= 0) {
      const int e = SSL_get_error(ssl.get(), n);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) continue;
      break;
    }
    if (!WriteAll(plain.get(), buf, static_cast<size_t>(n))) break;
  }
  SSL_shutdown(ssl.get());
  // This thread is detached: free its OpenSSL state now rather than at its
  // exit, which can come after the process's (LeakSanitizer then reports
  // the thread's 904-byte error state, as it did once under load).
  ssl.reset();
  ctx.reset();
  OPENSSL_thread_stop();
}

absl::StatusOr<base::UniqueFd> StartPump(CtxPtr ctx, SslPtr ssl, base::UniqueFd tcp) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return absl::ErrnoToStatus(errno, "socketpair");
  std::thread(Pump, std::move(ctx), std::move(ssl), std::move(tcp), base::UniqueFd(sv[1])).detach();
  return base::UniqueFd(sv[0]);
}

}  // namespace

absl::StatusOr<base::UniqueFd> TlsClientPipe(base::UniqueFd tcp, const std::string& host, const std::string& ca_file) {
  if (ca_file.empty()) return absl::InvalidArgumentError("https needs a CA file (tls_ca_file)");
  CtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return SslError("SSL_CTX_new");
  if (SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr) != 1) {
    return SslError(base::StrCat("load CA file \"", ca_file, "\""));
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  SslPtr ssl(SSL_new(ctx.get()));
  if (!ssl) return SslError("SSL_new");
  in6_addr ip;
  if (inet_pton(AF_INET, host.c_str(), &ip) == 1 || inet_pton(AF_INET6, host.c_str(), &ip) == 1) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl.get(), host.c_str());
    SSL_set1_host(ssl.get(), host.c_str());
  }
  SSL_set_fd(ssl.get(), tcp.get());
  if (SSL_connect(ssl.get()) != 1) return SslError(base::StrCat("TLS handshake with \"", host, "\""));
  return StartPump(std::move(ctx), std::move(ssl), std::move(tcp));
}

absl::StatusOr<base::UniqueFd> TlsServerPipe(base::UniqueFd tcp, const std::string& cert_file,
                                             const std::string& key_file) {
  CtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return SslError("SSL_CTX_new");
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert_file.c_str()) != 1) {
    return SslError(base::StrCat("load certificate \"", cert_file, "\""));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return SslError(base::StrCat("load key \"", key_file, "\""));
  }
  SslPtr ssl(SSL_new(ctx.get()));
  if (!ssl) return SslError("SSL_new");
  SSL_set_fd(ssl.get(), tcp.get());
  if (SSL_accept(ssl.get()) != 1) return SslError("TLS handshake with the client");
  return StartPump(std::move(ctx), std::move(ssl), std::move(tcp));
}

}  // namespace kvcri::testing
