// VM confinement on the host: per-VM uid checks, file ownership and ACL grants, AppArmor detection.
#pragma once

// Each VM's QEMU runs under a uid (== gid) of its own (libvirt's per-domain
// DAC label, runtime/domain_xml.cc). That uid can open only what this file
// gives it:
//  - files of the VM's own container directory, by ownership (SetOwner);
//  - files outside it (image-store disks and kernels, block devices, shared
//    directories), by one POSIX ACL entry "user:<uid>" each, plus "--x" on
//    every ancestor directory that does not already let others traverse
//    (VmFileAccess::Grant). Entries of different VMs on the same file (a
//    read-only PV in two Pods, one image for many VMs) are independent:
//    Revoke removes only its own.

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace kvcri::runtime {

// Refuses a range that holds a user or group of the host (passwd, group via
// NSS) or overlaps a subordinate id range of /etc/subuid or /etc/subgid that
// is not "kubevirt-cri"'s own reservation. FailedPrecondition naming it.
absl::Status CheckVmUidRange(uint32_t first, uint32_t last);
// The same, over given files (tests): passwd/group lines "name:x:id:...",
// subid lines "name:start:count".
absl::Status CheckVmUidRangeAgainst(uint32_t first, uint32_t last, const std::vector<std::string>& passwd_lines,
                                    const std::vector<std::string>& group_lines,
                                    const std::vector<std::string>& subid_lines);

// What the host offers as a mandatory access control layer for QEMU, for
// Status verbose info and the start-up log. `sys_module` is /sys/module.
std::string DescribeAppArmor(const std::filesystem::path& sys_module = "/sys/module");

// chown + chmod of `path` (never following a final symlink): the container
// directory's own files get their VM's uid.
absl::Status SetOwner(const std::filesystem::path& path, uid_t uid, gid_t gid, mode_t mode);

// On a directory, kRead and kReadWrite include traversal (r-x, rwx).
enum class Access { kRead, kReadWrite, kTraverse };

// Adds (or widens) the ACL entry "user:<uid>" of `path`; the mask grows by
// exactly those bits, so other named entries keep their effective rights.
absl::Status AddAclEntry(const std::filesystem::path& path, uid_t uid, Access access);
// Removes "user:<uid>" from `path` (and the mask, when no named entry is
// left, so the mode's group bits are as before). OK when absent or gone.
absl::Status RemoveAclEntry(const std::filesystem::path& path, uid_t uid);
// Whether `path` has an ACL entry for `uid` (tests, recovery).
bool HasAclEntry(const std::filesystem::path& path, uid_t uid);

// Serialises ACL read-modify-write: two VMs granting on one directory at once
// must not lose an entry. Held only for the few syscalls of one file.
class VmFileAccess {
 public:
  // Lets `uid` open `path` with `access`: an ACL entry on `path` unless its
  // "other" bits already allow it, and "--x" on each ancestor directory whose
  // "other" bits do not allow traversal. Appends every path that got an entry
  // to `granted` (also on failure: what to Revoke).
  absl::Status Grant(const std::filesystem::path& path, uid_t uid, Access access, std::vector<std::string>* granted);
  // Removes `uid`'s entries from every path; tries all, returns the first error.
  absl::Status Revoke(const std::vector<std::string>& paths, uid_t uid);

 private:
  absl::Mutex mu_;
  // Nothing else is guarded: the mutex orders the ACL updates themselves.
  int updates_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kvcri::runtime
