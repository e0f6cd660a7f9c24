// ImageService over the local image store: images enter it by PullImage
// (runtime/image/puller.h) or `kubevirt-cri images import`.
#include <nlohmann/json.hpp>

#include "absl/time/clock.h"
#include "config/base/str.h"
#include "cri/grpc_status.h"
#include "cri/runtime_service.h"
#include "runtime/image/image_store.h"
#include "runtime/image/puller.h"

namespace kvcri::cri {

namespace {

void ToPb(const runtime::image::ImageInfo& info, pb::Image* out) {
  out->set_id(info.id);
  for (const std::string& t : info.repo_tags) out->add_repo_tags(t);
  for (const std::string& d : info.repo_digests) out->add_repo_digests(d);
  out->set_size(static_cast<uint64_t>(info.size));
  if (info.uid) {
    out->mutable_uid()->set_value(*info.uid);
  } else {
    out->set_username(info.username);
  }
  out->mutable_spec()->set_image(info.id);
  // Imported images are pinned: kubelet could not pull them back after its
  // garbage collection removed them. Pulled ones are kubelet's to collect.
  out->set_pinned(info.pinned);
}

}  // namespace

ImageService::ImageService(RuntimeDeps deps) : deps_(std::move(deps)) {}

grpc::Status ImageService::ListImages(grpc::ServerContext*, const pb::ListImagesRequest* req,
                                      pb::ListImagesResponse* resp) {
  absl::StatusOr<std::vector<runtime::image::ImageInfo>> images = deps_.images->List();
  if (!images.ok()) return ToGrpc(images.status());
  const std::string& filter = req->filter().image().image();
  std::string filter_id;
  if (!filter.empty()) {
    absl::StatusOr<runtime::image::ImageInfo> want = deps_.images->Resolve(filter);
    if (!want.ok()) return grpc::Status::OK;  // nothing matches
    filter_id = want->id;
  }
  for (const runtime::image::ImageInfo& info : *images) {
    if (!filter_id.empty() && info.id != filter_id) continue;
    ToPb(info, resp->add_images());
  }
  return grpc::Status::OK;
}

grpc::Status ImageService::ImageStatus(grpc::ServerContext*, const pb::ImageStatusRequest* req,
                                       pb::ImageStatusResponse* resp) {
  if (req->image().image().empty()) {
    return ToGrpc(absl::InvalidArgumentError("image.image is empty"));
  }
  absl::StatusOr<runtime::image::ImageInfo> info = deps_.images->Resolve(req->image().image());
  // CRI: an absent image is an empty answer, not an error.
  if (absl::IsNotFound(info.status())) return grpc::Status::OK;
  if (!info.ok()) return ToGrpc(info.status());
  ToPb(*info, resp->mutable_image());
  if (req->verbose()) {
    nlohmann::json j = {
        {"boot", std::string(runtime::image::BootKindName(info->boot.kind))},
        {"unbootableReason", info->boot.unbootable_reason},
        {"disk", info->boot.disk.string()},
        {"diskFormat", std::string(runtime::image::DiskFormatName(info->boot.disk_format))},
        {"kernel", info->boot.kernel.string()},
        {"initrd", info->boot.initrd.string()},
        {"cmdline", info->boot.cmdline},
        {"labels", info->labels},
    };
    (*resp->mutable_info())["info"] = j.dump();
  }
  return grpc::Status::OK;
}

grpc::Status ImageService::PullImage(grpc::ServerContext*, const pb::PullImageRequest* req,
                                     pb::PullImageResponse* resp) {
  if (req->image().image().empty()) return ToGrpc(absl::InvalidArgumentError("image.image is empty"));
  if (deps_.puller == nullptr) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                        "this kubevirt-cri has no registry puller; import images with "
                        "`kubevirt-cri images import DIR REF`");
  }
  runtime::image::RegistryCredentials creds;
  const pb::AuthConfig& auth = req->auth();
  creds.username = auth.username();
  creds.password = auth.password();
  creds.auth = auth.auth();
  creds.registry_token = auth.registry_token();
  creds.server_address = auth.server_address();
  // identity_token (an OAuth2 refresh token) is not supported.
  absl::StatusOr<runtime::image::ImageInfo> info = deps_.puller->Pull(req->image().image(), creds);
  if (!info.ok()) return ToGrpc(info.status());
  resp->set_image_ref(info->id);
  return grpc::Status::OK;
}

grpc::Status ImageService::RemoveImage(grpc::ServerContext*, const pb::RemoveImageRequest* req,
                                       pb::RemoveImageResponse*) {
  if (req->image().image().empty()) return ToGrpc(absl::InvalidArgumentError("image.image is empty"));
  absl::Status s = deps_.images->Remove(req->image().image(), [this](std::string_view image_id) {
    return !deps_.store
                ->ListContainers([&](const sandbox::ContainerRecord& c) { return c.image_ref == image_id; })
                .empty();
  });
  if (absl::IsNotFound(s)) return grpc::Status::OK;  // CRI: removing an absent image succeeds
  return ToGrpc(s);
}

grpc::Status ImageService::ImageFsInfo(grpc::ServerContext*, const pb::ImageFsInfoRequest*,
                                       pb::ImageFsInfoResponse* resp) {
  absl::StatusOr<runtime::image::ImageFsUsage> usage = deps_.images->FsUsage();
  if (!usage.ok()) return ToGrpc(usage.status());
  pb::FilesystemUsage* fs = resp->add_image_filesystems();
  fs->set_timestamp(absl::ToUnixNanos(absl::Now()));
  fs->mutable_fs_id()->set_mountpoint((deps_.config->root / "images").string());
  fs->mutable_used_bytes()->set_value(usage->used_bytes);
  fs->mutable_inodes_used()->set_value(usage->inodes_used);
  return grpc::Status::OK;
}

}  // namespace kvcri::cri
