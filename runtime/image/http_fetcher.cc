// CurlFetcher: HTTP GETs with libcurl, streamed bodies, redirect and TLS policy.
#include "runtime/image/http_fetcher.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <mutex>

#include "absl/time/clock.h"
#include "config/base/str.h"

namespace kvcri::runtime::image {
namespace {

constexpr size_t kMaxErrorBody = 64 << 10;
constexpr int kMaxRedirects = 10;

struct EasyFree {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistFree {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

struct Transfer {
  CURL* curl = nullptr;
  const BodySink* sink = nullptr;
  const HttpRequest* req = nullptr;
  bool started = false;
  HttpResponse* resp = nullptr;
  absl::Status sink_error;
};

std::string Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

size_t OnHeader(char* data, size_t size, size_t n, void* opaque) {
  auto* t = static_cast<Transfer*>(opaque);
  std::string_view line(data, size * n);
  // A new status line starts the headers of a new (redirected) response.
  if (line.substr(0, 5) == "HTTP/") {
    t->resp->headers.clear();
  } else if (size_t colon = line.find(':'); colon != std::string_view::npos) {
    std::string name(line.substr(0, colon));
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    t->resp->headers[name] = Trim(line.substr(colon + 1));
  }
  return size * n;
}

size_t OnBody(char* data, size_t size, size_t n, void* opaque) {
  auto* t = static_cast<Transfer*>(opaque);
  long code = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &code);
  std::string_view chunk(data, size * n);
  if (code >= 200 && code < 300 && *t->sink) {
    if (!t->started && code == 200 && t->req->range_from > 0 && t->req->range_ignored) {
      t->sink_error = t->req->range_ignored();
      if (!t->sink_error.ok()) return 0;
    }
    t->started = true;
    t->sink_error = (*t->sink)(chunk);
    if (!t->sink_error.ok()) return 0;  // aborts with CURLE_WRITE_ERROR
  } else if (t->resp->body.size() < kMaxErrorBody) {
    t->resp->body.append(chunk.substr(0, kMaxErrorBody - t->resp->body.size()));
  }
  return size * n;
}

}  // namespace

CurlFetcher::CurlFetcher() {
  // libcurl's global state, once per process; thread-safe since 7.84.
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

absl::StatusOr<HttpResponse> CurlFetcher::Get(const HttpRequest& req, const BodySink& sink) {
  const absl::Duration left = req.deadline - absl::Now();
  if (left <= absl::ZeroDuration()) {
    return absl::DeadlineExceededError(base::StrCat("GET ", req.url, ": pull timeout reached"));
  }
  std::unique_ptr<CURL, EasyFree> curl(curl_easy_init());
  if (!curl) return absl::ResourceExhaustedError("curl_easy_init failed");
  std::unique_ptr<curl_slist, SlistFree> headers;
  for (const std::string& h : req.headers) {
    curl_slist* l = curl_slist_append(headers.get(), h.c_str());
    if (l == nullptr) return absl::ResourceExhaustedError("curl_slist_append failed");
    headers.release();
    headers.reset(l);
  }
  HttpResponse resp;
  Transfer t{curl.get(), &sink, &req, false, &resp, absl::OkStatus()};
  char errbuf[CURL_ERROR_SIZE] = {0};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, req.url.c_str());
  if (req.head) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, req.https_redirects_only ? "https" : "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, static_cast<long>(kMaxRedirects));
  // Custom Authorization headers are not sent to another host after a
  // redirect (libcurl's default; blob storage gets signed URLs instead).
  curl_easy_setopt(c, CURLOPT_UNRESTRICTED_AUTH, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 30000L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(std::max<int64_t>(1, absl::ToInt64Milliseconds(left))));
  // A stalled connection (under 1 KiB/s for a minute) is dropped and retried.
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "kubevirt-cri");
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  if (req.insecure_tls) {
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  std::string range;
  if (req.range_from > 0) {
    range = base::StrCat(req.range_from, "-");
    curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());
  }
  CURLcode rc = curl_easy_perform(c);
  if (!t.sink_error.ok()) return t.sink_error;
  if (rc != CURLE_OK) {
    std::string msg = base::StrCat("GET ", req.url, ": ", errbuf[0] ? errbuf : curl_easy_strerror(rc));
    if (rc == CURLE_OPERATION_TIMEDOUT && absl::Now() >= req.deadline) {
      return absl::DeadlineExceededError(base::StrCat(msg, " (pull timeout reached)"));
    }
    return absl::UnavailableError(msg);
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.status);
  char* eff = nullptr;
  if (curl_easy_getinfo(c, CURLINFO_EFFECTIVE_URL, &eff) == CURLE_OK && eff) resp.effective_url = eff;
  return resp;
}

}  // namespace kvcri::runtime::image
