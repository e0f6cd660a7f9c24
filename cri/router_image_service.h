// RouterImageService: the CRI ImageService in front of our image store and the upstream runtime's.
#pragma once

#include <grpcpp/grpcpp.h>

#include "cri/proto/api.grpc.pb.h"
#include "cri/router_runtime_service.h"
#include "cri/upstream_client.h"

namespace kvcri::cri {

namespace pb = ::runtime::v1;

// runtime.v1.ImageService in front of our VM image store and the upstream's
// image store; kubelet has one image endpoint. See docs/node.md "Images".
//
// A pull goes to the side named by ImageSpec.runtime_handler, else to the side
// that runs the Pod of sandbox_config (kubelet pulls after RunPodSandbox),
// else upstream. Reads answer for both stores: ImageStatus asks ours, then the
// upstream; ListImages is the union with images of equal ID listed once;
// RemoveImage removes from every store holding the image; ImageFsInfo adds
// our usage to the upstream's filesystem when both live on the same device.
class RouterImageService final : public pb::ImageService::Service {
 public:
  RouterImageService(pb::ImageService::Service* local, SideResolver sides, UpstreamClient* upstream);

  grpc::Status ListImages(grpc::ServerContext*, const pb::ListImagesRequest*, pb::ListImagesResponse*) override;
  grpc::Status ImageStatus(grpc::ServerContext*, const pb::ImageStatusRequest*, pb::ImageStatusResponse*) override;
  grpc::Status PullImage(grpc::ServerContext*, const pb::PullImageRequest*, pb::PullImageResponse*) override;
  grpc::Status RemoveImage(grpc::ServerContext*, const pb::RemoveImageRequest*, pb::RemoveImageResponse*) override;
  grpc::Status ImageFsInfo(grpc::ServerContext*, const pb::ImageFsInfoRequest*, pb::ImageFsInfoResponse*) override;

 private:
  using Stub = pb::ImageService::StubInterface;

  pb::ImageService::Service* local_;
  SideResolver sides_;
  UpstreamClient* upstream_;
};

}  // namespace kvcri::cri
