// The TLS pump: OpenSSL over a non-blocking TCP socket on one side, plain bytes on a socketpair on the other.
#include "cri/streaming/tls_pump.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#include <cerrno>
#include <string>

#include "absl/strings/str_cat.h"

namespace kvcri::streaming {
namespace {

// An SSL_read/SSL_write that must wait: notes for what (SSL_ERROR_WANT_READ:
// TLS input, SSL_ERROR_WANT_WRITE: TLS output) and returns true; false for
// any other SSL_get_error result.
bool WantsIo(int ssl_error, bool* want_tls_in, bool* want_tls_out) {
  if (ssl_error == SSL_ERROR_WANT_READ) {
    *want_tls_in = true;
    return true;
  }
  if (ssl_error == SSL_ERROR_WANT_WRITE) {
    *want_tls_out = true;
    return true;
  }
  return false;
}

struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

void SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags >= 0) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

int64_t MonotonicMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

constexpr size_t kChunk = 16 << 10;  // one TLS record's worth

}  // namespace

absl::StatusOr<std::unique_ptr<TlsContext>> TlsContext::Load(const std::string& cert_file,
                                                             const std::string& key_file) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return absl::InternalError(absl::StrCat("SSL_CTX_new: ", OpenSslError()));
  std::unique_ptr<TlsContext> out(new TlsContext(ctx));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS certificate \"", cert_file, "\" cannot be loaded: ", OpenSslError()));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS key \"", key_file, "\" cannot be loaded: ", OpenSslError()));
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("TLS key \"", key_file, "\" does not match certificate \"",
                                                   cert_file, "\": ", OpenSslError()));
  }
  return out;
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

void TlsContext::Pump(base::UniqueFd tls, base::UniqueFd plain, int handshake_timeout_ms) const {
  std::unique_ptr<SSL, SslFree> ssl(SSL_new(ctx_));
  if (!ssl || SSL_set_fd(ssl.get(), tls.get()) != 1) return;
  SetNonBlocking(tls.get());
  SetNonBlocking(plain.get());

  // Handshake, bounded in time: a client that never finishes it would
  // otherwise hold a connection slot forever.
  const int64_t deadline = MonotonicMs() + handshake_timeout_ms;
  for (;;) {
    int r = SSL_accept(ssl.get());
    if (r == 1) break;
    int err = SSL_get_error(ssl.get(), r);
    short events = err == SSL_ERROR_WANT_READ ? POLLIN : err == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (events == 0) {
      ERR_clear_error();
      return;
    }
    int64_t left = deadline - MonotonicMs();
    if (left <= 0) return;
    pollfd p{tls.get(), events, 0};
    if (poll(&p, 1, static_cast<int>(left)) < 0 && errno != EINTR) return;
  }

  std::string to_plain, to_tls;  // each at most one chunk: flow control follows the slower side
  bool tls_eof = false, plain_eof = false;
  char buf[kChunk];
  for (;;) {
    bool progress = false;
    bool want_tls_in = false, want_tls_out = false, want_plain_in = false, want_plain_out = false;
    if (to_plain.empty() && !tls_eof) {
      int n = SSL_read(ssl.get(), buf, sizeof(buf));
      if (n > 0) {
        to_plain.assign(buf, static_cast<size_t>(n));
        progress = true;
      } else {
        int err = SSL_get_error(ssl.get(), n);
        if (!WantsIo(err, &want_tls_in, &want_tls_out)) {
          // close_notify or a peer that just closed: no more input either way.
          ERR_clear_error();
          if (err != SSL_ERROR_ZERO_RETURN && err != SSL_ERROR_SYSCALL) return;
          tls_eof = true;
          ::shutdown(plain.get(), SHUT_WR);
          progress = true;
        }
      }
    }
    if (!to_plain.empty()) {
      ssize_t n = ::send(plain.get(), to_plain.data(), to_plain.size(), MSG_NOSIGNAL);
      if (n > 0) {
        to_plain.erase(0, static_cast<size_t>(n));
        progress = true;
      } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        want_plain_out = true;
      } else {
        return;
      }
    }
    if (to_tls.empty() && !plain_eof) {
      ssize_t n = ::recv(plain.get(), buf, sizeof(buf), 0);
      if (n > 0) {
        to_tls.assign(buf, static_cast<size_t>(n));
        progress = true;
      } else if (n == 0) {
        plain_eof = true;
        progress = true;
      } else if (errno == EAGAIN || errno == EINTR) {
        want_plain_in = true;
      } else {
        return;
      }
    }
    if (!to_tls.empty()) {
      int n = SSL_write(ssl.get(), to_tls.data(), static_cast<int>(to_tls.size()));
      if (n > 0) {
        to_tls.erase(0, static_cast<size_t>(n));
        progress = true;
      } else {
        int err = SSL_get_error(ssl.get(), n);
        if (!WantsIo(err, &want_tls_in, &want_tls_out)) {
          ERR_clear_error();
          return;
        }
      }
    }
    if (plain_eof && to_tls.empty()) {
      // The server side is done: say so (close_notify) and end, without
      // waiting for the client's own close_notify, which it may never send.
      SSL_shutdown(ssl.get());
      ERR_clear_error();
      return;
    }
    if (progress) continue;
    // A side we want nothing from is left out (fd -1): its hang-up would
    // otherwise wake poll at once, again and again.
    const short tls_events = static_cast<short>((want_tls_in ? POLLIN : 0) | (want_tls_out ? POLLOUT : 0));
    const short plain_events = static_cast<short>((want_plain_in ? POLLIN : 0) | (want_plain_out ? POLLOUT : 0));
    pollfd p[2] = {{tls_events ? tls.get() : -1, tls_events, 0}, {plain_events ? plain.get() : -1, plain_events, 0}};
    if (poll(p, 2, -1) < 0 && errno != EINTR) return;
  }
}

}  // namespace kvcri::streaming
