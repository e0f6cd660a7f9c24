// The shim binary's start/delete plumbing: containerd's flags, socket address, grouping id, address file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"

namespace kvcri::shim::containerd {

// What containerd put on the command line (docs/containerd-shim.md, section 1
// "How containerd runs it"). Flag names as containerd spells them.
struct ShimArgs {
  std::string namespace_name;                 // -namespace
  std::string address;                        // -address: containerd's gRPC socket path
  std::string publish_binary = "containerd";  // -publish-binary (Go's default)
  std::string id;                             // -id: the task id
  std::string bundle;                         // -bundle (delete; cwd is the bundle too)
  std::string socket;                         // -socket: serve here instead of fd 3
  bool debug = false;                         // -debug
  bool version = false;                       // -v: print the version and exit
  std::string subcommand;                     // "start", "delete", or empty: serve
};

inline constexpr std::string_view kSubcommandStart = "start";
inline constexpr std::string_view kSubcommandDelete = "delete";

// Parses argv (argv[0] is the program) the way Go's `flag` package does, as
// containerd's own shims are parsed: one or two dashes, `-flag value` or
// `-flag=value`; the bool flags -debug and -v take no value (`-debug=false`
// works); `--` ends the flags; the first word that is not a flag ends them
// and is the subcommand. Stricter than Go where a quiet mistake would start
// the wrong thing: an unknown flag, a value missing, an unknown subcommand or
// words after it are InvalidArgument naming the offender; -namespace is
// required (as in Go's shim), -id for start and delete, -address for start.
// Nothing is required with -v.
absl::StatusOr<ShimArgs> ParseShimArgs(int argc, const char* const* argv);

// Go's path.Clean (what filepath.Clean is on Linux): collapses repeated
// slashes, drops "." elements and trailing slashes, resolves ".." lexically;
// "" becomes ".".
std::string CleanPath(std::string_view path);

// Go's filepath.Join of three elements: the non-empty ones joined by "/",
// then CleanPath; "" when all are empty.
std::string JoinPath(std::string_view a, std::string_view b, std::string_view c);

// Where containerd's shims keep their sockets: the compiled-in
// defaults.DefaultStateDir + "/s", whatever containerd's configured state dir.
inline constexpr std::string_view kSocketDir = "/run/containerd/s";

// containerd's socketPathLimit: the longest socket path it accepts.
inline constexpr size_t kSocketPathLimit = 106;

// The address the Pod's shim listens on, derived as runc's shim derives it:
// "unix://" + kSocketDir + "/" + lowercase hex sha256(JoinPath(address, ns,
// group_id)). Deterministic, so every task of the Pod finds the socket with
// no state shared between `start` runs; containerd's -address in the hash
// keeps the shims of two containerds apart. A filesystem socket, never an
// abstract one (CVE-2020-15257).
// InvalidArgument when an input is empty or the path exceeds kSocketPathLimit.
absl::StatusOr<std::string> SocketAddress(std::string_view address, std::string_view ns, std::string_view group_id);

// The filesystem path of a "unix://<path>" address. An address without
// "unix://" is what containerd dials as an abstract socket: refused, since
// any process in the network namespace can connect to those
// (CVE-2020-15257). Refused too: a relative or empty path, a NUL byte, a path
// longer than kSocketPathLimit.
absl::StatusOr<std::string> SocketPathOf(std::string_view address);

// The largest config.json we read. A real OCI spec is a few KiB (CRI's
// biggest are tens); the bound keeps a broken or hostile bundle from making
// `start`, which containerd waits on, allocate without limit.
inline constexpr size_t kMaxConfigJsonBytes = 4 << 20;

// The id the shim's socket is grouped by, from the text of the task's
// config.json: the first annotation present of io.containerd.runc.v2.group
// and io.kubernetes.cri.sandbox-id (CRI sets that on the sandbox and on every
// container of the Pod, so one shim serves the Pod), else `task_id`.
// InvalidArgument naming config.json when the text is above
// kMaxConfigJsonBytes, is not JSON, has a non-object `annotations` or a
// non-string annotation value, or when the chosen id is empty.
absl::StatusOr<std::string> GroupingId(std::string_view config_json, std::string_view task_id);

// Reads <bundle_dir>/config.json, refusing (InvalidArgument) one larger than
// kMaxConfigJsonBytes without reading all of it.
absl::StatusOr<std::string> ReadBundleConfig(const std::filesystem::path& bundle_dir);

// Writes `address` to <bundle_dir>/address atomically (temp file in the
// bundle, fsync, rename, fsync of the directory), mode 0644 as containerd's
// shims leave it: containerd reads it after its own restart to reconnect.
// `address` must be a filesystem socket address (SocketPathOf).
absl::Status WriteAddressFile(const std::filesystem::path& bundle_dir, std::string_view address);

// The socket path of the address WriteAddressFile left in <bundle_dir>/address
// (read up to 4 KiB); NotFound when there is no such file, InvalidArgument
// when what it holds is not a filesystem socket address.
absl::StatusOr<std::string> SocketPathInAddressFile(const std::filesystem::path& bundle_dir);

// runc's exit status for a task `delete` had to kill: 128 + SIGKILL.
inline constexpr uint32_t kKilledExitStatus = 137;

// `t` as a protobuf Timestamp, clamped to the range Timestamp allows
// (0001-01-01 to 9999-12-31): containerd's Go decoder refuses a time outside
// it, which would fail the whole message.
void ToTimestamp(absl::Time t, google::protobuf::Timestamp* out);

// The `delete` subcommand's stdout: a serialized task DeleteResponse, no
// framing (containerd parses the whole output as one message).
std::string EncodeDeleteResponse(uint32_t pid, uint32_t exit_status, absl::Time exited_at);

}  // namespace kvcri::shim::containerd
