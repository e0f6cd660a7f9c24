// CreateContainer: the Pod's one VM. Resolves the image, sizes the VM, makes
// a copy-on-write overlay over the image's disk; the domain is defined and
// booted by StartContainer.
#include <cmath>

#include "absl/time/clock.h"
#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/rollback.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "cri/grpc_status.h"
#include "cri/pod_network_spec.h"
#include "cri/runtime_service.h"
#include "cri/validate.h"
#include "cri/volumes.h"
#include "runtime/cloud_init_seed.h"
#include "runtime/image/image_store.h"
#include "runtime/image/overlay.h"

namespace kvcri::cri {

using base::StrCat;

// Pod annotation overriding a kernel-boot image's command line.
inline constexpr char kCmdlineAnnotation[] = "kubevirt-cri.io/kernel-cmdline";

namespace {

struct VmSize {
  int vcpus;
  int64_t memory_mib;
};

absl::StatusOr<VmSize> SizeVm(const config::VmConfig& cfg, const pb::ContainerConfig& c) {
  VmSize size{cfg.default_vcpus, cfg.default_memory_mib};
  if (!c.has_linux() || !c.linux().has_resources()) return size;
  const pb::LinuxContainerResources& r = c.linux().resources();
  if (r.cpu_quota() > 0 && r.cpu_period() > 0) {
    // A fraction of a CPU still needs a whole vCPU.
    size.vcpus = static_cast<int>(std::max<int64_t>(1, (r.cpu_quota() + r.cpu_period() - 1) / r.cpu_period()));
  }
  if (r.memory_limit_in_bytes() > 0) {
    int64_t mib = (r.memory_limit_in_bytes() + (1 << 20) - 1) >> 20;
    if (mib < cfg.min_memory_mib) {
      return absl::InvalidArgumentError(StrCat("config.linux.resources.memory_limit_in_bytes ",
                                               r.memory_limit_in_bytes(), " is below the VM minimum of ",
                                               cfg.min_memory_mib, " MiB"));
    }
    size.memory_mib = mib;
  }
  return size;
}

}  // namespace

grpc::Status RuntimeService::CreateContainer(grpc::ServerContext*, const pb::CreateContainerRequest* req,
                                             pb::CreateContainerResponse* resp) {
  absl::StatusOr<std::string> id = CreateVmContainer(*req);
  if (!id.ok()) return ToGrpc(id.status());
  resp->set_container_id(*id);
  return grpc::Status::OK;
}

absl::StatusOr<std::string> RuntimeService::CreateVmContainer(const pb::CreateContainerRequest& req) {
  RETURN_IF_ERROR(ValidateIdArgument("pod_sandbox_id", req.pod_sandbox_id()));
  RETURN_IF_ERROR(ValidateContainerConfig(req.config()));
  ASSIGN_OR_RETURN(std::string sandbox_id, deps_.store->ResolveSandboxId(req.pod_sandbox_id()));
  absl::MutexLock pod_lock(&PodLock(sandbox_id));
  ASSIGN_OR_RETURN(sandbox::SandboxRecord sb, deps_.store->GetSandbox(sandbox_id));
  if (sb.state != sandbox::SandboxState::kReady) {
    return absl::FailedPreconditionError(StrCat("pod sandbox \"", sandbox_id, "\" is not ready"));
  }
  const pb::ContainerConfig& cfg = req.config();
  for (const sandbox::ContainerRecord& c :
       deps_.store->ListContainers([&](const sandbox::ContainerRecord& r) { return r.sandbox_id == sandbox_id; })) {
    // A restart of the VM container (same name, old one exited) is fine; a
    // second container, sidecar or init container is not.
    if (c.metadata.name != cfg.metadata().name() || c.state != sandbox::ContainerState::kExited) {
      return absl::FailedPreconditionError(StrCat(
          "pod sandbox \"", sandbox_id, "\" already has container \"", c.metadata.name, "\" (", c.id,
          "); a kubevirt-cri Pod runs exactly one VM container, so \"", cfg.metadata().name(),
          "\" cannot be added (no sidecars or init containers)"));
    }
  }

  absl::StatusOr<runtime::image::ImageInfo> image = deps_.images->Resolve(cfg.image().image());
  if (absl::IsNotFound(image.status())) {
    return absl::NotFoundError(StrCat("image \"", cfg.image().image(),
                                      "\" is not present; pull it or import it with `kubevirt-cri images import`"));
  }
  RETURN_IF_ERROR(image.status());
  if (image->boot.kind == runtime::image::BootKind::kNone) {
    return absl::FailedPreconditionError(StrCat("image \"", cfg.image().image(), "\" (", image->id,
                                                ") cannot boot a VM: ", image->boot.unbootable_reason));
  }
  ASSIGN_OR_RETURN(VmSize size, SizeVm(deps_.config->vm, cfg));
  // Devices and mounts: checked and resolved before anything is created.
  ASSIGN_OR_RETURN(VolumePlan volumes, ValidateVolumes(cfg));

  sandbox::ContainerRecord rec;
  ASSIGN_OR_RETURN(rec.id, deps_.store->NewId());
  rec.sandbox_id = sandbox_id;
  rec.metadata.name = cfg.metadata().name();
  rec.metadata.attempt = cfg.metadata().attempt();
  rec.image = cfg.image().image();
  rec.image_ref = image->id;
  rec.labels = std::map<std::string, std::string>(cfg.labels().begin(), cfg.labels().end());
  rec.annotations = std::map<std::string, std::string>(cfg.annotations().begin(), cfg.annotations().end());
  rec.log_path = cfg.log_path();
  rec.state = sandbox::ContainerState::kCreated;
  rec.phase = sandbox::Phase::kCreating;
  rec.created_at = absl::ToUnixNanos(absl::Now());
  rec.domain_name = StrCat("kvcri-", rec.id);
  rec.vcpus = size.vcpus;
  rec.memory_mib = size.memory_mib;
  rec.devices = volumes.devices;  // host paths resolved by ValidateVolumes
  rec.mounts = volumes.mounts;
  const std::filesystem::path dir = ContainerDir(rec.id);
  rec.console_path = (dir / "console.log").string();
  rec.seed_path = (dir / "cidata.img").string();
  if (image->boot.kind == runtime::image::BootKind::kKernel) {
    rec.boot.kind = sandbox::BootKind::kKernel;
    rec.boot.kernel = image->boot.kernel.string();
    rec.boot.initrd = image->boot.initrd.string();
    auto it = sb.annotations.find(kCmdlineAnnotation);
    rec.boot.cmdline = it != sb.annotations.end() ? it->second
                       : image->boot.cmdline.empty() ? "console=ttyS0"
                                                     : image->boot.cmdline;
  } else {
    rec.boot.kind = sandbox::BootKind::kDisk;
    rec.boot.disk = (dir / "disk.qcow2").string();
    rec.boot.disk_format = "qcow2";
  }

  base::Rollback undo;
  RETURN_IF_ERROR(deps_.store->PutContainer(rec));
  const std::string id = rec.id;
  undo.Add("remove container record", [this, id] { return deps_.store->RemoveContainer(id); });
  RETURN_IF_ERROR(base::MakeDirs(dir, 0700));
  undo.Add("remove container dir", [dir] { return base::RemoveAll(dir); });
  // cloud-init NoCloud seed: hostname, network-config, user-data.
  runtime::CloudInitSeed seed = SeedFor(sb);
  for (runtime::VfatFile& f : VolumeSeedFiles(volumes)) seed.extra_files.push_back(std::move(f));
  RETURN_IF_ERROR(runtime::WriteSeedImage(rec.seed_path, seed));
  if (rec.boot.kind == sandbox::BootKind::kDisk) {
    // The image's disk is never written: the VM writes to its own overlay.
    RETURN_IF_ERROR(runtime::image::CreateOverlay(image->boot.disk, image->boot.disk_format, rec.boot.disk));
  }
  RETURN_IF_ERROR(deps_.store
                      ->UpdateContainer(id,
                                        [](sandbox::ContainerRecord& r) {
                                          r.phase = sandbox::Phase::kReady;
                                          return absl::OkStatus();
                                        })
                      .status());
  undo.Dismiss();
  base::LogInfo("container created", {{"id", id}, {"sandbox", sandbox_id}, {"image", rec.image},
                                      {"boot", rec.boot.kind == sandbox::BootKind::kKernel ? "kernel" : "disk"}});
  return id;
}

}  // namespace kvcri::cri
