// ScriptedFetcher: an HttpFetcher that answers with responses taken from a fuzz input, no network.
#pragma once

#include <charconv>
#include <deque>
#include <string>
#include <string_view>

#include "runtime/image/http_fetcher.h"

namespace kvcri::fuzz {

// Answers GETs in order with responses parsed from raw HTTP/1.1 text (what
// `curl -si` prints: status line, headers, empty line, body; the next
// response starts at a line beginning "HTTP/"). Past the last one it answers
// 404. Statuses the registry client retries after sleeping (408, 429, 5xx)
// become 400: a harness must not sleep.
class ScriptedFetcher : public runtime::image::HttpFetcher {
 public:
  explicit ScriptedFetcher(std::string_view script) {
    while (!script.empty()) {
      size_t next = script.find("\nHTTP/", 1);
      std::string_view one = script.substr(0, next == std::string_view::npos ? script.size() : next + 1);
      script.remove_prefix(one.size());
      responses_.push_back(Parse(one));
    }
  }

  absl::StatusOr<runtime::image::HttpResponse> Get(const runtime::image::HttpRequest& req,
                                                   const runtime::image::BodySink& sink) override {
    ++requests_;
    if (responses_.empty()) {
      runtime::image::HttpResponse r;
      r.status = 404;
      r.effective_url = req.url;
      return r;
    }
    runtime::image::HttpResponse r = std::move(responses_.front());
    responses_.pop_front();
    r.effective_url = req.url;
    if (r.status >= 200 && r.status < 300 && sink) {
      // In chunks, as libcurl delivers them.
      std::string_view body = r.body;
      while (!body.empty()) {
        std::string_view chunk = body.substr(0, 1000);
        body.remove_prefix(chunk.size());
        if (absl::Status s = sink(chunk); !s.ok()) return s;
      }
      r.body.clear();
    } else if (r.body.size() > 64 * 1024) {
      r.body.resize(64 * 1024);  // CurlFetcher keeps at most 64 KiB of an error body
    }
    return r;
  }

  int requests() const { return requests_; }

 private:
  static runtime::image::HttpResponse Parse(std::string_view text) {
    runtime::image::HttpResponse r;
    auto line = [&text]() {
      size_t nl = text.find('\n');
      std::string_view l = text.substr(0, nl);
      text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
      if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
      return l;
    };
    std::string_view status = line();
    size_t sp = status.find(' ');
    if (sp != std::string_view::npos) {
      std::string_view code = status.substr(sp + 1, 3);
      std::from_chars(code.data(), code.data() + code.size(), r.status);
    }
    if (r.status < 100 || r.status > 599) r.status = 200;
    if (r.status == 408 || r.status == 429 || r.status >= 500) r.status = 400;
    while (!text.empty()) {
      std::string_view h = line();
      if (h.empty()) break;
      size_t colon = h.find(':');
      if (colon == std::string_view::npos) continue;
      std::string name(h.substr(0, colon));
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string_view value = h.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      r.headers[name] = std::string(value);
    }
    r.body = std::string(text);
    return r;
  }

  std::deque<runtime::image::HttpResponse> responses_;
  int requests_ = 0;
};

}  // namespace kvcri::fuzz
