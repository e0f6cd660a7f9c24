// Host helpers for test fixtures: file reads, free ports, killing and unmounting leftovers.
#include "test/client/host_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cerrno>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

namespace kvcri::testing {
namespace fs = std::filesystem;

std::string ReadFileOrEmpty(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  if (fd >= 0) ::close(fd);
  return port;
}

void KillProcessesUnder(const fs::path& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t pid = std::stoi(name);
    if (pid == ::getpid()) continue;
    if (ReadFileOrEmpty(e.path() / "cmdline").find(dir.string()) != std::string::npos) ::kill(pid, SIGKILL);
  }
}

void UnmountUnder(const fs::path& dir) {
  for (int round = 0; round < 3; ++round) {
    std::istringstream in(ReadFileOrEmpty("/proc/self/mounts"));
    std::string dev, target, rest;
    std::vector<std::string> targets;
    while (in >> dev >> target && std::getline(in, rest)) {
      if (target.rfind(dir.string(), 0) == 0) targets.push_back(target);
    }
    if (targets.empty()) return;
    for (auto it = targets.rbegin(); it != targets.rend(); ++it) ::umount2(it->c_str(), MNT_DETACH);
  }
}

double ProcCpuSeconds(pid_t pid) {
  std::string stat = ReadFileOrEmpty("/proc/" + std::to_string(pid) + "/stat");
  size_t p = stat.rfind(')');
  if (p == std::string::npos) return 0;
  std::istringstream in(stat.substr(p + 2));
  std::string field;
  double ticks = 0;
  // After "pid (comm) ": state is field 3; utime and stime are fields 14 and 15.
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

bool PingFromHost(const std::string& ip) {
  for (int i = 0; i < 10; ++i) {
    if (std::system(("ping -c 1 -W 2 " + ip + " >/dev/null 2>&1").c_str()) == 0) return true;
  }
  return false;
}

pid_t QemuPidOf(std::string_view domain) {
  const std::string needle = "guest=" + std::string(domain) + ",";
  // error_code overloads: processes come and go while we iterate.
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc", ec); !ec && it != std::filesystem::directory_iterator();
       it.increment(ec)) {
    const std::string name = it->path().filename();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = ReadFileOrEmpty(it->path() / "cmdline");
    for (char& c : cmdline) c = c == '\0' ? ' ' : c;
    if (cmdline.find("qemu-system") != std::string::npos && cmdline.find(needle) != std::string::npos) {
      return static_cast<pid_t>(std::stol(name));
    }
  }
  return -1;
}

std::string HttpGet(const std::string& ip, int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return "";
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, ip.c_str(), &sa.sin_addr);
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  auto wait = [&](short events) {
    pollfd p{fd, events, 0};
    while (std::chrono::steady_clock::now() < deadline) {
      if (::poll(&p, 1, 100) > 0) return true;
    }
    return false;
  };
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 && errno != EINPROGRESS) {
    ::close(fd);
    return "";
  }
  int err = 0;
  socklen_t len = sizeof err;
  if (!wait(POLLOUT) || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
    ::close(fd);
    return "";
  }
  std::string req = "GET " + path + " HTTP/1.0\r\nHost: " + ip + "\r\n\r\n";
  (void)::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  char buf[4096];
  while (wait(POLLIN)) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

std::string HttpGetUntil(const std::string& ip, int port, const std::string& path, const std::string& needle,
                         std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    last = HttpGet(ip, port, path);
    if (last.find(needle) != std::string::npos) return last;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return last;
}

}  // namespace kvcri::testing
