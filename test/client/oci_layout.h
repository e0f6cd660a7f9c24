// Hand-made OCI image layers and layouts for tests: tar entries of every type with owners, modes, times and xattrs, and a one-image layout of given layers.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

namespace kvcri::testing {

// One tar entry. `type` is an AE_IF* value (archive_entry.h; regular file by default).
struct Entry {
  std::string name;
  mode_t type = 0100000;  // AE_IFREG
  mode_t perm = 0644;
  std::string data;  // file contents
  std::string link;  // symlink target, or hardlink target when `hardlink`
  bool hardlink = false;
  int64_t uid = 0, gid = 0;
  time_t mtime = 1700000000;
  std::string capability;  // security.capability value
};

// An uncompressed (pax) tar of `entries`, in order.
std::string Tar(const std::vector<Entry>& entries);

// Writes an OCI image layout at `dir` holding one image (tagged "latest") of
// `layers` (tar bytes, bottom first), with config Cmd `cmd` and Env PATH=/bin.
void WriteLayout(const std::filesystem::path& dir, const std::vector<std::string>& layers,
                 const std::vector<std::string>& cmd = {"/bin/sh"});

// The layer of a busybox-static root: /bin/busybox (the host's
// /bin/busybox) and a symlink per applet, /etc/passwd and /etc/group.
std::string BusyboxLayer();

}  // namespace kvcri::testing
