// The ImagePuller interface cri/ pulls through, and RegistryPuller, its registry implementation.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "runtime/image/http_fetcher.h"
#include "runtime/image/image_store.h"
#include "runtime/image/registry_auth.h"
#include "runtime/image/registry_client.h"

namespace kvcri::base {
class MetricFamily;
}  // namespace kvcri::base

namespace kvcri::runtime::image {

// Brings an image from a registry into the store. cri/ talks to this.
class ImagePuller {
 public:
  virtual ~ImagePuller() = default;
  // Pulls `ref` (any form ParseReference accepts) and returns the stored
  // image. Concurrent pulls of the same reference with the same credentials
  // share one download.
  virtual absl::StatusOr<ImageInfo> Pull(std::string_view ref, const RegistryCredentials& creds) = 0;
};

struct PullerOptions {
  RegistryOptions registry;
  // A pull (all its requests and the extraction) must finish within this.
  absl::Duration timeout = absl::Minutes(30);
  // How often a running download logs its progress.
  absl::Duration progress_interval = absl::Seconds(5);
  // kvcri_image_pull_bytes_total (a counter without labels): blob bytes
  // received from registries, failed pulls included. Null: not counted.
  base::MetricFamily* pulled_bytes = nullptr;
  // kvcri_image_pull_duration_seconds{result="ok"|"error"} (a histogram):
  // each pull this puller ran, from its first request to the image in the
  // store (a digest already stored answers at once). A pull that joined one
  // in flight for the same image is not observed again.
  base::MetricFamily* pull_durations = nullptr;
};

// Pulls over the OCI distribution API: resolves the tag (or digest) to a
// manifest, picking linux/<host arch> from an index; downloads config and
// layers into <store>/tmp/pull-*/ verifying each digest; then commits
// through LocalImageStore::Commit, which extracts in the sandbox. A failed
// pull leaves nothing in the store.
class RegistryPuller : public ImagePuller {
 public:
  RegistryPuller(LocalImageStore* store, HttpFetcher* http, PullerOptions options);
  absl::StatusOr<ImageInfo> Pull(std::string_view ref, const RegistryCredentials& creds) override;

 private:
  struct Flight;
  class FlightRelease;
  absl::StatusOr<ImageInfo> DoPull(const Reference& ref, const RegistryCredentials& creds);
  // DoPull with anything thrown turned into a Status: a pull must always end
  // its flight with an answer.
  absl::StatusOr<ImageInfo> DoPullCaught(const Reference& ref, const RegistryCredentials& creds);

  LocalImageStore* store_;
  HttpFetcher* http_;
  PullerOptions options_;
  absl::Mutex mu_;
  // In-flight pulls by normalized reference and a hash of the credentials:
  // a caller never joins a pull made with someone else's credentials.
  absl::flat_hash_map<std::string, std::shared_ptr<Flight>> flights_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvcri::runtime::image
