// StreamingServerOptions from the [streaming] section of config.toml (what the daemon starts the server with).
#pragma once

#include "absl/status/statusor.h"
#include "config/config.h"
#include "cri/streaming/streaming_server.h"

namespace kvcri::streaming {

// The options for `cfg` (already validated by config::ParseConfig), checking
// what only the running host can tell: the TLS files exist and are readable
// (errors name the config key). A non-loopback address without TLS is
// allowed but logged as a warning: anyone who can reach the port and learn a
// token could run it.
absl::StatusOr<StreamingServerOptions> StreamingOptionsFromConfig(const config::StreamingConfig& cfg);

}  // namespace kvcri::streaming
