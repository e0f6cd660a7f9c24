// Builds the OCI runtime spec of a plain-image container in the Pod micro-VM (runtime_spec.h).
#include "runtime/microvm/runtime_spec.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "config/base/unique_fd.h"

namespace kvcri::runtime::microvm {
namespace {

using json = nlohmann::json;

constexpr char kDefaultPath[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr size_t kMaxUserDbBytes = 4 << 20;

const std::vector<std::string>& DefaultMaskedPaths() {
  static const std::vector<std::string> v = {"/proc/acpi",        "/proc/asound",        "/proc/kcore",
                                             "/proc/keys",        "/proc/latency_stats", "/proc/timer_list",
                                             "/proc/timer_stats", "/proc/sched_debug",   "/sys/firmware",
                                             "/proc/scsi"};
  return v;
}
const std::vector<std::string>& DefaultReadonlyPaths() {
  static const std::vector<std::string> v = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                             "/proc/sysrq-trigger"};
  return v;
}

// "K=V" entries with a later key replacing an earlier one in place, as
// containerd's WithEnv does.
void SetEnv(std::vector<std::string>* env, const std::string& entry) {
  const std::string key = entry.substr(0, entry.find('='));
  for (std::string& e : *env) {
    if (e.substr(0, e.find('=')) == key) {
      e = entry;
      return;
    }
  }
  env->push_back(entry);
}

std::optional<uint32_t> ParseId(std::string_view s) {
  uint32_t v = 0;
  if (s.empty()) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

const PasswdEntry* UserByName(const UserDb& db, std::string_view name) {
  for (const PasswdEntry& u : db.users) {
    if (u.name == name) return &u;
  }
  return nullptr;
}
const PasswdEntry* UserById(const UserDb& db, uint32_t uid) {
  for (const PasswdEntry& u : db.users) {
    if (u.uid == uid) return &u;
  }
  return nullptr;
}

struct ResolvedUser {
  uint32_t uid = 0, gid = 0;
  std::vector<uint32_t> additional_gids;
};

// The user string containerd's CRI plugin makes: username or uid, then
// ":gid" when run_as_group is set; a group without a user is an error.
absl::StatusOr<std::string> CriUserString(const ContainerRequest& req) {
  std::string user = req.run_as_username;
  if (user.empty() && req.run_as_user) user = std::to_string(*req.run_as_user);
  if (user.empty()) {
    if (req.run_as_group) {
      return absl::InvalidArgumentError(
          "linux.security_context.run_as_group: set without run_as_user or run_as_username");
    }
    return std::string();
  }
  if (req.run_as_group) absl::StrAppend(&user, ":", *req.run_as_group);
  return user;
}

// `field` names where the user string came from, for the error.
absl::StatusOr<ResolvedUser> ResolveUser(const std::string& user, const UserDb& db, const std::string& field) {
  ResolvedUser out;
  if (user.empty()) return out;
  std::vector<std::string> parts = absl::StrSplit(user, ':');
  if (parts.size() > 2 || parts[0].empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": \"", user, "\" is not user[:group]"));
  }
  if (std::optional<uint32_t> uid = ParseId(parts[0])) {
    out.uid = *uid;
    // A uid missing from /etc/passwd runs with gid 0, as under runc.
    if (const PasswdEntry* u = UserById(db, *uid)) out.gid = u->gid;
  } else if (const PasswdEntry* u = UserByName(db, parts[0])) {
    out.uid = u->uid;
    out.gid = u->gid;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": user \"", parts[0], "\" is not in the image's /etc/passwd"));
  }
  if (parts.size() == 2) {
    if (std::optional<uint32_t> gid = ParseId(parts[1])) {
      out.gid = *gid;
    } else {
      auto g = std::find_if(db.groups.begin(), db.groups.end(), [&](const GroupEntry& e) { return e.name == parts[1]; });
      if (g == db.groups.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": group \"", parts[1], "\" is not in the image's /etc/group"));
      }
      out.gid = g->gid;
    }
  }
  return out;
}

// Groups of /etc/group that list the user (by name) as a member, the way
// containerd's WithAdditionalGIDs finds them: from run_as_username, else
// from run_as_user's name (uid 0 when unset).
std::vector<uint32_t> MemberGids(const ContainerRequest& req, const UserDb& db) {
  std::string name = req.run_as_username;
  if (name.empty()) {
    const PasswdEntry* u = UserById(db, static_cast<uint32_t>(req.run_as_user.value_or(0)));
    if (u == nullptr) return {};
    name = u->name;
  }
  std::vector<uint32_t> gids;
  for (const GroupEntry& g : db.groups) {
    if (g.name == name) continue;  // the primary group is not supplemental
    if (std::find(g.members.begin(), g.members.end(), name) != g.members.end()) gids.push_back(g.gid);
  }
  return gids;
}

absl::StatusOr<std::vector<std::string>> Capabilities(const ContainerRequest& req) {
  const std::vector<std::string>& all = AllCapabilities();
  if (req.privileged) return all;
  std::set<std::string> caps(DefaultCapabilities().begin(), DefaultCapabilities().end());
  auto has_all = [](const std::vector<std::string>& v) {
    return std::any_of(v.begin(), v.end(), [](const std::string& c) { return absl::AsciiStrToUpper(c) == "ALL"; });
  };
  if (has_all(req.add_capabilities)) caps.insert(all.begin(), all.end());
  if (has_all(req.drop_capabilities)) caps.clear();
  for (auto [list, field, add] : {std::tuple{&req.add_capabilities, "add_capabilities", true},
                                  std::tuple{&req.drop_capabilities, "drop_capabilities", false}}) {
    for (const std::string& c : *list) {
      std::string name = absl::AsciiStrToUpper(c);
      if (name == "ALL") continue;
      if (!name.starts_with("CAP_")) name = "CAP_" + name;
      if (std::find(all.begin(), all.end(), name) == all.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("linux.security_context.capabilities.", field, ": unknown capability \"", c, "\""));
      }
      if (add) {
        caps.insert(name);
      } else {
        caps.erase(name);
      }
    }
  }
  // In the kernel's order, so the spec reads like runc's.
  std::vector<std::string> out;
  for (const std::string& c : all) {
    if (caps.count(c)) out.push_back(c);
  }
  return out;
}

json Mount(const std::string& dest, const std::string& type, const std::string& source,
           std::vector<std::string> options) {
  return json{{"destination", dest}, {"type", type}, {"source", source}, {"options", std::move(options)}};
}

// The syscalls RuntimeDefault refuses, each unless the container holds the
// capability that lets a process use it (containerd's default profile
// allows them with that capability). EPERM, as a kernel without the
// capability answers.
struct Denied {
  const char* capability;  // nullptr: refused whatever the capabilities
  std::vector<const char*> syscalls;
};
const std::vector<Denied>& RuntimeDefaultDenied() {
  static const std::vector<Denied> v = {
      {nullptr,
       {"create_module", "get_kernel_syms", "query_module", "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl",
        "vm86", "vm86old", "kexec_file_load", "kexec_load", "userfaultfd", "swapon", "swapoff", "add_key",
        "request_key", "keyctl"}},
      {"CAP_SYS_ADMIN",
       {"mount", "umount", "umount2", "unshare", "setns", "pivot_root", "quotactl", "lookup_dcookie", "bpf",
        "perf_event_open", "fanotify_init", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
        "name_to_handle_at"}},
      {"CAP_DAC_READ_SEARCH", {"open_by_handle_at"}},
      {"CAP_SYS_MODULE", {"init_module", "finit_module", "delete_module"}},
      {"CAP_SYS_BOOT", {"reboot"}},
      {"CAP_SYS_TIME", {"settimeofday", "stime", "clock_settime", "clock_adjtime"}},
      {"CAP_SYS_PTRACE", {"kcmp", "process_vm_readv", "process_vm_writev"}},
      {"CAP_SYS_RAWIO", {"iopl", "ioperm"}},
      {"CAP_SYS_NICE", {"get_mempolicy", "set_mempolicy", "mbind", "move_pages"}},
      {"CAP_SYSLOG", {"syslog"}},
      {"CAP_SYS_PACCT", {"acct"}},
      {"CAP_SYS_TTY_CONFIG", {"vhangup"}},
  };
  return v;
}

json RuntimeDefaultSeccomp(const std::vector<std::string>& caps) {
  auto holds = [&](const char* c) { return std::find(caps.begin(), caps.end(), c) != caps.end(); };
  json rules = json::array();
  std::vector<std::string> names;
  for (const Denied& d : RuntimeDefaultDenied()) {
    if (d.capability != nullptr && holds(d.capability)) continue;
    names.insert(names.end(), d.syscalls.begin(), d.syscalls.end());
  }
  rules.push_back({{"names", names}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", 1}});
  if (!holds("CAP_SYS_ADMIN")) {
    // New namespaces through clone: one rule per CLONE_NEW* bit (a rule's
    // conditions are ANDed, rules are ORed). clone3 passes its flags in
    // memory seccomp cannot read: ENOSYS sends libc back to clone.
    for (uint64_t bit : {0x00020000ULL, 0x02000000ULL, 0x04000000ULL, 0x08000000ULL, 0x10000000ULL, 0x20000000ULL,
                         0x40000000ULL}) {
      rules.push_back({{"names", {"clone"}},
                       {"action", "SCMP_ACT_ERRNO"},
                       {"errnoRet", 1},
                       {"args", {{{"index", 0}, {"value", bit}, {"valueTwo", bit}, {"op", "SCMP_CMP_MASKED_EQ"}}}}});
    }
    rules.push_back({{"names", {"clone3"}}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", 38}});
  }
  return json{{"defaultAction", "SCMP_ACT_ALLOW"},
              {"architectures", {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"}},
              {"syscalls", rules}};
}

absl::StatusOr<json> LocalhostSeccomp(const std::string& text) {
  json p = json::parse(text, nullptr, /*allow_exceptions=*/false);
  const char* field = "linux.security_context.seccomp.localhost_ref";
  if (!p.is_object() || !p.contains("defaultAction") || !p["defaultAction"].is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": the profile is not a seccomp profile (a JSON object with \"defaultAction\")"));
  }
  if (p.contains("syscalls") && !p["syscalls"].is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": \"syscalls\" is not an array"));
  }
  // Docker's format has fields the OCI spec lacks; crun rejects unknown ones.
  json out = {{"defaultAction", p["defaultAction"]}};
  if (p.contains("defaultErrnoRet")) out["defaultErrnoRet"] = p["defaultErrnoRet"];
  if (p.contains("architectures")) out["architectures"] = p["architectures"];
  json rules = json::array();
  for (const json& r : p.value("syscalls", json::array())) {
    if (!r.is_object() || !r.contains("action")) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": a \"syscalls\" entry has no \"action\""));
    }
    json rule = {{"action", r["action"]}};
    if (r.contains("names")) {
      rule["names"] = r["names"];
    } else if (r.contains("name")) {
      rule["names"] = json::array({r["name"]});
    }
    for (const char* k : {"errnoRet", "args"}) {
      if (r.contains(k)) rule[k] = r[k];
    }
    rules.push_back(std::move(rule));
  }
  out["syscalls"] = std::move(rules);
  return out;
}

}  // namespace

std::string GuestCgroupParent(const std::string& container_id) { return "/sys/fs/cgroup/kvcri/" + container_id; }

const std::vector<std::string>& DefaultCapabilities() {
  static const std::vector<std::string> v = {
      "CAP_CHOWN",  "CAP_DAC_OVERRIDE", "CAP_FSETID",   "CAP_FOWNER",           "CAP_MKNOD",
      "CAP_NET_RAW", "CAP_SETGID",      "CAP_SETUID",   "CAP_SETFCAP",          "CAP_SETPCAP",
      "CAP_NET_BIND_SERVICE",           "CAP_SYS_CHROOT", "CAP_KILL",           "CAP_AUDIT_WRITE"};
  return v;
}

const std::vector<std::string>& AllCapabilities() {
  // capability.h order, 0 … 40.
  static const std::vector<std::string> v = {
      "CAP_CHOWN",           "CAP_DAC_OVERRIDE",   "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
      "CAP_FSETID",          "CAP_KILL",           "CAP_SETGID",          "CAP_SETUID",
      "CAP_SETPCAP",         "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
      "CAP_NET_ADMIN",       "CAP_NET_RAW",        "CAP_IPC_LOCK",        "CAP_IPC_OWNER",
      "CAP_SYS_MODULE",      "CAP_SYS_RAWIO",      "CAP_SYS_CHROOT",      "CAP_SYS_PTRACE",
      "CAP_SYS_PACCT",       "CAP_SYS_ADMIN",      "CAP_SYS_BOOT",        "CAP_SYS_NICE",
      "CAP_SYS_RESOURCE",    "CAP_SYS_TIME",       "CAP_SYS_TTY_CONFIG",  "CAP_MKNOD",
      "CAP_LEASE",           "CAP_AUDIT_WRITE",    "CAP_AUDIT_CONTROL",   "CAP_SETFCAP",
      "CAP_MAC_OVERRIDE",    "CAP_MAC_ADMIN",      "CAP_SYSLOG",          "CAP_WAKE_ALARM",
      "CAP_BLOCK_SUSPEND",   "CAP_AUDIT_READ",     "CAP_PERFMON",         "CAP_BPF",
      "CAP_CHECKPOINT_RESTORE"};
  return v;
}

UserDb ParseUserDb(std::string_view passwd, std::string_view group) {
  // Debian's Abseil has its own string_view: split std::strings.
  auto fields = [](const std::string& line) -> std::vector<std::string> { return absl::StrSplit(line, ':'); };
  auto lines = [](std::string_view text) -> std::vector<std::string> {
    return absl::StrSplit(std::string(text), '\n');
  };
  UserDb db;
  for (const std::string& line : lines(passwd)) {
    std::vector<std::string> f = fields(line);
    if (f.size() < 7 || f[0].empty()) continue;
    std::optional<uint32_t> uid = ParseId(f[2]), gid = ParseId(f[3]);
    if (!uid || !gid) continue;
    db.users.push_back(PasswdEntry{f[0], *uid, *gid, f[5]});
  }
  for (const std::string& line : lines(group)) {
    std::vector<std::string> f = fields(line);
    if (f.size() < 4 || f[0].empty()) continue;
    std::optional<uint32_t> gid = ParseId(f[2]);
    if (!gid) continue;
    GroupEntry g{f[0], *gid, {}};
    std::vector<std::string> members = absl::StrSplit(f[3], ',', absl::SkipEmpty());
    g.members = std::move(members);
    db.groups.push_back(std::move(g));
  }
  return db;
}

absl::StatusOr<UserDb> ReadUserDb(const std::filesystem::path& rootfs) {
  base::UniqueFd root(::open(rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return absl::NotFoundError(absl::StrCat("container root ", rootfs.string(), ": ", strerror(errno)));
  auto read = [&](const char* rel) -> absl::StatusOr<std::string> {
    open_how how{};
    how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    // Absolute symlinks and ".." resolve inside the image's root, never
    // the host's; no device or FIFO gets opened for reading.
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    base::UniqueFd fd(static_cast<int>(::syscall(SYS_openat2, root.get(), rel, &how, sizeof how)));
    if (!fd.valid()) {
      if (errno == ENOENT) return std::string();
      return absl::FailedPreconditionError(absl::StrCat("image file /", rel, ": ", strerror(errno)));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat("image file /", rel, " is not a regular file"));
    }
    std::string text;
    char buf[16 << 10];
    for (;;) {
      ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n < 0) return absl::FailedPreconditionError(absl::StrCat("reading /", rel, ": ", strerror(errno)));
      if (n == 0) break;
      text.append(buf, static_cast<size_t>(n));
      if (text.size() > kMaxUserDbBytes) {
        return absl::FailedPreconditionError(absl::StrCat("image file /", rel, " is larger than 4 MiB"));
      }
    }
    return text;
  };
  absl::StatusOr<std::string> passwd = read("etc/passwd");
  if (!passwd.ok()) return passwd.status();
  absl::StatusOr<std::string> group = read("etc/group");
  if (!group.ok()) return group.status();
  return ParseUserDb(*passwd, *group);
}

absl::StatusOr<json> BuildRuntimeSpec(const ContainerRequest& req, const ImageProcess& image, const UserDb& users) {
  // Arguments, as containerd's WithProcessArgs.
  std::vector<std::string> command = req.command, args = req.args;
  if (command.empty()) {
    command = image.entrypoint;
    if (args.empty()) args = image.cmd;
  }
  command.insert(command.end(), args.begin(), args.end());
  if (command.empty()) {
    return absl::InvalidArgumentError("command: empty, and the image has neither Entrypoint nor Cmd");
  }

  std::vector<std::string> env = {kDefaultPath};
  if (!req.hostname.empty()) SetEnv(&env, "HOSTNAME=" + req.hostname);
  for (const std::string& e : image.env) SetEnv(&env, e);
  for (const auto& [k, v] : req.env) SetEnv(&env, k + "=" + v);

  absl::StatusOr<std::string> cri_user = CriUserString(req);
  if (!cri_user.ok()) return cri_user.status();
  absl::StatusOr<ResolvedUser> user =
      cri_user->empty() ? ResolveUser(image.user, users, "image config User")
                        : ResolveUser(*cri_user, users, "linux.security_context.run_as_user/run_as_username");
  if (!user.ok()) return user.status();
  std::set<uint32_t> gids;
  for (uint32_t g : MemberGids(req, users)) gids.insert(g);
  for (int64_t g : req.supplemental_groups) {
    if (g < 0 || g > UINT32_MAX) {
      return absl::InvalidArgumentError(
          absl::StrCat("linux.security_context.supplemental_groups: ", g, " is not a group id"));
    }
    gids.insert(static_cast<uint32_t>(g));
  }

  absl::StatusOr<std::vector<std::string>> caps = Capabilities(req);
  if (!caps.ok()) return caps.status();

  json process = {
      {"terminal", req.tty},
      {"user", {{"uid", user->uid}, {"gid", user->gid}}},
      {"args", command},
      {"env", env},
      {"cwd", !req.working_dir.empty() ? req.working_dir : !image.working_dir.empty() ? image.working_dir : "/"},
      {"capabilities",
       {{"bounding", *caps}, {"effective", *caps}, {"permitted", *caps}}},
      {"noNewPrivileges", req.no_new_privs},
  };
  if (!gids.empty()) process["user"]["additionalGids"] = std::vector<uint32_t>(gids.begin(), gids.end());
  if (req.resources.oom_score_adj != 0) process["oomScoreAdj"] = req.resources.oom_score_adj;

  // Default mounts (containerd's, without /run), then the request's, which
  // replace a default at the same destination. /dev/shm is the guest's:
  // one IPC namespace for the Pod, one /dev/shm, as a Pod has under runc.
  std::vector<json> mounts = {
      Mount("/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}),
      req.privileged ? Mount("/dev", "bind", "/dev", {"rbind", "rprivate", "nosuid"})
                     : Mount("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}),
      Mount("/dev/pts", "devpts", "devpts", {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}),
      Mount("/dev/shm", "bind", "/dev/shm", {"rbind", "rprivate", "nosuid", "nodev", "noexec"}),
      Mount("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}),
      Mount("/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", req.privileged ? "rw" : "ro"}),
      Mount("/sys/fs/cgroup", "cgroup", "cgroup", {"nosuid", "noexec", "nodev", "relatime", req.privileged ? "rw" : "ro"}),
  };
  for (const BindMount& m : req.mounts) {
    std::erase_if(mounts, [&](const json& d) { return d["destination"] == m.container_path; });
    mounts.push_back(Mount(m.container_path, "bind", m.guest_source,
                           {"rbind", "rprivate", m.read_only ? "ro" : "rw"}));
  }

  json namespaces = json::array({{{"type", "mount"}}});
  if (!req.privileged) namespaces.push_back({{"type", "cgroup"}});
  switch (req.pid) {
    case PidMode::kContainer:
      namespaces.push_back({{"type", "pid"}});
      break;
    case PidMode::kPod:
      if (req.pod_pid_namespace.empty()) {
        return absl::InvalidArgumentError("linux.security_context.namespace_options.pid: POD without a Pod namespace");
      }
      namespaces.push_back({{"type", "pid"}, {"path", req.pod_pid_namespace}});
      break;
    case PidMode::kNode:
      break;
  }

  json linux = {{"namespaces", namespaces}, {"cgroupsPath", "/kvcri/" + req.id + "/ctr"}};
  json resources = json::object();
  if (req.privileged) {
    resources["devices"] = json::array({{{"allow", true}, {"access", "rwm"}}});
  } else {
    // Default device rules (crun adds the standard nodes it creates).
    resources["devices"] = json::array({{{"allow", false}, {"access", "rwm"}}});
    if (req.block_devices) resources["devices"].push_back({{"allow", true}, {"type", "b"}, {"access", "rwm"}});
    linux["maskedPaths"] = req.masked_paths.value_or(DefaultMaskedPaths());
    linux["readonlyPaths"] = req.readonly_paths.value_or(DefaultReadonlyPaths());
  }
  const ContainerResources& r = req.resources;
  if (r.memory_limit_bytes > 0) resources["memory"] = {{"limit", r.memory_limit_bytes}};
  json cpu = json::object();
  if (r.cpu_shares > 0) cpu["shares"] = r.cpu_shares;
  if (r.cpu_quota > 0) cpu["quota"] = r.cpu_quota;
  if (r.cpu_period > 0) cpu["period"] = r.cpu_period;
  if (!r.cpuset_cpus.empty()) cpu["cpus"] = r.cpuset_cpus;
  if (!r.cpuset_mems.empty()) cpu["mems"] = r.cpuset_mems;
  if (!cpu.empty()) resources["cpu"] = cpu;
  linux["resources"] = resources;

  if (!req.privileged) {
    if (req.seccomp == SeccompKind::kRuntimeDefault) {
      linux["seccomp"] = RuntimeDefaultSeccomp(*caps);
    } else if (req.seccomp == SeccompKind::kLocalhost) {
      absl::StatusOr<json> p = LocalhostSeccomp(req.seccomp_localhost_json);
      if (!p.ok()) return p.status();
      linux["seccomp"] = *p;
    }
  }

  return json{
      {"ociVersion", "1.0.2"},
      {"process", process},
      {"root", {{"path", "rootfs"}, {"readonly", req.readonly_rootfs}}},
      {"mounts", mounts},
      {"linux", linux},
  };
}

}  // namespace kvcri::runtime::microvm
