// OCI index, manifest and image config parsing; blob sources that verify digests while reading.
#include "runtime/image/oci.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <nlohmann/json.hpp>

#include "config/base/status_macros.h"
#include "config/base/str.h"

namespace kvcri::runtime::image {
namespace {

using json = nlohmann::json;

constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
constexpr std::string_view kDockerList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr std::string_view kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
constexpr std::string_view kOciConfig = "application/vnd.oci.image.config.v1+json";
constexpr std::string_view kDockerConfig = "application/vnd.docker.container.image.v1+json";
constexpr std::string_view kLayerTypes[] = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
};

// nlohmann::json throws on type mismatches; every access goes through these.
std::string StringAt(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

absl::Status StringListAt(const json& obj, const char* key, std::vector<std::string>* out,
                          std::string_view what) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_array())
    return absl::InvalidArgumentError(base::StrCat(what, ".", key, " is not an array"));
  for (const json& v : *it) {
    if (!v.is_string()) {
      return absl::InvalidArgumentError(base::StrCat(what, ".", key, " holds a non-string"));
    }
    out->push_back(v.get<std::string>());
  }
  return absl::OkStatus();
}

absl::StatusOr<json> ParseObject(std::string_view text, std::string_view what) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(base::StrCat(what, " is not a JSON object"));
  }
  return j;
}

absl::StatusOr<Descriptor> ParseDescriptor(const json& j, std::string_view what) {
  if (!j.is_object()) return absl::InvalidArgumentError(base::StrCat(what, " is not an object"));
  Descriptor d;
  d.media_type = StringAt(j, "mediaType");
  d.digest = StringAt(j, "digest");
  RETURN_IF_ERROR(ValidateDigest(d.digest, base::StrCat(what, ".digest")));
  auto size = j.find("size");
  if (size == j.end() || !size->is_number_integer() || size->get<int64_t>() < 0) {
    return absl::InvalidArgumentError(base::StrCat(what, ".size is missing or negative"));
  }
  d.size = size->get<int64_t>();
  if (auto p = j.find("platform"); p != j.end() && p->is_object()) {
    d.os = StringAt(*p, "os");
    d.architecture = StringAt(*p, "architecture");
  }
  if (auto a = j.find("annotations"); a != j.end() && a->is_object()) {
    d.ref_name = StringAt(*a, "org.opencontainers.image.ref.name");
  }
  return d;
}

absl::Status Errno(std::string_view op, const std::filesystem::path& p) {
  return absl::ErrnoToStatus(errno, base::StrCat(op, " \"", p.string(), "\""));
}

}  // namespace

bool IsIndexMediaType(std::string_view t) { return t == kOciIndex || t == kDockerList; }
bool IsManifestMediaType(std::string_view t) { return t == kOciManifest || t == kDockerManifest; }

std::string_view HostArchitecture() {
#if defined(__x86_64__)
  return "amd64";
#elif defined(__aarch64__)
  return "arm64";
#elif defined(__s390x__)
  return "s390x";
#elif defined(__powerpc64__)
  return "ppc64le";
#else
  return "unknown";
#endif
}

absl::StatusOr<std::vector<Descriptor>> ParseIndex(std::string_view text) {
  ASSIGN_OR_RETURN(json j, ParseObject(text, "image index"));
  auto m = j.find("manifests");
  if (m == j.end() || !m->is_array()) {
    return absl::InvalidArgumentError("image index has no \"manifests\" array");
  }
  std::vector<Descriptor> out;
  for (size_t i = 0; i < m->size(); ++i) {
    ASSIGN_OR_RETURN(Descriptor d, ParseDescriptor((*m)[i], base::StrCat("manifests[", i, "]")));
    out.push_back(std::move(d));
  }
  return out;
}

absl::StatusOr<Manifest> ParseManifest(std::string_view text) {
  ASSIGN_OR_RETURN(json j, ParseObject(text, "image manifest"));
  std::string media_type = StringAt(j, "mediaType");
  if (!media_type.empty() && !IsManifestMediaType(media_type)) {
    return absl::InvalidArgumentError(
        base::StrCat("manifest media type \"", media_type, "\" is not an image manifest"));
  }
  auto config = j.find("config");
  if (config == j.end()) return absl::InvalidArgumentError("image manifest has no config");
  Manifest out;
  ASSIGN_OR_RETURN(out.config, ParseDescriptor(*config, "config"));
  if (out.config.media_type != kOciConfig && out.config.media_type != kDockerConfig) {
    return absl::InvalidArgumentError(base::StrCat("config media type \"", out.config.media_type,
                                                   "\" is not a container image config"));
  }
  auto layers = j.find("layers");
  if (layers == j.end() || !layers->is_array()) {
    return absl::InvalidArgumentError("image manifest has no \"layers\" array");
  }
  for (size_t i = 0; i < layers->size(); ++i) {
    ASSIGN_OR_RETURN(Descriptor d, ParseDescriptor((*layers)[i], base::StrCat("layers[", i, "]")));
    bool known = false;
    for (std::string_view t : kLayerTypes) known |= (d.media_type == t);
    if (!known) {
      return absl::InvalidArgumentError(
          base::StrCat("layers[", i, "] media type \"", d.media_type, "\" is not a tar layer"));
    }
    out.layers.push_back(std::move(d));
  }
  return out;
}

absl::StatusOr<ImageConfig> ParseImageConfig(std::string_view text) {
  ASSIGN_OR_RETURN(json j, ParseObject(text, "image config"));
  ImageConfig out;
  out.os = StringAt(j, "os");
  out.architecture = StringAt(j, "architecture");
  out.created = StringAt(j, "created");
  auto c = j.find("config");
  if (c == j.end() || c->is_null()) return out;
  if (!c->is_object()) return absl::InvalidArgumentError("image config .config is not an object");
  out.user = StringAt(*c, "User");
  out.working_dir = StringAt(*c, "WorkingDir");
  RETURN_IF_ERROR(StringListAt(*c, "Env", &out.env, "config"));
  RETURN_IF_ERROR(StringListAt(*c, "Entrypoint", &out.entrypoint, "config"));
  RETURN_IF_ERROR(StringListAt(*c, "Cmd", &out.cmd, "config"));
  if (auto l = c->find("Labels"); l != c->end() && l->is_object()) {
    for (auto it = l->begin(); it != l->end(); ++it) {
      if (it.value().is_string()) out.labels[it.key()] = it.value().get<std::string>();
    }
  }
  return out;
}

std::filesystem::path DirBlobSource::BlobPath(std::string_view digest) const {
  return dir_ / "blobs" / "sha256" / std::string(DigestHex(digest));
}

absl::StatusOr<base::UniqueFd> DirBlobSource::Open(std::string_view digest) {
  RETURN_IF_ERROR(ValidateDigest(digest, "blob digest"));
  std::filesystem::path p = BlobPath(digest);
  base::UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) {
    if (errno == ENOENT)
      return absl::NotFoundError(
          base::StrCat("blob ", digest, " not found at \"", p.string(), "\""));
    return Errno("open blob", p);
  }
  return fd;
}

absl::StatusOr<size_t> VerifyingReader::Read(void* buf, size_t len) {
  while (true) {
    ssize_t n = ::read(fd_.get(), buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, base::StrCat("read blob ", desc_.digest));
    hash_.Update(buf, static_cast<size_t>(n));
    read_ += n;
    if (read_ > desc_.size) {
      return absl::InvalidArgumentError(base::StrCat(
          "blob ", desc_.digest, " is larger than its descriptor's size ", desc_.size));
    }
    return static_cast<size_t>(n);
  }
}

absl::Status VerifyingReader::Finish() {
  char buf[65536];
  while (true) {
    ASSIGN_OR_RETURN(size_t n, Read(buf, sizeof buf));
    if (n == 0) break;
  }
  if (read_ != desc_.size) {
    return absl::InvalidArgumentError(base::StrCat("blob ", desc_.digest, " has ", read_,
                                                   " bytes, its descriptor says ", desc_.size));
  }
  std::string got = hash_.Finish();
  if (got != desc_.digest) {
    return absl::InvalidArgumentError(
        base::StrCat("blob ", desc_.digest, " does not match its digest: content is ", got));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadBlob(BlobSource& source, const Descriptor& desc, int64_t max_size) {
  if (desc.size > max_size) {
    return absl::InvalidArgumentError(base::StrCat("blob ", desc.digest, " of ", desc.size,
                                                   " bytes exceeds the limit of ", max_size));
  }
  ASSIGN_OR_RETURN(base::UniqueFd fd, source.Open(desc.digest));
  VerifyingReader reader(std::move(fd), desc);
  std::string out(static_cast<size_t>(desc.size), '\0');
  size_t got = 0;
  while (got < out.size()) {
    ASSIGN_OR_RETURN(size_t n, reader.Read(out.data() + got, out.size() - got));
    if (n == 0) break;
    got += n;
  }
  RETURN_IF_ERROR(reader.Finish());
  return out;
}

}  // namespace kvcri::runtime::image
