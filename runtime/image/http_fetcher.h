// The HttpFetcher seam registry pulls go through, and CurlFetcher, its libcurl implementation.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kvcri::runtime::image {

struct HttpRequest {
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  // HEAD instead of GET: status and headers only.
  bool head = false;
  // Redirects may only lead to https (set for registries reached over TLS).
  bool https_redirects_only = true;
  // Skip TLS certificate verification (insecure registries only).
  bool insecure_tls = false;
  // When > 0, asks for the bytes from this offset on (Range: bytes=N-).
  int64_t range_from = 0;
  // Called before the first body byte when the server ignored the range and
  // sends the whole body (HTTP 200): the receiver starts over.
  std::function<absl::Status()> range_ignored;
  // The whole request, redirects included, ends by then.
  absl::Time deadline = absl::InfiniteFuture();
};

struct HttpResponse {
  long status = 0;
  std::string effective_url;  // after redirects
  // Headers of the final response, names lowercased.
  std::map<std::string, std::string> headers;
  // The body when no sink took it (error bodies always; at most 64 KiB).
  std::string body;
};

// Receives a 2xx response's body in chunks; an error aborts the transfer.
using BodySink = std::function<absl::Status(std::string_view)>;

// HTTP GET, following redirects. Transport failures are Unavailable (or
// DeadlineExceeded past `deadline`); any HTTP status is a response.
class HttpFetcher {
 public:
  virtual ~HttpFetcher() = default;
  virtual absl::StatusOr<HttpResponse> Get(const HttpRequest& req, const BodySink& sink) = 0;
};

// libcurl, one easy handle per request (pulls are few and long).
class CurlFetcher : public HttpFetcher {
 public:
  CurlFetcher();
  absl::StatusOr<HttpResponse> Get(const HttpRequest& req, const BodySink& sink) override;
};

}  // namespace kvcri::runtime::image
