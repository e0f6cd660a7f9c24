// The ImageStore interface and LocalImageStore: images on disk and how a VM boots from them.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "config/base/unique_fd.h"
#include "config/config.h"
#include "runtime/image/disk_format.h"
#include "runtime/image/extract.h"
#include "runtime/image/layer_store.h"
#include "runtime/image/oci.h"
#include "runtime/image/reference.h"

namespace kvcri::runtime::image {

// An image config larger than this is refused (before a pull downloads it).
inline constexpr int64_t kMaxConfigBytes = 8 << 20;

// The image config label holding a kernel-boot image's command line.
inline constexpr std::string_view kCmdlineLabel = "io.kubevirt-cri.cmdline";

// How a VM boots from an image.
enum class BootKind {
  kNone,    // stored, but CreateContainer must refuse it (see unbootable_reason)
  kDisk,    // containerDisk: firmware boots the single disk under /disk/
  kKernel,  // direct kernel boot: /boot/vmlinuz [+ /boot/initrd.img]
};
std::string_view BootKindName(BootKind kind);  // "none", "disk", "kernel"

struct BootInfo {
  BootKind kind = BootKind::kNone;
  std::string unbootable_reason;  // kNone: why, for FailedPrecondition
  // Absolute paths of read-only (0444) files in the store; never write them.
  // `disk` is set for kDisk, and for kKernel when the image also has one disk.
  std::filesystem::path disk;
  DiskFormat disk_format = DiskFormat::kRaw;  // detected at import; QEMU never probes
  uint64_t disk_virtual_size = 0;
  std::filesystem::path kernel;  // kKernel
  std::filesystem::path initrd;  // kKernel, optional
  std::string cmdline;           // kKernel: label io.kubevirt-cri.cmdline
};

struct ImageInfo {
  std::string id;  // "sha256:<hex>": the config digest
  // Normalized: "docker.io/library/busybox:latest", "docker.io/library/busybox@sha256:<manifest>".
  std::vector<std::string> repo_tags;
  std::vector<std::string> repo_digests;
  std::string manifest_digest;  // of the manifest first imported
  int64_t size = 0;             // config + compressed layers, bytes
  // From the image config. `uid` is set when User's user part is numeric,
  // `username` otherwise.
  std::string user;
  std::optional<int64_t> uid;
  std::string username;
  std::map<std::string, std::string> labels;
  std::vector<std::string> env;
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::string working_dir;
  // A plain container image (boot kind none): its layers, bottom first, as
  // digests and as the layer store's unpacked directories (overlayfs lower
  // layers of a container's root). Empty for VM images.
  std::vector<std::string> layers;
  std::vector<std::filesystem::path> layer_dirs;
  std::string os;
  std::string architecture;
  BootInfo boot;
  // Imported images are pinned (kubelet could not pull them back); pulled
  // ones are not, so kubelet's image garbage collection may remove them.
  bool pinned = true;
  // Some pull of it used credentials: a later pull answered from the store
  // first asks the registry whether that caller may read it.
  bool pulled_with_credentials = false;
};

// For ImageFsInfo: what the store occupies.
struct ImageFsUsage {
  uint64_t used_bytes = 0;  // allocated blocks
  uint64_t inodes_used = 0;
};

// Tells Remove whether a container still uses image `image_id`.
using ImageInUseFn = std::function<bool(std::string_view image_id)>;

// Where Pods' images live. cri/ talks to this interface; tests use a fake.
class ImageStore {
 public:
  virtual ~ImageStore() = default;

  // Imports the image of an OCI image layout directory (skopeo `oci:DIR:TAG`,
  // umoci) under reference `ref`. `layout_tag` picks the layout's image by its
  // org.opencontainers.image.ref.name; when empty, the layout's only image,
  // or the one named like `ref`'s tag or digest. A `ref` with a digest must
  // match the layout's manifest (or index). Importing an image that is
  // already stored only adds the reference.
  virtual absl::StatusOr<ImageInfo> Import(const std::filesystem::path& oci_layout_dir,
                                           std::string_view ref, std::string_view layout_tag) = 0;

  // Finds an image by short or normalized name (busybox,
  // docker.io/library/busybox:latest), name@sha256:<manifest>, full id
  // sha256:<hex> (or bare <hex>), or an unambiguous id prefix. NotFound
  // names `ref`; an ambiguous prefix is InvalidArgument.
  virtual absl::StatusOr<ImageInfo> Resolve(std::string_view ref) = 0;

  // Every image, ordered by id.
  virtual absl::StatusOr<std::vector<ImageInfo>> List() = 0;

  // By tag, when the image has other tags: removes only that tag (and the
  // repository's digest reference if no other tag of it remains). Otherwise
  // (by id, digest, or its last tag) deletes the image, unless `in_use(id)`
  // says a container uses it: FailedPrecondition naming it.
  virtual absl::Status Remove(std::string_view ref, const ImageInUseFn& in_use) = 0;

  virtual absl::StatusOr<ImageFsUsage> FsUsage() = 0;
};

// Writes one blob into the store's content-addressed blob directory,
// verifying its digest and size (for registry pulls). Destruction before
// Commit() removes the partial file.
class BlobWriter {
 public:
  BlobWriter(BlobWriter&& other) noexcept;
  BlobWriter& operator=(BlobWriter&&) = delete;
  ~BlobWriter();

  absl::Status Write(std::string_view data);
  // Checks digest and size, then renames into blobs/sha256/<hex>.
  absl::Status Commit();

 private:
  friend class LocalImageStore;
  BlobWriter(base::UniqueFd fd, std::filesystem::path tmp, std::filesystem::path final_path,
             Descriptor desc);

  base::UniqueFd fd_;
  std::filesystem::path tmp_;
  std::filesystem::path final_;
  Descriptor desc_;
  Sha256 hash_;
  int64_t written_ = 0;
};

// The on-disk store, shared by the daemon and `kubevirt-cri images import`
// running at the same time:
//
// Every directory is 0700 (made so at Open when it was wider).
//
//   <dir>/lock                     flock(LOCK_EX) around every mutation
//   <dir>/index.json               refs and image ids; written atomically, last
//   <dir>/blobs/sha256/<hex>       manifests and configs (and a puller's layers)
//   <dir>/store/<id-hex>/          image.json + disk/<name> | boot/vmlinuz, boot/initrd.img
//   <dir>/tmp/                     extraction and ingest work, renamed into store/;
//                                  an import-* directory is flocked while in use
//   <dir>/layers/sha256/<hex>/     plain images' layers, unpacked once each
//                                  (layer_store.h); removed with the last image using them
//
// Lookups re-read index.json when its inode, size or mtime changed, so a
// daemon sees images the other process imported. image.json is immutable
// once the image directory is renamed into place; refs (and so repo_tags and
// repo_digests) live only in index.json, so (re)tagging is one atomic write.
class LocalImageStore : public ImageStore {
 public:
  struct Options {
    // At Open, when no other process holds the lock: delete tmp/, image
    // directories and blobs the index does not reference, and index entries
    // whose image.json is unreadable. The daemon sets it; the CLI does not.
    bool collect_garbage = true;
    // Bounds on one image's extraction ([images] max_image_bytes,
    // max_image_entries).
    ExtractLimits limits;
    // The unprivileged uid/gid the extraction child runs as when the store
    // is used as root ([images] extract_uid, extract_gid); never 0.
    uid_t extract_uid = 65534;
    gid_t extract_gid = 65534;
    // The [images] keys above, from the config (validated there).
    static Options FromConfig(const config::ImagesConfig& images, bool collect_garbage);
  };

  // `dir` is <root>/images; it is created when missing.
  static absl::StatusOr<std::unique_ptr<LocalImageStore>> Open(std::filesystem::path dir,
                                                               const Options& options);

  absl::StatusOr<ImageInfo> Import(const std::filesystem::path& oci_layout_dir,
                                   std::string_view ref, std::string_view layout_tag) override;
  absl::StatusOr<ImageInfo> Resolve(std::string_view ref) override;
  absl::StatusOr<std::vector<ImageInfo>> List() override;
  absl::Status Remove(std::string_view ref, const ImageInUseFn& in_use) override;
  absl::StatusOr<ImageFsUsage> FsUsage() override;

  // For a registry puller: add blobs, then commit the image from them.
  bool HasBlob(std::string_view digest) const;
  absl::StatusOr<BlobWriter> NewBlobWriter(const Descriptor& desc);
  // The store's own blobs, as a BlobSource for Commit().
  BlobSource& blobs() { return blobs_; }
  // Verifies and stores the image whose manifest is `manifest` (read from
  // `source`) under `ref`; `repo_digest` is the digest `ref@` resolves to
  // (the index's when the manifest came from one). Import() ends here too.
  // `origin` decides pinning: an image ever imported stays pinned; one only
  // ever pulled is not.
  //
  // Extraction runs without the store's lock (another pull, import or
  // Remove does not wait behind it), in tmp/import-*/ (flocked, so a
  // start-up garbage collection in another process leaves it alone); only
  // the rename into store/ and the index write happen under the lock.
  enum class Origin { kImport, kPull };
  struct CommitOptions {
    Origin origin = Origin::kPull;
    // The pull used credentials (sticky: the image stays marked).
    bool pulled_with_credentials = false;
    // Extraction ends by then (DeadlineExceeded): the pull timeout.
    absl::Time deadline = absl::InfiniteFuture();
  };
  absl::StatusOr<ImageInfo> Commit(BlobSource& source, const Descriptor& manifest,
                                   std::string_view repo_digest, const Reference& ref,
                                   Origin origin = Origin::kPull);
  absl::StatusOr<ImageInfo> Commit(BlobSource& source, const Descriptor& manifest, std::string_view repo_digest,
                                   const Reference& ref, const CommitOptions& options);

  const ExtractLimits& limits() const { return options_.limits; }

  const std::filesystem::path& dir() const { return dir_; }

  // index.json and the image.json files it names, parsed (defined in the .cc).
  struct Snapshot;

 private:
  LocalImageStore(std::filesystem::path dir, Options options);

  absl::Status CollectGarbage();
  // Extracts the image into `work` (its image directory to be) with the
  // store's limits, and writes its image.json there. No lock held.
  absl::Status ExtractInto(BlobSource& source, const Descriptor& manifest_desc, const Manifest& manifest,
                           const ImageConfig& config, const Reference& ref, const std::filesystem::path& work,
                           absl::Time deadline) const;
  // Re-reads index.json if it changed since the last read.
  absl::Status RefreshLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  ImageInfo InfoLocked(const std::string& id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The layers of `info` (a plain image) unpacked where missing.
  absl::Status EnsureLayers(BlobSource& source, const std::vector<Descriptor>& layers, absl::Time deadline) const;
  // Layers no image of `index` uses go.
  absl::Status CollectLayers(const std::set<std::string>& image_ids, bool all_staging) const;

  const std::filesystem::path dir_;
  const Options options_;
  DirBlobSource blobs_;
  LayerStore layers_;
  // Serializes this process's mutations; the flock serializes processes.
  absl::Mutex write_mu_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const Snapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  // (dev, ino, size, mtime ns) of the index.json the snapshot came from.
  std::array<int64_t, 4> stamp_ ABSL_GUARDED_BY(mu_) = {-1, -1, -1, -1};
};

}  // namespace kvcri::runtime::image
