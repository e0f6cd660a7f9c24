// Listening and connecting unix sockets for ttrpc: the shim's socket, tests' servers.
#pragma once

#include <sys/types.h>

#include <string_view>

#include "absl/status/statusor.h"
#include "config/base/unique_fd.h"

namespace kvcri::shim::ttrpc {

// A listening unix stream socket bound at the filesystem path `path`, mode
// `mode` (the shim's is 0600, as containerd's NewSocket makes it).
// ALREADY_EXISTS when something is bound there (EADDRINUSE): the caller
// decides whether it is a live server or a stale file. Close-on-exec is off
// only where the caller clears it (the shim hands the socket to its child).
absl::StatusOr<base::UniqueFd> ListenUnix(std::string_view path, mode_t mode);

// A stream socket connected to the unix socket at the filesystem path
// `path`; UNAVAILABLE when nothing accepts there.
absl::StatusOr<base::UniqueFd> ConnectUnix(std::string_view path);

// True when a server accepts connections at `path` now.
bool UnixSocketAnswers(std::string_view path);

}  // namespace kvcri::shim::ttrpc
