// RunInNetns: runs a function inside another network namespace without moving our threads.
#pragma once

#include <filesystem>
#include <functional>

#include "absl/status/status.h"

namespace kvcri::base {

// Runs `fn` on a new thread that first joins the network namespace at
// `netns_path` (setns(CLONE_NEWNET)), and returns what `fn` returned. The
// thread exits afterwards, so no thread of ours is ever left in a foreign
// namespace. Sockets `fn` opens belong to that namespace and stay usable
// from any thread. Needs CAP_SYS_ADMIN. Blocks until `fn` returns.
absl::Status RunInNetns(const std::filesystem::path& netns_path, const std::function<absl::Status()>& fn);

}  // namespace kvcri::base
