// RegistryClient: manifest and blob GETs with auth, mirrors, insecure fallback and retries.
#include "runtime/image/registry_client.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/time/clock.h"
#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "runtime/image/digest.h"
#include "runtime/image/json_fields.h"

namespace kvcri::runtime::image {
namespace {

constexpr int kAttempts = 3;
constexpr int64_t kMaxManifestBytes = 4 << 20;
constexpr std::string_view kManifestAccept =
    "Accept: application/vnd.oci.image.index.v1+json, "
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

// What a registry says in its error body: {"errors":[{"code":..,"message":..}]}.
std::string RegistryErrorText(const std::string& body) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  std::string out;
  if (j.is_object() && j.contains("errors") && j["errors"].is_array()) {
    for (const auto& e : j["errors"]) {
      if (!e.is_object()) continue;
      std::string part = JsonString(e, "code");
      std::string msg = JsonString(e, "message");
      if (!msg.empty()) part += (part.empty() ? "" : ": ") + msg;
      if (!part.empty()) out += (out.empty() ? "" : "; ") + part;
    }
  }
  return out;
}

bool Transient(const absl::Status& s) { return absl::IsUnavailable(s); }

// "host" of "host[:port]", lowercased; "[v6]" keeps its brackets; a bare
// IPv6 literal (more than one ':') is all host.
std::string HostOnly(std::string_view host) {
  std::string h;
  if (!host.empty() && host[0] == '[') {
    size_t close = host.find(']');
    h = std::string(host.substr(0, close == std::string_view::npos ? host.size() : close + 1));
  } else if (std::count(host.begin(), host.end(), ':') > 1) {
    h = std::string(host);
  } else {
    h = std::string(host.substr(0, host.find(':')));
  }
  for (char& c : h) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return h;
}

// "host" of an endpoint base URL ("https://host:port" -> "host:port").
std::string EndpointHost(std::string_view base) {
  size_t at = base.find("://");
  return std::string(at == std::string_view::npos ? base : base.substr(at + 3));
}

}  // namespace

bool IsLoopbackRegistry(std::string_view host) {
  std::string h = HostOnly(host);
  if (h == "localhost") return true;
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  in_addr v4;
  if (::inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (::inet_pton(AF_INET6, h.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

bool IsSameHost(std::string_view a, std::string_view b) { return HostOnly(a) == HostOnly(b); }

RegistryClient::RegistryClient(HttpFetcher* http, const RegistryOptions& options, Reference ref,
                               RegistryCredentials creds, absl::Time deadline)
    : http_(http), ref_(std::move(ref)), creds_(std::move(creds)), deadline_(deadline) {
  if (auto it = options.mirrors.find(ref_.domain); it != options.mirrors.end()) {
    for (std::string m : it->second) {
      while (!m.empty() && m.back() == '/') m.pop_back();
      if (m.rfind("http://", 0) != 0 && m.rfind("https://", 0) != 0) m = "https://" + m;
      std::string host = m.substr(m.find("://") + 3);
      bool insecure =
          IsLoopbackRegistry(host) ||
          std::count(options.insecure_registries.begin(), options.insecure_registries.end(), host);
      endpoints_.push_back({m, insecure, /*mirror=*/true, ""});
    }
  }
  const std::string host = ref_.domain == "docker.io" ? "registry-1.docker.io" : ref_.domain;
  const bool insecure = IsLoopbackRegistry(ref_.domain) ||
                        std::count(options.insecure_registries.begin(),
                                   options.insecure_registries.end(), ref_.domain);
  endpoints_.push_back({"https://" + host, insecure, false, ""});
  // An insecure registry may speak plain HTTP only.
  if (insecure) endpoints_.push_back({"http://" + host, true, false, ""});
}

RegistryCredentials RegistryClient::CredentialsFor(const Endpoint& ep) const {
  if (CredentialsApplyTo(creds_, ref_.domain, EndpointHost(ep.base), ep.mirror)) return creds_;
  return RegistryCredentials{};
}

absl::Status RegistryClient::ErrorFor(const HttpResponse& resp, std::string_view what) const {
  std::string detail = RegistryErrorText(resp.body);
  std::string where = base::StrCat(what, " of image \"", ref_.String(), "\" from \"",
                                   resp.effective_url, "\": HTTP ", resp.status,
                                   detail.empty() ? "" : " ", detail);
  switch (resp.status) {
    case 401:
      return absl::UnauthenticatedError(
          base::StrCat("unauthorized: ", where,
                       creds_.empty() ? " (the pull had no credentials)"
                       : !creds_.server_address.empty() && !CredentialsApplyTo(creds_, ref_.domain, ref_.domain, false)
                           ? base::StrCat(" (the pull's credentials are for \"", creds_.server_address,
                                          "\", so they were not offered)")
                           : " (the credentials were refused)"));
    case 403:
      return absl::PermissionDeniedError(base::StrCat("access denied: ", where));
    case 404:
      return absl::NotFoundError(base::StrCat("not found: ", where));
    case 408:
    case 429:
      return absl::UnavailableError(where);
    default:
      if (resp.status >= 500) return absl::UnavailableError(where);
      return absl::InvalidArgumentError(base::StrCat("unexpected answer: ", where));
  }
}

absl::StatusOr<HttpResponse> RegistryClient::Get(Endpoint& ep, const std::string& path,
                                                 std::vector<std::string> headers, BlobSink* blob, const BodySink& sink,
                                                 bool head) {
  HttpRequest req;
  req.url = ep.base + path;
  req.head = head;
  req.https_redirects_only = ep.base.rfind("https://", 0) == 0 && !ep.insecure;
  req.insecure_tls = ep.insecure;
  if (blob != nullptr && blob->written() > 0) {
    req.range_from = blob->written();
    req.range_ignored = [blob] { return blob->Reset(); };
  }
  req.deadline = deadline_;
  HttpRequest plain = req;
  plain.headers = headers;
  auto with_auth = [&](const std::string& authorization) {
    HttpRequest r = plain;
    if (!authorization.empty()) r.headers.push_back(base::StrCat("Authorization: ", authorization));
    return r;
  };
  // The sink only ever sees a 2xx body, so a 401 leaves it untouched.
  ASSIGN_OR_RETURN(HttpResponse resp, http_->Get(with_auth(ep.authorization), sink));
  if (resp.status != 401) return resp;
  auto challenge_header = resp.headers.find("www-authenticate");
  if (challenge_header == resp.headers.end()) return resp;
  ASSIGN_OR_RETURN(AuthChallenge challenge, ParseAuthChallenge(challenge_header->second));
  const RegistryCredentials creds = CredentialsFor(ep);
  absl::StatusOr<std::string> answered =
      AnswerChallenge(*http_, challenge, creds, base::StrCat("repository:", ref_.path, ":pull"), EndpointHost(ep.base),
                      ep.insecure, deadline_);
  if (!answered.ok() && creds.empty() && !creds_.empty()) {
    return absl::Status(answered.status().code(),
                        base::StrCat(answered.status().message(), " (the pull's credentials are for \"",
                                     creds_.server_address.empty() ? ref_.domain : creds_.server_address,
                                     "\" and are not offered to \"", EndpointHost(ep.base), "\")"));
  }
  ASSIGN_OR_RETURN(std::string authorization, std::move(answered));
  if (authorization == ep.authorization) return resp;  // nothing new to try
  ep.authorization = authorization;
  ep.authorization_from_credentials = !creds.empty();
  return http_->Get(with_auth(ep.authorization), sink);
}

absl::StatusOr<HttpResponse> RegistryClient::GetWithFallback(const std::string& path,
                                                             const std::vector<std::string>& headers, BlobSink* sink,
                                                             const BodySink& body_sink,
                                                             const std::function<void()>& restart, bool head,
                                                             bool registry_only) {
  absl::Status last_error =
      absl::UnavailableError(base::StrCat("image \"", ref_.String(), "\": no registry endpoint to ask"));
  for (size_t e = 0; e < endpoints_.size(); ++e) {
    Endpoint& ep = endpoints_[e];
    if (registry_only && ep.mirror) continue;
    // An https attempt at a possibly plain-HTTP insecure registry is not retried.
    const bool probe = ep.insecure && !ep.mirror && e + 1 < endpoints_.size();
    for (int attempt = 1; attempt <= (probe ? 1 : kAttempts); ++attempt) {
      if (restart) restart();
      absl::StatusOr<HttpResponse> resp = Get(ep, path, headers, sink, body_sink, head);
      absl::Status s = resp.ok() ? absl::OkStatus() : resp.status();
      if (resp.ok() && resp->status >= 200 && resp->status < 300) {
        endpoint_ = ep.base;
        if (ep.authorization_from_credentials) used_credentials_ = true;
        // Later requests of this pull go where this one succeeded first.
        if (e != 0) std::rotate(endpoints_.begin(), endpoints_.begin() + e, endpoints_.begin() + e + 1);
        return resp;
      }
      if (resp.ok()) s = ErrorFor(*resp, sink ? "blob" : "manifest");
      // A failed request that is not retried must not carry a partial body
      // into the next endpoint's attempt.
      last_error = s;
      if (absl::IsDeadlineExceeded(s)) return s;
      if (!Transient(s)) break;
      if (attempt < (probe ? 1 : kAttempts)) {
        base::LogWarn("registry request failed; retrying",
                      {{"image", ref_.String()},
                       {"url", ep.base + path},
                       {"attempt", base::StrCat(attempt)},
                       {"error", std::string(s.message())}});
        absl::SleepFor(absl::Seconds(attempt));
      }
    }
    // A mirror that fails for any reason falls back; the registry itself
    // only when it could not be reached (insecure https → http).
    if (!ep.mirror && !Transient(last_error)) break;
  }
  // The https probe's TLS error says less than what plain HTTP answered.
  return last_error;
}

absl::StatusOr<FetchedManifest> RegistryClient::GetManifest(std::string_view tag_or_digest) {
  std::string body;
  auto sink = [&](std::string_view chunk) -> absl::Status {
    if (static_cast<int64_t>(body.size() + chunk.size()) > kMaxManifestBytes) {
      return absl::InvalidArgumentError(base::StrCat("manifest of image \"", ref_.String(),
                                                     "\" is larger than 4 MiB"));
    }
    body.append(chunk);
    return absl::OkStatus();
  };
  // A retry or fallback starts the body over.
  ASSIGN_OR_RETURN(HttpResponse resp,
                   GetWithFallback(base::StrCat("/v2/", ref_.path, "/manifests/", tag_or_digest),
                                   {std::string(kManifestAccept)}, nullptr, sink,
                                   [&] { body.clear(); }));
  FetchedManifest out;
  out.bytes = std::move(body);
  out.digest = Sha256Digest(out.bytes);
  std::string ct = resp.headers.count("content-type") ? resp.headers["content-type"] : "";
  ct = ct.substr(0, ct.find(';'));
  while (!ct.empty() && ct.back() == ' ') ct.pop_back();
  // Registries may serve a generic type; the document's own field decides.
  if (!IsIndexMediaType(ct) && !IsManifestMediaType(ct)) {
    nlohmann::json j = nlohmann::json::parse(out.bytes, nullptr, false);
    std::string own = JsonString(j, "mediaType");
    if (IsIndexMediaType(own) || IsManifestMediaType(own)) {
      ct = own;
    } else if (ct.empty() || ct == "application/json" || ct == "text/plain") {
      // An OCI manifest may omit mediaType: recognize it by its fields.
      if (j.is_object() && j.contains("manifests")) ct = "application/vnd.oci.image.index.v1+json";
      else if (j.is_object() && j.contains("config") && j.contains("layers"))
        ct = "application/vnd.oci.image.manifest.v1+json";
    }
  }
  if (!IsIndexMediaType(ct) && !IsManifestMediaType(ct)) {
    return absl::InvalidArgumentError(base::StrCat(
        "unsupported media type: image \"", ref_.String(), "\" has a manifest of type \"", ct,
        "\" (supported: OCI and Docker schema 2 manifests and indexes)"));
  }
  out.media_type = ct;
  if (tag_or_digest.rfind("sha256:", 0) == 0 && out.digest != tag_or_digest) {
    return absl::InvalidArgumentError(base::StrCat("digest mismatch: manifest ", tag_or_digest,
                                                   " of image \"", ref_.String(),
                                                   "\" has content digest ", out.digest));
  }
  if (auto d = resp.headers.find("docker-content-digest");
      d != resp.headers.end() && d->second.rfind("sha256:", 0) == 0 && d->second != out.digest) {
    return absl::InvalidArgumentError(base::StrCat(
        "digest mismatch: registry says manifest of image \"", ref_.String(), "\" is ", d->second,
        " but its content digest is ", out.digest));
  }
  return out;
}

absl::Status RegistryClient::CheckManifestAccess(std::string_view digest) {
  ASSIGN_OR_RETURN(HttpResponse resp, GetWithFallback(base::StrCat("/v2/", ref_.path, "/manifests/", digest),
                                                      {std::string(kManifestAccept)}, nullptr, nullptr, nullptr,
                                                      /*head=*/true, /*registry_only=*/true));
  (void)resp;
  return absl::OkStatus();
}

absl::Status RegistryClient::GetBlob(const Descriptor& desc, BlobSink& sink) {
  auto body = [&](std::string_view chunk) -> absl::Status {
    if (sink.written() + static_cast<int64_t>(chunk.size()) > desc.size) {
      return absl::InvalidArgumentError(base::StrCat("digest mismatch: blob ", desc.digest,
                                                     " of image \"", ref_.String(),
                                                     "\" is longer than its descriptor's ",
                                                     desc.size, " bytes"));
    }
    return sink.Write(chunk);
  };
  const std::string path = base::StrCat("/v2/", ref_.path, "/blobs/", desc.digest);
  for (int round = 0; round < kAttempts; ++round) {
    if (sink.written() == desc.size) break;
    ASSIGN_OR_RETURN(HttpResponse resp, GetWithFallback(path, {}, &sink, body, nullptr));
    (void)resp;
    if (sink.written() == desc.size) break;
    // The connection ended early without an error: resume.
  }
  if (sink.written() != desc.size) {
    return absl::UnavailableError(base::StrCat("blob ", desc.digest, " of image \"",
                                               ref_.String(), "\" ended after ", sink.written(),
                                               " of ", desc.size, " bytes"));
  }
  return absl::OkStatus();
}

}  // namespace kvcri::runtime::image
