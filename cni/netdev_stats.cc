// ParseProcNetDev and ProcNetdevReader: /proc/thread-self/net/dev inside a Pod's network namespace.
#include "cni/netdev_stats.h"

#include <fcntl.h>
#include <unistd.h>

#include <charconv>

#include "config/base/netns_exec.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"

namespace kvcri::cni {
namespace {

using base::StrCat;

constexpr size_t kMaxNetDevBytes = 256 * 1024;

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// The 16 counters after "name:", whitespace separated.
bool ParseCounters(std::string_view s, uint64_t (&out)[16]) {
  size_t n = 0;
  while (true) {
    s = Trim(s);
    if (s.empty()) break;
    if (n == 16) return false;
    size_t end = s.find_first_of(" \t");
    std::string_view tok = s.substr(0, end);
    auto [p, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), out[n]);
    if (ec != std::errc() || p != tok.data() + tok.size()) return false;
    ++n;
    if (end == std::string_view::npos) break;
    s.remove_prefix(end);
  }
  return n == 16;
}

absl::StatusOr<std::string> ReadBounded(const char* path) {
  base::UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, StrCat("open \"", path, "\""));
  std::string text;
  char buf[8192];
  while (true) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, StrCat("read \"", path, "\""));
    if (n == 0) break;
    if (text.size() + static_cast<size_t>(n) > kMaxNetDevBytes) {
      return absl::OutOfRangeError(StrCat("\"", path, "\" is longer than ", kMaxNetDevBytes, " bytes"));
    }
    text.append(buf, static_cast<size_t>(n));
  }
  return text;
}

}  // namespace

absl::StatusOr<std::vector<InterfaceCounters>> ParseProcNetDev(std::string_view text) {
  std::vector<InterfaceCounters> out;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (++line_no <= 2 || Trim(line).empty()) continue;  // the two header lines
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      return absl::InvalidArgumentError(StrCat("net/dev line ", line_no, " has no \"name:\": \"", line, "\""));
    }
    uint64_t v[16];
    if (!ParseCounters(line.substr(colon + 1), v)) {
      return absl::InvalidArgumentError(StrCat("net/dev line ", line_no, " does not hold 16 counters: \"", line, "\""));
    }
    if (out.size() == kMaxInterfaces) {
      return absl::OutOfRangeError(StrCat("net/dev lists more than ", kMaxInterfaces, " interfaces"));
    }
    InterfaceCounters c;
    c.name = std::string(Trim(line.substr(0, colon)));
    // Receive: bytes packets errs drop fifo frame compressed multicast;
    // transmit: bytes packets errs drop fifo colls carrier compressed.
    c.rx_bytes = v[0];
    c.rx_packets = v[1];
    c.rx_errors = v[2];
    c.rx_dropped = v[3];
    c.tx_bytes = v[8];
    c.tx_packets = v[9];
    c.tx_errors = v[10];
    c.tx_dropped = v[11];
    out.push_back(std::move(c));
  }
  return out;
}

absl::StatusOr<std::vector<InterfaceCounters>> ProcNetdevReader::Read(const std::filesystem::path& netns) {
  std::string text;
  absl::Status s = base::RunInNetns(netns, [&]() -> absl::Status {
    // thread-self: /proc/self/net is the namespace of the main thread.
    absl::StatusOr<std::string> t = ReadBounded("/proc/thread-self/net/dev");
    if (!t.ok()) return t.status();
    text = std::move(*t);
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return ParseProcNetDev(text);
}

}  // namespace kvcri::cni
