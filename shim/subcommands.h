// kubevirt-cri subcommands run beside the daemon (`images import`, `images list`).
#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace kvcri::shim {

// Runs `images import DIR REF`, `images list`…; returns the process exit code.
// Works beside a running daemon: it only touches the image store, under its lock.
int RunSubcommand(const config::Config& config, const std::vector<std::string>& args);

}  // namespace kvcri::shim
