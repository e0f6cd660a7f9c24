// RegistryPuller: pulls into the store, one download shared by concurrent pulls of a reference.
#include "runtime/image/puller.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <set>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/metrics.h"
#include "config/base/rollback.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "runtime/image/digest.h"

namespace kvcri::runtime::image {
namespace {

namespace fs = std::filesystem;

// Counts a pull's bytes and logs them (and the rate) now and then.
class Progress {
 public:
  Progress(std::string image, int64_t total, absl::Duration interval, base::MetricFamily* bytes)
      : image_(std::move(image)), total_(total), interval_(interval), bytes_(bytes) {}
  void Add(int64_t n) {
    done_ += n;
    if (bytes_ != nullptr) bytes_->Add({}, static_cast<double>(n));
    absl::Time now = absl::Now();
    if (now - last_ >= interval_) {
      last_ = now;
      Log("pull progress");
    }
  }
  void Log(std::string_view msg) const {
    double secs = std::max(0.001, absl::ToDoubleSeconds(absl::Now() - start_));
    char rate[32];
    std::snprintf(rate, sizeof rate, "%.2f", static_cast<double>(done_) / secs / (1 << 20));
    base::LogInfo(msg, {{"image", image_},
                        {"bytes", base::StrCat(done_)},
                        {"total_bytes", base::StrCat(total_)},
                        {"rate_mib_s", rate},
                        {"took_ms", base::StrCat(static_cast<int64_t>(secs * 1000))}});
  }

 private:
  std::string image_;
  int64_t total_;
  int64_t done_ = 0;
  absl::Duration interval_;
  base::MetricFamily* const bytes_;
  absl::Time start_ = absl::Now();
  absl::Time last_ = absl::Now();
};

// A blob being downloaded into the pull's work directory, hashed as it
// arrives; Finish() verifies it and gives it its content address.
class BlobFile : public BlobSink {
 public:
  static absl::StatusOr<std::unique_ptr<BlobFile>> Create(const fs::path& blob_dir,
                                                          const Descriptor& desc,
                                                          Progress* progress) {
    fs::path tmp = blob_dir / base::StrCat(DigestHex(desc.digest), ".partial");
    base::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd.valid()) return absl::ErrnoToStatus(errno, base::StrCat("create \"", tmp.string(), "\""));
    return std::unique_ptr<BlobFile>(new BlobFile(std::move(fd), tmp, blob_dir, desc, progress));
  }

  absl::Status Write(std::string_view data) override {
    hash_.Update(data.data(), data.size());
    written_ += static_cast<int64_t>(data.size());
    if (progress_) progress_->Add(static_cast<int64_t>(data.size()));
    while (!data.empty()) {
      ssize_t n = ::write(fd_.get(), data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return absl::ErrnoToStatus(errno, base::StrCat("write \"", tmp_.string(), "\""));
      data.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }
  absl::Status Reset() override {
    if (::ftruncate(fd_.get(), 0) != 0 || ::lseek(fd_.get(), 0, SEEK_SET) != 0) {
      return absl::ErrnoToStatus(errno, base::StrCat("truncate \"", tmp_.string(), "\""));
    }
    hash_ = Sha256();
    if (progress_) progress_->Add(-written_);
    written_ = 0;
    return absl::OkStatus();
  }
  int64_t written() const override { return written_; }

  absl::Status Finish(std::string_view image) {
    std::string got = hash_.Finish();
    if (got != desc_.digest) {
      return absl::InvalidArgumentError(base::StrCat("digest mismatch: blob ", desc_.digest,
                                                     " of image \"", image,
                                                     "\" has content digest ", got));
    }
    fd_.Reset();
    fs::path final_path = dir_ / std::string(DigestHex(desc_.digest));
    if (::rename(tmp_.c_str(), final_path.c_str()) != 0) {
      return absl::ErrnoToStatus(errno, base::StrCat("rename \"", tmp_.string(), "\""));
    }
    return absl::OkStatus();
  }

 private:
  BlobFile(base::UniqueFd fd, fs::path tmp, fs::path dir, Descriptor desc, Progress* progress)
      : fd_(std::move(fd)),
        tmp_(std::move(tmp)),
        dir_(std::move(dir)),
        desc_(std::move(desc)),
        progress_(progress) {}

  base::UniqueFd fd_;
  fs::path tmp_;
  fs::path dir_;
  Descriptor desc_;
  Progress* progress_;
  Sha256 hash_;
  int64_t written_ = 0;
};

}  // namespace

struct RegistryPuller::Flight {
  absl::Notification done;
  absl::StatusOr<ImageInfo> result = absl::InternalError("pull ended without a result");
};

// Ends a flight on every path out of the leader: removes it from flights_
// (so the next pull of the reference starts afresh) and wakes its waiters.
class RegistryPuller::FlightRelease {
 public:
  FlightRelease(RegistryPuller* puller, std::string key, std::shared_ptr<Flight> flight)
      : puller_(puller), key_(std::move(key)), flight_(std::move(flight)) {}
  FlightRelease(const FlightRelease&) = delete;
  FlightRelease& operator=(const FlightRelease&) = delete;
  ~FlightRelease() {
    {
      absl::MutexLock l(&puller_->mu_);
      if (auto it = puller_->flights_.find(key_); it != puller_->flights_.end() && it->second == flight_) {
        puller_->flights_.erase(it);
      }
    }
    flight_->done.Notify();
  }

 private:
  RegistryPuller* puller_;
  std::string key_;
  std::shared_ptr<Flight> flight_;
};

namespace {

// The flight key: the reference and a digest of every credential field, so
// callers with different credentials never share an answer.
std::string FlightKey(const Reference& ref, const RegistryCredentials& creds) {
  std::string secret;
  for (const std::string* f :
       {&creds.username, &creds.password, &creds.auth, &creds.registry_token, &creds.server_address}) {
    secret += base::StrCat(f->size(), ":", *f, ";");
  }
  return base::StrCat(ref.String(), " ", Sha256Digest(secret));
}

}  // namespace

RegistryPuller::RegistryPuller(LocalImageStore* store, HttpFetcher* http, PullerOptions options)
    : store_(store), http_(http), options_(std::move(options)) {}

absl::StatusOr<ImageInfo> RegistryPuller::Pull(std::string_view ref_text,
                                               const RegistryCredentials& creds) {
  ASSIGN_OR_RETURN(Reference ref, ParseReference(ref_text));
  const std::string key = FlightKey(ref, creds);
  std::shared_ptr<Flight> flight;
  bool leader = false;
  {
    absl::MutexLock l(&mu_);
    auto& slot = flights_[key];
    if (!slot) {
      slot = std::make_shared<Flight>();
      leader = true;
    }
    flight = slot;
  }
  if (!leader) {
    base::LogInfo("waiting for a pull of the same image in progress", {{"image", ref.String()}});
    flight->done.WaitForNotification();
    return flight->result;
  }
  FlightRelease release(this, key, flight);
  const absl::Time start = absl::Now();
  flight->result = DoPullCaught(ref, creds);
  if (options_.pull_durations != nullptr) {
    options_.pull_durations->Observe({flight->result.ok() ? "ok" : "error"}, absl::ToDoubleSeconds(absl::Now() - start));
  }
  return flight->result;
}

absl::StatusOr<ImageInfo> RegistryPuller::DoPullCaught(const Reference& ref, const RegistryCredentials& creds) {
  try {
    return DoPull(ref, creds);
  } catch (const std::exception& e) {
    return absl::InternalError(
        base::StrCat("pull of image \"", ref.String(), "\" failed on an unexpected answer: ", e.what()));
  }
}

absl::StatusOr<ImageInfo> RegistryPuller::DoPull(const Reference& ref,
                                                 const RegistryCredentials& creds) {
  const absl::Time start = absl::Now();
  const std::string image = ref.String();
  RegistryClient client(http_, options_.registry, ref, creds, start + options_.timeout);
  // A digest already stored needs no download. An image that was pulled
  // with credentials is only handed to a caller the registry still lets read
  // it (as containerd and CRI-O check with a manifest request).
  if (!ref.digest.empty()) {
    if (absl::StatusOr<ImageInfo> have = store_->Resolve(ref.DigestRef()); have.ok()) {
      if (!have->pulled_with_credentials) return have;
      if (absl::Status s = client.CheckManifestAccess(ref.digest); !s.ok()) {
        return absl::Status(s.code(), base::StrCat("image \"", image,
                                                   "\" is stored, but was pulled with credentials and the registry "
                                                   "does not let this pull read it: ",
                                                   s.message()));
      }
      base::LogInfo("image found in the store; the registry confirmed access", {{"image", image}});
      return have;
    }
  }
  base::LogInfo("pulling image", {{"image", image}});

  ASSIGN_OR_RETURN(FetchedManifest top, client.GetManifest(ref.digest.empty() ? ref.tag : ref.digest));
  FetchedManifest manifest = top;
  if (IsIndexMediaType(top.media_type)) {
    ASSIGN_OR_RETURN(std::vector<Descriptor> entries, ParseIndex(top.bytes));
    const Descriptor* pick = nullptr;
    std::string seen;
    for (const Descriptor& d : entries) {
      seen += base::StrCat(seen.empty() ? "" : ", ", d.os.empty() ? "?" : d.os, "/",
                           d.architecture.empty() ? "?" : d.architecture);
      if (pick == nullptr && d.os == "linux" && d.architecture == HostArchitecture() &&
          (d.media_type.empty() || IsManifestMediaType(d.media_type))) {
        pick = &d;
      }
    }
    if (pick == nullptr) {
      return absl::NotFoundError(base::StrCat("image \"", image, "\" has no linux/",
                                              HostArchitecture(), " manifest in its index (",
                                              seen.empty() ? "empty" : seen, ")"));
    }
    ASSIGN_OR_RETURN(manifest, client.GetManifest(pick->digest));
    if (!IsManifestMediaType(manifest.media_type)) {
      return absl::InvalidArgumentError(base::StrCat("unsupported media type: index entry ",
                                                     pick->digest, " of image \"", image,
                                                     "\" is \"", manifest.media_type, "\""));
    }
  }
  absl::StatusOr<Manifest> parsed = ParseManifest(manifest.bytes);
  if (!parsed.ok()) {
    return absl::Status(parsed.status().code(),
                        base::StrCat("image \"", image, "\": ", parsed.status().message()));
  }

  // Work directory: an OCI-layout-like blob dir Commit reads from. It goes
  // away in every case; the store's tmp/ is also collected at start-up.
  ASSIGN_OR_RETURN(std::string rnd, base::RandomHex(8));
  const fs::path work = store_->dir() / "tmp" / base::StrCat("pull-", rnd);
  const fs::path blob_dir = work / "blobs" / "sha256";
  RETURN_IF_ERROR(base::MakeDirs(blob_dir, 0700));
  base::Rollback cleanup;
  cleanup.Add("remove pull work directory", [work] { return base::RemoveAll(work); });
  for (const FetchedManifest* m : {&top, &manifest}) {
    RETURN_IF_ERROR(
        base::WriteFileAtomic(blob_dir / std::string(DigestHex(m->digest)), m->bytes, 0644));
  }

  // Sizes the manifest declares are checked before a byte is downloaded.
  const int64_t max_bytes = store_->limits().max_bytes;
  if (parsed->config.size > kMaxConfigBytes) {
    return absl::InvalidArgumentError(base::StrCat("image \"", image, "\": config ", parsed->config.digest,
                                                   " declares ", parsed->config.size, " bytes, more than the limit of ",
                                                   kMaxConfigBytes));
  }
  std::vector<Descriptor> blobs = {parsed->config};
  blobs.insert(blobs.end(), parsed->layers.begin(), parsed->layers.end());
  int64_t total = 0;
  for (const Descriptor& d : blobs) {
    if (d.size > max_bytes - total) {
      return absl::InvalidArgumentError(base::StrCat("image \"", image, "\": layer ", d.digest, " declares ", d.size,
                                                     " bytes; the image's blobs would exceed ",
                                                     "[images] max_image_bytes (", max_bytes, ")"));
    }
    total += d.size;
  }
  Progress progress(image, total, options_.progress_interval, options_.pulled_bytes);
  std::set<std::string> fetched;
  for (const Descriptor& d : blobs) {
    if (!fetched.insert(d.digest).second) continue;  // a layer listed twice
    ASSIGN_OR_RETURN(std::unique_ptr<BlobFile> file, BlobFile::Create(blob_dir, d, &progress));
    RETURN_IF_ERROR(client.GetBlob(d, *file));
    RETURN_IF_ERROR(file->Finish(image));
  }
  progress.Log("pull downloaded");

  Descriptor manifest_desc;
  manifest_desc.media_type = manifest.media_type;
  manifest_desc.digest = manifest.digest;
  manifest_desc.size = static_cast<int64_t>(manifest.bytes.size());
  DirBlobSource source(work);
  LocalImageStore::CommitOptions commit;
  commit.origin = LocalImageStore::Origin::kPull;
  commit.pulled_with_credentials = client.used_credentials();
  commit.deadline = start + options_.timeout;
  absl::StatusOr<ImageInfo> info = store_->Commit(source, manifest_desc, top.digest, ref, commit);
  if (!info.ok()) {
    return absl::Status(info.status().code(), base::StrCat("image \"", image, "\" from ",
                                                           client.endpoint(), " refused: ",
                                                           info.status().message()));
  }
  base::LogInfo("image pulled",
                {{"image", image},
                 {"id", info->id},
                 {"digest", top.digest},
                 {"from", client.endpoint()},
                 {"bytes", base::StrCat(total)},
                 {"took_ms", base::StrCat(absl::ToInt64Milliseconds(absl::Now() - start))}});
  return info;
}

}  // namespace kvcri::runtime::image
