// PoolGuestAgents: the exec dispatcher's GuestAgents over kvcri-agent's client pool and qemu-guest-agent through libvirt.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cri/exec_dispatch.h"
#include "runtime/agent/agent_client.h"
#include "runtime/qemu_guest_agent.h"

namespace kvcri::cri {

// What both composition roots (the daemon, each Pod's containerd shim) hand
// the dispatcher. Not owned; both must outlive this object.
class PoolGuestAgents final : public GuestAgents {
 public:
  PoolGuestAgents(runtime::agent::AgentPool* pool, runtime::QemuGuestAgent* qga) : pool_(pool), qga_(qga) {}
  absl::StatusOr<std::shared_ptr<runtime::agent::AgentClient>> Agent(const std::string& key,
                                                                      const std::filesystem::path& socket) override {
    return pool_->Get(key, socket);
  }
  void ForgetAgent(const std::string& key) override { pool_->Forget(key); }
  absl::Status QgaPing(std::string_view domain, absl::Duration timeout) override { return qga_->Ping(domain, timeout); }
  absl::StatusOr<runtime::GuestExecResult> QgaExec(std::string_view domain, const std::vector<std::string>& argv,
                                                   std::string_view input, absl::Time deadline) override {
    return qga_->Exec(domain, argv, input, deadline);
  }

 private:
  runtime::agent::AgentPool* const pool_;
  runtime::QemuGuestAgent* const qga_;
};

}  // namespace kvcri::cri
