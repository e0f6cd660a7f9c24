// Registry auth: WWW-Authenticate challenges parsed, answered with basic or bearer credentials.
#include "runtime/image/registry_auth.h"

#include <cctype>
#include <memory>
#include <nlohmann/json.hpp>

#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "runtime/image/json_fields.h"
#include "runtime/image/registry_client.h"

namespace kvcri::runtime::image {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string UrlEscape(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      static constexpr char kHex[] = "0123456789ABCDEF";
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

// "host[:port]" of an absolute http(s) URL; empty when there is none or it
// carries userinfo (user@host, which would hide the real host).
std::string UrlAuthority(std::string_view url) {
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return "";
  std::string_view rest = url.substr(scheme_end + 3);
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.find('@') != std::string_view::npos) return "";
  return Lower(authority);
}

// The token goes into an Authorization header: a control character (CR, LF,
// NUL) would end the header early and let the endpoint add headers of its
// own to every later registry request; a space or non-ASCII byte is no
// RFC 6750 token either.
bool HeaderSafeToken(std::string_view token) {
  for (unsigned char c : token) {
    if (c <= ' ' || c >= 0x7f) return false;
  }
  return true;
}

}  // namespace

std::string NormalizeServerAddress(std::string_view s) {
  std::string out = Lower(s);
  for (std::string_view scheme : {"https://", "http://"}) {
    if (out.rfind(scheme, 0) == 0) out = out.substr(scheme.size());
  }
  out = out.substr(0, out.find('/'));
  if (out == "index.docker.io" || out == "registry-1.docker.io" || out == "registry.hub.docker.com") {
    out = "docker.io";
  }
  return out;
}

bool CredentialsApplyTo(const RegistryCredentials& creds, std::string_view domain, std::string_view endpoint_host,
                        bool mirror) {
  if (creds.server_address.empty()) return !mirror;
  const std::string want = NormalizeServerAddress(creds.server_address);
  if (want.empty()) return false;
  if (!mirror && want == NormalizeServerAddress(domain)) return true;
  return want == NormalizeServerAddress(endpoint_host);
}

std::string Base64Encode(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (static_cast<unsigned char>(in[i]) << 16) |
                 (static_cast<unsigned char>(in[i + 1]) << 8) | static_cast<unsigned char>(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out.push_back(kAlphabet[(v >> s) & 63]);
  }
  if (i < in.size()) {
    uint32_t v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

std::string RegistryCredentials::BasicHeaderValue() const {
  if (!username.empty()) return base::StrCat("Basic ", Base64Encode(base::StrCat(username, ":", password)));
  if (!auth.empty()) return base::StrCat("Basic ", auth);
  return "";
}

absl::StatusOr<AuthChallenge> ParseAuthChallenge(std::string_view h) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        base::StrCat("WWW-Authenticate header \"", h, "\" is malformed: ", why));
  };
  size_t i = 0;
  auto skip_ws = [&] {
    while (i < h.size() && (h[i] == ' ' || h[i] == '\t')) ++i;
  };
  skip_ws();
  size_t start = i;
  while (i < h.size() && h[i] != ' ' && h[i] != '\t') ++i;
  AuthChallenge c;
  c.scheme = Lower(h.substr(start, i - start));
  if (c.scheme.empty()) return bad("no scheme");
  while (true) {
    skip_ws();
    if (i >= h.size()) break;
    size_t name_start = i;
    while (i < h.size() && h[i] != '=' && h[i] != ',' && h[i] != ' ') ++i;
    std::string name = Lower(h.substr(name_start, i - name_start));
    skip_ws();
    if (i >= h.size() || h[i] != '=') {
      // A token68 (Basic <x>) or the start of the next challenge: stop.
      if (name.empty()) return bad("empty parameter name");
      break;
    }
    ++i;
    skip_ws();
    std::string value;
    if (i < h.size() && h[i] == '"') {
      ++i;
      bool closed = false;
      while (i < h.size()) {
        char ch = h[i++];
        if (ch == '\\' && i < h.size()) {
          value.push_back(h[i++]);
        } else if (ch == '"') {
          closed = true;
          break;
        } else {
          value.push_back(ch);
        }
      }
      if (!closed) return bad("unterminated quoted value");
    } else {
      size_t v = i;
      while (i < h.size() && h[i] != ',' && h[i] != ' ') ++i;
      value = std::string(h.substr(v, i - v));
    }
    if (name.empty()) return bad("empty parameter name");
    c.params[name] = value;
    skip_ws();
    if (i < h.size() && h[i] == ',') ++i;
  }
  return c;
}

absl::StatusOr<std::string> AnswerChallenge(HttpFetcher& http, const AuthChallenge& challenge,
                                            const RegistryCredentials& creds,
                                            std::string_view scope, std::string_view registry,
                                            bool insecure_tls, absl::Time deadline) {
  if (challenge.scheme == "basic") {
    std::string basic = creds.BasicHeaderValue();
    if (basic.empty()) {
      return absl::UnauthenticatedError(base::StrCat(
          "registry \"", registry, "\" requires a username and password (basic auth) and the "
          "pull request has no credentials"));
    }
    return basic;
  }
  if (challenge.scheme != "bearer") {
    return absl::UnauthenticatedError(base::StrCat("registry \"", registry,
                                                   "\" asks for unsupported auth scheme \"",
                                                   challenge.scheme, "\""));
  }
  if (!creds.registry_token.empty()) return base::StrCat("Bearer ", creds.registry_token);
  auto realm = challenge.params.find("realm");
  if (realm == challenge.params.end() || realm->second.empty()) {
    return absl::UnauthenticatedError(
        base::StrCat("registry \"", registry, "\" sent a Bearer challenge without a realm"));
  }
  const std::string& url = realm->second;
  const bool https = url.rfind("https://", 0) == 0;
  const std::string realm_host = UrlAuthority(url);
  if ((!https && url.rfind("http://", 0) != 0) || realm_host.empty()) {
    return absl::UnauthenticatedError(
        base::StrCat("registry \"", registry, "\" token realm \"", url, "\" is not an http(s) URL"));
  }
  // The token request carries the credentials; a registry must not be able
  // to send them in the clear, or to a host it merely names.
  const bool same_host = IsSameHost(realm_host, registry);
  if (!https && !(same_host && insecure_tls)) {
    return absl::InvalidArgumentError(
        base::StrCat("registry \"", registry, "\" sent a Bearer token realm \"", url,
                     "\" over plain http; refused: a plain-http realm is accepted only on the registry's own host, "
                     "and only for a loopback or [images] insecure_registries registry"));
  }
  const bool realm_insecure_tls = same_host ? insecure_tls : IsLoopbackRegistry(realm_host);
  std::string query;
  auto add = [&](std::string_view k, std::string_view v) {
    query += base::StrCat(query.empty() ? "?" : "&", k, "=", UrlEscape(v));
  };
  if (auto s = challenge.params.find("service"); s != challenge.params.end()) add("service", s->second);
  auto sc = challenge.params.find("scope");
  add("scope", sc != challenge.params.end() && !sc->second.empty() ? sc->second : scope);
  HttpRequest req;
  req.url = url + (url.find('?') == std::string::npos ? query : "&" + query.substr(1));
  req.https_redirects_only = https;
  req.insecure_tls = realm_insecure_tls;
  req.deadline = deadline;
  if (std::string basic = creds.BasicHeaderValue(); !basic.empty()) {
    req.headers.push_back(base::StrCat("Authorization: ", basic));
  }
  std::string body;
  ASSIGN_OR_RETURN(HttpResponse resp, http.Get(req, [&](std::string_view chunk) {
    if (body.size() + chunk.size() > (1 << 20)) {
      return absl::ResourceExhaustedError("token response is larger than 1 MiB");
    }
    body.append(chunk);
    return absl::OkStatus();
  }));
  if (resp.status == 401 || resp.status == 403) {
    return absl::UnauthenticatedError(base::StrCat("token endpoint \"", url, "\" of registry \"",
                                                   registry, "\" refused the ",
                                                   creds.empty() ? "anonymous request" : "credentials",
                                                   " (HTTP ", resp.status, ")"));
  }
  if (resp.status != 200) {
    return absl::UnavailableError(base::StrCat("token endpoint \"", url, "\" answered HTTP ",
                                               resp.status));
  }
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object()) {
    return absl::UnauthenticatedError(
        base::StrCat("token endpoint \"", url, "\" answered with something that is not a JSON object"));
  }
  std::string token = JsonString(j, "token");
  if (token.empty()) token = JsonString(j, "access_token");
  if (token.empty()) {
    return absl::UnauthenticatedError(
        base::StrCat("token endpoint \"", url, "\" answered without a token (\"token\" or \"access_token\" string)"));
  }
  if (!HeaderSafeToken(token)) {
    return absl::UnauthenticatedError(
        base::StrCat("token endpoint \"", url, "\" answered a token with a space, control or non-ASCII character"));
  }
  return base::StrCat("Bearer ", token);
}

}  // namespace kvcri::runtime::image
