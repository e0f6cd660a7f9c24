// UidClaims: exclusive claim files with stale takeover (uid_claims.h).
#include "sandbox/uid_claims.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "config/base/file_util.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"

namespace kvcri::sandbox {

std::filesystem::path UidClaims::ClaimPath(uint32_t uid) const { return dir_ / base::StrCat(uid); }

absl::StatusOr<base::UniqueFd> UidClaims::Lock() const {
  const std::filesystem::path lock_path = dir_ / ".lock";
  base::UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock.valid()) return absl::ErrnoToStatus(errno, base::StrCat("open \"", lock_path.string(), "\""));
  while (::flock(lock.get(), LOCK_EX) < 0) {
    if (errno != EINTR) return absl::ErrnoToStatus(errno, base::StrCat("flock \"", lock_path.string(), "\""));
  }
  return lock;
}

absl::StatusOr<bool> UidClaims::TryClaim(uint32_t uid, const std::filesystem::path& owner_dir, absl::Time now) {
  if (absl::Status s = base::MakeDirs(dir_, 0700); !s.ok()) return s;
  // One claimer at a time on the node: a stale claim's takeover (read,
  // judge, unlink, create) must not interleave with another's.
  absl::StatusOr<base::UniqueFd> lock = Lock();
  if (!lock.ok()) return lock.status();
  const std::filesystem::path path = ClaimPath(uid);
  const std::string owner = owner_dir.string();
  for (int attempt = 0; attempt < 2; ++attempt) {
    base::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (fd.valid()) {
      if (::write(fd.get(), owner.data(), owner.size()) != static_cast<ssize_t>(owner.size())) {
        const int err = errno;
        ::unlink(path.c_str());
        return absl::ErrnoToStatus(err, base::StrCat("write \"", path.string(), "\""));
      }
      return true;
    }
    if (errno != EEXIST) return absl::ErrnoToStatus(errno, base::StrCat("create \"", path.string(), "\""));
    absl::StatusOr<std::string> held = base::ReadFileAtMost(path, 4096, /*follow_symlinks=*/false);
    if (!held.ok()) {
      if (absl::IsNotFound(held.status())) continue;  // released meanwhile
      return held.status();
    }
    if (*held == owner) return true;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) continue;
    const bool old = now - absl::FromUnixSeconds(st.st_mtime) > kStaleAfter;
    std::error_code ec;
    if (held->empty() || !old || std::filesystem::exists(*held, ec)) return false;
    // Stale: its owner's container is gone. Only one taker wins the unlink.
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return absl::ErrnoToStatus(errno, base::StrCat("remove stale \"", path.string(), "\""));
    }
  }
  return false;
}

absl::Status UidClaims::Release(uint32_t uid, const std::filesystem::path& owner_dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir_, ec)) return absl::OkStatus();
  absl::StatusOr<base::UniqueFd> lock = Lock();
  if (!lock.ok()) return lock.status();
  const std::filesystem::path path = ClaimPath(uid);
  absl::StatusOr<std::string> held = base::ReadFileAtMost(path, 4096, /*follow_symlinks=*/false);
  if (!held.ok()) return absl::IsNotFound(held.status()) ? absl::OkStatus() : held.status();
  if (*held != owner_dir.string()) return absl::OkStatus();
  return base::RemoveFile(path);
}

}  // namespace kvcri::sandbox
