// Runs a TLS connection through a socketpair, so test code that speaks over a plain fd (the SPDY session, an HTTP exchange) can use https.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "config/base/unique_fd.h"

namespace kvcri::testing {

// Client side: the handshake over `tcp`, verifying the server's certificate
// against the PEM CA bundle `ca_file` and the name or IP `host`. Returns our
// end of a socketpair whose bytes a background thread carries through TLS;
// it ends (and closes `tcp`) when either side closes.
absl::StatusOr<base::UniqueFd> TlsClientPipe(base::UniqueFd tcp, const std::string& host, const std::string& ca_file);
// Server side, with a PEM certificate chain and key.
absl::StatusOr<base::UniqueFd> TlsServerPipe(base::UniqueFd tcp, const std::string& cert_file,
                                             const std::string& key_file);

}  // namespace kvcri::testing
