// A mixed Pod: a plain-image init container (in the Pod micro-VM) writes a marker onto a block volume, then the Pod's VM-disk container boots and reads it from that disk.
//
// The KubeVirt DataVolume pattern: an importer fills a block PVC before the
// VM starts. Also: a plain sidecar beside the running VM is refused, saying why.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "test/client/exec_helpers.h"
#include "test/client/loop_device.h"
#include "test/client/oci_layout.h"
#include "test/client/pod_helpers.h"
#include "test/client/test_daemon.h"

namespace kvcri::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const fs::path kMicroVmDir = KVCRI_MICROVM_DIR;
constexpr char kBusybox[] = "kvcri.test/busybox:1";

void AddDevice(pb::ContainerConfig& c, const std::string& container_path, const std::string& host_path,
               const std::string& permissions) {
  pb::Device* d = c.add_devices();
  d->set_container_path(container_path);
  d->set_host_path(host_path);
  d->set_permissions(permissions);
}

TEST(MixedPod, APlainInitContainerFillsABlockVolumeTheVmThenReads) {
  RequireIntegrationEnvironment(/*need_guest_images=*/true);
  TestDaemon::Options o;
  o.extra_config = "[microvm]\nkernel = \"" + (kMicroVmDir / "vmlinuz").string() + "\"\ninitramfs = \"" +
                   (kMicroVmDir / "initramfs.img").string() + "\"\n";
  TestDaemon d(o);
  d.Start();
  ImportGuestImages(d);
  const fs::path layout = d.dir() / "busybox-layout";
  WriteLayout(layout, {BusyboxLayer()});
  std::string out;
  ASSERT_EQ(d.RunSubcommand({"images", "import", layout.string(), kBusybox}, &out), 0) << out;
  LoopDevice disk(d.dir() / "pvc.img", "EMPTY");
  ASSERT_FALSE(disk.dev().empty());

  pb::PodSandboxConfig sandbox = SandboxConfig("mixed", d.log_dir());
  pb::RunPodSandboxRequest run;
  *run.mutable_config() = sandbox;
  run.set_runtime_handler("kubevirt");
  pb::RunPodSandboxResponse ran;
  grpc::Status s = d.runtime().RunPodSandbox(Ctx(std::chrono::seconds(60)).get(), run, &ran);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const std::string pod = ran.pod_sandbox_id();

  // The importer: a plain init container writing the first sector.
  pb::ContainerConfig init;
  init.mutable_metadata()->set_name("importer");
  init.mutable_image()->set_image(kBusybox);
  init.set_log_path("importer/0.log");
  init.add_command("/bin/sh");
  init.add_command("-c");
  init.add_command("printf 'MARKER-FROM-INIT\\n' | dd of=/dev/xvdb bs=512 count=1 conv=sync,fsync && echo imported");
  AddDevice(init, "/dev/xvdb", disk.dev(), "rwm");
  std::string init_id;
  s = CreateContainerIn(d, pod, sandbox, init, &init_id, std::chrono::seconds(240));
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << d.DaemonLog();
  pb::StartContainerRequest start;
  start.set_container_id(init_id);
  pb::StartContainerResponse started;
  s = d.runtime().StartContainer(Ctx(std::chrono::seconds(60)).get(), start, &started);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(WaitForContainerState(d, init_id, pb::CONTAINER_EXITED, std::chrono::seconds(90)));
  const fs::path init_log = fs::path(sandbox.log_directory()) / "importer/0.log";
  EXPECT_EQ(GetContainerStatus(d, init_id).status().exit_code(), 0) << ReadFileOrEmpty(init_log);
  EXPECT_THAT(ReadFileOrEmpty(init_log), HasSubstr("imported"));
  EXPECT_EQ(disk.FirstSector(), "MARKER-FROM-INIT\n") << "the init container's write is on the volume";

  // The VM container boots on the same Pod network, the volume read-only
  // (the test guest writes every read-write disk it finds).
  pb::ContainerConfig vm = VmContainerConfig("vm", kKernelImage);
  AddDevice(vm, "/dev/xvdb", disk.dev(), "r");
  std::string vm_id;
  s = CreateContainerIn(d, pod, sandbox, vm, &vm_id);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << d.DaemonLog();
  EXPECT_FALSE(fs::exists(d.root() / "pods" / pod)) << "the micro-VM gave the Pod's network to the VM";
  start.set_container_id(vm_id);
  s = d.runtime().StartContainer(Ctx(std::chrono::seconds(120)).get(), start, &started);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const fs::path vm_log = fs::path(sandbox.log_directory()) / "vm/0.log";
  ASSERT_TRUE(WaitForFileContains(vm_log, "KUBEVIRT-CRI-GUEST-VOLUMES-DONE", std::chrono::seconds(240)))
      << ReadFileOrEmpty(vm_log);
  EXPECT_THAT(ReadFileOrEmpty(vm_log), HasSubstr("KUBEVIRT-CRI-GUEST-ROBLK /dev/xvdb"));
  ASSERT_TRUE(WaitForExec(d, vm_id, std::chrono::seconds(120)).ok());
  absl::StatusOr<pb::ExecSyncResponse> read = ExecSync(d, vm_id, {"head", "-c", "16", "/dev/xvdb"});
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->stdout(), "MARKER-FROM-INIT");

  // A plain sidecar beside the running VM: refused, saying why.
  pb::ContainerConfig sidecar = init;
  sidecar.mutable_metadata()->set_name("sidecar");
  sidecar.set_log_path("sidecar/0.log");
  sidecar.clear_devices();
  std::string sidecar_id;
  s = CreateContainerIn(d, pod, sandbox, sidecar, &sidecar_id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("sidecars beside a VM-disk container are not supported"));

  RemovePod(d, pod);
  ExpectNoLeftovers(d);
}

}  // namespace
}  // namespace kvcri::testing
