// HostileRegistry: an in-process HTTP server on loopback that answers registry requests with crafted responses.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace kvcri::testing {

// A plain-HTTP server on one loopback address ("127.0.0.1", "127.0.0.2") and
// a free port, for registries no real one would be: each request goes to
// the handler, which answers anything (bad JSON, lying sizes, bombs, auth
// challenges). HTTP/1.1 with "Connection: close", one request per
// connection, served from one thread. Records every request.
class HostileRegistry {
 public:
  struct Request {
    std::string method;                          // "GET", "HEAD"
    std::string target;                          // "/v2/x/manifests/1?..."
    std::map<std::string, std::string> headers;  // names lowercased
  };
  struct Response {
    int status = 200;
    std::map<std::string, std::string> headers;
    std::string body;
  };
  using Handler = std::function<Response(const Request&)>;

  // Listens right away; fails the test when it cannot.
  explicit HostileRegistry(const std::string& address = "127.0.0.1");
  ~HostileRegistry();
  HostileRegistry(const HostileRegistry&) = delete;
  HostileRegistry& operator=(const HostileRegistry&) = delete;

  void Serve(Handler handler);
  // "127.0.0.1:PORT".
  std::string Host() const { return address_ + ":" + std::to_string(port_); }
  std::vector<Request> Requests();
  // Requests whose target contains `part`.
  int Count(const std::string& part);

  // Convenience answers.
  static Response Json(int status, const std::string& content_type, const std::string& body);
  static Response NotFound();

 private:
  void Loop();
  void ServeOne(int fd);

  std::string address_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  Handler handler_;
  std::vector<Request> requests_;
  std::thread thread_;
};

// An OCI image crafted in memory: blobs by digest, its manifest and config.
struct CraftedImage {
  std::map<std::string, std::string> blobs;  // "sha256:..." -> bytes
  std::string manifest;
  std::string manifest_digest;
  std::string config_digest;

  // Adds a blob; returns its descriptor JSON.
  std::string AddBlob(const std::string& media_type, const std::string& bytes);
  // Builds manifest + config (linux/amd64) around `layers` (descriptor JSONs).
  void Finish(const std::vector<std::string>& layers, const std::string& config_json = "");
  // Serves /v2/<repo>/manifests/* and /blobs/<digest>; nullopt-like
  // NotFound for others.
  HostileRegistry::Response Answer(const HostileRegistry::Request& req) const;
};

// "sha256:<hex>" of `data`, computed with sha256sum.
std::string Sha256Hex(const std::string& data);

// A gzip-compressed tar of one regular file `name` holding `content`.
std::string GzipTarOf(const std::string& name, const std::string& content);

// A zstd-compressed tar of one regular file `name` of `size` bytes of 'A'
// (compressible, not holes), streamed through the zstd CLI.
std::string ZstdBombOf(const std::string& name, uint64_t size);

}  // namespace kvcri::testing
