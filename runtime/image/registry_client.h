// RegistryClient: the OCI distribution API calls a pull needs (manifests, blobs).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/image/http_fetcher.h"
#include "runtime/image/oci.h"
#include "runtime/image/reference.h"
#include "runtime/image/registry_auth.h"

namespace kvcri::runtime::image {

struct RegistryOptions {
  // Registries ("host" or "host:port") reached without verified TLS: HTTPS
  // without certificate checks, falling back to plain HTTP. Loopback
  // registries (localhost, 127.0.0.0/8, [::1]) are always treated so.
  std::vector<std::string> insecure_registries;
  // Registry domain ("docker.io") -> mirror endpoints ("https://mirror:5000"),
  // tried in order before the registry itself.
  std::map<std::string, std::vector<std::string>> mirrors;
};

// A manifest or index as the registry served it.
struct FetchedManifest {
  std::string bytes;
  std::string media_type;
  std::string digest;  // sha256 of `bytes`, verified against what was asked
};

// Receives a blob; Reset() starts it over when a resumed download could not
// continue where it stopped.
class BlobSink {
 public:
  virtual ~BlobSink() = default;
  virtual absl::Status Write(std::string_view data) = 0;
  virtual absl::Status Reset() = 0;
  virtual int64_t written() const = 0;
};

// Talks the OCI distribution API for one repository during one pull:
// endpoint selection (mirrors, then the registry), anonymous/Basic/Bearer
// auth answering WWW-Authenticate challenges, retries of transient failures
// (resuming blobs with Range requests). Errors name the reference:
// NotFound, Unauthenticated, PermissionDenied, InvalidArgument for an
// unsupported media type or digest mismatch, Unavailable for the network.
class RegistryClient {
 public:
  RegistryClient(HttpFetcher* http, const RegistryOptions& options, Reference ref,
                 RegistryCredentials creds, absl::Time deadline);

  // GET /v2/<name>/manifests/<tag_or_digest>, accepting OCI and Docker
  // schema 2 manifests and indexes. A digest reference is verified.
  absl::StatusOr<FetchedManifest> GetManifest(std::string_view tag_or_digest);

  // HEAD /v2/<name>/manifests/<digest> on the registry itself (never a
  // mirror), with the pull's credentials: OK when the registry lets this
  // caller read the manifest. What a pull answered from the store checks
  // when the image was pulled with credentials.
  absl::Status CheckManifestAccess(std::string_view digest);

  // True once a request succeeded with credentials of the pull (basic auth,
  // a token obtained with them, or the AuthConfig's registry token).
  bool used_credentials() const { return used_credentials_; }

  // GET /v2/<name>/blobs/<digest> into `sink`. The caller verifies the
  // digest (the sink hashes); this checks the length.
  absl::Status GetBlob(const Descriptor& desc, BlobSink& sink);

  // Where the last successful request went, for logs ("https://host").
  const std::string& endpoint() const { return endpoint_; }

 private:
  struct Endpoint {
    std::string base;  // "https://registry-1.docker.io"
    bool insecure = false;
    bool mirror = false;
    std::string authorization;  // header value that worked, if any
    bool authorization_from_credentials = false;
  };
  // The pull's credentials when they may be offered to `ep`, else none.
  RegistryCredentials CredentialsFor(const Endpoint& ep) const;
  // One GET against `ep` with auth: answers a 401 challenge once.
  absl::StatusOr<HttpResponse> Get(Endpoint& ep, const std::string& path, std::vector<std::string> headers,
                                   BlobSink* blob, const BodySink& sink, bool head);
  // GET over the endpoints in order, retrying transient failures.
  absl::StatusOr<HttpResponse> GetWithFallback(const std::string& path, const std::vector<std::string>& headers,
                                               BlobSink* sink, const BodySink& body_sink,
                                               const std::function<void()>& restart, bool head = false,
                                               bool registry_only = false);
  absl::Status ErrorFor(const HttpResponse& resp, std::string_view what) const;

  HttpFetcher* http_;
  Reference ref_;
  RegistryCredentials creds_;
  absl::Time deadline_;
  std::vector<Endpoint> endpoints_;
  std::string endpoint_;
  bool used_credentials_ = false;
};

// True when `host` ("host" or "host:port") is exactly "localhost", an IPv4
// literal in 127.0.0.0/8, or the IPv6 literal [::1] (or [::ffff:127.x.x.x]).
// A name that merely starts with "127." (127.example.com) is not loopback.
bool IsLoopbackRegistry(std::string_view host);

// Whether two "host[:port]" strings name the same host (ports ignored,
// case-insensitive).
bool IsSameHost(std::string_view a, std::string_view b);

}  // namespace kvcri::runtime::image
