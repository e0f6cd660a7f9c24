// A minimal CRI client for scripts that cannot count on crictl (CI has none):
//   cri_probe SOCKET version              prints "RuntimeName: <name>"
//   cri_probe SOCKET status               prints "<Condition>=<true|false> <reason>" lines
//   cri_probe SOCKET run-vm NAME IMAGE    RunPodSandbox + CreateContainer + StartContainer
//                                         (handler "kubevirt"); prints "<pod id> <container id>"
// Exit code 0 on success, 1 with the gRPC error on stderr otherwise.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include "cri/proto/api.grpc.pb.h"

namespace pb = ::runtime::v1;

namespace {

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  ctx->set_wait_for_ready(true);
  return ctx;
}

int Fail(const char* what, const grpc::Status& s) {
  std::cerr << "cri_probe: " << what << ": " << s.error_message() << "\n";
  return 1;
}

int RunVm(pb::RuntimeService::Stub& rt, const std::string& name, const std::string& image) {
  pb::RunPodSandboxRequest run;
  pb::PodSandboxConfig* pod = run.mutable_config();
  pod->mutable_metadata()->set_name(name);
  pod->mutable_metadata()->set_namespace_("default");
  pod->mutable_metadata()->set_uid("uid-" + name);
  pod->set_hostname(name);
  pod->set_log_directory("/tmp/pods/" + name);
  run.set_runtime_handler("kubevirt");
  pb::RunPodSandboxResponse run_resp;
  if (grpc::Status s = rt.RunPodSandbox(Ctx().get(), run, &run_resp); !s.ok()) return Fail("RunPodSandbox", s);
  pb::CreateContainerRequest create;
  create.set_pod_sandbox_id(run_resp.pod_sandbox_id());
  create.mutable_config()->mutable_metadata()->set_name("vm");
  create.mutable_config()->mutable_image()->set_image(image);
  create.mutable_config()->set_log_path("vm/0.log");
  create.mutable_config()->mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(256ll << 20);
  *create.mutable_sandbox_config() = *pod;
  pb::CreateContainerResponse create_resp;
  if (grpc::Status s = rt.CreateContainer(Ctx().get(), create, &create_resp); !s.ok()) {
    return Fail("CreateContainer", s);
  }
  pb::StartContainerRequest start;
  start.set_container_id(create_resp.container_id());
  pb::StartContainerResponse start_resp;
  if (grpc::Status s = rt.StartContainer(Ctx().get(), start, &start_resp); !s.ok()) return Fail("StartContainer", s);
  std::cout << run_resp.pod_sandbox_id() << " " << create_resp.container_id() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: cri_probe SOCKET version|status|run-vm NAME IMAGE\n";
    return 2;
  }
  auto channel = grpc::CreateChannel(std::string("unix:") + argv[1], grpc::InsecureChannelCredentials());
  auto rt = pb::RuntimeService::NewStub(channel);
  std::string cmd = argv[2];
  if (cmd == "version") {
    pb::VersionResponse resp;
    if (grpc::Status s = rt->Version(Ctx().get(), pb::VersionRequest(), &resp); !s.ok()) return Fail("Version", s);
    std::cout << "RuntimeName: " << resp.runtime_name() << "\nRuntimeApiVersion: " << resp.runtime_api_version()
              << "\n";
    return 0;
  }
  if (cmd == "status") {
    pb::StatusResponse resp;
    if (grpc::Status s = rt->Status(Ctx().get(), pb::StatusRequest(), &resp); !s.ok()) return Fail("Status", s);
    for (const pb::RuntimeCondition& c : resp.status().conditions()) {
      std::cout << c.type() << "=" << (c.status() ? "true" : "false") << " " << c.reason() << "\n";
    }
    return 0;
  }
  if (cmd == "run-vm" && argc == 5) return RunVm(*rt, argv[3], argv[4]);
  std::cerr << "usage: cri_probe SOCKET version|status|run-vm NAME IMAGE\n";
  return 2;
}
