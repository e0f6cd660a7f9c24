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

// Answers a 401 challenge with the value of the Authorization header to
// retry with: "Basic ..." from credentials, or "Bearer <token>" from the
// challenge's token endpoint (realm), asked for `scope` (the challenge's own
// scope wins) with the credentials, if any, as basic auth.
// Unauthenticated when the challenge needs credentials that are missing or
// the token endpoint refuses them.
absl::StatusOr<std::string> AnswerChallenge(HttpFetcher& http, const AuthChallenge& challenge,
                                            const RegistryCredentials& creds,
                                            std::string_view scope, std::string_view registry,
                                            bool insecure_tls, absl::Time deadline);

}  // namespace kvcri::runtime::image
