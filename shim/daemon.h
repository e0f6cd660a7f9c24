// Daemon: owns every module, the CRI services and the gRPC server of the running daemon.
#pragma once

#include <memory>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "config/config.h"

namespace kvcri::shim {

// Owns everything the running daemon has: modules, services, gRPC server.
// Built once by main(); no global state.
class Daemon {
 public:
  explicit Daemon(config::Config config);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Opens the modules, recovers state, and starts serving on the socket.
  absl::Status Start();
  // Stops serving. VMs keep running: they are not tied to our lifetime.
  void Shutdown();

 private:
  struct Modules;
  // [metrics] address set: the CRI call interceptor on `builder`, the state
  // gauges and the HTTP endpoint.
  absl::Status StartMetrics(grpc::ServerBuilder& builder);

  config::Config config_;
  std::unique_ptr<Modules> modules_;
  std::unique_ptr<grpc::Service> runtime_service_;
  std::unique_ptr<grpc::Service> image_service_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace kvcri::shim
