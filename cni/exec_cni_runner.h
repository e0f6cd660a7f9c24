// ExecCniRunner: the CniRunner that executes the CNI plugins of the node's default network.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "cni/cache.h"
#include "cni/cni_runner.h"
#include "cni/network_config.h"
#include "config/config.h"

namespace kvcri::cni {

struct ExecCniRunnerOptions {
  std::filesystem::path conf_dir;  // where the default network is found
  std::vector<std::filesystem::path> bin_dirs;  // CNI_PATH, searched in order
  std::filesystem::path cache_dir;              // <cache_dir>/results/...
  absl::Duration plugin_timeout = absl::Minutes(1);  // per plugin invocation

  static ExecCniRunnerOptions FromConfig(const config::Config& config);
};

// The real CniRunner: executes the plugins of the default network (the first
// valid config in conf_dir, re-read on every ADD/CHECK) as the CNI spec says.
class ExecCniRunner : public CniRunner {
 public:
  explicit ExecCniRunner(ExecCniRunnerOptions options);

  absl::StatusOr<CniResult> Add(const AttachSpec& spec) override;
  absl::Status Check(const AttachSpec& spec) override;
  absl::Status Del(const AttachSpec& spec) override;
  absl::StatusOr<CniResult> GetCachedResult(
      std::string_view container_id, std::string_view ifname = "eth0") override;

 private:
  struct Invocation;
  // `command` of the network `list` for the attachment `spec`: plugins
  // resolved in the bin dirs, CNI_ARGS and capability args from the spec.
  absl::StatusOr<Invocation> NewInvocation(std::string_view command, const NetworkConfigList& list,
                                           const AttachSpec& spec) const;
  absl::StatusOr<std::string> RunPlugin(const Invocation& inv,
                                        size_t index) const;
  absl::Status DelChain(const Invocation& inv) const;

  const ExecCniRunnerOptions options_;
  ResultCache cache_;
};

}  // namespace kvcri::cni
