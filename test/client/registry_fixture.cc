// RegistryFixture: a private docker-registry with optional htpasswd auth, fed by skopeo.
#include "test/client/registry_fixture.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "test/client/host_util.h"

namespace kvcri::testing {
namespace fs = std::filesystem;

namespace {

// The status code of `GET path` on 127.0.0.1:port (HTTP/1.0), 0 when none.
int HttpStatus(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string got;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
      char buf[256];
      ssize_t n;
      while (got.size() < 12 && (n = ::read(fd, buf, sizeof buf)) > 0) got.append(buf, n);
    }
  }
  ::close(fd);
  // "HTTP/1.1 200 OK"
  if (got.size() < 12 || got.compare(0, 5, "HTTP/") != 0) return 0;
  return std::atoi(got.c_str() + 9);
}

bool HaveTool(const char* name) {
  return std::system((std::string("command -v ") + name + " >/dev/null 2>&1").c_str()) == 0;
}

}  // namespace

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

int RunShell(const std::string& command, std::string* out) {
  out->clear();
  FILE* p = ::popen(("bash -c " + ShellQuote(command) + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out->append(buf.data(), n);
  int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

RegistryFixture::RegistryFixture(Options options) : options_(std::move(options)) {}

RegistryFixture::~RegistryFixture() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

std::string RegistryFixture::Log() const { return ReadFileOrEmpty(dir_.path() / "registry.log"); }

void RegistryFixture::Start() {
  for (const char* tool : {"docker-registry", "skopeo"}) {
    ASSERT_TRUE(HaveTool(tool)) << tool << " is missing: run scripts/install-deps.sh --test";
  }
  port_ = FreeLoopbackPort();
  ASSERT_GT(port_, 0) << "no free TCP port on 127.0.0.1";
  fs::create_directories(storage());
  std::ostringstream cfg;
  cfg << "version: 0.1\n"
      << "log:\n  level: info\n"
      << "storage:\n  filesystem:\n    rootdirectory: " << storage().string() << "\n"
      << "  delete:\n    enabled: true\n"
      << "http:\n  addr: 127.0.0.1:" << port_ << "\n";
  bool auth = !options_.username.empty();
  if (!options_.extra_config.empty()) {
    cfg << options_.extra_config;
    auth = true;
  } else if (auth) {
    ASSERT_TRUE(HaveTool("htpasswd")) << "htpasswd is missing (apache2-utils): run scripts/install-deps.sh --test";
    std::string line;
    int rc = RunShell("htpasswd -Bbn " + ShellQuote(options_.username) + " " + ShellQuote(options_.password), &line);
    ASSERT_EQ(rc, 0) << "htpasswd: " << line;
    const fs::path htpasswd = dir_.path() / "htpasswd";
    std::ofstream(htpasswd) << line;
    cfg << "auth:\n  htpasswd:\n    realm: kvcri-test\n    path: " << htpasswd.string() << "\n";
  }
  const fs::path config = dir_.path() / "config.yml";
  std::ofstream(config) << cfg.str();

  pid_ = ::fork();
  ASSERT_GE(pid_, 0) << "fork failed";
  if (pid_ == 0) {
    ::setsid();
    FILE* f = std::fopen((dir_.path() / "registry.log").c_str(), "a");
    if (f != nullptr) {
      ::dup2(fileno(f), 1);
      ::dup2(fileno(f), 2);
    }
    ::execl("/usr/bin/docker-registry", "docker-registry", "serve", config.c_str(), nullptr);
    ::_exit(127);
  }
  // /v2/ answers 200 (open) or 401 (auth) once the registry serves.
  const int want = auth ? 401 : 200;
  for (int i = 0; i < 150; ++i) {
    if (HttpStatus(port_, "/v2/") == want) return;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      FAIL() << "docker-registry exited:\n" << Log();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  FAIL() << "docker-registry did not answer " << want << " on http://" << Host() << "/v2/:\n" << Log();
}

void RegistryFixture::Push(const std::string& layout_dir, const std::string& repo_tag,
                           const std::vector<std::string>& extra_args) {
  std::string cmd = "skopeo copy --quiet --dest-tls-verify=false";
  if (!options_.username.empty()) cmd += " --dest-creds " + ShellQuote(options_.username + ":" + options_.password);
  for (const std::string& a : extra_args) cmd += " " + ShellQuote(a);
  cmd += " " + ShellQuote("oci:" + layout_dir) + " " + ShellQuote("docker://" + Host() + "/" + repo_tag);
  std::string out;
  int rc = RunShell(cmd, &out);
  ASSERT_EQ(rc, 0) << cmd << ":\n" << out << "\nregistry log:\n" << Log();
}

std::string RegistryFixture::ManifestDigest(const std::string& repo_tag) {
  std::string cmd = "skopeo inspect --raw --tls-verify=false";
  if (!options_.username.empty()) cmd += " --creds " + ShellQuote(options_.username + ":" + options_.password);
  cmd += " " + ShellQuote("docker://" + Host() + "/" + repo_tag) + " | sha256sum | cut -d' ' -f1";
  std::string out;
  int rc = RunShell("set -o pipefail; " + cmd, &out);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  EXPECT_EQ(rc, 0) << cmd << ":\n" << out;
  if (rc != 0 || out.size() != 64) {
    ADD_FAILURE() << "no manifest digest for " << repo_tag << ": " << out;
    return "";
  }
  return "sha256:" + out;
}

}  // namespace kvcri::testing
