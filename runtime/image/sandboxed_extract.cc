// The extraction child: re-exec, capabilities dropped, seccomp, layers in by fd, result out by pipe.
#include "runtime/image/sandboxed_extract.h"

#include <fcntl.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"

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

absl::Status DropCapabilities() {
  // The bounding set first: dropping it needs CAP_SETPCAP, which goes next.
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) {
      return Errno("prctl(PR_CAPBSET_DROP)");
    }
  }
  if (CAP_AMBIENT_SUPPORTED() && cap_reset_ambient() != 0) return Errno("cap_reset_ambient");
  cap_t none = cap_init();  // all three sets empty
  if (none == nullptr) return Errno("cap_init");
  int r = cap_set_proc(none);
  cap_free(none);
  if (r != 0) return Errno("cap_set_proc");
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Errno("prctl(PR_SET_NO_NEW_PRIVS)");
  return absl::OkStatus();
}

absl::Status LoadSeccomp() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
  if (ctx == nullptr) return absl::InternalError("seccomp_init failed");
  // What reading blobs, decompressing and writing files needs; nothing else.
  static constexpr const char* kAllowed[] = {
      "read", "write", "readv", "writev", "pread64", "pwrite64", "lseek", "open", "openat",
      "close", "fstat", "stat", "lstat", "newfstatat", "statx", "fstatfs", "mkdir", "mkdirat",
      "rename", "renameat", "renameat2", "link", "linkat", "unlink", "unlinkat", "rmdir",
      "getdents64", "ftruncate", "fsync", "fdatasync", "fchmod", "fchmodat", "fcntl", "dup",
      "getcwd", "mmap", "munmap", "mremap", "mprotect", "brk", "madvise", "futex",
      "rt_sigreturn", "rt_sigprocmask", "rt_sigaction", "getpid", "gettid", "getuid", "geteuid",
      "getgid", "getegid", "clock_gettime", "clock_nanosleep", "gettimeofday", "getrandom",
      "exit", "exit_group", "sched_yield", "sched_getaffinity", "sysinfo", "prlimit64",
      "set_robust_list", "rseq",
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

absl::StatusOr<BootArtifacts> ChildExtract(int layer_count) {
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
  if (!req.is_object()) return absl::InternalError("malformed extraction request");
  std::vector<Descriptor> layers;
  std::vector<std::pair<std::string, int>> fds;
  for (const json& l : req["layers"]) {
    Descriptor d;
    d.media_type = l.value("mediaType", "");
    d.digest = l.value("digest", "");
    d.size = l.value("size", int64_t{0});
    fds.emplace_back(d.digest, kFirstLayerFd + static_cast<int>(layers.size()));
    layers.push_back(std::move(d));
  }
  if (static_cast<int>(layers.size()) != layer_count)
    return absl::InternalError("extraction request and descriptors disagree");
  const std::string out_dir = req.value("out_dir", "");
  fs::path root = out_dir;
  if (::geteuid() == 0) {
    // Root can confine the writes to the target directory.
    if (::chroot(out_dir.c_str()) != 0) return Errno(base::StrCat("chroot \"", out_dir, "\""));
    root = "/";
  }
  if (::chdir(root.c_str()) != 0) return Errno("chdir");
  RETURN_IF_ERROR(DropCapabilities());
  RETURN_IF_ERROR(LoadSeccomp());
  FdBlobSource source(std::move(fds));
  return ExtractBootArtifacts(source, layers, root);
}

// Runs in every process that links this library, before main(): only a
// child started by ExtractBootArtifactsSandboxed finds the marker.
__attribute__((constructor)) void MaybeRunAsExtractChild() {
  const char* marker = std::getenv(kChildMarker);
  if (marker == nullptr) return;
  int count = std::atoi(marker);
  ::unsetenv(kChildMarker);
  absl::StatusOr<BootArtifacts> r = ChildExtract(count);
  json out;
  if (r.ok()) {
    out = {{"ok", true},
           {"disk", r->disk},
           {"kernel", r->kernel},
           {"initrd", r->initrd},
           {"reason", r->unbootable_reason}};
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

absl::StatusOr<BootArtifacts> ExtractBootArtifactsSandboxed(BlobSource& source,
                                                            const std::vector<Descriptor>& layers,
                                                            const fs::path& out_dir) {
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
  json req = {{"out_dir", fs::absolute(out_dir).string()}, {"layers", json::array()}};
  for (const Descriptor& l : layers) {
    req["layers"].push_back({{"mediaType", l.media_type}, {"digest", l.digest}, {"size", l.size}});
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

  std::string text;
  char buf[4096];
  while (text.size() < kMaxResult) {
    ssize_t k = ::read(result_read.get(), buf, sizeof buf);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return Errno("read extraction result");
    if (k == 0) break;
    text.append(buf, static_cast<size_t>(k));
  }
  ASSIGN_OR_RETURN(int st, child.Wait());
  if (WIFSIGNALED(st)) {
    return absl::InternalError(base::StrCat("layer extraction child was killed by signal ",
                                            WTERMSIG(st), " (", strsignal(WTERMSIG(st)), ")"));
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !json::accept(text)) {
    return absl::InternalError(base::StrCat("layer extraction child failed (exit status ",
                                            WIFEXITED(st) ? WEXITSTATUS(st) : -1,
                                            ") without a result"));
  }
  return ParseExtractionResult(text);
}

absl::StatusOr<BootArtifacts> ParseExtractionResult(std::string_view text) {
  auto bad = [](std::string_view why) {
    return absl::InternalError(base::StrCat("layer extraction child answered ", why));
  };
  json out = json::parse(text, nullptr, false);
  if (!out.is_object()) return bad("something that is not a JSON object");
  // Every field is checked for its type: nlohmann's value() would throw.
  auto string_at = [&out](const char* key, std::string* v) {
    auto it = out.find(key);
    if (it == out.end()) return true;
    if (!it->is_string()) return false;
    *v = it->get<std::string>();
    return true;
  };
  auto ok = out.find("ok");
  if (ok == out.end() || !ok->is_boolean()) return bad("no boolean \"ok\"");
  if (!ok->get<bool>()) {
    std::string message = "layer extraction failed";
    if (!string_at("message", &message)) return bad("a non-string \"message\"");
    auto code = out.find("code");
    // A failure keeps its code, but only a real error code: 0 would be OK.
    int c = code != out.end() && code->is_number_integer() ? code->get<int>() : 0;
    if (c < 1 || c > 16) return bad(base::StrCat("a failure without a valid error code: \"", message, "\""));
    return absl::Status(static_cast<absl::StatusCode>(c), message);
  }
  BootArtifacts a;
  if (!string_at("disk", &a.disk) || !string_at("kernel", &a.kernel) || !string_at("initrd", &a.initrd) ||
      !string_at("reason", &a.unbootable_reason)) {
    return bad("a non-string artifact path or reason");
  }
  // The child is untrusted: its answer must name only the artifact paths.
  for (const std::string* p : {&a.disk, &a.kernel, &a.initrd}) {
    if (!p->empty() && (p->find("..") != std::string::npos || (*p)[0] == '/')) {
      return absl::InternalError(base::StrCat("extraction child returned path \"", *p, "\""));
    }
  }
  return a;
}

}  // namespace kvcri::runtime::image
