// Bad input gets a clear gRPC error naming the field and leaves nothing behind.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test/client/pod_helpers.h"

namespace kvcri::testing {
namespace {

using ::testing::HasSubstr;

class PodValidationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RequireIntegrationEnvironment(true);
    d_.Start();
    ImportGuestImages(d_);
  }

  grpc::Status Run(const pb::PodSandboxConfig& c, std::string* id = nullptr, const std::string& handler = "kubevirt") {
    pb::RunPodSandboxRequest req;
    *req.mutable_config() = c;
    req.set_runtime_handler(handler);
    pb::RunPodSandboxResponse resp;
    grpc::Status s = d_.runtime().RunPodSandbox(Ctx().get(), req, &resp);
    if (id) *id = resp.pod_sandbox_id();
    return s;
  }

  grpc::Status Create(const std::string& pod, const pb::ContainerConfig& c, std::string* id = nullptr) {
    pb::CreateContainerRequest req;
    req.set_pod_sandbox_id(pod);
    *req.mutable_config() = c;
    pb::CreateContainerResponse resp;
    grpc::Status s = d_.runtime().CreateContainer(Ctx().get(), req, &resp);
    if (id) *id = resp.container_id();
    return s;
  }

  TestDaemon d_;
};

TEST_F(PodValidationTest, MissingMetadataFieldsAreNamed) {
  pb::PodSandboxConfig c = SandboxConfig("v", d_.log_dir());
  c.clear_metadata();
  grpc::Status s = Run(c);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("config.metadata"));
  for (const char* field : {"name", "namespace", "uid"}) {
    pb::PodSandboxConfig c2 = SandboxConfig("v", d_.log_dir());
    if (std::string(field) == "name") c2.mutable_metadata()->clear_name();
    if (std::string(field) == "namespace") c2.mutable_metadata()->clear_namespace_();
    if (std::string(field) == "uid") c2.mutable_metadata()->clear_uid();
    s = Run(c2);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << field;
    EXPECT_THAT(s.error_message(), HasSubstr(std::string("config.metadata.") + field));
  }
  ExpectNoLeftovers(d_);
}

TEST_F(PodValidationTest, RelativeOrEscapingLogPathsAreRefused) {
  pb::PodSandboxConfig c = SandboxConfig("v", d_.log_dir());
  c.set_log_directory("relative/dir");
  grpc::Status s = Run(c);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("config.log_directory"));
  c.set_log_directory("/var/log/pods/../../etc");
  s = Run(c);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr(".."));

  std::string pod;
  ASSERT_TRUE(Run(SandboxConfig("v", d_.log_dir()), &pod).ok());
  for (const char* bad : {"../escape.log", "/etc/passwd", "vm/../../x.log"}) {
    pb::ContainerConfig cc = VmContainerConfig("vm", kKernelImage);
    cc.set_log_path(bad);
    s = Create(pod, cc);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_THAT(s.error_message(), HasSubstr("config.log_path")) << bad;
  }
  pb::ListContainersResponse lc;
  ASSERT_TRUE(d_.runtime().ListContainers(Ctx().get(), pb::ListContainersRequest(), &lc).ok());
  EXPECT_EQ(lc.containers_size(), 0);
  RemovePod(d_, pod);
  ExpectNoLeftovers(d_);
}

TEST_F(PodValidationTest, UnknownImageIsNotFoundAndLeavesNoContainer) {
  std::string pod;
  ASSERT_TRUE(Run(SandboxConfig("v", d_.log_dir()), &pod).ok());
  grpc::Status s = Create(pod, VmContainerConfig("vm", "example.com/nope:1"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("example.com/nope:1"));
  pb::ListContainersResponse lc;
  ASSERT_TRUE(d_.runtime().ListContainers(Ctx().get(), pb::ListContainersRequest(), &lc).ok());
  EXPECT_EQ(lc.containers_size(), 0);
  RemovePod(d_, pod);
  ExpectNoLeftovers(d_);
}

TEST_F(PodValidationTest, BadAndUnknownIds) {
  pb::ContainerStatusRequest csr;
  csr.set_container_id("../../etc/passwd");
  pb::ContainerStatusResponse cs;
  grpc::Status s = d_.runtime().ContainerStatus(Ctx().get(), csr, &cs);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("container_id"));

  const std::string unknown(64, 'a');
  csr.set_container_id(unknown);
  s = d_.runtime().ContainerStatus(Ctx().get(), csr, &cs);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  pb::PodSandboxStatusRequest psr;
  psr.set_pod_sandbox_id(unknown);
  pb::PodSandboxStatusResponse ps;
  EXPECT_EQ(d_.runtime().PodSandboxStatus(Ctx().get(), psr, &ps).error_code(), grpc::StatusCode::NOT_FOUND);
  pb::StartContainerRequest start;
  start.set_container_id(unknown);
  pb::StartContainerResponse sr;
  EXPECT_EQ(d_.runtime().StartContainer(Ctx().get(), start, &sr).error_code(), grpc::StatusCode::NOT_FOUND);

  // Stop and remove of unknown IDs succeed (CRI idempotency).
  pb::StopContainerRequest stop;
  stop.set_container_id(unknown);
  pb::StopContainerResponse stop_resp;
  EXPECT_TRUE(d_.runtime().StopContainer(Ctx().get(), stop, &stop_resp).ok());
  pb::RemoveContainerRequest rm;
  rm.set_container_id(unknown);
  pb::RemoveContainerResponse rm_resp;
  EXPECT_TRUE(d_.runtime().RemoveContainer(Ctx().get(), rm, &rm_resp).ok());
  pb::StopPodSandboxRequest sps;
  sps.set_pod_sandbox_id(unknown);
  pb::StopPodSandboxResponse sps_resp;
  EXPECT_TRUE(d_.runtime().StopPodSandbox(Ctx().get(), sps, &sps_resp).ok());
  pb::RemovePodSandboxRequest rps;
  rps.set_pod_sandbox_id(unknown);
  pb::RemovePodSandboxResponse rps_resp;
  EXPECT_TRUE(d_.runtime().RemovePodSandbox(Ctx().get(), rps, &rps_resp).ok());

  // A container for an unknown sandbox.
  s = Create(unknown, VmContainerConfig("vm", kKernelImage));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  ExpectNoLeftovers(d_);
}

TEST_F(PodValidationTest, UnknownHandlerAndHostNetworkAreRefused) {
  grpc::Status s = Run(SandboxConfig("v", d_.log_dir()), nullptr, "runc");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("\"runc\""));
  pb::PodSandboxConfig c = SandboxConfig("hostnet", d_.log_dir());
  c.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_network(pb::NODE);
  s = Run(c);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("host-network"));
  // The empty handler means the configured default (kubevirt).
  std::string pod;
  s = Run(SandboxConfig("default-handler", d_.log_dir()), &pod, "");
  ASSERT_TRUE(s.ok()) << s.error_message();
  RemovePod(d_, pod);
  ExpectNoLeftovers(d_);
}

TEST_F(PodValidationTest, SecondContainerInAPodIsRefused) {
  std::string pod, first;
  ASSERT_TRUE(Run(SandboxConfig("one", d_.log_dir()), &pod).ok());
  ASSERT_TRUE(Create(pod, VmContainerConfig("vm", kKernelImage), &first).ok());
  grpc::Status s = Create(pod, VmContainerConfig("sidecar", kKernelImage));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("exactly one VM container"));
  pb::ListContainersResponse lc;
  ASSERT_TRUE(d_.runtime().ListContainers(Ctx().get(), pb::ListContainersRequest(), &lc).ok());
  EXPECT_EQ(lc.containers_size(), 1);
  RemovePod(d_, pod);
  ExpectNoLeftovers(d_);
}

TEST_F(PodValidationTest, MemoryBelowMinimumIsRefused) {
  std::string pod;
  ASSERT_TRUE(Run(SandboxConfig("small", d_.log_dir()), &pod).ok());
  pb::ContainerConfig cc = VmContainerConfig("vm", kKernelImage);
  cc.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(16 << 20);
  grpc::Status s = Create(pod, cc);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("memory_limit_in_bytes"));
  RemovePod(d_, pod);
  ExpectNoLeftovers(d_);
}

TEST_F(PodValidationTest, ImageServiceAnswersForImportedImages) {
  pb::ImageStatusRequest req;
  req.mutable_image()->set_image(kKernelImage);
  req.set_verbose(true);
  pb::ImageStatusResponse resp;
  ASSERT_TRUE(d_.images().ImageStatus(Ctx().get(), req, &resp).ok());
  ASSERT_TRUE(resp.has_image());
  EXPECT_THAT(resp.image().id(), HasSubstr("sha256:"));
  EXPECT_EQ(resp.image().repo_tags(0), kKernelImage);
  EXPECT_EQ(resp.image().uid().value(), 107);  // the guest builder's config User
  req.mutable_image()->set_image("example.com/absent:1");
  resp.Clear();
  ASSERT_TRUE(d_.images().ImageStatus(Ctx().get(), req, &resp).ok());
  EXPECT_FALSE(resp.has_image());
  pb::ListImagesResponse li;
  ASSERT_TRUE(d_.images().ListImages(Ctx().get(), pb::ListImagesRequest(), &li).ok());
  EXPECT_EQ(li.images_size(), 2);
  pb::ImageFsInfoResponse fs;
  ASSERT_TRUE(d_.images().ImageFsInfo(Ctx().get(), pb::ImageFsInfoRequest(), &fs).ok());
  ASSERT_EQ(fs.image_filesystems_size(), 1);
  EXPECT_GT(fs.image_filesystems(0).used_bytes().value(), 0u);

  // In use: refused; once the container is gone: removed.
  std::string pod, ctr;
  ASSERT_TRUE(Run(SandboxConfig("uses", d_.log_dir()), &pod).ok());
  ASSERT_TRUE(Create(pod, VmContainerConfig("vm", kDiskImage), &ctr).ok());
  pb::RemoveImageRequest rm;
  rm.mutable_image()->set_image(kDiskImage);
  pb::RemoveImageResponse rm_resp;
  grpc::Status s = d_.images().RemoveImage(Ctx().get(), rm, &rm_resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  RemovePod(d_, pod);
  EXPECT_TRUE(d_.images().RemoveImage(Ctx().get(), rm, &rm_resp).ok());
  EXPECT_TRUE(d_.images().RemoveImage(Ctx().get(), rm, &rm_resp).ok()) << "second remove succeeds";
  li.Clear();
  ASSERT_TRUE(d_.images().ListImages(Ctx().get(), pb::ListImagesRequest(), &li).ok());
  EXPECT_EQ(li.images_size(), 1);
  ExpectNoLeftovers(d_);
}

}  // namespace
}  // namespace kvcri::testing
