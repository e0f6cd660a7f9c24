// VM confinement on the host: uid range checks, ownership, ACL grants and revokes, AppArmor detection.
#include "runtime/vm_confinement.h"

#include <acl/libacl.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/acl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <set>

#include "config/base/file_util.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"

namespace kvcri::runtime {

using base::StrCat;
namespace fs = std::filesystem;

namespace {

// The reservation docs/security.md tells operators to write to /etc/subuid.
constexpr std::string_view kOwnSubidName = "kubevirt-cri";

bool ParseU64(std::string_view s, uint64_t* v) {
  if (s.empty() || s.size() > 20) return false;
  *v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    *v = *v * 10 + static_cast<uint64_t>(c - '0');
  }
  return true;
}

std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t colon = line.find(':', start);
    out.push_back(line.substr(start, colon == std::string_view::npos ? std::string_view::npos : colon - start));
    if (colon == std::string_view::npos) return out;
    start = colon + 1;
  }
}

std::vector<std::string> Lines(const fs::path& path) {
  std::vector<std::string> out;
  absl::StatusOr<std::string> text = base::ReadFile(path);
  if (!text.ok()) return out;  // absent: nothing to collide with
  size_t start = 0;
  while (start < text->size()) {
    size_t nl = text->find('\n', start);
    if (nl == std::string::npos) nl = text->size();
    out.push_back(text->substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

struct AclFree {
  void operator()(void* a) const { acl_free(a); }
};
using AclPtr = std::unique_ptr<struct __acl_ext, AclFree>;

absl::Status AclError(std::string_view op, const fs::path& path) {
  return absl::ErrnoToStatus(errno, StrCat(op, " \"", path.native(), "\""));
}

acl_perm_t PermsFor(Access access, bool dir) {
  switch (access) {
    case Access::kRead:
      return dir ? (ACL_READ | ACL_EXECUTE) : ACL_READ;
    case Access::kReadWrite:
      return dir ? (ACL_READ | ACL_WRITE | ACL_EXECUTE) : (ACL_READ | ACL_WRITE);
    case Access::kTraverse:
      return ACL_EXECUTE;
  }
  return 0;
}

mode_t OtherBitsFor(acl_perm_t perms) {
  return ((perms & ACL_READ) ? S_IROTH : 0) | ((perms & ACL_WRITE) ? S_IWOTH : 0) |
         ((perms & ACL_EXECUTE) ? S_IXOTH : 0);
}

acl_perm_t EntryPerms(acl_entry_t e) {
  acl_permset_t ps;
  if (acl_get_permset(e, &ps) != 0) return 0;
  acl_perm_t out = 0;
  for (acl_perm_t p : {ACL_READ, ACL_WRITE, ACL_EXECUTE}) {
    if (acl_get_perm(ps, p) == 1) out |= p;
  }
  return out;
}

absl::Status SetEntryPerms(acl_entry_t e, acl_perm_t perms, const fs::path& path) {
  acl_permset_t ps;
  if (acl_get_permset(e, &ps) != 0 || acl_clear_perms(ps) != 0) return AclError("acl_get_permset", path);
  for (acl_perm_t p : {ACL_READ, ACL_WRITE, ACL_EXECUTE}) {
    if ((perms & p) && acl_add_perm(ps, p) != 0) return AclError("acl_add_perm", path);
  }
  if (acl_set_permset(e, ps) != 0) return AclError("acl_set_permset", path);
  return absl::OkStatus();
}

// The entry of `tag` (and `uid` for ACL_USER), or null.
acl_entry_t FindEntry(acl_t acl, acl_tag_t tag, uid_t uid) {
  acl_entry_t e;
  for (int which = ACL_FIRST_ENTRY; acl_get_entry(acl, which, &e) == 1; which = ACL_NEXT_ENTRY) {
    acl_tag_t t;
    if (acl_get_tag_type(e, &t) != 0 || t != tag) continue;
    if (tag != ACL_USER) return e;
    void* q = acl_get_qualifier(e);
    if (q == nullptr) continue;
    bool match = *static_cast<uid_t*>(q) == uid;
    acl_free(q);
    if (match) return e;
  }
  return nullptr;
}

bool HasNamedEntries(acl_t acl) {
  acl_entry_t e;
  for (int which = ACL_FIRST_ENTRY; acl_get_entry(acl, which, &e) == 1; which = ACL_NEXT_ENTRY) {
    acl_tag_t t;
    if (acl_get_tag_type(e, &t) == 0 && (t == ACL_USER || t == ACL_GROUP)) return true;
  }
  return false;
}

// acl_get_file/acl_set_file follow symlinks: every path here is one we
// resolved ourselves (canonical volume paths, our own state directories), and
// a final symlink is refused before touching it.
absl::StatusOr<struct stat> StatNoFollow(const fs::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return absl::ErrnoToStatus(errno, StrCat("lstat \"", path.native(), "\""));
  if (S_ISLNK(st.st_mode)) {
    return absl::FailedPreconditionError(StrCat("\"", path.native(), "\" is a symlink; no ACL is set through it"));
  }
  return st;
}

}  // namespace

absl::Status CheckVmUidRangeAgainst(uint32_t first, uint32_t last, const std::vector<std::string>& passwd_lines,
                                    const std::vector<std::string>& group_lines,
                                    const std::vector<std::string>& subid_lines) {
  const std::string range = StrCat(first, "-", last);
  auto in_range = [&](uint64_t id) { return id >= first && id <= last; };
  for (const auto& [lines, what] : {std::pair{&passwd_lines, "user"}, std::pair{&group_lines, "group"}}) {
    for (const std::string& line : *lines) {
      std::vector<std::string_view> f = Fields(line);
      uint64_t id = 0;
      if (f.size() < 3 || !ParseU64(f[2], &id) || !in_range(id)) continue;
      return absl::FailedPreconditionError(StrCat("security.vm_uid_range \"", range, "\" holds ", what, " \"", f[0],
                                                  "\" (id ", id, "); VMs would share its files: pick a free range"));
    }
  }
  for (const std::string& line : subid_lines) {
    std::vector<std::string_view> f = Fields(line);
    uint64_t start = 0, count = 0;
    if (f.size() < 3 || !ParseU64(f[1], &start) || !ParseU64(f[2], &count) || count == 0) continue;
    if (f[0] == kOwnSubidName) continue;  // our own reservation
    uint64_t end = start + count - 1;
    if (end < first || start > last) continue;
    return absl::FailedPreconditionError(StrCat("security.vm_uid_range \"", range,
                                                "\" overlaps the subordinate ids of \"", f[0], "\" (", start, "-", end,
                                                "), whose user namespaces would own VM files: pick a free range"));
  }
  return absl::OkStatus();
}

absl::Status CheckVmUidRange(uint32_t first, uint32_t last) {
  // NSS may hold users that /etc/passwd does not (LDAP): ask it, by id,
  // only at both ends and for the entries it can enumerate.
  std::vector<std::string> users, groups;
  ::setpwent();
  while (struct passwd* p = ::getpwent()) users.push_back(StrCat(p->pw_name, ":x:", p->pw_uid));
  ::endpwent();
  ::setgrent();
  while (struct group* g = ::getgrent()) groups.push_back(StrCat(g->gr_name, ":x:", g->gr_gid));
  ::endgrent();
  for (uint32_t id : {first, last}) {
    if (struct passwd* p = ::getpwuid(id)) users.push_back(StrCat(p->pw_name, ":x:", p->pw_uid));
    if (struct group* g = ::getgrgid(id)) groups.push_back(StrCat(g->gr_name, ":x:", g->gr_gid));
  }
  std::vector<std::string> subids = Lines("/etc/subuid");
  for (std::string& l : Lines("/etc/subgid")) subids.push_back(std::move(l));
  return CheckVmUidRangeAgainst(first, last, users, groups, subids);
}

std::string DescribeAppArmor(const fs::path& sys_module) {
  absl::StatusOr<std::string> enabled = base::ReadFile(sys_module / "apparmor" / "parameters" / "enabled");
  if (!enabled.ok())
    return "absent: the host kernel has no AppArmor (/sys/module/apparmor); QEMU is confined by its "
           "per-VM uid and seccomp";
  if (enabled->empty() || (*enabled)[0] != 'Y') {
    return "disabled on the host kernel; QEMU is confined by its per-VM uid and seccomp";
  }
  return "enabled on the host but not applied to QEMU (libvirt's apparmor driver needs virt-aa-helper and the "
         "libvirt-daemon-system profiles); QEMU is confined by its per-VM uid and seccomp";
}

absl::Status SetOwner(const fs::path& path, uid_t uid, gid_t gid, mode_t mode) {
  base::UniqueFd fd(::open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, StrCat("open \"", path.native(), "\""));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return absl::ErrnoToStatus(errno, StrCat("fstat \"", path.native(), "\""));
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(StrCat("\"", path.native(), "\" is neither a file nor a directory"));
  }
  // fchownat(AT_EMPTY_PATH) and chmod through /proc act on the inode opened,
  // not on whatever the name means by now.
  if (::fchownat(fd.get(), "", uid, gid, AT_EMPTY_PATH) != 0) {
    return absl::ErrnoToStatus(errno, StrCat("chown \"", path.native(), "\" to ", uid, ":", gid));
  }
  const std::string proc = StrCat("/proc/self/fd/", fd.get());
  if (::chmod(proc.c_str(), mode) != 0) return absl::ErrnoToStatus(errno, StrCat("chmod \"", path.native(), "\""));
  return absl::OkStatus();
}

absl::Status AddAclEntry(const fs::path& path, uid_t uid, Access access) {
  absl::StatusOr<struct stat> st = StatNoFollow(path);
  if (!st.ok()) return st.status();
  const acl_perm_t want = PermsFor(access, S_ISDIR(st->st_mode));
  AclPtr acl(acl_get_file(path.c_str(), ACL_TYPE_ACCESS));
  if (!acl) return AclError("acl_get_file", path);
  acl_t a = acl.get();
  acl_entry_t user = FindEntry(a, ACL_USER, uid);
  if (user != nullptr && (EntryPerms(user) & want) == want) {
    acl_entry_t mask = FindEntry(a, ACL_MASK, 0);
    if (mask == nullptr || (EntryPerms(mask) & want) == want) return absl::OkStatus();  // already there
  }
  if (user == nullptr) {
    if (acl_create_entry(&a, &user) != 0) return AclError("acl_create_entry", path);
    acl.release();
    acl.reset(a);  // acl_create_entry may move the ACL
    if (acl_set_tag_type(user, ACL_USER) != 0 || acl_set_qualifier(user, &uid) != 0) {
      return AclError("acl_set_qualifier", path);
    }
    RETURN_IF_ERROR(SetEntryPerms(user, want, path));
  } else {
    RETURN_IF_ERROR(SetEntryPerms(user, EntryPerms(user) | want, path));
  }
  acl_entry_t mask = FindEntry(a, ACL_MASK, 0);
  if (mask == nullptr) {
    // No mask yet: the group class was exactly the owning group's bits.
    acl_entry_t group_obj = FindEntry(a, ACL_GROUP_OBJ, 0);
    acl_perm_t group_bits = group_obj != nullptr ? EntryPerms(group_obj) : 0;
    if (acl_create_entry(&a, &mask) != 0) return AclError("acl_create_entry", path);
    acl.release();
    acl.reset(a);
    if (acl_set_tag_type(mask, ACL_MASK) != 0) return AclError("acl_set_tag_type", path);
    RETURN_IF_ERROR(SetEntryPerms(mask, group_bits | want, path));
  } else {
    RETURN_IF_ERROR(SetEntryPerms(mask, EntryPerms(mask) | want, path));
  }
  if (acl_valid(a) != 0) return AclError("acl_valid", path);
  if (acl_set_file(path.c_str(), ACL_TYPE_ACCESS, a) != 0) return AclError("acl_set_file", path);
  return absl::OkStatus();
}

absl::Status RemoveAclEntry(const fs::path& path, uid_t uid) {
  absl::StatusOr<struct stat> st = StatNoFollow(path);
  if (absl::IsNotFound(st.status())) return absl::OkStatus();  // gone with its owner (image removed)
  if (!st.ok()) return st.status();
  AclPtr acl(acl_get_file(path.c_str(), ACL_TYPE_ACCESS));
  if (!acl) return AclError("acl_get_file", path);
  acl_entry_t user = FindEntry(acl.get(), ACL_USER, uid);
  if (user == nullptr) return absl::OkStatus();
  if (acl_delete_entry(acl.get(), user) != 0) return AclError("acl_delete_entry", path);
  if (!HasNamedEntries(acl.get())) {
    // Without named entries the mask would only narrow the owning group.
    if (acl_entry_t mask = FindEntry(acl.get(), ACL_MASK, 0); mask != nullptr) {
      if (acl_delete_entry(acl.get(), mask) != 0) return AclError("acl_delete_entry", path);
    }
  }
  if (acl_set_file(path.c_str(), ACL_TYPE_ACCESS, acl.get()) != 0) return AclError("acl_set_file", path);
  return absl::OkStatus();
}

bool HasAclEntry(const fs::path& path, uid_t uid) {
  AclPtr acl(acl_get_file(path.c_str(), ACL_TYPE_ACCESS));
  return acl && FindEntry(acl.get(), ACL_USER, uid) != nullptr;
}

absl::Status VmFileAccess::Grant(const fs::path& path, uid_t uid, Access access, std::vector<std::string>* granted) {
  absl::StatusOr<struct stat> st = StatNoFollow(path);
  if (!st.ok()) return st.status();
  const acl_perm_t want = PermsFor(access, S_ISDIR(st->st_mode));
  std::vector<std::pair<fs::path, Access>> todo;
  if ((st->st_mode & OtherBitsFor(want)) != OtherBitsFor(want)) todo.emplace_back(path, access);
  for (fs::path dir = path.parent_path(); !dir.empty(); dir = dir.parent_path()) {
    struct stat d {};
    if (::stat(dir.c_str(), &d) != 0) return absl::ErrnoToStatus(errno, StrCat("stat \"", dir.native(), "\""));
    if ((d.st_mode & S_IXOTH) == 0) todo.emplace_back(dir, Access::kTraverse);
    if (dir == dir.root_path()) break;
  }
  absl::MutexLock l(&mu_);
  for (const auto& [p, a] : todo) {
    // Recorded first: a half-applied entry is still taken back.
    granted->push_back(p.string());
    absl::Status s = AddAclEntry(p, uid, a);
    if (!s.ok()) return s;
    ++updates_;
  }
  return absl::OkStatus();
}

absl::Status VmFileAccess::Revoke(const std::vector<std::string>& paths, uid_t uid) {
  absl::Status first;
  absl::MutexLock l(&mu_);
  for (const std::string& p : paths) {
    absl::Status s = RemoveAclEntry(p, uid);
    if (!s.ok() && first.ok()) first = s;
    ++updates_;
  }
  return first;
}

}  // namespace kvcri::runtime
