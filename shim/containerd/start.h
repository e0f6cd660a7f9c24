// The `start` and `delete` subcommands of containerd-shim-kubevirt-v1: find or launch the Pod's shim, clean up after a lost one.
#pragma once

#include <filesystem>
#include <string>

#include "absl/status/statusor.h"
#include "shim/containerd/bootstrap.h"

namespace kvcri::shim::containerd {

// `start` (docs/containerd-shim.md section 1): from the bundle's config.json
// the Pod's grouping id, from it the socket address. When a shim already
// serves that socket (a container task of a Pod whose sandbox task started
// it) the address is reused; a stale socket file is removed. Otherwise it
// listens there and launches `self` without the subcommand, the listening
// socket as fd 3, stdio on /dev/null (containerd waits for our stdout to
// close), its own session, oom_score_adj one above ours. Either way the
// address goes to <bundle>/address and is returned for stdout.
absl::StatusOr<std::string> StartShim(const ShimArgs& args, const std::filesystem::path& self,
                                      const std::filesystem::path& bundle);

// `delete`, run by containerd when it lost the shim or after a task Delete:
// when nobody serves the socket named in <bundle>/address any more (a live
// shim of the Pod keeps it and its records), removes it and cleans up after
// the lost shim (CleanUpLostShim, with the node's config). Returns what goes
// to stdout: a DeleteResponse with the task's exit (137 when it has none:
// the pause process dies with the shim by SIGKILL).
absl::StatusOr<std::string> DeleteShim(const ShimArgs& args, const std::filesystem::path& bundle);

}  // namespace kvcri::shim::containerd
