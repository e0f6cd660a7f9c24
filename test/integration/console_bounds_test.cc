// The serial console's bounds against a flooding guest: a backlog from while the daemon was down is copied up to
// the bound and the rest counted as dropped, with bounded daemon memory, start-up time and console disk use.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "config/base/unique_fd.h"
#include "test/client/pod_helpers.h"

namespace kvcri::testing {
namespace {

using Clock = std::chrono::steady_clock;

// "VmRSS" or "VmHWM" of a process, in KiB; -1 when unreadable.
long StatusKib(pid_t pid, const std::string& key) {
  std::istringstream in(ReadFileOrEmpty("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + ":", 0) == 0) return std::stol(line.substr(key.size() + 1));
  }
  return -1;
}

uint64_t DiskBytes(const std::filesystem::path& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
}

// The last `n` bytes of a file.
std::string Tail(const std::filesystem::path& p, size_t n) {
  base::UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return "";
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) return "";
  off_t from = st.st_size > static_cast<off_t>(n) ? st.st_size - static_cast<off_t>(n) : 0;
  std::string out(static_cast<size_t>(st.st_size - from), '\0');
  ssize_t got = ::pread(fd.get(), out.data(), out.size(), from);
  out.resize(got > 0 ? static_cast<size_t>(got) : 0);
  return out;
}

// Every line "<RFC3339Nano>Z stdout <F|P> <text>"; returns the first bad one, or "".
std::string FirstMalformedLine(const std::filesystem::path& log) {
  std::ifstream in(log);
  for (std::string line; std::getline(in, line);) {
    bool ok = line.size() >= 40 && line[4] == '-' && line[10] == 'T' && line[29] == 'Z' &&
              (line.compare(30, 10, " stdout F ") == 0 || line.compare(30, 10, " stdout P ") == 0);
    if (!ok) return line.empty() ? "<empty line>" : line;
  }
  return "";
}

// The guest floods ttyS0 while the daemon is killed. Under TCG the 16550
// carries ~50 KB/s here (one QEMU write(2) per byte), so 2 GiB from the
// guest would take hours: the guest writes 2 MiB itself (and must not block
// while nobody copies), then the test appends the rest of 2 GiB of newlines
// to the same file with O_APPEND, exactly as QEMU would.
TEST(ConsoleBounds, TwoGibBacklogFromWhileDownIsBoundedInMemoryTimeAndDisk) {
  RequireIntegrationEnvironment(true);
  TestDaemon d;
  d.Start();
  ImportGuestImages(d);
  constexpr uint64_t kGuestFlood = 2 << 20;
  constexpr uint64_t kBacklog = 2ull << 30;
  constexpr uint64_t kMaxBacklog = 4 << 20;  // ConsoleLogOptions::max_backlog_bytes
  pb::PodSandboxConfig config = SandboxConfig("flood", d.log_dir());
  (*config.mutable_annotations())["kubevirt-cri.io/kernel-cmdline"] =
      "console=ttyS0 panic=-1 quiet kvcri.heartbeat=1 kvcri.flood=" + std::to_string(kGuestFlood) +
      " kvcri.flood_after=5";
  std::string pod, ctr;
  ASSERT_TRUE(StartPodWithConfig(d, config, kKernelImage, &pod, &ctr));
  const std::filesystem::path log = GetContainerStatus(d, ctr).status().log_path();
  const std::filesystem::path console = d.root() / "containers" / ctr / "console.log";
  const std::filesystem::path qemu_log = d.root() / "libvirt" / "log" / "qemu" / ("kvcri-" + ctr + ".log");
  ASSERT_TRUE(WaitForFileContains(log, "KUBEVIRT-CRI-GUEST-FLOOD-ARMED", std::chrono::seconds(300))) << d.DaemonLog();

  // QEMU's stderr is libvirt's per-domain log, appended to (so the copier
  // can truncate it under QEMU).
  pid_t qemu = QemuPidOf("kvcri-" + ctr);
  ASSERT_GT(qemu, 0);
  std::string fdinfo = ReadFileOrEmpty("/proc/" + std::to_string(qemu) + "/fdinfo/2");
  std::string target = std::filesystem::read_symlink("/proc/" + std::to_string(qemu) + "/fd/2").string();
  EXPECT_EQ(target, qemu_log.string());
  size_t flags_at = fdinfo.find("flags:");
  ASSERT_NE(flags_at, std::string::npos) << fdinfo;
  EXPECT_NE(std::stol(fdinfo.substr(flags_at + 6), nullptr, 8) & O_APPEND, 0) << fdinfo;

  const long idle_kib = StatusKib(d.pid(), "VmRSS");
  ASSERT_GT(idle_kib, 0);
  d.Kill9();

  // The guest floods with nobody copying; it must not block on its console.
  const auto flood_deadline = Clock::now() + std::chrono::seconds(600);
  bool done = false;
  while (Clock::now() < flood_deadline && !done) {
    done = Tail(console, 4096).find("KUBEVIRT-CRI-GUEST-FLOOD-DONE") != std::string::npos;
    if (!done) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  ASSERT_TRUE(done) << "the guest did not finish its flood while the daemon was down; console size "
                    << std::filesystem::file_size(console);
  {
    base::UniqueFd fd(::open(console.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    const std::string chunk(1 << 20, '\n');
    for (uint64_t n = std::filesystem::file_size(console); n < kBacklog; n += chunk.size()) {
      ASSERT_EQ(::write(fd.get(), chunk.data(), chunk.size()), static_cast<ssize_t>(chunk.size()));
    }
  }
  ASSERT_GE(std::filesystem::file_size(console), kBacklog);
  const int beats_before = CountCriLogLines(log, "KUBEVIRT-CRI-GUEST-HEARTBEAT");

  const auto t0 = Clock::now();
  d.Start();
  const auto serve_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  EXPECT_LE(serve_ms, 5000) << "the restarted daemon took " << serve_ms << " ms to serve CRI";
  pb::ListContainersResponse lc;
  ASSERT_TRUE(d.runtime().ListContainers(Ctx().get(), pb::ListContainersRequest(), &lc).ok());
  EXPECT_EQ(lc.containers_size(), 1);

  // While the backlog is copied: memory and disk stay bounded, and new
  // heartbeats arrive (the newest output is what is kept).
  long peak_kib = 0;
  uint64_t disk_after = 0;
  bool settled = false;
  const auto copy_deadline = Clock::now() + std::chrono::seconds(300);
  while (Clock::now() < copy_deadline && !settled) {
    peak_kib = std::max(peak_kib, StatusKib(d.pid(), "VmHWM"));
    disk_after = DiskBytes(console);
    settled = disk_after <= 2 * kMaxBacklog && CountCriLogLines(log, "KUBEVIRT-CRI-GUEST-HEARTBEAT") > beats_before + 2;
    if (!settled) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  peak_kib = std::max(peak_kib, StatusKib(d.pid(), "VmHWM"));
  EXPECT_TRUE(settled) << "console disk use " << disk_after << " bytes; heartbeats before " << beats_before << ", now "
                       << CountCriLogLines(log, "KUBEVIRT-CRI-GUEST-HEARTBEAT") << "\n"
                       << d.DaemonLog();
  EXPECT_LE(peak_kib, idle_kib + 64 * 1024) << "idle RSS " << idle_kib << " KiB, peak " << peak_kib << " KiB";
  EXPECT_LE(DiskBytes(console), 2 * kMaxBacklog);

  std::cout << "console_bounds: serve_ms=" << serve_ms << " idle_rss_kib=" << idle_kib << " peak_rss_kib=" << peak_kib
            << " console_disk_bytes=" << DiskBytes(console) << " console_size=" << std::filesystem::file_size(console)
            << std::endl;

  // The CRI log says what was dropped, and stays well-formed.
  std::string marker = "bytes of console output dropped";
  EXPECT_EQ(CountCriLogLines(log, marker), 1) << d.DaemonLog();
  std::istringstream in(ReadFileOrEmpty(log));
  for (std::string line; std::getline(in, line);) {
    size_t at = line.find("stdout F kubevirt-cri: ");
    if (at == std::string::npos || line.find(marker) == std::string::npos) continue;
    uint64_t dropped = std::stoull(line.substr(at + 23));
    EXPECT_GE(dropped, kBacklog - kGuestFlood - 2 * kMaxBacklog) << line;
    EXPECT_LE(dropped, kBacklog + kGuestFlood) << line;
  }
  EXPECT_EQ(FirstMalformedLine(log), "");
  EXPECT_THAT(d.DaemonLog(), ::testing::HasSubstr("msg=\"console output dropped\""));

  RemovePod(d, pod);
  EXPECT_FALSE(std::filesystem::exists(qemu_log)) << "libvirt's QEMU log outlived the container";
  ExpectNoLeftovers(d);
}

}  // namespace
}  // namespace kvcri::testing
