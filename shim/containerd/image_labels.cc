// ImageLabels: Images.Get and Content.Read over containerd's gRPC socket, manifest/index/config JSON (image_labels.h).
#include "shim/containerd/image_labels.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "shim/containerd/proto/content_api.grpc.pb.h"
#include "shim/containerd/proto/images_api.grpc.pb.h"

namespace kvcri::shim::containerd {

using base::StrCat;
using nlohmann::json;

namespace {

// containerd's namespace header (namespaces/grpc.go GRPCHeader).
constexpr char kNamespaceHeader[] = "containerd-namespace";

absl::Status FromGrpc(const grpc::Status& s, std::string_view what) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), StrCat(what, ": ", s.error_message()));
}

void Prepare(grpc::ClientContext* ctx, const std::string& ns, absl::Duration timeout) {
  ctx->AddMetadata(kNamespaceHeader, ns);
  ctx->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
}

absl::StatusOr<std::string> ReadBlob(::containerd::services::content::v1::Content::Stub& content, const std::string& ns,
                                     const std::string& digest, absl::Duration timeout) {
  grpc::ClientContext ctx;
  Prepare(&ctx, ns, timeout);
  ::containerd::services::content::v1::ReadContentRequest req;
  req.set_digest(digest);
  std::unique_ptr<grpc::ClientReader<::containerd::services::content::v1::ReadContentResponse>> reader =
      content.Read(&ctx, req);
  std::string blob;
  ::containerd::services::content::v1::ReadContentResponse chunk;
  while (reader->Read(&chunk)) {
    if (blob.size() + chunk.data().size() > kMaxBlobBytes) {
      ctx.TryCancel();
      reader->Finish().IgnoreError();
      return absl::InvalidArgumentError(StrCat("blob ", digest, " is larger than ", kMaxBlobBytes, " bytes"));
    }
    blob += chunk.data();
  }
  grpc::Status s = reader->Finish();
  if (!s.ok()) return FromGrpc(s, StrCat("containerd content ", digest));
  return blob;
}

absl::StatusOr<json> ParseObject(std::string_view text, std::string_view what) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return absl::InvalidArgumentError(StrCat(what, " is not a JSON object"));
  return j;
}

}  // namespace

bool IsIndexMediaType(std::string_view media_type) {
  return media_type == "application/vnd.oci.image.index.v1+json" ||
         media_type == "application/vnd.docker.distribution.manifest.list.v2+json";
}

absl::StatusOr<std::string> ConfigDigestOfManifest(std::string_view manifest_json) {
  ASSIGN_OR_RETURN(json m, ParseObject(manifest_json, "the image manifest"));
  auto config = m.find("config");
  if (config == m.end() || !config->is_object() || !config->contains("digest") || !(*config)["digest"].is_string()) {
    return absl::InvalidArgumentError("the image manifest has no config.digest");
  }
  return (*config)["digest"].get<std::string>();
}

absl::StatusOr<std::string> PlatformManifestOfIndex(std::string_view index_json) {
  ASSIGN_OR_RETURN(json index, ParseObject(index_json, "the image index"));
  auto manifests = index.find("manifests");
  if (manifests == index.end() || !manifests->is_array()) {
    return absl::InvalidArgumentError("the image index has no manifests");
  }
  for (const json& m : *manifests) {
    if (!m.is_object() || !m.contains("digest") || !m["digest"].is_string()) continue;
    auto platform = m.find("platform");
    // An entry without a platform (single-platform indexes) fits any.
    if (platform == m.end() ||
        (platform->is_object() && platform->value("os", "") == "linux" && platform->value("architecture", "") == "amd64")) {
      return m["digest"].get<std::string>();
    }
  }
  return absl::InvalidArgumentError("the image index has no linux/amd64 manifest");
}

absl::StatusOr<std::map<std::string, std::string>> LabelsOfImageConfig(std::string_view config_json) {
  ASSIGN_OR_RETURN(json c, ParseObject(config_json, "the image config"));
  std::map<std::string, std::string> out;
  auto config = c.find("config");
  if (config == c.end() || !config->is_object()) return out;
  auto labels = config->find("Labels");
  if (labels == config->end() || !labels->is_object()) return out;
  for (const auto& [k, v] : labels->items()) {
    if (v.is_string()) out[k] = v.get<std::string>();
  }
  return out;
}

absl::StatusOr<std::map<std::string, std::string>> ImageLabels(const std::string& address, const std::string& ns,
                                                               const std::string& image, absl::Duration timeout) {
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(StrCat("unix://", address), grpc::InsecureChannelCredentials());
  auto images = ::containerd::services::images::v1::Images::NewStub(channel);
  auto content = ::containerd::services::content::v1::Content::NewStub(channel);
  grpc::ClientContext ctx;
  Prepare(&ctx, ns, timeout);
  ::containerd::services::images::v1::GetImageRequest req;
  req.set_name(image);
  ::containerd::services::images::v1::GetImageResponse resp;
  grpc::Status s = images->Get(&ctx, req, &resp);
  if (!s.ok()) return FromGrpc(s, StrCat("containerd image \"", image, "\""));
  std::string digest = resp.image().target().digest();
  std::string blob;
  ASSIGN_OR_RETURN(blob, ReadBlob(*content, ns, digest, timeout));
  if (IsIndexMediaType(resp.image().target().media_type())) {
    ASSIGN_OR_RETURN(digest, PlatformManifestOfIndex(blob));
    ASSIGN_OR_RETURN(blob, ReadBlob(*content, ns, digest, timeout));
  }
  ASSIGN_OR_RETURN(std::string config_digest, ConfigDigestOfManifest(blob));
  ASSIGN_OR_RETURN(std::string config, ReadBlob(*content, ns, config_digest, timeout));
  return LabelsOfImageConfig(config);
}

}  // namespace kvcri::shim::containerd
