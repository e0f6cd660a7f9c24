// HostileRegistry: a one-thread HTTP/1.1 server on loopback with crafted answers; crafted OCI images and layers.
#include "test/client/hostile_registry.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "test/client/registry_fixture.h"
#include "test/client/test_daemon.h"

namespace kvcri::testing {
namespace {

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 500:
      return "Internal Server Error";
    default:
      return "Whatever";
  }
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

void WriteAll(int fd, const std::string& s) {
  for (size_t done = 0; done < s.size();) {
    ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

std::string ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A ustar header for regular file `name` of `size` bytes.
std::string TarHeader(const std::string& name, uint64_t size) {
  std::string h(512, '\0');
  std::snprintf(&h[0], 100, "%s", name.c_str());
  std::snprintf(&h[100], 8, "%07o", 0644);
  std::snprintf(&h[108], 8, "%07o", 0);
  std::snprintf(&h[116], 8, "%07o", 0);
  std::snprintf(&h[124], 12, "%011llo", static_cast<unsigned long long>(size));
  std::snprintf(&h[136], 12, "%011o", 0);
  std::memset(&h[148], ' ', 8);
  h[156] = '0';
  std::memcpy(&h[257],
              "ustar\0"
              "00",
              8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(&h[148], 8, "%06o", sum);
  h[155] = ' ';
  return h;
}

// Runs `command` with `input` on its stdin (popen "w"); stdout goes where
// the command redirects it.
void Pipe(const std::string& command, const std::function<void(FILE*)>& write) {
  FILE* p = ::popen(command.c_str(), "w");
  ASSERT_NE(p, nullptr) << command;
  write(p);
  ASSERT_EQ(::pclose(p), 0) << command;
}

}  // namespace

HostileRegistry::HostileRegistry(const std::string& address) : address_(address) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  EXPECT_EQ(::inet_pton(AF_INET, address.c_str(), &a.sin_addr), 1) << address;
  socklen_t len = sizeof a;
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(listen_fd_, 64) != 0 || ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ADD_FAILURE() << "hostile registry cannot listen on " << address << ": " << std::strerror(errno);
    return;
  }
  port_ = ntohs(a.sin_port);
  thread_ = std::thread([this] { Loop(); });
}

HostileRegistry::~HostileRegistry() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

void HostileRegistry::Serve(Handler handler) {
  std::lock_guard<std::mutex> l(mu_);
  handler_ = std::move(handler);
}

std::vector<HostileRegistry::Request> HostileRegistry::Requests() {
  std::lock_guard<std::mutex> l(mu_);
  return requests_;
}

int HostileRegistry::Count(const std::string& part) {
  int n = 0;
  for (const Request& r : Requests()) n += r.target.find(part) != std::string::npos;
  return n;
}

HostileRegistry::Response HostileRegistry::Json(int status, const std::string& content_type, const std::string& body) {
  Response r;
  r.status = status;
  r.headers["Content-Type"] = content_type;
  r.body = body;
  return r;
}

HostileRegistry::Response HostileRegistry::NotFound() {
  return Json(404, "application/json", R"({"errors":[{"code":"NOT_FOUND","message":"not here"}]})");
}

void HostileRegistry::Loop() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    ServeOne(c);
    ::close(c);
  }
}

void HostileRegistry::ServeOne(int fd) {
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  std::string head;
  char buf[4096];
  while (head.find("\r\n\r\n") == std::string::npos && head.size() < (64 << 10)) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return;
    head.append(buf, static_cast<size_t>(n));
    // A TLS ClientHello (the daemon's https probe of a loopback registry):
    // plain HTTP only, so hang up at once rather than wait for a request.
    if (static_cast<unsigned char>(head[0]) == 0x16) return;
  }
  Request req;
  std::istringstream lines(head.substr(0, head.find("\r\n\r\n")));
  std::string line;
  std::getline(lines, line);
  std::istringstream first(line);
  first >> req.method >> req.target;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    req.headers[Lower(line.substr(0, colon))] = value;
  }
  Handler h;
  {
    std::lock_guard<std::mutex> l(mu_);
    requests_.push_back(req);
    h = handler_;
  }
  Response resp = h ? h(req) : NotFound();
  std::string out = "HTTP/1.1 " + std::to_string(resp.status) + " " + Reason(resp.status) + "\r\n";
  for (const auto& [k, v] : resp.headers) out += k + ": " + v + "\r\n";
  out += "Content-Length: " + std::to_string(resp.body.size()) + "\r\nConnection: close\r\n\r\n";
  if (req.method != "HEAD") out += resp.body;
  WriteAll(fd, out);
}

std::string Sha256Hex(const std::string& data) {
  TempDir dir;
  const std::string path = (dir.path() / "blob").string();
  std::ofstream(path, std::ios::binary) << data;
  std::string out;
  EXPECT_EQ(RunShell("sha256sum " + ShellQuote(path), &out), 0) << out;
  return "sha256:" + out.substr(0, 64);
}

std::string CraftedImage::AddBlob(const std::string& media_type, const std::string& bytes) {
  const std::string digest = Sha256Hex(bytes);
  blobs[digest] = bytes;
  return R"({"mediaType":")" + media_type + R"(","digest":")" + digest + R"(","size":)" + std::to_string(bytes.size()) +
         "}";
}

void CraftedImage::Finish(const std::vector<std::string>& layers, const std::string& config_json) {
  const std::string config =
      config_json.empty()
          ? R"({"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}})"
          : config_json;
  const std::string config_desc = AddBlob("application/vnd.oci.image.config.v1+json", config);
  config_digest = Sha256Hex(config);
  std::string list;
  for (const std::string& l : layers) list += (list.empty() ? "" : ",") + l;
  manifest = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":)" + config_desc +
             R"(,"layers":[)" + list + "]}";
  manifest_digest = Sha256Hex(manifest);
}

HostileRegistry::Response CraftedImage::Answer(const HostileRegistry::Request& req) const {
  if (req.target.find("/manifests/") != std::string::npos) {
    HostileRegistry::Response r = HostileRegistry::Json(200, "application/vnd.oci.image.manifest.v1+json", manifest);
    r.headers["Docker-Content-Digest"] = manifest_digest;
    return r;
  }
  if (size_t at = req.target.find("/blobs/"); at != std::string::npos) {
    auto it = blobs.find(req.target.substr(at + 7));
    if (it != blobs.end()) return HostileRegistry::Json(200, "application/octet-stream", it->second);
  }
  if (req.target == "/v2/") return HostileRegistry::Json(200, "application/json", "{}");
  return HostileRegistry::NotFound();
}

std::string GzipTarOf(const std::string& name, const std::string& content) {
  TempDir dir;
  const std::string out = (dir.path() / "layer").string();
  Pipe("gzip -c > " + ShellQuote(out), [&](FILE* p) {
    std::string tar = TarHeader(name, content.size()) + content;
    tar.append((512 - tar.size() % 512) % 512, '\0');
    tar.append(1024, '\0');
    fwrite(tar.data(), 1, tar.size(), p);
  });
  return ReadWhole(out);
}

std::string ZstdBombOf(const std::string& name, uint64_t size) {
  TempDir dir;
  const std::string out = (dir.path() / "layer").string();
  Pipe("zstd -q -c > " + ShellQuote(out), [&](FILE* p) {
    const std::string header = TarHeader(name, size);
    fwrite(header.data(), 1, header.size(), p);
    const std::string chunk(1 << 20, 'A');
    for (uint64_t done = 0; done < size;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), size - done));
      fwrite(chunk.data(), 1, n, p);
      done += n;
    }
    const std::string pad((512 - size % 512) % 512 + 1024, '\0');
    fwrite(pad.data(), 1, pad.size(), p);
  });
  return ReadWhole(out);
}

}  // namespace kvcri::testing
