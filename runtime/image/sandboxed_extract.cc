// The extraction child: re-exec, capabilities dropped, seccomp, layers in by fd, result out by pipe.
#include "runtime/image/sandboxed_extract.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "absl/time/clock.h"
#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"
#include "runtime/image/json_fields.h"
#include "runtime/image/layer_unpack.h"

namespace kvcri::runtime::image {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Set in the child's environment; its value is the number of layer fds.
constexpr char kChildMarker[] = "KVCRI_SANDBOXED_EXTRACT";
// The child's descriptors: result pipe, request memfd, then one per layer.
constexpr int kResultFd = 3;
constexpr int kRequestFd = 4;
constexpr int kFirstLayerFd = 5;
constexpr size_t kMaxResult = 1 << 20;
// Address space of the child: libarchive's zstd and gzip readers need a few
// hundred MiB at most (zstd's default window limit is 128 MiB).
constexpr uint64_t kChildAddressSpace = uint64_t{2} << 30;
// Descriptors beyond the layer fds the child may open (the file it writes,
// directories, libarchive's own).
constexpr int kChildSpareFds = 32;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

absl::Status Errno(std::string_view op) { return absl::ErrnoToStatus(errno, std::string(op)); }

// ---- child side ----

// Serves the layer fds it was handed, in layer order.
class FdBlobSource : public BlobSource {
 public:
  explicit FdBlobSource(std::vector<std::pair<std::string, int>> fds) : fds_(std::move(fds)) {}
  absl::StatusOr<base::UniqueFd> Open(std::string_view digest) override {
    for (auto& [d, fd] : fds_) {
      if (fd >= 0 && d == digest) return base::UniqueFd(std::exchange(fd, -1));
    }
    return absl::NotFoundError(base::StrCat("blob ", digest, " was not handed to the extractor"));
  }

 private:
  std::vector<std::pair<std::string, int>> fds_;
};

// Every capability but `keep` goes (bounding, effective, permitted,
// inheritable, ambient), then no_new_privs.
absl::Status DropCapabilities(const std::vector<cap_value_t>& keep = {}) {
  // The bounding set first: dropping it needs CAP_SETPCAP, which goes next.
  // (Already empty after an uid change: then EPERM is expected.)
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
    if (std::find(keep.begin(), keep.end(), cap) != keep.end()) continue;
    if (::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1) continue;
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) {
      return Errno("prctl(PR_CAPBSET_DROP)");
    }
  }
  if (CAP_AMBIENT_SUPPORTED() && cap_reset_ambient() != 0) return Errno("cap_reset_ambient");
  cap_t caps = cap_init();  // all three sets empty
  if (caps == nullptr) return Errno("cap_init");
  if (!keep.empty() && (cap_set_flag(caps, CAP_EFFECTIVE, static_cast<int>(keep.size()), keep.data(), CAP_SET) != 0 ||
                        cap_set_flag(caps, CAP_PERMITTED, static_cast<int>(keep.size()), keep.data(), CAP_SET) != 0)) {
    cap_free(caps);
    return Errno("cap_set_flag");
  }
  int r = cap_set_proc(caps);
  cap_free(caps);
  if (r != 0) return Errno("cap_set_proc");
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Errno("prctl(PR_SET_NO_NEW_PRIVS)");
  return absl::OkStatus();
}

// `unpack`: also what making a layer's files takes (owners, modes, times,
// symlinks, file capabilities, FIFOs: mknodat only for S_IFIFO).
absl::Status LoadSeccomp(bool unpack) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
  if (ctx == nullptr) return absl::InternalError("seccomp_init failed");
  // What reading blobs, decompressing and writing files needs; nothing else.
  static constexpr const char* kAllowed[] = {
      "read",         "write",         "readv",
      "writev",       "pread64",       "pwrite64",
      "lseek",        "open",          "openat",
      "close",        "fstat",         "stat",
      "lstat",        "newfstatat",    "statx",
      "fstatfs",      "mkdir",         "mkdirat",
      "rename",       "renameat",      "renameat2",
      "link",         "linkat",        "unlink",
      "unlinkat",     "rmdir",         "getdents64",
      "ftruncate",    "fsync",         "fdatasync",
      "fcntl",        "dup",           "getcwd",
      "mmap",         "munmap",        "mremap",
      "mprotect",     "brk",           "madvise",
      "futex",        "rt_sigreturn",  "rt_sigprocmask",
      "rt_sigaction", "getpid",        "gettid",
      "getuid",       "geteuid",       "getgid",
      "getegid",      "clock_gettime", "clock_nanosleep",
      "gettimeofday", "getrandom",     "exit",
      "exit_group",   "sched_yield",   "sched_getaffinity",
      "sysinfo",      "prlimit64",     "set_robust_list",
      "rseq",
#ifdef KVCRI_SANITIZER_BUILD
      // ASan's runtime reads the signal stack before every noreturn call
      // (the child's _exit); sanitizer builds only (cmake/sanitizers.cmake).
      "sigaltstack",
#endif
  };
  for (const char* name : kAllowed) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) != 0) {
      seccomp_release(ctx);
      return absl::InternalError(base::StrCat("seccomp_rule_add(", name, ") failed"));
    }
  }
  if (unpack) {
    static constexpr const char* kUnpack[] = {"fchown",  "fchownat", "fchmod",    "fchmodat", "symlink",
                                              "symlinkat", "utimensat", "fsetxattr", "openat2"};
    for (const char* name : kUnpack) {
      int nr = seccomp_syscall_resolve_name(name);
      if (nr == __NR_SCMP_ERROR) continue;
      if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) != 0) {
        seccomp_release(ctx);
        return absl::InternalError(base::StrCat("seccomp_rule_add(", name, ") failed"));
      }
    }
    if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mknodat), 1,
                         SCMP_A2(SCMP_CMP_MASKED_EQ, static_cast<scmp_datum_t>(S_IFMT), S_IFIFO)) != 0) {
      seccomp_release(ctx);
      return absl::InternalError("seccomp_rule_add(mknodat) failed");
    }
  }
  int r = seccomp_load(ctx);
  seccomp_release(ctx);
  if (r != 0) return absl::ErrnoToStatus(-r, "seccomp_load");
  return absl::OkStatus();
}

void WriteAll(int fd, const std::string& s) {
  for (size_t done = 0; done < s.size();) {
    ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

absl::Status SetLimit(int resource, uint64_t value, std::string_view name) {
  rlimit r{static_cast<rlim_t>(value), static_cast<rlim_t>(value)};
  if (::setrlimit(resource, &r) != 0) return Errno(base::StrCat("setrlimit(", name, ")"));
  return absl::OkStatus();
}

// Leaves uid 0 for good: no supplementary groups, then gid, then uid.
absl::Status DropToUser(uid_t uid, gid_t gid) {
  if (uid == 0 || gid == 0) return absl::InternalError("extraction child asked to stay uid or gid 0");
  if (::setgroups(0, nullptr) != 0) return Errno("setgroups");
  if (::setresgid(gid, gid, gid) != 0) return Errno(base::StrCat("setresgid(", gid, ")"));
  if (::setresuid(uid, uid, uid) != 0) return Errno(base::StrCat("setresuid(", uid, ")"));
  return absl::OkStatus();
}

absl::StatusOr<json> ChildMain(int layer_count) {
  // Whatever the parent leaked past CLOEXEC goes first.
  ::syscall(SYS_close_range, kFirstLayerFd + layer_count, ~0U, 0);
  std::string text;
  char buf[4096];
  while (true) {
    ssize_t n = ::pread(kRequestFd, buf, sizeof buf, static_cast<off_t>(text.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("read request");
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(kRequestFd);
  json req = json::parse(text, nullptr, false);
  if (!req.is_object() || !req.contains("layers") || !req["layers"].is_array())
    return absl::InternalError("malformed extraction request");
  std::vector<Descriptor> layers;
  std::vector<std::pair<std::string, int>> fds;
  for (const json& l : req["layers"]) {
    Descriptor d;
    d.media_type = JsonString(l, "mediaType");
    d.digest = JsonString(l, "digest");
    d.size = JsonInt(l, "size").value_or(0);
    fds.emplace_back(d.digest, kFirstLayerFd + static_cast<int>(layers.size()));
    layers.push_back(std::move(d));
  }
  if (static_cast<int>(layers.size()) != layer_count)
    return absl::InternalError("extraction request and descriptors disagree");
  const std::string out_dir = JsonString(req, "out_dir");
  ExtractLimits limits;
  limits.max_bytes = JsonInt(req, "max_bytes").value_or(limits.max_bytes);
  limits.max_entries = JsonInt(req, "max_entries").value_or(limits.max_entries);
  const int64_t cpu_seconds = JsonInt(req, "cpu_seconds").value_or(0);
  fs::path root = out_dir;
  const bool as_root = ::geteuid() == 0;
  if (as_root) {
    // Root can confine the writes to the target directory.
    if (::chroot(out_dir.c_str()) != 0) return Errno(base::StrCat("chroot \"", out_dir, "\""));
    root = "/";
  }
  if (::chdir(root.c_str()) != 0) return Errno("chdir");
  // A file past RLIMIT_FSIZE fails with EFBIG instead of killing the child,
  // so the answer can say which limit it hit.
  ::signal(SIGXFSZ, SIG_IGN);
  RETURN_IF_ERROR(SetLimit(RLIMIT_FSIZE, static_cast<uint64_t>(std::max<int64_t>(limits.max_bytes, 1)), "FSIZE"));
  RETURN_IF_ERROR(SetLimit(RLIMIT_NOFILE, kFirstLayerFd + layer_count + kChildSpareFds, "NOFILE"));
  RETURN_IF_ERROR(SetLimit(RLIMIT_CORE, 0, "CORE"));
  // Sanitizers reserve terabytes of shadow address space.
  if (!kSanitized) RETURN_IF_ERROR(SetLimit(RLIMIT_AS, kChildAddressSpace, "AS"));
  if (cpu_seconds > 0) RETURN_IF_ERROR(SetLimit(RLIMIT_CPU, static_cast<uint64_t>(cpu_seconds), "CPU"));
  FdBlobSource source(std::move(fds));
  if (JsonString(req, "op") == "unpack") {
    // One layer's files with their owners: root stays, with only the
    // capabilities that takes, and only the calls it needs.
    if (!as_root || layers.size() != 1) return absl::InternalError("layer unpacking runs as root, one layer at a time");
    RETURN_IF_ERROR(DropCapabilities({CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, CAP_SETFCAP}));
    RETURN_IF_ERROR(LoadSeccomp(/*unpack=*/true));
    LayerBudget budget;
    budget.bytes = JsonInt(req, "budget_bytes").value_or(0);
    budget.entries = JsonInt(req, "budget_entries").value_or(0);
    ASSIGN_OR_RETURN(UnpackStats st, UnpackLayer(source, layers[0], root, limits, &budget));
    return json{{"entries", st.entries},
                {"skipped_devices", st.skipped_devices},
                {"whiteouts", st.whiteouts},
                {"opaque_dirs", st.opaque_dirs},
                {"budget_bytes", budget.bytes},
                {"budget_entries", budget.entries}};
  }
  if (as_root) {
    // The bounding set needs CAP_SETPCAP, which the uid change takes away.
    for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
      if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return Errno("prctl(PR_CAPBSET_DROP)");
    }
    const std::optional<int64_t> uid = JsonInt(req, "uid"), gid = JsonInt(req, "gid");
    if (!uid || !gid) return absl::InternalError("extraction request lacks uid or gid");
    RETURN_IF_ERROR(DropToUser(static_cast<uid_t>(*uid), static_cast<gid_t>(*gid)));
  }
  RETURN_IF_ERROR(DropCapabilities());
  RETURN_IF_ERROR(LoadSeccomp(/*unpack=*/false));
  ASSIGN_OR_RETURN(BootArtifacts a, ExtractBootArtifacts(source, layers, root, limits));
  return json{{"disk", a.disk}, {"kernel", a.kernel}, {"initrd", a.initrd}, {"reason", a.unbootable_reason}};
}

// Runs in every process that links this library, before main(): only a
// child started by ExtractBootArtifactsSandboxed finds the marker.
__attribute__((constructor)) void MaybeRunAsExtractChild() {
  const char* marker = std::getenv(kChildMarker);
  if (marker == nullptr) return;
  int count = std::atoi(marker);
  ::unsetenv(kChildMarker);
  absl::StatusOr<json> r = ChildMain(count);
  json out;
  if (r.ok()) {
    out = *r;
    out["ok"] = true;
  } else {
    out = {{"ok", false},
           {"code", static_cast<int>(r.status().code())},
           {"message", std::string(r.status().message())}};
  }
  WriteAll(kResultFd, out.dump(-1, ' ', false, json::error_handler_t::replace));
  ::_exit(0);
}

// ---- parent side ----

// Kills and reaps the child unless it was reaped already.
class ChildGuard {
 public:
  explicit ChildGuard(pid_t pid) : pid_(pid) {}
  ~ChildGuard() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st;
      while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
      }
    }
  }
  absl::StatusOr<int> Wait() {
    int st = 0;
    while (::waitpid(pid_, &st, 0) < 0) {
      if (errno != EINTR) return Errno("waitpid extraction child");
    }
    pid_ = -1;
    return st;
  }

 private:
  pid_t pid_;
};

}  // namespace

namespace {

// Moves artifact `rel` ("disk/<name>", "boot/vmlinuz", "boot/initrd.img")
// from the child's scratch directory into `out_fd`, after checking that it is
// a regular file reached without symlinks; root-owned (when root) and 0444.
absl::Status TakeArtifact(int scratch_fd, int out_fd, const std::string& rel, const fs::path& scratch) {
  const size_t slash = rel.find('/');
  const std::string dir = rel.substr(0, slash), name = rel.substr(slash + 1);
  auto refuse = [&](std::string_view why) {
    return absl::InternalError(base::StrCat("extraction child's artifact \"", rel, "\" ", why));
  };
  base::UniqueFd dir_fd(::openat(scratch_fd, dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir_fd.valid()) return refuse(base::StrCat("has no directory: ", std::strerror(errno)));
  // O_NONBLOCK: a FIFO planted under the name must not block the open.
  base::UniqueFd fd(::openat(dir_fd.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) return refuse(base::StrCat("cannot be opened: ", std::strerror(errno)));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Errno(base::StrCat("stat \"", (scratch / rel).string(), "\""));
  if (!S_ISREG(st.st_mode)) return refuse("is not a regular file");
  if (::geteuid() == 0 && ::fchown(fd.get(), 0, 0) != 0) {
    return Errno(base::StrCat("chown \"", (scratch / rel).string(), "\""));
  }
  // Base files are never written: VMs get overlays, or read the kernel.
  if (::fchmod(fd.get(), 0444) != 0) return Errno(base::StrCat("chmod \"", (scratch / rel).string(), "\""));
  if (::mkdirat(out_fd, dir.c_str(), 0700) != 0 && errno != EEXIST) return Errno(base::StrCat("mkdir ", dir));
  base::UniqueFd out_dir_fd(::openat(out_fd, dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!out_dir_fd.valid()) return Errno(base::StrCat("open ", dir));
  if (::renameat(dir_fd.get(), name.c_str(), out_dir_fd.get(), name.c_str()) != 0) {
    return Errno(base::StrCat("rename \"", (scratch / rel).string(), "\""));
  }
  return absl::OkStatus();
}

// The artifact names a child may answer with, and nothing else.
absl::Status CheckArtifactNames(const BootArtifacts& a) {
  auto bad = [](const std::string& p) {
    return absl::InternalError(base::StrCat("extraction child returned path \"", p, "\""));
  };
  if (!a.disk.empty()) {
    std::string_view name = std::string_view(a.disk).substr(a.disk.rfind('/') + 1);
    if (a.disk.rfind("disk/", 0) != 0 || a.disk.find('/', 5) != std::string::npos || name.empty() || name == "." ||
        name == ".." || a.disk.find('\0') != std::string::npos) {
      return bad(a.disk);
    }
  }
  if (!a.kernel.empty() && a.kernel != "boot/vmlinuz") return bad(a.kernel);
  if (!a.initrd.empty() && (a.initrd != "boot/initrd.img" || a.kernel.empty())) return bad(a.initrd);
  return absl::OkStatus();
}

// Removes the child's scratch directory on every path.
class ScratchDir {
 public:
  explicit ScratchDir(fs::path p) : path_(std::move(p)) {}
  ~ScratchDir() { base::LogIfError(base::RemoveAll(path_), "remove extraction scratch directory"); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

}  // namespace

namespace {

// Runs the child (a fresh exec of this binary, found by kChildMarker) with
// the request `req` (its "layers" filled in here from `layers`, whose blobs
// it gets as fds), until it answers or options.deadline; the answer, with
// "ok" true checked, or the child's own error status.
absl::StatusOr<json> RunChild(BlobSource& source, const std::vector<Descriptor>& layers, json req,
                              const SandboxOptions& options) {
  int64_t cpu_seconds = 0;
  if (options.deadline != absl::InfiniteFuture()) {
    cpu_seconds = std::max<int64_t>(1, absl::ToInt64Seconds(options.deadline - absl::Now()) + 1);
  }
  req["cpu_seconds"] = cpu_seconds;
  req["max_bytes"] = options.limits.max_bytes;
  req["max_entries"] = options.limits.max_entries;
  req["layers"] = json::array();
  for (const Descriptor& l : layers) {
    req["layers"].push_back({{"mediaType", l.media_type}, {"digest", l.digest}, {"size", l.size}});
  }

  const int n = static_cast<int>(layers.size());
  const int high = kFirstLayerFd + n;  // above every target fd number
  // Every fd the child needs, duplicated above the target numbers so the
  // dup2 calls after fork cannot clobber one another.
  std::vector<base::UniqueFd> moved;
  auto park = [&](int fd) -> absl::Status {
    int d = ::fcntl(fd, F_DUPFD_CLOEXEC, high);
    if (d < 0) return Errno("dup descriptor for extraction child");
    moved.emplace_back(d);
    return absl::OkStatus();
  };
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return Errno("pipe");
  base::UniqueFd result_read(pipe_fds[0]);
  {
    base::UniqueFd w(pipe_fds[1]);
    RETURN_IF_ERROR(park(w.get()));
  }
  {
    base::UniqueFd m(::memfd_create("kvcri-extract-request", MFD_CLOEXEC));
    if (!m.valid()) return Errno("memfd_create");
    std::string text = req.dump();
    if (::pwrite(m.get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
      return Errno("write extraction request");
    RETURN_IF_ERROR(park(m.get()));
  }
  for (const Descriptor& l : layers) {
    ASSIGN_OR_RETURN(base::UniqueFd fd, source.Open(l.digest));
    RETURN_IF_ERROR(park(fd.get()));
  }
  // Everything the child runs before exec is prepared here: after fork in a
  // threaded process only async-signal-safe calls are allowed.
  std::string marker = base::StrCat(kChildMarker, "=", n);
  std::string arg0 = "kvcri-extract";
  char* argv[] = {arg0.data(), nullptr};
  char* envp[] = {marker.data(), nullptr};
  std::vector<int> from;
  for (const base::UniqueFd& f : moved) from.push_back(f.get());

  pid_t pid = ::fork();
  if (pid < 0) return Errno("fork extraction child");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    sigset_t all;
    sigemptyset(&all);
    ::sigprocmask(SIG_SETMASK, &all, nullptr);
    for (size_t i = 0; i < from.size(); ++i) {
      if (::dup2(from[i], kResultFd + static_cast<int>(i)) < 0) ::_exit(127);
    }
    ::execve("/proc/self/exe", argv, envp);
    ::_exit(127);
  }
  ChildGuard child(pid);
  moved.clear();  // the child holds its own copies now

  // The answer, read until the child closes the pipe, or the deadline (the
  // guard kills the child on the way out).
  std::string text;
  char buf[4096];
  while (true) {
    int timeout_ms = -1;
    if (options.deadline != absl::InfiniteFuture()) {
      const absl::Duration left = options.deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        return absl::DeadlineExceededError(
            "layer extraction did not finish within the pull timeout ([images] pull_timeout_seconds); "
            "extraction child killed");
      }
      timeout_ms = static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 60000));
    }
    pollfd p{result_read.get(), POLLIN, 0};
    int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Errno("poll extraction result");
    if (r == 0) continue;  // the deadline check above decides
    ssize_t k = ::read(result_read.get(), buf, sizeof buf);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return Errno("read extraction result");
    if (k == 0) break;
    text.append(buf, static_cast<size_t>(k));
    if (text.size() > kMaxResult) {
      return absl::InternalError(base::StrCat("layer extraction child's answer is larger than ", kMaxResult, " bytes"));
    }
  }
  ASSIGN_OR_RETURN(int st, child.Wait());
  if (WIFSIGNALED(st)) {
    if (WTERMSIG(st) == SIGXCPU) {
      return absl::DeadlineExceededError(
          "layer extraction used up its CPU time (RLIMIT_CPU from the pull timeout, [images] "
          "pull_timeout_seconds); extraction child killed");
    }
    return absl::InternalError(base::StrCat("layer extraction child was killed by signal ",
                                            WTERMSIG(st), " (", strsignal(WTERMSIG(st)), ")"));
  }
  json out = json::parse(text, nullptr, false);
  const std::optional<bool> ok = JsonBool(out, "ok");
  if (!out.is_object() || !ok.has_value() || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    return absl::InternalError(base::StrCat("layer extraction child failed (exit status ",
                                            WIFEXITED(st) ? WEXITSTATUS(st) : -1, ") without a well-formed result"));
  }
  if (!*ok) {
    // The code must be a real error code: an "ok" code here would turn a
    // failure into a success-shaped Status.
    const int64_t code = JsonInt(out, "code").value_or(static_cast<int64_t>(absl::StatusCode::kInternal));
    const absl::StatusCode c =
        code >= 1 && code <= 16 ? static_cast<absl::StatusCode>(code) : absl::StatusCode::kInternal;
    std::string message = JsonString(out, "message");
    return absl::Status(c, message.empty() ? "layer extraction failed" : message);
  }
  return out;
}

}  // namespace

absl::StatusOr<BootArtifacts> ExtractBootArtifactsSandboxed(BlobSource& source, const std::vector<Descriptor>& layers,
                                                            const fs::path& out_dir, const SandboxOptions& options) {
  const bool as_root = ::geteuid() == 0;
  if (as_root && (options.uid == 0 || options.gid == 0)) {
    return absl::InvalidArgumentError("extraction must not run as uid or gid 0 ([images] extract_uid, extract_gid)");
  }
  const fs::path out_abs = fs::absolute(out_dir);
  ScratchDir scratch(out_abs.parent_path() / base::StrCat(out_abs.filename().string(), ".child"));
  if (::mkdir(scratch.path().c_str(), 0700) != 0) {
    return Errno(base::StrCat("mkdir \"", scratch.path().string(), "\""));
  }
  // The child writes only here, as its own uid.
  if (as_root && ::chown(scratch.path().c_str(), options.uid, options.gid) != 0) {
    return Errno(base::StrCat("chown \"", scratch.path().string(), "\""));
  }
  json req = {{"out_dir", scratch.path().string()},
              {"uid", static_cast<int64_t>(options.uid)},
              {"gid", static_cast<int64_t>(options.gid)}};
  ASSIGN_OR_RETURN(json out, RunChild(source, layers, std::move(req), options));
  BootArtifacts a;
  a.disk = JsonString(out, "disk");
  a.kernel = JsonString(out, "kernel");
  a.initrd = JsonString(out, "initrd");
  a.unbootable_reason = JsonString(out, "reason");
  // The child is untrusted: its answer must name only the artifact paths,
  // and only those files leave its scratch directory.
  RETURN_IF_ERROR(CheckArtifactNames(a));
  base::UniqueFd scratch_fd(::open(scratch.path().c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!scratch_fd.valid()) return Errno(base::StrCat("open \"", scratch.path().string(), "\""));
  base::UniqueFd out_fd(::open(out_abs.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!out_fd.valid()) return Errno(base::StrCat("open \"", out_abs.string(), "\""));
  for (const std::string* rel : {&a.disk, &a.kernel, &a.initrd}) {
    if (!rel->empty()) RETURN_IF_ERROR(TakeArtifact(scratch_fd.get(), out_fd.get(), *rel, scratch.path()));
  }
  return a;
}

}  // namespace kvcri::runtime::image

namespace kvcri::runtime::image {

absl::StatusOr<UnpackStats> UnpackLayerSandboxed(BlobSource& source, const Descriptor& layer, const fs::path& out_dir,
                                                 const SandboxOptions& options, LayerBudget* budget) {
  if (::geteuid() != 0) {
    return absl::FailedPreconditionError("unpacking an image layer with its files' owners needs root");
  }
  json req = {{"op", "unpack"},
              {"out_dir", fs::absolute(out_dir).string()},
              {"budget_bytes", budget->bytes},
              {"budget_entries", budget->entries}};
  ASSIGN_OR_RETURN(json out, RunChild(source, {layer}, std::move(req), options));
  // The answer is the child's: untrusted. Marks are checked by
  // ApplyOverlayMarks; the lists are bounded by the entries they came from.
  UnpackStats st;
  st.entries = JsonInt(out, "entries").value_or(0);
  st.skipped_devices = JsonInt(out, "skipped_devices").value_or(0);
  for (const char* key : {"whiteouts", "opaque_dirs"}) {
    if (!out.contains(key) || !out[key].is_array() || static_cast<int64_t>(out[key].size()) > st.entries) {
      return absl::InternalError(base::StrCat("layer unpacking child's answer has no well-formed \"", key, "\""));
    }
    for (const json& p : out[key]) {
      if (!p.is_string()) return absl::InternalError(base::StrCat("layer unpacking child's \"", key, "\" holds a non-string"));
      (std::string_view(key) == "whiteouts" ? st.whiteouts : st.opaque_dirs).push_back(p.get<std::string>());
    }
  }
  const std::optional<int64_t> bytes = JsonInt(out, "budget_bytes"), entries = JsonInt(out, "budget_entries");
  if (!bytes || !entries || *bytes < budget->bytes || *entries < budget->entries) {
    return absl::InternalError("layer unpacking child's answer has no well-formed budget");
  }
  RETURN_IF_ERROR(ApplyOverlayMarks(out_dir, st));
  budget->bytes = *bytes;
  budget->entries = *entries;
  return st;
}

}  // namespace kvcri::runtime::image
