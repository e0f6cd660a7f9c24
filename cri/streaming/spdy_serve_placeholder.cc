// Placeholder until the SPDY engineer's ServeSpdyConnection lands: closes the connection (dropped at merge).
#include "cri/streaming/spdy_serve.h"

namespace kvcri::streaming {

void ServeSpdyConnection(base::UniqueFd fd, std::string, const SpdyTarget&, StreamingBackend*, const StreamLimits&) {
  fd.Reset();
}

}  // namespace kvcri::streaming
