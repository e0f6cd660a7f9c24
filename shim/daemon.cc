#include "shim/daemon.h"

#include <sys/stat.h>

#include "config/base/str.h"
#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "cri/runtime_service.h"
#include "shim/socket.h"

namespace kvcri::shim {

struct Daemon::Modules {};

Daemon::Daemon(config::Config config) : config_(std::move(config)) {}

Daemon::~Daemon() { Shutdown(); }

absl::Status Daemon::Start() {
  RETURN_IF_ERROR(base::MakeDirs(config_.root, 0711));
  RETURN_IF_ERROR(base::MakeDirs(config_.state_dir, 0711));
  modules_ = std::make_unique<Modules>();

  cri::RuntimeDeps deps;
  deps.config = &config_;
  deps.hypervisor_ready = [] { return absl::UnavailableError("not wired yet"); };
  runtime_service_ = std::make_unique<cri::RuntimeService>(deps);
  image_service_ = std::make_unique<cri::ImageService>(deps);

  RETURN_IF_ERROR(PrepareSocketPath(config_.listen));
  grpc::ServerBuilder builder;
  builder.AddListeningPort(base::StrCat("unix:", config_.listen.string()),
                           grpc::InsecureServerCredentials());
  builder.RegisterService(runtime_service_.get());
  builder.RegisterService(image_service_.get());
  // kubelet sends large ListContainers/ListPodSandbox answers back; match its 16 MiB.
  builder.SetMaxReceiveMessageSize(16 << 20);
  builder.SetMaxSendMessageSize(16 << 20);
  // The socket is born 0660 (no window with a wider mode), then set explicitly.
  mode_t old_umask = ::umask(0117);
  server_ = builder.BuildAndStart();
  ::umask(old_umask);
  if (server_ == nullptr) {
    return absl::UnavailableError(base::StrCat("cannot listen on \"", config_.listen.string(), "\""));
  }
  RETURN_IF_ERROR(SetSocketMode(config_.listen, 0660));
  base::LogInfo("serving CRI", {{"socket", config_.listen.string()},
                               {"libvirt", config_.LibvirtUri()}});
  return absl::OkStatus();
}

void Daemon::Shutdown() {
  if (server_ != nullptr) {
    // In-flight calls get 2 s; idle client connections (kubelet keeps one) hold
    // Shutdown until the deadline, so it stays short.
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_.reset();
    base::LogIfError(base::RemoveFile(config_.listen), "remove socket");
  }
  modules_.reset();
}

}  // namespace kvcri::shim
