// The CRI unix socket's path preparation and mode.
#pragma once

#include <filesystem>

#include "absl/status/status.h"

namespace kvcri::shim {

// Makes `path` free for a new listening unix socket: creates the parent
// directory, removes a stale socket left by a dead daemon, and refuses when
// a live daemon still answers there or the path is not a socket.
absl::Status PrepareSocketPath(const std::filesystem::path& path);

// Sets the socket file's mode (0660: kubelet and the node's admin group).
absl::Status SetSocketMode(const std::filesystem::path& path, mode_t mode);

}  // namespace kvcri::shim
