// Fuzz target registry_auth: a WWW-Authenticate value and a token answer through ParseAuthChallenge, AnswerChallenge.
#include "runtime/image/registry_auth.h"
#include "test/fuzz/fake_http.h"
#include "test/fuzz/fuzz_targets.h"

namespace kvcri::fuzz {

constexpr std::string_view kTarget = "registry_auth";

// Input: the header value (first line), then the token endpoint's raw HTTP
// answer (a body alone is answered as HTTP 200).
void FuzzRegistryAuth(FuzzInput in) {
  std::string_view text = AsText(in);
  size_t nl = text.find('\n');
  std::string_view header = text.substr(0, nl);
  std::string_view answer = nl == std::string_view::npos ? "" : text.substr(nl + 1);
  absl::StatusOr<runtime::image::AuthChallenge> c = runtime::image::ParseAuthChallenge(header);
  if (!c.ok()) {
    KVCRI_FUZZ_CHECK(kTarget, absl::IsInvalidArgument(c.status()));
    return;
  }
  KVCRI_FUZZ_CHECK(kTarget, !c->scheme.empty());
  for (const auto& [name, value] : c->params) KVCRI_FUZZ_CHECK(kTarget, !name.empty());

  std::string script =
      answer.rfind("HTTP/", 0) == 0 ? std::string(answer) : "HTTP/1.1 200 OK\r\n\r\n" + std::string(answer);
  for (bool with_creds : {false, true}) {
    ScriptedFetcher http(script);
    runtime::image::RegistryCredentials creds;
    if (with_creds) {
      creds.username = "kvcri";
      creds.password = "secret";
    }
    absl::StatusOr<std::string> authorization = runtime::image::AnswerChallenge(
        http, *c, creds, "repository:kvcri/disk:pull", "registry.example", false, absl::InfiniteFuture());
    if (authorization.ok()) {
      KVCRI_FUZZ_CHECK(kTarget, authorization->rfind("Basic ", 0) == 0 || authorization->rfind("Bearer ", 0) == 0);
      // It goes into an Authorization header: no line break or NUL may end
      // the header early and smuggle in another one.
      KVCRI_FUZZ_CHECK(kTarget, authorization->find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos);
      KVCRI_FUZZ_CHECK(kTarget, http.requests() <= 1);
    }
  }
}

}  // namespace kvcri::fuzz

KVCRI_FUZZ_ENTRY(kvcri::fuzz::FuzzRegistryAuth)
