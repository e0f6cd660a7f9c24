// Helpers for the exec, attach and port-forward integration tests and exec_bench: VM Pods with agent flags, streaming URLs from CRI, echo round trips with checksums.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "test/client/pod_helpers.h"
#include "test/client/stream_client.h"

namespace kvcri::testing {

enum class Transport { kSpdy, kWebSocket };
std::string TransportName(Transport t);  // "Spdy", "WebSocket" (gtest parameter names)

// The gRPC error as an absl::Status (same code and message).
absl::Status FromGrpc(const grpc::Status& s);

// A VM Pod booted from the test guest (kKernelImage).
struct VmPod {
  std::string name;
  // Appended to the guest's default kernel command line, e.g. "kvcri.agent=0"
  // (kvcri-agent stopped), "kvcri.console_shell=1" (getty on ttyS0).
  std::string cmdline_extra;
  // Non-zero: the container's memory limit and CPU limit (quota over a
  // 100 ms period) instead of VmContainerConfig's.
  int64_t memory_mib = 0;
  int64_t cpus = 0;
  std::string pod_id, container_id;
  std::filesystem::path log_path;  // the container's CRI log (the console copy)
  std::string ip;                  // the Pod IP
};

// Removes the Pods StartVmPods started (those that got an ID) and checks the
// daemon left nothing behind (ExpectNoLeftovers).
void RemoveVmPods(TestDaemon& d, const std::vector<VmPod>& pods);

// Starts every Pod at once (each boot costs seconds under TCG), waits for the
// guest's READY line in each CRI log; false (with gtest failures) if any fails.
bool StartVmPods(TestDaemon& d, std::vector<VmPod>& pods);

// ExecSync through CRI; a gRPC error becomes the Status. timeout_s as in the
// CRI request (0: none).
absl::StatusOr<pb::ExecSyncResponse> ExecSync(TestDaemon& d, const std::string& container_id,
                                              const std::vector<std::string>& cmd, int64_t timeout_s = 0);

// Retries ExecSync `true` until it succeeds: the guest's agents start after
// READY, and the host connects to them asynchronously. Returns the last error.
absl::Status WaitForExec(TestDaemon& d, const std::string& container_id, std::chrono::seconds timeout);

// The URLs the Exec, Attach and PortForward RPCs return.
absl::StatusOr<std::string> ExecUrl(TestDaemon& d, const pb::ExecRequest& req);
absl::StatusOr<std::string> AttachUrl(TestDaemon& d, const pb::AttachRequest& req);
absl::StatusOr<std::string> PortForwardUrl(TestDaemon& d, const std::string& pod_id,
                                           const std::vector<int32_t>& ports);

// Exec/Attach RPC, then opens the URL over `t` with the request's streams.
absl::StatusOr<std::unique_ptr<RemoteCommandClient>> OpenExec(TestDaemon& d, Transport t, const pb::ExecRequest& req);
absl::StatusOr<std::unique_ptr<RemoteCommandClient>> OpenAttach(TestDaemon& d, Transport t,
                                                                const pb::AttachRequest& req);
absl::StatusOr<std::unique_ptr<RemoteCommandClient>> OpenRemoteCommand(Transport t, const std::string& url,
                                                                       const RemoteCommandOptions& options);

pb::ExecRequest MakeExecRequest(const std::string& container_id, const std::vector<std::string>& cmd, bool tty,
                                bool stdin);

// A plain TCP connection to ip:port, as a ForwardedConnection (the baseline
// for port-forward throughput).
absl::StatusOr<std::unique_ptr<ForwardedConnection>> DialTcp(const std::string& ip, uint16_t port);

// Whether a forwarded connection can be half-closed: SPDY can (FIN on the
// data stream, which reaches the guest's service as a shutdown, and its
// close comes back as the end of the stream); the WebSocket port-forward
// protocol has no half-close, so its round trip ends when all bytes are back.
enum class HalfClose { kSupported, kNone };

// Sends `bytes` of seeded pseudo-random data while reading the echo on
// another thread; with HalfClose::kSupported it then half-closes and reads to
// the end of the stream. OK when exactly the bytes sent came back (count and
// FNV-1a checksum).
absl::Status EchoRoundTrip(ForwardedConnection& conn, size_t bytes, uint64_t seed,
                           HalfClose half_close = HalfClose::kSupported);

// `n` EchoRoundTrips at once, connection i from connect(i) (called in order
// on the calling thread); the first error.
absl::Status ConcurrentEcho(int n, size_t bytes,
                            const std::function<absl::StatusOr<std::unique_ptr<ForwardedConnection>>(int)>& connect,
                            HalfClose half_close = HalfClose::kSupported);

}  // namespace kvcri::testing
