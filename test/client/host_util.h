// Small host helpers the test fixtures share (daemon, registry, containerd).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>

namespace kvcri::testing {

// The whole file, or "" when it cannot be read.
std::string ReadFileOrEmpty(const std::filesystem::path& path);

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreeLoopbackPort();

// SIGKILLs processes whose command line names `dir`: the safety net that
// keeps a failed test's QEMU, shims or servers from running into the next.
void KillProcessesUnder(const std::filesystem::path& dir);

// Lazily unmounts everything mounted at or below `dir`, deepest first
// (a few rounds, for mounts that reappear under propagation).
void UnmountUnder(const std::filesystem::path& dir);

// utime + stime of every thread (live and exited) of `pid`, in seconds
// (/proc/<pid>/stat); 0 when it cannot be read.
double ProcCpuSeconds(pid_t pid);

// Whether `ip` answers ping from the host, trying up to 10 times (2 s each).
bool PingFromHost(const std::string& ip);

// The pid of the QEMU process running libvirt domain `domain`, or -1.
pid_t QemuPidOf(std::string_view domain);

// One HTTP/1.0 GET from the host (response with headers); "" when the connection fails or times out.
std::string HttpGet(const std::string& ip, int port, const std::string& path);

// Retries HttpGet until the response contains `needle` (guests boot under TCG); returns the last response.
std::string HttpGetUntil(const std::string& ip, int port, const std::string& path, const std::string& needle,
                         std::chrono::seconds timeout = std::chrono::seconds(60));

}  // namespace kvcri::testing
