// Turns [streaming] into StreamingServerOptions, with the start-up checks of the TLS files and the address.
#include "cri/streaming/streaming_config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "config/base/str.h"
#include "config/base/log.h"
#include "config/base/unique_fd.h"

namespace kvcri::streaming {
namespace {

absl::Status CheckReadable(std::string_view key, const std::string& path) {
  base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return absl::InvalidArgumentError(
        base::StrCat("config key \"", key, "\": cannot read \"", path, "\": ", strerror(errno)));
  }
  return absl::OkStatus();
}

bool IsLoopback(const config::HostPort& hp) {
  in_addr a4;
  if (inet_pton(AF_INET, hp.host.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6;
  return inet_pton(AF_INET6, hp.host.c_str(), &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

}  // namespace

absl::StatusOr<StreamingServerOptions> StreamingOptionsFromConfig(const config::StreamingConfig& cfg) {
  absl::StatusOr<config::HostPort> hp = config::ParseHostPort(cfg.address);
  if (!hp.ok()) {
    return absl::InvalidArgumentError(base::StrCat("config key \"streaming.address\": ", base::Sv(hp.status().message())));
  }
  if (cfg.tls_cert_file.empty() != cfg.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "config keys \"streaming.tls_cert_file\" and \"streaming.tls_key_file\" must be set together (or neither)");
  }
  if (!cfg.tls_cert_file.empty()) {
    if (absl::Status s = CheckReadable("streaming.tls_cert_file", cfg.tls_cert_file); !s.ok()) return s;
    if (absl::Status s = CheckReadable("streaming.tls_key_file", cfg.tls_key_file); !s.ok()) return s;
  } else if (!IsLoopback(*hp)) {
    base::LogWarn("streaming server on a non-loopback address without TLS: tokens and streams travel in clear",
                  {{"address", cfg.address}});
  }
  if (cfg.token_ttl_seconds < 1) {
    return absl::InvalidArgumentError("config key \"streaming.token_ttl_seconds\" must be >= 1");
  }
  if (cfg.max_connections < 1) {
    return absl::InvalidArgumentError("config key \"streaming.max_connections\" must be >= 1");
  }
  StreamingServerOptions options;
  options.address = cfg.address;
  options.tls_cert_file = cfg.tls_cert_file;
  options.tls_key_file = cfg.tls_key_file;
  options.token_ttl = absl::Seconds(cfg.token_ttl_seconds);
  options.max_connections = static_cast<size_t>(cfg.max_connections);
  return options;
}

}  // namespace kvcri::streaming
