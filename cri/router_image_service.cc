// ImageService in front of our VM image store and the upstream's.
#include "cri/router_image_service.h"

#include <sys/stat.h>

#include <algorithm>
#include <optional>

#include "config/base/log.h"

namespace kvcri::cri {

RouterImageService::RouterImageService(pb::ImageService::Service* local, SideResolver sides,
                                       UpstreamClient* upstream)
    : local_(local), sides_(sides), upstream_(upstream) {}

grpc::Status RouterImageService::PullImage(grpc::ServerContext* ctx, const pb::PullImageRequest* req,
                                           pb::PullImageResponse* resp) {
  Side side = Side::kUpstream;
  if (!req->image().runtime_handler().empty()) {
    side = sides_.ForHandler(req->image().runtime_handler());
  } else if (req->has_sandbox_config()) {
    side = sides_.ForSandboxConfig(req->sandbox_config());
  }
  if (side == Side::kLocal) return local_->PullImage(ctx, req, resp);
  grpc::Status s = upstream_->Call(upstream_->images(), &Stub::PullImage, "PullImage", ctx, *req, resp);
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE && req->image().runtime_handler().empty() &&
      !req->has_sandbox_config()) {
    // `crictl pull IMAGE` names no side: a newcomer with no containerd meant a VM image.
    return grpc::Status(s.error_code(),
                        s.error_message() +
                            "; a pull naming neither a runtime handler nor a Pod config goes to the upstream "
                            "runtime; for a VM image, import it with `kubevirt-cri images import DIR REF` or pull "
                            "it for a running VM Pod (`crictl pull --pod-config pod.json IMAGE`), see docs/node.md");
  }
  return s;
}

grpc::Status RouterImageService::ImageStatus(grpc::ServerContext* ctx, const pb::ImageStatusRequest* req,
                                             pb::ImageStatusResponse* resp) {
  if (!req->image().runtime_handler().empty()) {
    if (sides_.ForHandler(req->image().runtime_handler()) == Side::kLocal) return local_->ImageStatus(ctx, req, resp);
    return upstream_->Call(upstream_->images(), &Stub::ImageStatus, "ImageStatus", ctx, *req, resp);
  }
  grpc::Status ours = local_->ImageStatus(ctx, req, resp);
  if (ours.ok() && resp->has_image()) return ours;
  resp->Clear();
  grpc::Status up = upstream_->Call(upstream_->images(), &Stub::ImageStatus, "ImageStatus", ctx, *req, resp);
  if (up.ok()) return up;
  // A reference our store cannot parse is the upstream's to judge; when the
  // upstream cannot answer either, our error is the more useful one.
  return ours.ok() ? up : ours;
}

grpc::Status RouterImageService::ListImages(grpc::ServerContext* ctx, const pb::ListImagesRequest* req,
                                            pb::ListImagesResponse* resp) {
  grpc::Status ours = local_->ListImages(ctx, req, resp);
  if (!ours.ok()) return ours;
  pb::ListImagesResponse theirs;
  std::unique_ptr<grpc::ClientContext> uctx = upstream_->Merged(ctx);
  grpc::Status up = upstream_->Annotate(upstream_->images().ListImages(uctx.get(), *req, &theirs), "ListImages");
  if (!up.ok()) return grpc::Status::OK;  // logged by Annotate; the VM side still answers
  for (const pb::Image& img : theirs.images()) {
    auto same = std::find_if(resp->mutable_images()->begin(), resp->mutable_images()->end(),
                             [&](const pb::Image& x) { return x.id() == img.id(); });
    if (same == resp->mutable_images()->end()) {
      *resp->add_images() = img;
      continue;
    }
    // One image in both stores: one entry, every name, the larger size, and
    // pinned if either side pins it (kubelet's GC then keeps it).
    for (const std::string& t : img.repo_tags()) {
      if (std::find(same->repo_tags().begin(), same->repo_tags().end(), t) == same->repo_tags().end()) {
        same->add_repo_tags(t);
      }
    }
    for (const std::string& d : img.repo_digests()) {
      if (std::find(same->repo_digests().begin(), same->repo_digests().end(), d) == same->repo_digests().end()) {
        same->add_repo_digests(d);
      }
    }
    same->set_size(std::max(same->size(), img.size()));
    same->set_pinned(same->pinned() || img.pinned());
  }
  return grpc::Status::OK;
}

// kubelet's image GC removes by ID what no container uses; the image may sit
// in either store or both, so every store that has it drops it.
grpc::Status RouterImageService::RemoveImage(grpc::ServerContext* ctx, const pb::RemoveImageRequest* req,
                                             pb::RemoveImageResponse* resp) {
  if (!req->image().runtime_handler().empty()) {
    if (sides_.ForHandler(req->image().runtime_handler()) == Side::kLocal) return local_->RemoveImage(ctx, req, resp);
    return upstream_->Call(upstream_->images(), &Stub::RemoveImage, "RemoveImage", ctx, *req, resp);
  }
  pb::ImageStatusRequest sreq;
  *sreq.mutable_image() = req->image();
  pb::ImageStatusResponse sresp;
  bool removed_here = false;
  if (local_->ImageStatus(ctx, &sreq, &sresp).ok() && sresp.has_image()) {
    grpc::Status ours = local_->RemoveImage(ctx, req, resp);
    if (!ours.ok()) return ours;
    removed_here = true;
  }
  grpc::Status up = upstream_->Call(upstream_->images(), &Stub::RemoveImage, "RemoveImage", ctx, *req, resp);
  if (up.ok()) return up;
  // The image was ours and the upstream is unreachable: if it held a copy too,
  // the next GC round finds it in ListImages and removes it then.
  if (removed_here && (up.error_code() == grpc::StatusCode::UNAVAILABLE ||
                       up.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)) {
    return grpc::Status::OK;
  }
  return up;
}

namespace {

std::optional<dev_t> DeviceOf(const std::string& path) {
  struct stat st;
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return std::nullopt;
  return st.st_dev;
}

}  // namespace

// kubelet (eviction, image GC thresholds) reads the first image filesystem
// only. The upstream's comes first; ours is added to it when both stores share
// a device, and listed after it otherwise.
grpc::Status RouterImageService::ImageFsInfo(grpc::ServerContext* ctx, const pb::ImageFsInfoRequest* req,
                                             pb::ImageFsInfoResponse* resp) {
  pb::ImageFsInfoResponse ours;
  grpc::Status ours_status = local_->ImageFsInfo(ctx, req, &ours);
  if (!ours_status.ok()) return ours_status;
  pb::ImageFsInfoResponse theirs;
  std::unique_ptr<grpc::ClientContext> uctx = upstream_->Merged(ctx);
  grpc::Status up = upstream_->Annotate(upstream_->images().ImageFsInfo(uctx.get(), *req, &theirs), "ImageFsInfo");
  if (!up.ok()) {
    *resp = ours;
    return grpc::Status::OK;
  }
  *resp = theirs;
  for (const pb::FilesystemUsage& mine : ours.image_filesystems()) {
    std::optional<dev_t> my_dev = DeviceOf(mine.fs_id().mountpoint());
    pb::FilesystemUsage* shared = nullptr;
    for (pb::FilesystemUsage& fs : *resp->mutable_image_filesystems()) {
      std::optional<dev_t> dev = DeviceOf(fs.fs_id().mountpoint());
      if (my_dev && dev && *my_dev == *dev) shared = &fs;
      if (shared != nullptr) break;
    }
    if (shared == nullptr) {
      *resp->add_image_filesystems() = mine;
      continue;
    }
    shared->mutable_used_bytes()->set_value(shared->used_bytes().value() + mine.used_bytes().value());
    shared->mutable_inodes_used()->set_value(shared->inodes_used().value() + mine.inodes_used().value());
  }
  return grpc::Status::OK;
}

}  // namespace kvcri::cri
