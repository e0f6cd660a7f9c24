// RegistryFixture: a private docker-registry on a free loopback port for pull tests.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

#include "test/client/test_daemon.h"

namespace kvcri::testing {

// A private `docker-registry` (Debian's distribution registry) on
// 127.0.0.1:<free port>, plain HTTP, with its storage in a TempDir; optionally
// behind htpasswd basic auth. Images get in with skopeo (Push).
//
// The destructor kills the registry and removes its storage.
class RegistryFixture {
 public:
  struct Options {
    // Non-empty: the registry requires these credentials (htpasswd, bcrypt).
    std::string username;
    std::string password;
    // Extra YAML appended under the registry config's top level (e.g. an
    // `auth: token:` section). Replaces htpasswd auth when set.
    std::string extra_config;
  };

  RegistryFixture() : RegistryFixture(Options{}) {}
  explicit RegistryFixture(Options options);
  ~RegistryFixture();
  RegistryFixture(const RegistryFixture&) = delete;
  RegistryFixture& operator=(const RegistryFixture&) = delete;

  // Writes the config, starts the registry and waits until /v2/ answers
  // (200, or 401 with auth). Fails the test (never skips) when a tool is
  // missing or the registry does not come up.
  void Start();

  // `skopeo copy --dest-tls-verify=false [--dest-creds u:p] [extra...]
  // oci:<layout_dir> docker://127.0.0.1:PORT/<repo_tag>`. Fails the test when
  // skopeo fails. `layout_dir` may carry skopeo's ":<ref>" suffix.
  void Push(const std::string& layout_dir, const std::string& repo_tag,
            const std::vector<std::string>& extra_args = {});

  // The manifest digest of `repo_tag` as the registry reports it
  // (`skopeo inspect --raw` hashed); "" with a test failure on error.
  std::string ManifestDigest(const std::string& repo_tag);

  // "127.0.0.1:PORT".
  std::string Host() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  // The registry's filesystem storage root (docker/registry/v2/... below).
  std::filesystem::path storage() const { return dir_.path() / "storage"; }
  const std::filesystem::path& dir() const { return dir_.path(); }
  std::string Log() const;

 private:
  Options options_;
  TempDir dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// Runs `command` with bash; returns the exit status and puts stdout and
// stderr in *out.
int RunShell(const std::string& command, std::string* out);

// Quotes `s` for /bin/sh.
std::string ShellQuote(const std::string& s);

}  // namespace kvcri::testing
