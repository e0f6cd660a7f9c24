// CleanUpLostShim: what `delete` does when the Pod's shim is gone (killed): the records' VMs, wiring and state.
#pragma once

// A shim killed with SIGKILL leaves its Pod's VM running (QEMU is libvirt's
// daemon, not the shim's child) and its records on disk. containerd notices
// the lost connection and runs `containerd-shim-kubevirt-v1 delete` for each
// of the Pod's tasks; each run opens the Pod's orchestrator from the records
// (ShimPod::Open: the embedded libvirt root finds the running domain) and
// finishes what the shim would have done: a container task's VM is forced
// off and its record, overlay and rootfs mount removed; the sandbox task
// takes the Pod's wiring, remaining records and state directories with it.
// Runs for one Pod are serialized by a lock file, as containerd runs the
// deletes of a Pod's tasks concurrently.

#include <filesystem>
#include <string>

#include "absl/status/statusor.h"
#include "config/config.h"
#include "shim/containerd/vm_tasks.h"

namespace kvcri::shim::containerd {

// `task_id` of the bundle at `bundle` (its config.json text `config_json`).
// The exit containerd reports: the VM's recorded exit (a forced stop: 137),
// or 137 now when nothing of the task is left (the pause process died with
// its shim by SIGKILL).
absl::StatusOr<VmExit> CleanUpLostShim(const config::Config& node, const std::string& task_id,
                                       std::string_view config_json, const std::filesystem::path& bundle);

}  // namespace kvcri::shim::containerd
