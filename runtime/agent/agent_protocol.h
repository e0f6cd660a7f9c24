// The kvcri-agent wire format, shared by the host (agent_client.cc) and the guest binary: frames and their payloads.
#pragma once

// Plain C++ without absl: the guest binary links this file statically and
// stays small.
//
// A connection is a byte stream of frames:
//   u32 payload length | u8 type | u32 session id | payload   (big endian)
// Session 0 is the connection itself (HELLO, connection-level ERROR). The
// host picks session ids (never reused on one connection); the guest only
// answers on them. There is no resynchronisation: a frame the decoder
// rejects ends the connection, and the peer connects again.
//
// Conversation:
//   host HELLO{version, window, max payload} -> guest HELLO{version, agent}
//   host EXEC -> guest STARTED | ERROR(text); then STDIN/STDIN_CLOSE/RESIZE/
//     SIGNAL from the host, STDOUT/STDERR from the guest (an empty one is
//     the end of that output), EXIT once the process was reaped.
//   host CONNECT{port} -> guest CONNECTED | CONNECT_FAILED(text); then DATA
//     and SHUT_WR (half-close) both ways; ERROR(text) when the socket failed.
//   host CLOSE -> the guest kills what is left of the session, frees it and
//     answers CLOSE; only then may the host forget the id.
//   host SPAWN -> guest STARTED{pid} | ERROR(text): a detached process (a
//     micro-VM container's runtime), not bound to the session or to the
//     connection: its stdout and stderr are appended to the named files, and
//     when it exits the guest writes its status to the exit file (written
//     whole, then renamed into place; ExitFileText). It outlives the host's
//     connection, so a daemon restart loses nothing. The host then CLOSEs
//     the session, which only frees the id.
// Flow control: each direction of each stream (stdin, stdout, stderr; DATA
// both ways) has a window of HELLO.window bytes. A sender keeps at most that
// many bytes unacknowledged; the receiver returns credit with WINDOW{stream,
// bytes} as its consumer takes them. Sending past the credit is a protocol
// error that ends the connection.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kvcri::runtime::agent {

inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr size_t kFrameHeaderBytes = 9;
// No peer may ask for frames larger than this, whatever HELLO says.
inline constexpr uint32_t kMaxPayloadCeiling = 1 << 20;
// Bounds inside an EXEC payload.
inline constexpr size_t kMaxExecArgs = 4096;
// Connection-level and session error texts are cut to this many bytes.
inline constexpr size_t kMaxErrorText = 512;

enum class FrameType : uint8_t {
  kHello = 1,
  kExec = 2,
  kStarted = 3,
  kStdin = 4,
  kStdinClose = 5,
  kStdout = 6,
  kStderr = 7,
  kResize = 8,
  kSignal = 9,
  kExit = 10,
  kConnect = 11,
  kConnected = 12,
  kConnectFailed = 13,
  kData = 14,
  kShutWr = 15,
  kClose = 16,
  kWindow = 17,
  kError = 18,
  kSpawn = 19,
};
// Whether `t` is one of the types above.
bool KnownFrameType(uint8_t t);
const char* FrameTypeName(FrameType t);

// Flow-controlled streams, named in WINDOW frames.
enum class StreamId : uint8_t {
  kStdin = 0,   // STDIN, host to guest
  kStdout = 1,  // STDOUT, guest to host
  kStderr = 2,  // STDERR, guest to host
  kToGuest = 3,  // DATA, host to guest
  kToHost = 4,   // DATA, guest to host
};

struct Frame {
  FrameType type = FrameType::kError;
  uint32_t session = 0;
  std::string payload;
};

// Appends one encoded frame to `out`.
void AppendFrame(std::string* out, FrameType type, uint32_t session, std::string_view payload);
std::string EncodeFrame(FrameType type, uint32_t session, std::string_view payload);

// Splits a byte stream into frames. Holds at most one partial frame plus the
// last chunk fed; a header with an unknown type or a payload over
// `max_payload` fails the decoder for good.
class FrameDecoder {
 public:
  explicit FrameDecoder(uint32_t max_payload);
  // Appends received bytes. Feed at most a read buffer's worth, then drain
  // with Next() before feeding again.
  void Feed(std::string_view data);
  // Takes the next complete frame into `out`. False when none is complete
  // yet or the stream is broken (then failed() is true and error() says why).
  bool Next(Frame* out);
  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  uint32_t max_payload_;
  std::string buf_;
  size_t pos_ = 0;
  std::string error_;
};

// Payloads. Each Decode* returns false on a malformed payload.

struct HelloMsg {
  uint32_t version = kProtocolVersion;
  uint32_t window = 0;       // host to guest: bytes in flight per stream
  uint32_t max_payload = 0;  // host to guest: largest payload either side sends
  std::string agent;         // guest to host: "kvcri-agent <version>"
};
std::string EncodeHello(const HelloMsg& m);
bool DecodeHello(std::string_view p, HelloMsg* m);

struct ExecMsg {
  std::vector<std::string> argv;
  std::vector<std::string> env;
  bool tty = false;
  bool stdin = false;
  uint16_t width = 0, height = 0;
};
std::string EncodeExec(const ExecMsg& m);
// Rejects an empty argv, more than kMaxExecArgs entries and NUL bytes.
bool DecodeExec(std::string_view p, ExecMsg* m);

struct ResizeMsg {
  uint16_t width = 0, height = 0;
};
std::string EncodeResize(const ResizeMsg& m);
bool DecodeResize(std::string_view p, ResizeMsg* m);

std::string EncodeU32(uint32_t v);  // SIGNAL{signo}, STARTED{pid}
bool DecodeU32(std::string_view p, uint32_t* v);
std::string EncodeU16(uint16_t v);  // CONNECT{port}
bool DecodeU16(std::string_view p, uint16_t* v);

struct ExitMsg {
  bool signaled = false;
  uint32_t value = 0;  // exit code or signal number
};
std::string EncodeExit(const ExitMsg& m);
bool DecodeExit(std::string_view p, ExitMsg* m);

// SPAWN. Paths are absolute, without "..".
struct SpawnMsg {
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string cwd;  // empty: /
  std::string stdout_path, stderr_path, exit_path;
  // Optional: a cgroup v2 directory whose memory.events oom_kill count goes
  // into the exit file, and which is removed then (a container's cgroup
  // parent: crun removes the container's own cgroup when it exits).
  std::string oom_cgroup;
};
std::string EncodeSpawn(const SpawnMsg& m);
bool DecodeSpawn(std::string_view p, SpawnMsg* m);

// What the exit file says: the status as in EXIT, and the OOM kills counted
// in the spawn's oom_cgroup (0 without one).
struct ExitFile {
  bool signaled = false;
  uint32_t value = 0;  // exit code or signal number
  uint32_t oom_kills = 0;
  int code() const { return signaled ? 128 + static_cast<int>(value) : static_cast<int>(value); }
};
// "exit_code=<n>\nsignal=<n>\noom_kill=<n>\n" (signal 0 when it exited by itself).
std::string ExitFileText(const ExitFile& e);
// Parses what ExitFileText wrote; false for anything else (the file is the
// guest's: untrusted).
bool ParseExitFile(std::string_view text, ExitFile* e);


struct WindowMsg {
  StreamId stream = StreamId::kStdin;
  uint32_t bytes = 0;
};
std::string EncodeWindow(const WindowMsg& m);
bool DecodeWindow(std::string_view p, WindowMsg* m);

// An error text from the peer, cut to kMaxErrorText bytes with anything but
// printable ASCII replaced by '?', fit for logs and status messages.
std::string SanitizeText(std::string_view p);

}  // namespace kvcri::runtime::agent
