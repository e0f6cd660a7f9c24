// LocalImageStore: index and blobs on disk, layout imports, pull commits, lookups, removal, clean-up.
#include "runtime/image/image_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "absl/time/clock.h"
#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/rollback.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "runtime/image/extract.h"
#include "runtime/image/sandboxed_extract.h"

namespace kvcri::runtime::image {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr int kIndexVersion = 1;
constexpr int kImageVersion = 1;
constexpr int64_t kMaxManifestSize = 4 << 20;
constexpr int64_t kMaxConfigSize = 8 << 20;
constexpr std::string_view kIdPrefix = "sha256:";

absl::Status Errno(std::string_view op, const fs::path& p) {
  return absl::ErrnoToStatus(errno, base::StrCat(op, " \"", p.string(), "\""));
}

// Strings from image configs may hold invalid UTF-8; never let dump() throw.
std::string Dump(const json& j) {
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

// Holds flock(LOCK_EX) on <dir>/lock until destroyed.
class StoreLock {
 public:
  // Blocks when `wait`; otherwise Unavailable while another holder has it.
  static absl::StatusOr<StoreLock> Acquire(const fs::path& path, bool wait) {
    base::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd.valid()) return Errno("open lock file", path);
    int r;
    do {
      r = ::flock(fd.get(), LOCK_EX | (wait ? 0 : LOCK_NB));
    } while (r != 0 && errno == EINTR);
    if (r != 0) {
      if (errno == EWOULDBLOCK)
        return absl::UnavailableError(base::StrCat("\"", path.string(), "\" is locked"));
      return Errno("flock", path);
    }
    return StoreLock(std::move(fd));
  }

 private:
  explicit StoreLock(base::UniqueFd fd) : fd_(std::move(fd)) {}
  base::UniqueFd fd_;
};

// index.json: which images exist and which references name them.
struct RawIndex {
  std::set<std::string> images;
  std::map<std::string, std::string> refs;  // "name:tag" or "name@sha256:…" → image id
  // Images that came from a registry pull and were never imported: kubelet's
  // image GC may remove them. Imported images are pinned (kubelet cannot pull
  // them back). Absent from older indexes: everything there was imported.
  std::set<std::string> pulled;
  // Images some pull fetched with credentials: a pull answered from the
  // store checks the caller's credentials first. Absent from older indexes.
  std::set<std::string> authenticated;
};

std::string IndexToJson(const RawIndex& index) {
  json j = {{"version", kIndexVersion}, {"images", json::array()}, {"refs", json::object()}};
  for (const std::string& id : index.images) j["images"].push_back(id);
  for (const auto& [ref, id] : index.refs) j["refs"][ref] = id;
  j["pulled"] = json::array();
  for (const std::string& id : index.pulled) j["pulled"].push_back(id);
  j["authenticated"] = json::array();
  for (const std::string& id : index.authenticated) j["authenticated"].push_back(id);
  return Dump(j);
}

absl::StatusOr<RawIndex> IndexFromJson(std::string_view text, const fs::path& path) {
  auto bad = [&](std::string_view why) {
    return absl::DataLossError(base::StrCat("image index \"", path.string(), "\" ", why));
  };
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("is not a JSON object");
  auto v = j.find("version");
  if (v == j.end() || !v->is_number_integer() || v->get<int>() != kIndexVersion) {
    return bad(base::StrCat("has an unknown version (want ", kIndexVersion, ")"));
  }
  RawIndex out;
  auto images = j.find("images");
  auto refs = j.find("refs");
  if (images == j.end() || !images->is_array() || refs == j.end() || !refs->is_object()) {
    return bad("lacks \"images\" or \"refs\"");
  }
  for (const json& id : *images) {
    if (!id.is_string() || !ValidateDigest(id.get<std::string>(), "id").ok())
      return bad("holds a malformed id");
    out.images.insert(id.get<std::string>());
  }
  for (auto it = refs->begin(); it != refs->end(); ++it) {
    if (!it.value().is_string() || !out.images.count(it.value().get<std::string>())) {
      return bad(base::StrCat("ref \"", it.key(), "\" names no listed image"));
    }
    out.refs[it.key()] = it.value().get<std::string>();
  }
  if (auto pulled = j.find("pulled"); pulled != j.end()) {
    if (!pulled->is_array()) return bad("has a malformed \"pulled\"");
    for (const json& id : *pulled) {
      if (!id.is_string() || !out.images.count(id.get<std::string>())) return bad("pulled names no listed image");
      out.pulled.insert(id.get<std::string>());
    }
  }
  if (auto auth = j.find("authenticated"); auth != j.end()) {
    if (!auth->is_array()) return bad("has a malformed \"authenticated\"");
    for (const json& id : *auth) {
      if (!id.is_string() || !out.images.count(id.get<std::string>()))
        return bad("authenticated names no listed image");
      out.authenticated.insert(id.get<std::string>());
    }
  }
  return out;
}

using Stamp = std::array<int64_t, 4>;

Stamp StampOf(const struct stat& st) {
  return {static_cast<int64_t>(st.st_dev), static_cast<int64_t>(st.st_ino),
          static_cast<int64_t>(st.st_size),
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

// Reads index.json and the stamp of the file actually read; a missing
// index is an empty store.
absl::StatusOr<std::pair<RawIndex, Stamp>> ReadIndex(const fs::path& dir) {
  fs::path path = dir / "index.json";
  base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return std::make_pair(RawIndex{}, Stamp{0, 0, 0, 0});
    return Errno("open", path);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Errno("stat", path);
  // Content and stamp come from the same open inode.
  std::string text;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("read", path);
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ASSIGN_OR_RETURN(RawIndex index, IndexFromJson(text, path));
  return std::make_pair(std::move(index), StampOf(st));
}

absl::Status WriteIndex(const fs::path& dir, const RawIndex& index) {
  return base::WriteFileAtomic(dir / "index.json", IndexToJson(index), 0644);
}

std::string RelPath(const fs::path& p, const fs::path& dir) {
  return p.empty() ? std::string() : p.lexically_relative(dir).string();
}

// image.json, immutable once its directory is in store/. Paths relative to it.
std::string ImageToJson(const ImageInfo& info, const fs::path& image_dir) {
  const BootInfo& b = info.boot;
  json boot = {{"kind", BootKindName(b.kind)},
               {"unbootable_reason", b.unbootable_reason},
               {"disk", RelPath(b.disk, image_dir)},
               {"disk_format", DiskFormatName(b.disk_format)},
               {"disk_virtual_size", b.disk_virtual_size},
               {"kernel", RelPath(b.kernel, image_dir)},
               {"initrd", RelPath(b.initrd, image_dir)},
               {"cmdline", b.cmdline}};
  json j = {{"version", kImageVersion},
            {"id", info.id},
            {"manifest_digest", info.manifest_digest},
            {"size", info.size},
            {"user", info.user},
            {"labels", info.labels},
            {"env", info.env},
            {"entrypoint", info.entrypoint},
            {"cmd", info.cmd},
            {"working_dir", info.working_dir},
            {"layers", info.layers},
            {"os", info.os},
            {"architecture", info.architecture},
            {"boot", boot}};
  return Dump(j);
}

void ParseUser(ImageInfo* info) {
  std::string_view user = info->user;
  user = user.substr(0, user.find(':'));
  int64_t uid = 0;
  auto [end, ec] = std::from_chars(user.data(), user.data() + user.size(), uid);
  if (!user.empty() && ec == std::errc() && end == user.data() + user.size() && uid >= 0) {
    info->uid = uid;
  } else {
    info->username = std::string(user);
  }
}

absl::StatusOr<ImageInfo> ImageFromJson(std::string_view text, const fs::path& image_dir) {
  auto bad = [&](std::string_view why) {
    return absl::DataLossError(
        base::StrCat("image record \"", (image_dir / "image.json").string(), "\" ", why));
  };
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("is not a JSON object");
  auto v = j.find("version");
  if (v == j.end() || !v->is_number_integer() || v->get<int>() != kImageVersion) {
    return bad(base::StrCat("has an unknown version (want ", kImageVersion, ")"));
  }
  auto str = [](const json& o, const char* k) {
    auto it = o.find(k);
    return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  auto strings = [](const json& o, const char* k) {
    std::vector<std::string> out;
    auto it = o.find(k);
    if (it != o.end() && it->is_array()) {
      for (const json& s : *it) {
        if (s.is_string()) out.push_back(s.get<std::string>());
      }
    }
    return out;
  };
  ImageInfo info;
  info.id = str(j, "id");
  if (!ValidateDigest(info.id, "id").ok()) return bad("has a malformed id");
  info.manifest_digest = str(j, "manifest_digest");
  if (auto s = j.find("size"); s != j.end() && s->is_number_integer())
    info.size = s->get<int64_t>();
  info.user = str(j, "user");
  ParseUser(&info);
  if (auto l = j.find("labels"); l != j.end() && l->is_object()) {
    for (auto it = l->begin(); it != l->end(); ++it) {
      if (it.value().is_string()) info.labels[it.key()] = it.value().get<std::string>();
    }
  }
  info.env = strings(j, "env");
  info.entrypoint = strings(j, "entrypoint");
  info.cmd = strings(j, "cmd");
  info.working_dir = str(j, "working_dir");
  info.layers = strings(j, "layers");
  for (const std::string& d : info.layers) {
    if (!ValidateDigest(d, "layer").ok()) return bad("has a malformed layer digest");
  }
  info.os = str(j, "os");
  info.architecture = str(j, "architecture");
  auto b = j.find("boot");
  if (b == j.end() || !b->is_object()) return bad("has no boot section");
  BootInfo& boot = info.boot;
  std::string kind = str(*b, "kind");
  if (kind == "disk") {
    boot.kind = BootKind::kDisk;
  } else if (kind == "kernel") {
    boot.kind = BootKind::kKernel;
  } else if (kind == "none") {
    boot.kind = BootKind::kNone;
  } else {
    return bad(base::StrCat("has unknown boot kind \"", kind, "\""));
  }
  boot.unbootable_reason = str(*b, "unbootable_reason");
  auto path = [&](const char* k, fs::path* out) -> absl::Status {
    std::string rel = str(*b, k);
    if (rel.empty()) return absl::OkStatus();
    fs::path p(rel);
    if (p.is_absolute() || rel.find("..") != std::string::npos)
      return bad(base::StrCat("has an unsafe ", k, " path"));
    *out = image_dir / p;
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(path("disk", &boot.disk));
  RETURN_IF_ERROR(path("kernel", &boot.kernel));
  RETURN_IF_ERROR(path("initrd", &boot.initrd));
  ASSIGN_OR_RETURN(boot.disk_format, ParseDiskFormat(str(*b, "disk_format")));
  if (auto s = b->find("disk_virtual_size"); s != b->end() && s->is_number_unsigned()) {
    boot.disk_virtual_size = s->get<uint64_t>();
  }
  boot.cmdline = str(*b, "cmdline");
  if ((boot.kind == BootKind::kDisk && boot.disk.empty()) ||
      (boot.kind == BootKind::kKernel && boot.kernel.empty())) {
    return bad("lacks its boot artifact");
  }
  return info;
}

fs::path ImageDir(const fs::path& dir, std::string_view id) {
  return dir / "store" / std::string(DigestHex(id));
}

absl::StatusOr<ImageInfo> LoadImage(const fs::path& dir, std::string_view id) {
  fs::path image_dir = ImageDir(dir, id);
  ASSIGN_OR_RETURN(std::string text, base::ReadFile(image_dir / "image.json"));
  ASSIGN_OR_RETURN(ImageInfo info, ImageFromJson(text, image_dir));
  if (info.id != id)
    return absl::DataLossError(base::StrCat("image record of ", id, " names ", info.id));
  const LayerStore layers(dir / "layers");
  for (const std::string& d : info.layers) info.layer_dirs.push_back(layers.PathOf(d));
  return info;
}

// A lookup result: the image and, when `ref` named it by tag, that tag's key.
struct Match {
  std::string id;
  std::string tag_ref;
};

bool IsHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return !s.empty();
}

absl::StatusOr<Match> Lookup(const RawIndex& index, std::string_view ref) {
  auto not_found = [&] {
    return absl::NotFoundError(base::StrCat("image \"", ref, "\" not found"));
  };
  if (ref.empty()) return absl::InvalidArgumentError("image reference is empty");
  // "sha256:<hex>" is an id or id prefix, never a repository named sha256.
  const bool id_form = ref.substr(0, kIdPrefix.size()) == kIdPrefix;
  std::string_view hex = id_form ? ref.substr(kIdPrefix.size()) : ref;
  if (IsHex(hex) && hex.size() == kSha256HexLen) {
    std::string id = base::StrCat(kIdPrefix, hex);
    if (index.images.count(id)) return Match{id, ""};
    return not_found();
  }
  absl::Status parse_error;
  if (!id_form) {
    absl::StatusOr<Reference> r = ParseReference(ref);
    if (r.ok()) {
      std::string key = r->digest.empty() ? r->TagRef() : r->DigestRef();
      if (auto it = index.refs.find(key); it != index.refs.end()) {
        return Match{it->second, r->digest.empty() ? key : ""};
      }
    } else {
      parse_error = r.status();
    }
  }
  if (IsHex(hex)) {
    std::string prefix = base::StrCat(kIdPrefix, hex);
    std::vector<std::string> hits;
    for (auto it = index.images.lower_bound(prefix);
         it != index.images.end() && it->rfind(prefix, 0) == 0; ++it) {
      hits.push_back(*it);
    }
    if (hits.size() == 1) return Match{hits[0], ""};
    if (hits.size() > 1) {
      return absl::InvalidArgumentError(base::StrCat(
          "image id prefix \"", ref, "\" is ambiguous: it matches ", hits.size(), " images"));
    }
  }
  if (!parse_error.ok()) return parse_error;
  return not_found();
}

// Adds up allocated bytes and inodes under `dir` (not following symlinks).
absl::Status Walk(int dir_fd, const fs::path& path, ImageFsUsage* usage) {
  struct DirClose {
    void operator()(DIR* d) const { ::closedir(d); }
  };
  int fd = ::dup(dir_fd);
  if (fd < 0) return Errno("dup", path);
  std::unique_ptr<DIR, DirClose> d(::fdopendir(fd));
  if (!d) {
    ::close(fd);
    return Errno("opendir", path);
  }
  while (struct dirent* e = ::readdir(d.get())) {
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (::fstatat(dir_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;  // removed meanwhile
      return Errno("stat", path / e->d_name);
    }
    usage->inodes_used += 1;
    usage->used_bytes += static_cast<uint64_t>(st.st_blocks) * 512;
    if (S_ISDIR(st.st_mode)) {
      base::UniqueFd sub(
          ::openat(dir_fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub.valid()) {
        if (errno == ENOENT) continue;
        return Errno("open", path / e->d_name);
      }
      RETURN_IF_ERROR(Walk(sub.get(), path / e->d_name, usage));
    }
  }
  return absl::OkStatus();
}

// Names of the entries of `dir` (without . and ..).
absl::StatusOr<std::vector<std::string>> ListDir(const fs::path& dir) {
  std::error_code ec;
  std::vector<std::string> out;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    out.push_back(it->path().filename().string());
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return absl::ErrnoToStatus(ec.value(), base::StrCat("list \"", dir.string(), "\""));
  }
  return out;
}

// A directory of tmp/ this process works in, flocked until destroyed (then
// removed): CollectGarbage in another process skips it.
class LockedWorkDir {
 public:
  static absl::StatusOr<LockedWorkDir> Create(const fs::path& path) {
    if (::mkdir(path.c_str(), 0700) != 0) return Errno("mkdir", path);
    base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid() || ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      absl::Status s = Errno("lock", path);
      base::LogIfError(base::RemoveAll(path), "remove image work directory");
      return s;
    }
    return LockedWorkDir(path, std::move(fd));
  }
  LockedWorkDir(LockedWorkDir&& o) noexcept : path_(std::exchange(o.path_, {})), fd_(std::move(o.fd_)) {}
  LockedWorkDir& operator=(LockedWorkDir&&) = delete;
  ~LockedWorkDir() {
    if (!path_.empty()) base::LogIfError(base::RemoveAll(path_), "remove image work directory");
  }
  const fs::path& path() const { return path_; }

 private:
  LockedWorkDir(fs::path path, base::UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  fs::path path_;
  base::UniqueFd fd_;
};

bool WorkDirInUse(const fs::path& path) {
  base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return false;
  return ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
}

}  // namespace

struct LocalImageStore::Snapshot {
  RawIndex index;
  // Images whose image.json loaded; a corrupt one is absent, so never listed.
  std::map<std::string, std::shared_ptr<const ImageInfo>> records;
};

std::string_view BootKindName(BootKind kind) {
  switch (kind) {
    case BootKind::kDisk:
      return "disk";
    case BootKind::kKernel:
      return "kernel";
    case BootKind::kNone:
      break;
  }
  return "none";
}

// ---- BlobWriter ----

BlobWriter::BlobWriter(base::UniqueFd fd, fs::path tmp, fs::path final_path, Descriptor desc)
    : fd_(std::move(fd)),
      tmp_(std::move(tmp)),
      final_(std::move(final_path)),
      desc_(std::move(desc)) {}

BlobWriter::BlobWriter(BlobWriter&& o) noexcept
    : fd_(std::move(o.fd_)),
      tmp_(std::exchange(o.tmp_, {})),
      final_(std::move(o.final_)),
      desc_(std::move(o.desc_)),
      hash_(std::move(o.hash_)),
      written_(o.written_) {}

BlobWriter::~BlobWriter() {
  if (!tmp_.empty()) base::LogIfError(base::RemoveFile(tmp_), "remove partial blob");
}

absl::Status BlobWriter::Write(std::string_view data) {
  if (tmp_.empty())
    return absl::FailedPreconditionError(
        base::StrCat("blob ", desc_.digest, " is already committed"));
  written_ += static_cast<int64_t>(data.size());
  if (written_ > desc_.size) {
    return absl::InvalidArgumentError(
        base::StrCat("blob ", desc_.digest, " is larger than its descriptor's size ", desc_.size));
  }
  hash_.Update(data.data(), data.size());
  while (!data.empty()) {
    ssize_t n = ::write(fd_.get(), data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("write", tmp_);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status BlobWriter::Commit() {
  if (tmp_.empty())
    return absl::FailedPreconditionError(
        base::StrCat("blob ", desc_.digest, " is already committed"));
  if (written_ != desc_.size) {
    return absl::InvalidArgumentError(base::StrCat("blob ", desc_.digest, " has ", written_,
                                                   " bytes, its descriptor says ", desc_.size));
  }
  std::string got = hash_.Finish();
  if (got != desc_.digest) {
    return absl::InvalidArgumentError(
        base::StrCat("blob ", desc_.digest, " does not match its digest: content is ", got));
  }
  if (::fsync(fd_.get()) != 0) return Errno("fsync", tmp_);
  fd_.Reset();
  if (::rename(tmp_.c_str(), final_.c_str()) != 0) return Errno("rename blob to", final_);
  tmp_.clear();
  return base::SyncDir(final_.parent_path());
}

// ---- LocalImageStore ----

LocalImageStore::Options LocalImageStore::Options::FromConfig(const config::ImagesConfig& images,
                                                              bool collect_garbage) {
  Options o;
  o.collect_garbage = collect_garbage;
  o.limits.max_bytes = images.max_image_bytes;
  o.limits.max_entries = images.max_image_entries;
  o.extract_uid = static_cast<uid_t>(images.extract_uid);
  o.extract_gid = static_cast<gid_t>(images.extract_gid);
  return o;
}

LocalImageStore::LocalImageStore(fs::path dir, Options options)
    : dir_(std::move(dir)),
      options_(std::move(options)),
      blobs_(dir_),
      layers_(dir_ / "layers"),
      snapshot_(std::make_shared<Snapshot>()) {}

absl::StatusOr<std::unique_ptr<LocalImageStore>> LocalImageStore::Open(fs::path dir,
                                                                       const Options& options) {
  if (options.extract_uid == 0 || options.extract_gid == 0) {
    return absl::InvalidArgumentError(base::StrCat("image store \"", dir.string(), "\": extract_uid ",
                                                   options.extract_uid, " / extract_gid ", options.extract_gid,
                                                   " must not be 0: extraction runs unprivileged"));
  }
  // The store is the daemon's alone: images may be private (pulled with
  // credentials), so no directory of it is readable by anyone else, also
  // when an older version (or a hand-made root) created it wider.
  for (const fs::path& d : {dir, dir / "blobs", dir / "blobs" / "sha256", dir / "store", dir / "tmp"}) {
    RETURN_IF_ERROR(base::MakeDirs(d, 0700));
    struct stat st;
    if (::lstat(d.c_str(), &st) != 0) return Errno("stat", d);
    if (!S_ISDIR(st.st_mode))
      return absl::FailedPreconditionError(base::StrCat("\"", d.string(), "\" is not a directory"));
    // A directory on the way to a base disk may carry ACL entries that let
    // confined VMs (runtime/vm_confinement.h) traverse it; its group bits are
    // then the ACL mask, and chmod 0700 would mask those entries off for the
    // running VMs. Keep the mask's x there; everything else still goes.
    const bool has_acl = ::getxattr(d.c_str(), "system.posix_acl_access", nullptr, 0) > 0;
    const mode_t want = has_acl ? (0700 | (st.st_mode & 0010)) : 0700;
    if ((st.st_mode & 07777) != want && st.st_uid == ::geteuid() && ::chmod(d.c_str(), want) != 0) {
      return Errno("chmod 0700", d);
    }
  }
  std::unique_ptr<LocalImageStore> store(new LocalImageStore(std::move(dir), options));
  if (options.collect_garbage) RETURN_IF_ERROR(store->CollectGarbage());
  {
    absl::MutexLock l(&store->mu_);
    RETURN_IF_ERROR(store->RefreshLocked());
  }
  return store;
}

absl::Status LocalImageStore::CollectGarbage() {
  absl::MutexLock wl(&write_mu_);
  absl::StatusOr<StoreLock> lock = StoreLock::Acquire(dir_ / "lock", /*wait=*/false);
  if (absl::IsUnavailable(lock.status())) {
    // Another process is importing; its tmp/ work is live. Next start collects.
    base::LogInfo("image store garbage collection skipped: store is locked",
                  {{"dir", dir_.string()}});
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(lock.status());
  ASSIGN_OR_RETURN(auto read, ReadIndex(dir_));
  RawIndex& index = read.first;
  bool index_changed = false;

  ASSIGN_OR_RETURN(std::vector<std::string> tmp, ListDir(dir_ / "tmp"));
  for (const std::string& name : tmp) {
    // An import in another process extracts without the store lock but
    // holds a flock on its work directory.
    if (WorkDirInUse(dir_ / "tmp" / name)) {
      base::LogInfo("image work in use by another process; kept", {{"path", (dir_ / "tmp" / name).string()}});
      continue;
    }
    base::LogInfo("removing interrupted image work", {{"path", (dir_ / "tmp" / name).string()}});
    RETURN_IF_ERROR(base::RemoveAll(dir_ / "tmp" / name));
  }
  ASSIGN_OR_RETURN(std::vector<std::string> top, ListDir(dir_));
  for (const std::string& name : top) {
    if (name.rfind(".index.json.tmp", 0) == 0) RETURN_IF_ERROR(base::RemoveFile(dir_ / name));
  }

  std::set<std::string> referenced;  // blob digests to keep
  for (auto it = index.images.begin(); it != index.images.end();) {
    absl::StatusOr<ImageInfo> info = LoadImage(dir_, *it);
    if (info.ok()) {
      referenced.insert(*it);
      referenced.insert(info->manifest_digest);
      ++it;
      continue;
    }
    base::LogError("dropping unreadable image",
                   {{"id", *it}, {"error", std::string(base::Sv(info.status().message()))}});
    for (auto r = index.refs.begin(); r != index.refs.end();) {
      r = r->second == *it ? index.refs.erase(r) : std::next(r);
    }
    index.pulled.erase(*it);
    index.authenticated.erase(*it);
    it = index.images.erase(it);
    index_changed = true;
  }
  for (const auto& [ref, id] : index.refs) {
    if (size_t at = ref.find('@'); at != std::string::npos) referenced.insert(ref.substr(at + 1));
  }
  // The index first: an image directory must never be referenced but gone.
  if (index_changed) RETURN_IF_ERROR(WriteIndex(dir_, index));

  ASSIGN_OR_RETURN(std::vector<std::string> images, ListDir(dir_ / "store"));
  for (const std::string& name : images) {
    if (index.images.count(base::StrCat(kIdPrefix, name))) continue;
    base::LogInfo("removing image directory not in the index",
                  {{"path", (dir_ / "store" / name).string()}});
    RETURN_IF_ERROR(base::RemoveAll(dir_ / "store" / name));
  }
  ASSIGN_OR_RETURN(std::vector<std::string> blobs, ListDir(dir_ / "blobs" / "sha256"));
  for (const std::string& name : blobs) {
    if (referenced.count(base::StrCat(kIdPrefix, name))) continue;
    RETURN_IF_ERROR(base::RemoveFile(dir_ / "blobs" / "sha256" / name));
  }
  // No import runs (we hold the lock without waiting): staging goes too.
  return CollectLayers(index.images, /*all_staging=*/true);
}

absl::Status LocalImageStore::RefreshLocked() {
  fs::path path = dir_ / "index.json";
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (StampOf(st) == stamp_) return absl::OkStatus();
  } else if (errno == ENOENT) {
    if (stamp_ == Stamp{0, 0, 0, 0}) return absl::OkStatus();
  } else {
    return Errno("stat", path);
  }
  ASSIGN_OR_RETURN(auto read, ReadIndex(dir_));
  auto next = std::make_shared<Snapshot>();
  next->index = std::move(read.first);
  for (const std::string& id : next->index.images) {
    // image.json never changes once listed: reuse what is loaded.
    if (auto it = snapshot_->records.find(id); it != snapshot_->records.end()) {
      next->records[id] = it->second;
      continue;
    }
    absl::StatusOr<ImageInfo> info = LoadImage(dir_, id);
    if (!info.ok()) {
      base::LogError("image is unreadable; not listed",
                     {{"id", id}, {"error", std::string(base::Sv(info.status().message()))}});
      continue;
    }
    next->records[id] = std::make_shared<const ImageInfo>(*std::move(info));
  }
  snapshot_ = std::move(next);
  stamp_ = read.second;
  return absl::OkStatus();
}

ImageInfo LocalImageStore::InfoLocked(const std::string& id) const {
  ImageInfo info = *snapshot_->records.at(id);
  info.pinned = snapshot_->index.pulled.count(id) == 0;
  info.pulled_with_credentials = snapshot_->index.authenticated.count(id) > 0;
  for (const auto& [ref, target] : snapshot_->index.refs) {
    if (target != id) continue;
    (ref.find('@') == std::string::npos ? info.repo_tags : info.repo_digests).push_back(ref);
  }
  return info;
}

absl::StatusOr<ImageInfo> LocalImageStore::Resolve(std::string_view ref) {
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(RefreshLocked());
  ASSIGN_OR_RETURN(Match m, Lookup(snapshot_->index, ref));
  if (!snapshot_->records.count(m.id)) {
    return absl::NotFoundError(base::StrCat("image \"", ref, "\" (", m.id, ") is unreadable"));
  }
  return InfoLocked(m.id);
}

absl::StatusOr<std::vector<ImageInfo>> LocalImageStore::List() {
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(RefreshLocked());
  std::vector<ImageInfo> out;
  for (const auto& [id, record] : snapshot_->records) out.push_back(InfoLocked(id));
  return out;
}

absl::StatusOr<ImageFsUsage> LocalImageStore::FsUsage() {
  base::UniqueFd fd(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return Errno("open", dir_);
  ImageFsUsage usage;
  RETURN_IF_ERROR(Walk(fd.get(), dir_, &usage));
  return usage;
}

bool LocalImageStore::HasBlob(std::string_view digest) const {
  if (!ValidateDigest(digest, "digest").ok()) return false;
  struct stat st;
  return ::stat(blobs_.BlobPath(digest).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

absl::StatusOr<BlobWriter> LocalImageStore::NewBlobWriter(const Descriptor& desc) {
  RETURN_IF_ERROR(ValidateDigest(desc.digest, "blob digest"));
  ASSIGN_OR_RETURN(std::string rnd, base::RandomHex(8));
  fs::path tmp = dir_ / "tmp" / base::StrCat("ingest-", DigestHex(desc.digest), "-", rnd);
  base::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd.valid()) return Errno("create", tmp);
  return BlobWriter(std::move(fd), std::move(tmp), blobs_.BlobPath(desc.digest), desc);
}

absl::StatusOr<ImageInfo> LocalImageStore::Import(const fs::path& layout_dir, std::string_view ref,
                                                  std::string_view layout_tag) {
  ASSIGN_OR_RETURN(Reference r, ParseReference(ref));
  const std::string where = layout_dir.string();
  absl::StatusOr<std::string> marker = base::ReadFile(layout_dir / "oci-layout");
  if (!marker.ok()) {
    return absl::InvalidArgumentError(base::StrCat(
        "\"", where, "\" is not an OCI image layout: ", base::Sv(marker.status().message())));
  }
  json m = json::parse(marker->begin(), marker->end(), nullptr, false);
  if (!m.is_object() || !m.contains("imageLayoutVersion") || !m["imageLayoutVersion"].is_string()) {
    return absl::InvalidArgumentError(
        base::StrCat("\"", where, "/oci-layout\" has no imageLayoutVersion"));
  }
  ASSIGN_OR_RETURN(std::string index_text, base::ReadFile(layout_dir / "index.json"));
  absl::StatusOr<std::vector<Descriptor>> entries = ParseIndex(index_text);
  if (!entries.ok()) {
    return absl::InvalidArgumentError(
        base::StrCat("\"", where, "/index.json\": ", base::Sv(entries.status().message())));
  }

  // Which of the layout's images.
  std::vector<const Descriptor*> picked;
  std::string names;
  for (const Descriptor& d : *entries) {
    names += base::StrCat(names.empty() ? "" : ", ", "\"", d.ref_name, "\"");
    bool match = !layout_tag.empty() ? d.ref_name == layout_tag
                 : !r.digest.empty() ? d.digest == r.digest || d.ref_name == r.tag
                                     : d.ref_name == r.tag || d.ref_name == r.String();
    if (match) picked.push_back(&d);
  }
  if (picked.empty() && layout_tag.empty() && entries->size() == 1)
    picked.push_back(&entries->front());
  if (picked.size() != 1) {
    return absl::InvalidArgumentError(base::StrCat(
        "OCI layout \"", where, "\" has ", picked.empty() ? "no" : "several", " images for ",
        layout_tag.empty() ? base::StrCat("reference \"", ref, "\"")
                           : base::StrCat("tag \"", layout_tag, "\""),
        " (ref names: ", names, ")"));
  }
  DirBlobSource source(layout_dir);
  const Descriptor top = *picked.front();
  Descriptor manifest = top;
  if (IsIndexMediaType(top.media_type)) {
    ASSIGN_OR_RETURN(std::string text, ReadBlob(source, top, kMaxManifestSize));
    ASSIGN_OR_RETURN(std::vector<Descriptor> platforms, ParseIndex(text));
    const Descriptor* found = nullptr;
    for (const Descriptor& d : platforms) {
      if ((d.os.empty() || d.os == "linux") && d.architecture == HostArchitecture() &&
          IsManifestMediaType(d.media_type)) {
        found = &d;
        break;
      }
    }
    if (found == nullptr) {
      return absl::NotFoundError(base::StrCat("image index ", top.digest, " in \"", where,
                                              "\" has no linux/", HostArchitecture(), " manifest"));
    }
    manifest = *found;
  } else if (!top.media_type.empty() && !IsManifestMediaType(top.media_type)) {
    return absl::InvalidArgumentError(base::StrCat("\"", where, "\" entry ", top.digest,
                                                   " has media type \"", top.media_type,
                                                   "\", not an image"));
  }
  std::string repo_digest = top.digest;
  if (!r.digest.empty()) {
    if (r.digest != top.digest && r.digest != manifest.digest) {
      return absl::InvalidArgumentError(
          base::StrCat("reference \"", ref, "\" does not match the layout's image ", top.digest));
    }
    repo_digest = r.digest;
  }
  return Commit(source, manifest, repo_digest, r, Origin::kImport);
}

absl::StatusOr<ImageInfo> LocalImageStore::Commit(BlobSource& source, const Descriptor& manifest_desc,
                                                  std::string_view repo_digest, const Reference& ref, Origin origin) {
  CommitOptions options;
  options.origin = origin;
  return Commit(source, manifest_desc, repo_digest, ref, options);
}

absl::StatusOr<ImageInfo> LocalImageStore::Commit(BlobSource& source, const Descriptor& manifest_desc,
                                                  std::string_view repo_digest, const Reference& ref,
                                                  const CommitOptions& options) {
  const absl::Time start = absl::Now();
  RETURN_IF_ERROR(ValidateDigest(repo_digest, "repo digest"));
  if (!ref.digest.empty() && ref.digest != repo_digest) {
    return absl::InvalidArgumentError(base::StrCat(
        "reference \"", ref.String(), "\" does not match manifest digest ", repo_digest));
  }
  ASSIGN_OR_RETURN(std::string manifest_bytes, ReadBlob(source, manifest_desc, kMaxManifestSize));
  ASSIGN_OR_RETURN(Manifest manifest, ParseManifest(manifest_bytes));
  ASSIGN_OR_RETURN(std::string config_bytes, ReadBlob(source, manifest.config, kMaxConfigBytes));
  ASSIGN_OR_RETURN(ImageConfig config, ParseImageConfig(config_bytes));
  const std::string id = manifest.config.digest;
  const fs::path final_dir = ImageDir(dir_, id);

  // Extraction, when the image is not stored yet: outside the store's lock,
  // in a work directory of our own. index.json is replaced atomically, so
  // reading it without the lock sees one whole version.
  std::optional<LockedWorkDir> work;
  fs::path image_dir;  // work/image: what the rename below publishes
  // A fresh locked work directory under tmp/ with the image extracted into
  // its image/ (start-up clean-up in another process skips a locked one).
  auto ExtractToWorkDir = [&]() -> absl::StatusOr<LockedWorkDir> {
    ASSIGN_OR_RETURN(std::string rnd, base::RandomHex(8));
    ASSIGN_OR_RETURN(LockedWorkDir w, LockedWorkDir::Create(dir_ / "tmp" / base::StrCat("import-", rnd)));
    const fs::path dir = w.path() / "image";
    RETURN_IF_ERROR(base::MakeDirs(dir, 0700));
    RETURN_IF_ERROR(ExtractInto(source, manifest_desc, manifest, config, ref, dir, options.deadline));
    return w;
  };
  {
    ASSIGN_OR_RETURN(auto read, ReadIndex(dir_));
    if (!read.first.images.count(id) || !LoadImage(dir_, id).ok()) {
      ASSIGN_OR_RETURN(LockedWorkDir w, ExtractToWorkDir());
      work.emplace(std::move(w));
      image_dir = work->path() / "image";
    }
  }

  absl::MutexLock wl(&write_mu_);
  ASSIGN_OR_RETURN(StoreLock lock, StoreLock::Acquire(dir_ / "lock", /*wait=*/true));
  ASSIGN_OR_RETURN(auto read, ReadIndex(dir_));
  RawIndex& index = read.first;

  base::Rollback undo;
  bool extracted = false;
  if (!index.images.count(id) || !LoadImage(dir_, id).ok()) {
    if (!work.has_value()) {
      // Removed (or damaged) between our look and the lock: extract again,
      // this once under the lock (rare; the image's directory is ours).
      ASSIGN_OR_RETURN(LockedWorkDir w, ExtractToWorkDir());
      work.emplace(std::move(w));
      image_dir = work->path() / "image";
    }
    // A directory of the same id not in the index is a crash leftover.
    RETURN_IF_ERROR(base::RemoveAll(final_dir));
    if (::rename(image_dir.c_str(), final_dir.c_str()) != 0) return Errno("rename image directory to", final_dir);
    undo.Add("remove image directory", [final_dir] { return base::RemoveAll(final_dir); });
    RETURN_IF_ERROR(base::SyncDir(final_dir.parent_path()));
    extracted = true;
  }
  // A plain image's layers were unpacked outside the lock; the removal of
  // another image using them may have collected them since. Under the lock
  // nothing collects: what is missing now is unpacked again (rare).
  if (absl::StatusOr<ImageInfo> stored = LoadImage(dir_, id); stored.ok() && !stored->layers.empty()) {
    RETURN_IF_ERROR(EnsureLayers(source, manifest.layers, options.deadline));
  }
  // (Another commit of the same image won the race: ours is dropped with
  // the work directory.)
  // Manifest and config blobs: kept for inspection; harmless if the index
  // write below fails (unreferenced blobs are collected).
  for (const auto& [digest, bytes] :
       {std::pair<const std::string&, const std::string&>{manifest_desc.digest, manifest_bytes},
        std::pair<const std::string&, const std::string&>{manifest.config.digest, config_bytes}}) {
    if (!HasBlob(digest))
      RETURN_IF_ERROR(base::WriteFileAtomic(blobs_.BlobPath(digest), bytes, 0644));
  }
  const bool was_stored = index.images.count(id) > 0;
  index.images.insert(id);
  if (options.origin == Origin::kImport) {
    index.pulled.erase(id);  // imported once: pinned for good
  } else if (!was_stored) {
    index.pulled.insert(id);
  }
  if (options.pulled_with_credentials) index.authenticated.insert(id);
  std::string moved_from;
  if (!ref.tag.empty()) {
    std::string key = ref.TagRef();
    if (auto it = index.refs.find(key); it != index.refs.end() && it->second != id)
      moved_from = it->second;
    index.refs[key] = id;
  }
  index.refs[base::StrCat(ref.Name(), "@", repo_digest)] = id;
  RETURN_IF_ERROR(WriteIndex(dir_, index));
  undo.Dismiss();

  base::LogInfo("image imported",
                {{"ref", ref.String()},
                 {"id", id},
                 {"extracted", extracted ? "true" : "false"},
                 {"tag_moved_from", moved_from},
                 {"took_ms", base::StrCat(absl::ToInt64Milliseconds(absl::Now() - start))}});
  absl::MutexLock l(&mu_);
  RETURN_IF_ERROR(RefreshLocked());
  if (!snapshot_->records.count(id))
    return absl::DataLossError(base::StrCat("image ", id, " vanished after import"));
  return InfoLocked(id);
}

absl::Status LocalImageStore::ExtractInto(BlobSource& source, const Descriptor& manifest_desc, const Manifest& manifest,
                                          const ImageConfig& config, const Reference& ref, const fs::path& work,
                                          absl::Time deadline) const {
  SandboxOptions sandbox;
  sandbox.limits = options_.limits;
  sandbox.deadline = deadline;
  sandbox.uid = options_.extract_uid;
  sandbox.gid = options_.extract_gid;
  ASSIGN_OR_RETURN(BootArtifacts artifacts, ExtractBootArtifactsSandboxed(source, manifest.layers, work, sandbox));

  ImageInfo info;
  info.id = manifest.config.digest;
  info.manifest_digest = manifest_desc.digest;
  info.size = manifest.config.size;
  for (const Descriptor& l : manifest.layers) info.size += l.size;
  info.user = config.user;
  info.labels = config.labels;
  info.env = config.env;
  info.entrypoint = config.entrypoint;
  info.cmd = config.cmd;
  info.working_dir = config.working_dir;
  info.os = config.os;
  info.architecture = config.architecture;
  BootInfo& boot = info.boot;
  boot.unbootable_reason = artifacts.unbootable_reason;
  // Paths under `work` for now; image.json stores them relative. The
  // sandbox made the files root-owned and 0444.
  if (!artifacts.disk.empty()) {
    boot.disk = work / artifacts.disk;
    absl::StatusOr<DiskFormatInfo> format = DetectDiskFormat(boot.disk);
    if (!format.ok()) {
      return absl::InvalidArgumentError(
          base::StrCat("image ", ref.String(), ": /", artifacts.disk, ": ", base::Sv(format.status().message())));
    }
    boot.disk_format = format->format;
    boot.disk_virtual_size = format->virtual_size;
  }
  if (!artifacts.kernel.empty()) {
    boot.kind = BootKind::kKernel;
    boot.kernel = work / artifacts.kernel;
    if (!artifacts.initrd.empty()) boot.initrd = work / artifacts.initrd;
    if (auto it = config.labels.find(std::string(kCmdlineLabel)); it != config.labels.end()) {
      boot.cmdline = it->second;
    }
  } else if (!artifacts.disk.empty()) {
    boot.kind = BootKind::kDisk;
  }
  if (boot.kind == BootKind::kNone) {
    // A plain container image: its layers, for container roots
    // (docs/microvm.md). VM images keep only their boot files. Unpacking
    // with the files' owners takes root; a store opened by another user
    // (a test, a CLI run without root) keeps the image without them.
    if (::geteuid() == 0) {
      RETURN_IF_ERROR(EnsureLayers(source, manifest.layers, deadline));
      for (const Descriptor& l : manifest.layers) info.layers.push_back(l.digest);
    } else {
      base::LogWarn("plain image stored without its layers: unpacking them takes root", {{"image", ref.String()}});
    }
  }
  RETURN_IF_ERROR(base::WriteFileAtomic(work / "image.json", ImageToJson(info, work), 0444));
  for (const char* sub : {"disk", "boot"}) {
    struct stat st;
    if (::stat((work / sub).c_str(), &st) == 0) RETURN_IF_ERROR(base::SyncDir(work / sub));
  }
  return absl::OkStatus();
}

absl::Status LocalImageStore::EnsureLayers(BlobSource& source, const std::vector<Descriptor>& layers,
                                           absl::Time deadline) const {
  SandboxOptions sandbox;
  sandbox.limits = options_.limits;
  sandbox.deadline = deadline;
  LayerBudget budget;  // the image's layers together, as for extraction
  for (const Descriptor& l : layers) RETURN_IF_ERROR(layers_.Ensure(source, l, sandbox, &budget));
  return absl::OkStatus();
}

absl::Status LocalImageStore::CollectLayers(const std::set<std::string>& image_ids, bool all_staging) const {
  std::set<std::string> keep;
  for (const std::string& id : image_ids) {
    absl::StatusOr<ImageInfo> info = LoadImage(dir_, id);
    if (!info.ok()) {
      // Unreadable: keep everything rather than delete a layer it may use.
      base::LogWarn("image layers not collected: an image record is unreadable", {{"id", id}});
      return absl::OkStatus();
    }
    keep.insert(info->layers.begin(), info->layers.end());
  }
  return layers_.Collect(keep, all_staging);
}

absl::Status LocalImageStore::Remove(std::string_view ref, const ImageInUseFn& in_use) {
  absl::MutexLock wl(&write_mu_);
  ASSIGN_OR_RETURN(StoreLock lock, StoreLock::Acquire(dir_ / "lock", /*wait=*/true));
  ASSIGN_OR_RETURN(auto read, ReadIndex(dir_));
  RawIndex& index = read.first;
  ASSIGN_OR_RETURN(Match m, Lookup(index, ref));

  auto tags_of = [&](const std::string& id) {
    std::vector<std::string> tags;
    for (const auto& [r, target] : index.refs) {
      if (target == id && r.find('@') == std::string::npos) tags.push_back(r);
    }
    return tags;
  };
  if (!m.tag_ref.empty() && tags_of(m.id).size() > 1) {
    index.refs.erase(m.tag_ref);
    // The repository's digest reference goes with its last tag.
    std::string name = m.tag_ref.substr(0, m.tag_ref.rfind(':'));
    bool repo_still_tagged = false;
    for (const std::string& t : tags_of(m.id))
      repo_still_tagged |= t.substr(0, t.rfind(':')) == name;
    if (!repo_still_tagged) {
      for (auto it = index.refs.begin(); it != index.refs.end();) {
        bool drop = it->second == m.id && it->first.rfind(name + "@", 0) == 0;
        it = drop ? index.refs.erase(it) : std::next(it);
      }
    }
    RETURN_IF_ERROR(WriteIndex(dir_, index));
    base::LogInfo("image untagged", {{"ref", m.tag_ref}, {"id", m.id}});
  } else {
    if (in_use && in_use(m.id)) {
      return absl::FailedPreconditionError(
          base::StrCat("image \"", ref, "\" (", m.id, ") is in use by a container"));
    }
    std::set<std::string> manifests;
    for (auto it = index.refs.begin(); it != index.refs.end();) {
      if (it->second != m.id) {
        ++it;
        continue;
      }
      if (size_t at = it->first.find('@'); at != std::string::npos)
        manifests.insert(it->first.substr(at + 1));
      it = index.refs.erase(it);
    }
    if (absl::StatusOr<ImageInfo> info = LoadImage(dir_, m.id); info.ok())
      manifests.insert(info->manifest_digest);
    index.images.erase(m.id);
    index.pulled.erase(m.id);
    index.authenticated.erase(m.id);
    // Index first: from here on the directory is garbage, collected at the
    // next start if deleting it fails now.
    RETURN_IF_ERROR(WriteIndex(dir_, index));
    base::LogIfError(base::RemoveAll(ImageDir(dir_, m.id)), "remove image directory");
    // A manifest names its config, so its blobs belong to this image alone.
    manifests.insert(m.id);
    for (const std::string& d : manifests) {
      if (ValidateDigest(d, "digest").ok())
        base::LogIfError(base::RemoveFile(blobs_.BlobPath(d)), "remove blob");
    }
    // Its layers, unless another image still uses them (kubelet's image GC
    // frees disk this way).
    base::LogIfError(CollectLayers(index.images, /*all_staging=*/false), "remove image layers");
    base::LogInfo("image removed", {{"ref", std::string(ref)}, {"id", m.id}});
  }
  absl::MutexLock l(&mu_);
  return RefreshLocked();
}

}  // namespace kvcri::runtime::image
