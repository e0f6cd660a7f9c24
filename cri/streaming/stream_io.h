// The protocol-neutral seam between the streaming server (SPDY, WebSocket) and what runs an exec, attach or port-forward.
#pragma once

// The streaming server (cri/streaming/streaming_server.h) speaks SPDY/3.1 and
// WebSocket to kubelet or crictl; whatever protocol a connection uses, a
// backend (cri/exec_dispatch.h) sees only these interfaces. Every call may
// block; each session runs on a thread of its own, so a slow guest delays
// only its own session.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvcri::streaming {

// Bytes from the client (stdin, a port-forward data stream).
class ByteReader {
 public:
  virtual ~ByteReader() = default;
  // Blocks until at least one byte, the end of the stream (returns 0) or an
  // error (the client reset the stream or went away: Cancelled/Unavailable).
  virtual absl::StatusOr<size_t> Read(char* buf, size_t len) = 0;
  // Makes a blocked Read, and every later one, return Cancelled. The backend
  // calls it when its work ended while the client still sends (the process
  // exited, the Pod side of a forwarded connection failed), so the thread
  // pumping this stream can be joined before the backend call returns: the
  // stream object must not be used after that. From any thread; idempotent.
  virtual void CancelRead() = 0;
};

// Bytes to the client (stdout, stderr, a port-forward data stream).
class ByteWriter {
 public:
  virtual ~ByteWriter() = default;
  // Blocks while the client's flow-control window is full; an error when the
  // stream or the connection is gone (the backend then stops its work).
  virtual absl::Status Write(std::string_view data) = 0;
  // Half-close: no more data from us (SPDY FLAG_FIN, WebSocket: nothing to
  // send, the channel just stays quiet). Idempotent.
  virtual absl::Status CloseWrite() = 0;
};

// A bidirectional stream (one forwarded TCP connection).
class ByteStream : public ByteReader, public ByteWriter {};

struct TerminalSize {
  uint16_t width = 0;   // columns
  uint16_t height = 0;  // rows
};

// The client's side of one exec or attach session. Streams the request did
// not ask for are null; stderr is always null with a tty (the pty merges it).
class RemoteCommandStreams {
 public:
  virtual ~RemoteCommandStreams() = default;
  virtual ByteReader* Stdin() = 0;
  virtual ByteWriter* Stdout() = 0;
  virtual ByteWriter* Stderr() = 0;
  // Blocks until the client sends a terminal size; nullopt once the resize
  // stream ended, there is none (tty=false) or the session is over.
  virtual std::optional<TerminalSize> NextResize() = 0;
  // Ends the session's reads: Stdin()->CancelRead() and every blocked or
  // later NextResize returns nullopt. The backend calls it once the command
  // ended, to join its stdin and resize threads before it returns. From any
  // thread; idempotent.
  virtual void StopReading() = 0;
  // Runs `cb` once when the client's connection is gone (at once if it
  // already is), from any thread; the backend uses it to cancel its work.
  virtual void OnClientGone(std::function<void()> cb) = 0;
};

// What a token stands for (the validated CRI requests).
struct ExecSpec {
  std::string container_id;
  std::vector<std::string> cmd;
  bool tty = false;
  bool stdin = false;
  bool stdout = false;
  bool stderr = false;
};

struct AttachSpec {
  std::string container_id;
  bool tty = false;
  bool stdin = false;
  bool stdout = false;
  bool stderr = false;
};

struct PortForwardSpec {
  std::string pod_sandbox_id;
  // Ports the request named; empty allows any port the client asks for (what
  // kubelet sends: kubectl names ports per stream, not in the CRI request).
  std::vector<int32_t> ports;
};

// How an exec or attach ended; the protocol writes it to the error stream
// (remotecommand v4+: a metav1.Status JSON; v1-v3: the message as text).
struct CommandResult {
  // Not OK: the command could not run or the session failed (message goes to
  // the client as is, so it must not carry secrets).
  absl::Status status;
  // With an OK status: the exit code; nonzero becomes reason NonZeroExitCode.
  int exit_code = 0;
};

// Runs what a token stands for. Implemented by cri/ (the exec dispatcher);
// the streaming server calls it on the session's own thread, once the
// client's streams are all there, and the call lasts as long as the session.
class StreamingBackend {
 public:
  virtual ~StreamingBackend() = default;
  virtual CommandResult Exec(const ExecSpec& spec, RemoteCommandStreams& streams) = 0;
  virtual CommandResult Attach(const AttachSpec& spec, RemoteCommandStreams& streams) = 0;
  // One forwarded connection to `port` of the Pod: copies both ways until
  // both directions are closed or either side fails. The returned error goes
  // to the port's error stream (SPDY) or channel (WebSocket).
  virtual absl::Status PortForward(const std::string& pod_sandbox_id, uint16_t port, ByteStream& stream) = 0;
};

// Bounds on what a client may make us hold (per connection).
struct StreamLimits {
  size_t max_frame_bytes = 1 << 20;         // a SPDY frame or WebSocket message
  size_t max_header_block_bytes = 64 << 10;  // a SPDY header block, decompressed
  size_t max_streams = 256;                 // concurrently open streams
  // Bytes we accept per stream ahead of the backend reading them (our SPDY
  // receive window; WebSocket: the read buffer per channel).
  uint32_t receive_window = 256 << 10;
  // Seconds from the upgrade until the client opened all expected streams
  // (kubelet's streamCreationTimeout: 30 s).
  int stream_creation_timeout_seconds = 30;
  // A connection without any frame for this long is closed (kubelet's
  // streaming idle timeout: 4 h).
  int idle_timeout_seconds = 4 * 3600;
};

}  // namespace kvcri::streaming

namespace kvcri::streaming {

// The remotecommand v4+ error-stream message for `result` (a metav1.Status
// JSON, as kubelet writes it): {"metadata":{},"status":"Success"}; a nonzero
// exit code: reason NonZeroExitCode with cause {"reason":"ExitCode","message":"<n>"}
// (client-go turns it into the command's exit code); an error: reason
// InternalError, code 500, the status message.
std::string StatusJson(const CommandResult& result);
// v1-v3: the error stream carries only a failure's text; empty on success
// (those clients cannot learn an exit code).
std::string LegacyErrorText(const CommandResult& result);
// One resize message, {"Width":80,"Height":24}; InvalidArgument when it is
// not such an object (fields missing or out of uint16 range are errors).
absl::StatusOr<TerminalSize> ParseTerminalSize(std::string_view json);

}  // namespace kvcri::streaming
