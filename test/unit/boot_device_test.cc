// Persistent VMs: the kubevirt-cri.io/boot-device annotation, the boot disk in the VmSpec and domain XML, and the
// node-wide hold on block devices (one writer, by st_rdev) across Pods and daemon restarts.
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cri/validate_volumes.h"
#include "cri/volumes.h"
#include "runtime/domain_xml.h"
#include "test/fakes/cri_harness.h"
#include "test/fakes/scratch_dir.h"

namespace kvcri::cri {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

VolumePlan PlanWith(std::vector<std::string> container_paths) {
  VolumePlan plan;
  for (const std::string& p : container_paths) plan.devices.push_back({p, "/dev/loop9", "rwm", makedev(7, 9)});
  return plan;
}

TEST(BootDeviceIndex, NoAnnotationIsNoBootDevice) {
  absl::StatusOr<std::optional<size_t>> i = BootDeviceIndex({{"other", "x"}}, PlanWith({"/dev/vda"}));
  ASSERT_TRUE(i.ok()) << i.status();
  EXPECT_FALSE(i->has_value());
}

TEST(BootDeviceIndex, NamesTheDeviceByContainerPath) {
  absl::StatusOr<std::optional<size_t>> i =
      BootDeviceIndex({{kBootDeviceAnnotation, "/dev/vdb"}}, PlanWith({"/dev/vda", "/dev/vdb"}));
  ASSERT_TRUE(i.ok()) << i.status();
  EXPECT_EQ(i->value_or(99), 1u);
}

TEST(BootDeviceIndex, AnAnnotationNamingNoDeviceIsInvalidArgumentListingTheDevices) {
  absl::StatusOr<std::optional<size_t>> i =
      BootDeviceIndex({{kBootDeviceAnnotation, "/dev/vdz"}}, PlanWith({"/dev/vda", "/dev/xvdb"}));
  EXPECT_EQ(i.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(i.status().message(), HasSubstr("annotation kubevirt-cri.io/boot-device \"/dev/vdz\""));
  EXPECT_THAT(i.status().message(), HasSubstr("\"/dev/vda\", \"/dev/xvdb\""));

  i = BootDeviceIndex({{kBootDeviceAnnotation, "/dev/vda"}}, VolumePlan{});
  EXPECT_EQ(i.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(i.status().message(), HasSubstr("config.devices: none"));
}

TEST(BootDeviceIndex, AValueThatIsNoAbsolutePathIsInvalidArgument) {
  for (const char* bad : {"", "vda", "/dev/../dev/vda", "/dev/vda/"}) {
    absl::StatusOr<std::optional<size_t>> i = BootDeviceIndex({{kBootDeviceAnnotation, bad}}, PlanWith({"/dev/vda"}));
    EXPECT_EQ(i.status().code(), absl::StatusCode::kInvalidArgument) << "\"" << bad << "\"";
    EXPECT_THAT(i.status().message(), HasSubstr("annotation kubevirt-cri.io/boot-device")) << bad;
  }
}

TEST(DeviceOpensConflict, OnlyReadersShare) {
  EXPECT_FALSE(DeviceOpensConflict("r", "r"));
  EXPECT_FALSE(DeviceOpensConflict("rm", "r"));
  EXPECT_TRUE(DeviceOpensConflict("rwm", "r"));
  EXPECT_TRUE(DeviceOpensConflict("r", "rw"));
  EXPECT_TRUE(DeviceOpensConflict("rwm", "rwm"));
  EXPECT_TRUE(DeviceOpensConflict("", "r")) << "empty permissions mean rwm";
}

TEST(VolumeSeedFiles, TheBootDeviceIsListedAsBootNotAsASpareDisk) {
  VolumePlan plan = PlanWith({"/dev/vda", "/dev/xvdb"});
  std::vector<runtime::VfatFile> files = VolumeSeedFiles(plan, VolumeOptions{}, "/dev/vda");
  ASSERT_EQ(files.size(), 1u);
  EXPECT_THAT(files[0].content, HasSubstr("\nboot vda rw /dev/vda\n"));
  EXPECT_THAT(files[0].content, HasSubstr("\ndisk xvdb rw /dev/xvdb\n"));
  EXPECT_THAT(files[0].content, Not(HasSubstr("disk vda")));
}

class BootDiskSpecTest : public kvcri::testing::ScratchDirTest {
 protected:
  std::string Node(const std::string& name, unsigned minor) {
    std::string p = (dir_ / name).string();
    if (::mknod(p.c_str(), S_IFBLK | 0600, makedev(7, minor)) != 0) {
      ADD_FAILURE() << "mknod of a block device failed (unit tests run as root): " << std::strerror(errno);
    }
    return p;
  }
};

TEST_F(BootDiskSpecTest, TheBootDeviceIsTheFirstDiskUncachedWithBootOrder) {
  std::string data = Node("data", 210), root = Node("root", 211);
  sandbox::ContainerRecord c;
  c.id = "c1";
  c.devices.push_back({"/dev/xvdb", data, "rwm", makedev(7, 210)});
  c.devices.push_back({"/dev/vda", root, "rwm", makedev(7, 211)});
  c.boot.kind = sandbox::BootKind::kDevice;
  c.boot.device = "/dev/vda";
  runtime::VmSpec spec;
  spec.name = "kvcri-c1";
  spec.accel = config::Accelerator::kTcg;
  runtime::DiskSpec seed{"/x/cidata.img", "raw", true, "cidata"};
  spec.disks.push_back(seed);
  ASSERT_TRUE(AddVolumesToVmSpec(c, VolumeOptions{}, &spec).ok());
  ASSERT_EQ(spec.disks.size(), 3u);
  EXPECT_EQ(spec.disks[0].path, root) << "the boot disk is vda";
  EXPECT_TRUE(spec.disks[0].boot);
  EXPECT_TRUE(spec.disks[0].block_device);
  EXPECT_EQ(spec.disks[0].format, "raw");
  EXPECT_EQ(spec.disks[0].cache, "none");
  EXPECT_EQ(spec.disks[0].io, "native");
  EXPECT_FALSE(spec.disks[0].read_only);
  EXPECT_EQ(spec.disks[1].serial, "cidata");
  EXPECT_EQ(spec.disks[2].path, data);
  EXPECT_FALSE(spec.disks[2].boot);

  absl::StatusOr<std::string> xml = runtime::BuildDomainXml(spec);
  ASSERT_TRUE(xml.ok()) << xml.status();
  const std::string vda = xml->substr(xml->find("<disk type='block'"));
  const std::string first = vda.substr(0, vda.find("</disk>"));
  EXPECT_THAT(first, HasSubstr("<source dev='" + root + "'/>"));
  EXPECT_THAT(first, HasSubstr("<target dev='vda' bus='virtio'/>"));
  EXPECT_THAT(
      first,
      HasSubstr("<driver name='qemu' type='raw' cache='none' io='native' discard='unmap' error_policy='enospace'/>"));
  EXPECT_THAT(first, HasSubstr("<boot order='1'/>"));
  EXPECT_THAT(first, Not(HasSubstr("<readonly/>")));
  EXPECT_EQ(xml->find("<boot order="), xml->rfind("<boot order=")) << "one boot disk";
  EXPECT_THAT(*xml, Not(HasSubstr("<kernel>")));
}

TEST_F(BootDiskSpecTest, WithAKernelTheBootDeviceIsVdaWithoutBootOrder) {
  std::string root = Node("root", 212);
  sandbox::ContainerRecord c;
  c.id = "c1";
  c.devices.push_back({"/dev/vda", root, "rwm", makedev(7, 212)});
  c.boot.kind = sandbox::BootKind::kKernel;
  c.boot.device = "/dev/vda";
  runtime::VmSpec spec;
  spec.name = "kvcri-c1";
  spec.kernel = "/k/vmlinuz";
  spec.cmdline = "root=/dev/vda1";
  ASSERT_TRUE(AddVolumesToVmSpec(c, VolumeOptions{}, &spec).ok());
  ASSERT_EQ(spec.disks.size(), 1u);
  EXPECT_FALSE(spec.disks[0].boot) << "the kernel boots, not the firmware";
  absl::StatusOr<std::string> xml = runtime::BuildDomainXml(spec);
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("<target dev='vda' bus='virtio'/>"));
  EXPECT_THAT(*xml, Not(HasSubstr("<boot order=")));
}

TEST_F(BootDiskSpecTest, ARecordWhoseBootDeviceIsNoneOfItsDevicesIsFailedPrecondition) {
  sandbox::ContainerRecord c;
  c.id = "c1";
  c.boot.kind = sandbox::BootKind::kDevice;
  c.boot.device = "/dev/vda";
  runtime::VmSpec spec;
  absl::Status s = AddVolumesToVmSpec(c, VolumeOptions{}, &spec);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("/dev/vda"));
}

// Through CreateContainer/StartContainer with fakes and the file store.
class BootDeviceLifecycleTest : public CriHarness {
 protected:
  void SetUp() override {
    CriHarness::SetUp();
    runtime::image::ImageInfo disk;
    disk.id = "sha256:" + std::string(64, '4');
    disk.repo_tags = {"example.com/containerdisk:1"};
    disk.boot.kind = runtime::image::BootKind::kDisk;
    disk.boot.disk = dir_ / "images" / "disk.qcow2";
    disk.boot.disk_format = runtime::image::DiskFormat::kQcow2;
    disk.boot.disk_virtual_size = uint64_t{1} << 40;  // larger than vm.max_disk_mib: not used, not refused
    images_.Add("example.com/containerdisk:1", disk);
  }

  // A block node (major 7) at `name` in the scratch dir; two names with one
  // minor are one device at two paths, as kubelet's per-Pod paths are.
  std::string Node(const std::string& name, unsigned minor) {
    std::string p = (dir_ / name).string();
    if (::mknod(p.c_str(), S_IFBLK | 0600, makedev(7, minor)) != 0) {
      ADD_FAILURE() << "mknod of a block device failed (unit tests run as root): " << std::strerror(errno);
    }
    return p;
  }

  grpc::Status RunPodWith(const std::string& name, const std::string& boot_device, std::string* id) {
    pb::RunPodSandboxRequest req;
    *req.mutable_config() = PodConfig(name);
    if (!boot_device.empty()) (*req.mutable_config()->mutable_annotations())[kBootDeviceAnnotation] = boot_device;
    req.set_runtime_handler("kubevirt");
    pb::RunPodSandboxResponse resp;
    grpc::Status s = service_->RunPodSandbox(nullptr, &req, &resp);
    *id = resp.pod_sandbox_id();
    return s;
  }

  grpc::Status CreateWithDevice(const std::string& pod, const std::string& image, const std::string& container_path,
                                const std::string& host_path, const std::string& perms, std::string* id,
                                uint32_t attempt = 0) {
    pb::CreateContainerRequest req;
    req.set_pod_sandbox_id(pod);
    req.mutable_config()->mutable_metadata()->set_name("vm");
    req.mutable_config()->mutable_metadata()->set_attempt(attempt);
    req.mutable_config()->mutable_image()->set_image(image);
    req.mutable_config()->set_log_path("vm.log");
    pb::Device* d = req.mutable_config()->add_devices();
    d->set_container_path(container_path);
    d->set_host_path(host_path);
    d->set_permissions(perms);
    pb::CreateContainerResponse resp;
    grpc::Status s = service_->CreateContainer(nullptr, &req, &resp);
    *id = resp.container_id();
    return s;
  }

  sandbox::ContainerRecord Record(const std::string& id) {
    absl::StatusOr<sandbox::ContainerRecord> r = store_->GetContainer(id);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : sandbox::ContainerRecord{};
  }
};

TEST_F(BootDeviceLifecycleTest, AContainerDiskImageBootsTheDeviceInPlaceWithoutAnOverlay) {
  std::string dev = Node("pv", 220);
  std::string pod, ctr;
  ASSERT_TRUE(RunPodWith("persist", "/dev/vda", &pod).ok());
  grpc::Status s = CreateWithDevice(pod, "example.com/containerdisk:1", "/dev/vda", dev, "rwm", &ctr);
  ASSERT_TRUE(s.ok()) << s.error_message();
  sandbox::ContainerRecord r = Record(ctr);
  EXPECT_EQ(r.boot.kind, sandbox::BootKind::kDevice);
  EXPECT_EQ(r.boot.device, "/dev/vda");
  EXPECT_TRUE(r.boot.disk.empty());
  EXPECT_FALSE(fs::exists(config_.root / "containers" / ctr / "disk.qcow2")) << "no overlay of the image's disk";
  ASSERT_TRUE(Start(ctr).ok());
  runtime::VmSpec spec = hv_.SpecOf("kvcri-" + ctr);
  ASSERT_GE(spec.disks.size(), 2u);
  EXPECT_EQ(spec.disks[0].path, dev);
  EXPECT_TRUE(spec.disks[0].boot);
  EXPECT_EQ(spec.disks[0].cache, "none");
  EXPECT_EQ(spec.disks[0].io, "native");
  EXPECT_TRUE(spec.kernel.empty());
  for (size_t i = 1; i < spec.disks.size(); ++i) EXPECT_FALSE(spec.disks[i].boot) << i;
}

TEST_F(BootDeviceLifecycleTest, AnImageWithNothingToBootIsEnoughForABootDevice) {
  std::string dev = Node("pv", 221);
  std::string pod, ctr;
  ASSERT_TRUE(RunPodWith("persist", "/dev/vda", &pod).ok());
  grpc::Status s = CreateWithDevice(pod, "busybox", "/dev/vda", dev, "rwm", &ctr);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(Record(ctr).boot.kind, sandbox::BootKind::kDevice);
}

TEST_F(BootDeviceLifecycleTest, AKernelImageBootsItsKernelWithTheDeviceAsVda) {
  std::string dev = Node("pv", 222);
  std::string pod, ctr;
  ASSERT_TRUE(RunPodWith("persist", "/dev/vda", &pod).ok());
  ASSERT_TRUE(CreateWithDevice(pod, "example.com/vm:1", "/dev/vda", dev, "rwm", &ctr).ok());
  sandbox::ContainerRecord r = Record(ctr);
  EXPECT_EQ(r.boot.kind, sandbox::BootKind::kKernel);
  EXPECT_EQ(r.boot.device, "/dev/vda");
  ASSERT_TRUE(Start(ctr).ok());
  runtime::VmSpec spec = hv_.SpecOf("kvcri-" + ctr);
  EXPECT_FALSE(spec.kernel.empty());
  ASSERT_FALSE(spec.disks.empty());
  EXPECT_EQ(spec.disks[0].path, dev);
}

TEST_F(BootDeviceLifecycleTest, BadBootDeviceInputIsInvalidArgumentAndLeavesNothing) {
  std::string dev = Node("pv", 223);
  std::string pod, ctr;
  ASSERT_TRUE(RunPodWith("nodev", "/dev/vdb", &pod).ok());
  grpc::Status s = CreateWithDevice(pod, "example.com/containerdisk:1", "/dev/vda", dev, "rwm", &ctr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("kubevirt-cri.io/boot-device \"/dev/vdb\" names none"));

  // Not a block device: the field is named.
  std::ofstream(dir_ / "plain.img") << "x";
  ASSERT_TRUE(RunPodWith("plain", "/dev/vda", &pod).ok());
  s = CreateWithDevice(pod, "example.com/containerdisk:1", "/dev/vda", (dir_ / "plain.img").string(), "rwm", &ctr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("config.devices[0].host_path"));
  EXPECT_THAT(s.error_message(), HasSubstr("not a block device"));

  // On the container instead of the Pod: kubelet never puts it there.
  pb::CreateContainerRequest req;
  req.set_pod_sandbox_id(pod);
  req.mutable_config()->mutable_metadata()->set_name("vm");
  req.mutable_config()->mutable_image()->set_image("example.com/containerdisk:1");
  (*req.mutable_config()->mutable_annotations())[kBootDeviceAnnotation] = "/dev/vda";
  pb::CreateContainerResponse resp;
  s = service_->CreateContainer(nullptr, &req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("config.annotations"));
  EXPECT_THAT(s.error_message(), HasSubstr("Pod annotation"));

  EXPECT_TRUE(store_->ListContainers().empty());
  EXPECT_TRUE(fs::is_empty(config_.root / "containers"));
}

TEST_F(BootDeviceLifecycleTest, ASecondWriterOfTheSameDeviceIsRefusedNamingTheHolderUntilItIsRemoved) {
  // One device (7:224) at two paths, as kubelet's per-Pod paths differ.
  std::string path_a = Node("pv-a", 224), path_b = Node("pv-b", 224);
  std::string pod_a, ctr_a, pod_b, ctr_b;
  ASSERT_TRUE(RunPodWith("vm-a", "/dev/vda", &pod_a).ok());
  ASSERT_TRUE(CreateWithDevice(pod_a, "example.com/containerdisk:1", "/dev/vda", path_a, "rwm", &ctr_a).ok());
  ASSERT_TRUE(Start(ctr_a).ok());

  ASSERT_TRUE(RunPodWith("vm-b", "/dev/vda", &pod_b).ok());
  auto expect_refused = [&](const std::string& perms) {
    grpc::Status s = CreateWithDevice(pod_b, "example.com/containerdisk:1", "/dev/vda", path_b, perms, &ctr_b);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << perms;
    EXPECT_THAT(s.error_message(), HasSubstr("config.devices[0].host_path \"" + path_b + "\" (block device 7:224"));
    EXPECT_THAT(s.error_message(), HasSubstr("container \"" + ctr_a + "\""));
    EXPECT_THAT(s.error_message(), HasSubstr("Pod \"ns/vm-a\""));
  };
  expect_refused("rwm");
  expect_refused("r");  // a reader beside a writer is refused too
  EXPECT_TRUE(store_->ListContainers([&](const sandbox::ContainerRecord& r) { return r.sandbox_id == pod_b; }).empty());

  // The hold is in the records: it survives a daemon restart.
  Restart();
  expect_refused("rwm");

  ASSERT_TRUE(StopPod(pod_a).ok());
  ASSERT_TRUE(RemovePod(pod_a).ok());
  grpc::Status s = CreateWithDevice(pod_b, "example.com/containerdisk:1", "/dev/vda", path_b, "rwm", &ctr_b);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(Record(ctr_b).devices[0].host_path, path_b);
}

TEST_F(BootDeviceLifecycleTest, AnyReadWriteBlockDeviceIsHeldNotOnlyBootDevices) {
  std::string path_a = Node("data-a", 225), path_b = Node("data-b", 225);
  std::string pod_a, ctr_a, pod_b, ctr_b;
  ASSERT_TRUE(RunPodWith("vm-a", "", &pod_a).ok());
  ASSERT_TRUE(CreateWithDevice(pod_a, "example.com/vm:1", "/dev/xvdb", path_a, "rwm", &ctr_a).ok());
  ASSERT_TRUE(RunPodWith("vm-b", "", &pod_b).ok());
  grpc::Status s = CreateWithDevice(pod_b, "example.com/vm:1", "/dev/xvdc", path_b, "rw", &ctr_b);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("(created) of Pod \"ns/vm-a\"")) << "a created container holds it too";
}

TEST_F(BootDeviceLifecycleTest, ReadersShareADevice) {
  std::string path_a = Node("ro-a", 226), path_b = Node("ro-b", 226);
  std::string pod_a, ctr_a, pod_b, ctr_b;
  ASSERT_TRUE(RunPodWith("vm-a", "", &pod_a).ok());
  ASSERT_TRUE(CreateWithDevice(pod_a, "example.com/vm:1", "/dev/xvdb", path_a, "r", &ctr_a).ok());
  ASSERT_TRUE(RunPodWith("vm-b", "", &pod_b).ok());
  grpc::Status s = CreateWithDevice(pod_b, "example.com/vm:1", "/dev/xvdb", path_b, "r", &ctr_b);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(BootDeviceLifecycleTest, AnExitedVmReleasesItsDeviceForTheRestartInTheSamePod) {
  std::string dev = Node("pv", 227);
  std::string pod, ctr, again;
  ASSERT_TRUE(RunPodWith("persist", "/dev/vda", &pod).ok());
  ASSERT_TRUE(CreateWithDevice(pod, "example.com/containerdisk:1", "/dev/vda", dev, "rwm", &ctr).ok());
  ASSERT_TRUE(Start(ctr).ok());
  ASSERT_TRUE(StopCtr(ctr, 0).ok());
  ASSERT_EQ(Status(ctr).state(), pb::CONTAINER_EXITED);
  // kubelet's restart: a new container in the same sandbox, the old one kept.
  grpc::Status s = CreateWithDevice(pod, "example.com/containerdisk:1", "/dev/vda", dev, "rwm", &again, 1);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(BootDiskSpecTest, TheSameDeviceTwiceInOneContainerIsRefused) {
  std::string a = Node("a", 228), b = Node("b", 228);
  pb::ContainerConfig c;
  for (auto [cp, hp] : {std::pair{"/dev/vda", a}, std::pair{"/dev/vdb", b}}) {
    pb::Device* d = c.add_devices();
    d->set_container_path(cp);
    d->set_host_path(hp);
    d->set_permissions("rwm");
  }
  absl::StatusOr<VolumePlan> plan = ValidateVolumes(c);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(plan.status().message(), HasSubstr("config.devices[1].host_path"));
  EXPECT_THAT(plan.status().message(), HasSubstr("block device 7:228"));
  EXPECT_THAT(plan.status().message(), HasSubstr("config.devices[0]"));
}

// --- kubevirt-cri.io/nvram-device: a persistent UEFI VM's variable store on a device of its own ---

TEST(NvramDeviceIndex, NamesTheDeviceOrIsInvalidArgumentListingTheDevices) {
  VolumePlan plan = PlanWith({"/dev/vda", "/dev/vdz"});
  absl::StatusOr<std::optional<size_t>> none = NvramDeviceIndex({}, plan);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, std::nullopt);
  absl::StatusOr<std::optional<size_t>> found = NvramDeviceIndex({{kNvramDeviceAnnotation, "/dev/vdz"}}, plan);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(*found, 1u);
  absl::StatusOr<std::optional<size_t>> bad = NvramDeviceIndex({{kNvramDeviceAnnotation, "/dev/vdy"}}, plan);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("annotation kubevirt-cri.io/nvram-device \"/dev/vdy\" names none"));
  EXPECT_THAT(bad.status().message(), HasSubstr("\"/dev/vda\", \"/dev/vdz\""));
  EXPECT_THAT(bad.status().message(), HasSubstr("UEFI variable store"));
}

TEST(VolumeSeedFiles, TheNvramDeviceIsNoGuestDisk) {
  VolumePlan plan = PlanWith({"/dev/vda", "/dev/vdz"});
  std::vector<runtime::VfatFile> files = VolumeSeedFiles(plan, {}, "/dev/vda", "/dev/vdz");
  ASSERT_FALSE(files.empty());
  EXPECT_THAT(files[0].content, HasSubstr("boot "));
  EXPECT_THAT(files[0].content, Not(HasSubstr("/dev/vdz")));
}

TEST_F(BootDiskSpecTest, TheNvramDeviceIsNoDisk) {
  std::string root = Node("root", 232), vars = Node("vars", 233);
  sandbox::ContainerRecord c;
  c.id = "c1";
  c.devices = {{"/dev/vda", root, "rwm", makedev(7, 232)}, {"/dev/vdz", vars, "rwm", makedev(7, 233)}};
  c.boot.kind = sandbox::BootKind::kDevice;
  c.boot.device = "/dev/vda";
  c.boot.nvram_device = "/dev/vdz";
  runtime::VmSpec spec;
  absl::Status s = AddVolumesToVmSpec(c, VolumeOptions{}, &spec);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_EQ(spec.disks.size(), 1u);
  EXPECT_EQ(spec.disks[0].path, root);
}

class NvramDeviceLifecycleTest : public BootDeviceLifecycleTest {
 protected:
  // A VM with the devices /dev/vda (boot) and /dev/vdz, `vdz_perms` for the latter.
  grpc::Status CreateVm(const std::string& pod, const std::string& vdz_perms, std::string* id) {
    pb::CreateContainerRequest req;
    req.set_pod_sandbox_id(pod);
    req.mutable_config()->mutable_metadata()->set_name("vm");
    req.mutable_config()->mutable_image()->set_image("example.com/containerdisk:1");
    req.mutable_config()->set_log_path("vm.log");
    for (auto [cp, hp, perms] : {std::tuple{"/dev/vda", vda_, std::string("mrw")}, std::tuple{"/dev/vdz", vdz_, vdz_perms}}) {
      pb::Device* d = req.mutable_config()->add_devices();
      d->set_container_path(cp);
      d->set_host_path(hp);
      d->set_permissions(perms);
    }
    pb::CreateContainerResponse resp;
    grpc::Status s = service_->CreateContainer(nullptr, &req, &resp);
    *id = resp.container_id();
    return s;
  }
  std::string vda_, vdz_;
};

TEST_F(NvramDeviceLifecycleTest, ImpossibleCombinationsAreInvalidArgumentAndCreateNothing) {
  vda_ = Node("disk", 230);
  vdz_ = Node("vars", 231);
  struct Case {
    std::map<std::string, std::string> annotations;
    std::string vdz_perms, want;
  };
  const std::vector<Case> cases = {
      {{{kBootDeviceAnnotation, "/dev/vda"}, {kNvramDeviceAnnotation, "/dev/vdz"}, {"kubevirt-cri.io/firmware", "bios"}},
       "mrw",
       "names a UEFI variable store, but the VM boots with bios"},
      {{{kBootDeviceAnnotation, "/dev/vda"}, {kNvramDeviceAnnotation, "/dev/vda"}, {"kubevirt-cri.io/firmware", "uefi"}},
       "mrw",
       "name the same device \"/dev/vda\""},
      {{{kBootDeviceAnnotation, "/dev/vda"}, {kNvramDeviceAnnotation, "/dev/vdz"}, {"kubevirt-cri.io/firmware", "uefi"}},
       "r",
       "is read-only"},
      {{{kBootDeviceAnnotation, "/dev/vda"}, {kNvramDeviceAnnotation, "/dev/nvram"}, {"kubevirt-cri.io/firmware", "uefi"}},
       "mrw",
       "names none of the container's devices"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    std::string pod, ctr;
    ASSERT_TRUE(RunPod("nv" + std::to_string(i), c.annotations, &pod).ok());
    grpc::Status s = CreateVm(pod, c.vdz_perms, &ctr);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.want << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("annotation kubevirt-cri.io/nvram-device")) << c.want;
    EXPECT_THAT(s.error_message(), HasSubstr(c.want));
  }
  EXPECT_TRUE(store_->ListContainers().empty());
  EXPECT_TRUE(fs::is_empty(config_.root / "containers"));
}

}  // namespace
}  // namespace kvcri::cri
