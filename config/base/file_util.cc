// File helpers: atomic writes with fsync, reads, mkdir -p, rm -rf, random hex.
#include "config/base/file_util.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include "config/base/str.h"
#include "config/base/unique_fd.h"

namespace kvcri::base {
namespace fs = std::filesystem;

namespace {

absl::Status Errno(int err, std::string_view op, const fs::path& path) {
  return absl::ErrnoToStatus(err, base::StrCat(op, " \"", path.string(), "\""));
}

absl::Status WriteAll(int fd, std::string_view data, const fs::path& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno(errno, "write", path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SyncDir(const fs::path& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return Errno(errno, "open", dir);
  if (::fsync(fd.get()) != 0) return Errno(errno, "fsync", dir);
  return absl::OkStatus();
}

absl::Status WriteFileAtomic(const fs::path& path, std::string_view content, mode_t mode) {
  fs::path dir = path.parent_path();
  std::string tmpl = (dir / ("." + path.filename().string() + ".tmpXXXXXX")).string();
  UniqueFd fd(::mkostemp(tmpl.data(), O_CLOEXEC));
  if (!fd.valid()) return Errno(errno, "create temp file for", path);
  auto unlink_tmp = [&] { ::unlink(tmpl.c_str()); };
  if (absl::Status s = WriteAll(fd.get(), content, tmpl); !s.ok()) {
    unlink_tmp();
    return s;
  }
  if (::fchmod(fd.get(), mode) != 0 || ::fsync(fd.get()) != 0) {
    absl::Status s = Errno(errno, "fsync", tmpl);
    unlink_tmp();
    return s;
  }
  fd.Reset();
  if (::rename(tmpl.c_str(), path.c_str()) != 0) {
    absl::Status s = Errno(errno, "rename onto", path);
    unlink_tmp();
    return s;
  }
  return SyncDir(dir.empty() ? fs::path(".") : dir);
}

absl::StatusOr<std::string> ReadFile(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Errno(errno, "open", path);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno(errno, "read", path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

absl::StatusOr<std::string> ReadFileAtMost(const fs::path& path, size_t limit, bool follow_symlinks) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | (follow_symlinks ? 0 : O_NOFOLLOW)));
  if (!fd.valid()) return Errno(errno, "open", path);
  std::string out;
  char buf[65536];
  while (out.size() <= limit) {
    const size_t want = std::min(sizeof buf, limit + 1 - out.size());
    ssize_t n = ::read(fd.get(), buf, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno(errno, "read", path);
    }
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
  return absl::OutOfRangeError(base::StrCat("\"", path.string(), "\" is larger than ", limit, " bytes"));
}

absl::Status MakeDirs(const fs::path& path, mode_t mode) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return absl::OkStatus();
  fs::path parent = path.parent_path();
  if (!parent.empty() && parent != path) {
    if (absl::Status s = MakeDirs(parent, mode); !s.ok()) return s;
  }
  if (::mkdir(path.c_str(), mode) != 0) {
    if (errno == EEXIST) return absl::OkStatus();
    return Errno(errno, "mkdir", path);
  }
  // A new directory is an entry of its parent: without this fsync a crash
  // can lose the directory, and with it every file already fsync'd inside.
  return SyncDir(parent.empty() ? fs::path(".") : parent);
}

absl::Status RemoveAll(const fs::path& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return Errno(ec.value(), "remove", path);
  }
  return absl::OkStatus();
}

absl::Status RemoveFile(const fs::path& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Errno(errno, "unlink", path);
  return absl::OkStatus();
}

absl::StatusOr<std::string> RandomHex(size_t n) {
  std::string raw(n, '\0');
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::getrandom(raw.data() + got, n - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, "getrandom");
    }
    got += static_cast<size_t>(r);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (unsigned char c : raw) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

bool IsLowerHex(std::string_view s, size_t len) {
  if (s.size() != len) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

absl::StatusOr<uint64_t> FileOrBlockDeviceSize(int fd, const std::filesystem::path& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return absl::ErrnoToStatus(errno, StrCat("stat \"", path.native(), "\""));
  if (S_ISREG(st.st_mode)) return static_cast<uint64_t>(st.st_size);
  if (!S_ISBLK(st.st_mode)) {
    return absl::InvalidArgumentError(StrCat("\"", path.native(), "\" is neither a block device nor a file"));
  }
  uint64_t size = 0;
  if (::ioctl(fd, BLKGETSIZE64, &size) != 0) {
    return absl::ErrnoToStatus(errno, StrCat("BLKGETSIZE64 \"", path.native(), "\""));
  }
  return size;
}

}  // namespace kvcri::base
