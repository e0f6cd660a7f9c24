// File helpers every module shares: WriteFileAtomic, ReadFile, MakeDirs, RemoveAll, RandomHex.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvcri::base {

// Writes `content` to `path` atomically: temp file in the same directory,
// fsync, rename, fsync of the directory. A crash leaves the old or the new file.
absl::Status WriteFileAtomic(const std::filesystem::path& path, std::string_view content,
                             mode_t mode = 0600);

// Reads a whole file. NotFound when it does not exist.
absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path);

// ReadFile for files whose author is not trusted with our memory: at most
// `limit` bytes are ever held (one more is read to tell an oversize file
// from one exactly at the bound, which is OUT_OF_RANGE naming the path and
// the bound). `follow_symlinks` false opens with O_NOFOLLOW.
absl::StatusOr<std::string> ReadFileAtMost(const std::filesystem::path& path, size_t limit,
                                           bool follow_symlinks = true);

// mkdir -p with `mode` for the directories it creates. The parent of each
// directory it creates is fsync'd, so the new directory survives a crash.
absl::Status MakeDirs(const std::filesystem::path& path, mode_t mode = 0700);

// rm -rf; a missing path is OK.
absl::Status RemoveAll(const std::filesystem::path& path);

// Removes one file; a missing file is OK.
absl::Status RemoveFile(const std::filesystem::path& path);

// The size in bytes of the open regular file or block device `fd` (`path`
// names it in errors); InvalidArgument for anything else.
absl::StatusOr<uint64_t> FileOrBlockDeviceSize(int fd, const std::filesystem::path& path);

// fsyncs a directory so a rename or unlink inside it is durable.
absl::Status SyncDir(const std::filesystem::path& dir);

// `n` random bytes from the kernel, as 2n lowercase hex characters.
absl::StatusOr<std::string> RandomHex(size_t n);

// True when `s` is exactly `len` lowercase hex characters.
bool IsLowerHex(std::string_view s, size_t len);

}  // namespace kvcri::base
