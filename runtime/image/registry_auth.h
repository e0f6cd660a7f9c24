// Registry credentials from the CRI AuthConfig and the answers to registry auth challenges.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/image/http_fetcher.h"

namespace kvcri::runtime::image {

// Credentials for one pull, from the CRI AuthConfig. Never logged.
struct RegistryCredentials {
  std::string username;
  std::string password;
  std::string auth;            // base64("user:password"), used when username is empty
  std::string registry_token;  // a bearer token to send as is
  // The registry the credentials were given for (AuthConfig.server_address:
  // "registry.example:5000", "https://index.docker.io/v1/"); empty: the
  // image's own registry. Never offered to any other host (mirrors included).
  std::string server_address;
  bool empty() const { return username.empty() && auth.empty() && registry_token.empty(); }
  // "Basic <base64>" or empty when there is no user/password.
  std::string BasicHeaderValue() const;
};

// One challenge of a WWW-Authenticate header: scheme (lowercased) and
// parameters (names lowercased), e.g. Bearer realm="...",service="...",scope="...".
struct AuthChallenge {
  std::string scheme;
  std::map<std::string, std::string> params;
};

// Parses the first challenge of a WWW-Authenticate value; InvalidArgument
// when it has no scheme or a malformed parameter list.
absl::StatusOr<AuthChallenge> ParseAuthChallenge(std::string_view header);

std::string Base64Encode(std::string_view data);

// The registry host `server_address` names, lowercased, without scheme or
// path; Docker Hub's aliases (index.docker.io, registry-1.docker.io) are
// "docker.io". Empty for an empty address.
std::string NormalizeServerAddress(std::string_view server_address);

// Whether `creds` may be offered to `endpoint_host` ("host[:port]"), an
// endpoint serving images of registry `domain` (a Reference's domain):
// without a server_address only the registry itself (never a mirror);
// with one, only the host it names.
bool CredentialsApplyTo(const RegistryCredentials& creds, std::string_view domain, std::string_view endpoint_host,
                        bool mirror);

// Answers a 401 challenge with the value of the Authorization header to
// retry with: "Basic ..." from credentials, or "Bearer <token>" from the
// challenge's token endpoint (realm), asked for `scope` (the challenge's own
// scope wins) with the credentials, if any, as basic auth.
// `registry` is the host[:port] that sent the challenge and `insecure_tls`
// whether it is a loopback or configured-insecure registry. A realm over
// plain http is refused (InvalidArgument) unless it is on that same host and
// the registry is insecure: a token request carries the credentials. A
// realm on another host must be https with a verified certificate (unless
// that host is loopback).
// Unauthenticated when the challenge needs credentials that are missing or
// the token endpoint refuses them; a token answer that is not a JSON object
// with a string token is Unauthenticated too, never an exception.
absl::StatusOr<std::string> AnswerChallenge(HttpFetcher& http, const AuthChallenge& challenge,
                                            const RegistryCredentials& creds,
                                            std::string_view scope, std::string_view registry,
                                            bool insecure_tls, absl::Time deadline);

}  // namespace kvcri::runtime::image
