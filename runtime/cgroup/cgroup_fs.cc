// CgroupLayout and the cgroup file operations: v1 per-controller and v2 unified, on any root (scratch trees in tests).
#include "runtime/cgroup/cgroup_fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <map>

#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"

namespace kvcri::runtime::cgroup {
namespace {

using base::StrCat;
namespace fs = std::filesystem;

// memory.stat of v1 with NUMA and hierarchy lines is a few KiB.
constexpr size_t kMaxCgroupFileBytes = 64 << 10;

absl::StatusOr<std::string> ReadSmall(const fs::path& path) {
  base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, StrCat("open \"", path.native(), "\""));
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, StrCat("read \"", path.native(), "\""));
    if (n == 0) return out;
    if (out.size() + static_cast<size_t>(n) > kMaxCgroupFileBytes) {
      return absl::OutOfRangeError(StrCat("\"", path.native(), "\" is larger than ", kMaxCgroupFileBytes, " bytes"));
    }
    out.append(buf, static_cast<size_t>(n));
  }
}

absl::Status WriteSmall(const fs::path& path, std::string_view data) {
  base::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, StrCat("open \"", path.native(), "\""));
  ssize_t n = ::write(fd.get(), data.data(), data.size());
  if (n < 0) return absl::ErrnoToStatus(errno, StrCat("write \"", path.native(), "\""));
  if (static_cast<size_t>(n) != data.size()) return absl::InternalError(StrCat("short write to \"", path.native(), "\""));
  return absl::OkStatus();
}

// The non-empty pieces of `text` between `sep`s.
std::vector<std::string_view> Split(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  for (size_t pos = 0; pos <= text.size();) {
    size_t end = text.find(sep, pos);
    if (end == std::string_view::npos) end = text.size();
    if (end > pos) out.push_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

bool ParseU64(std::string_view s, uint64_t* out) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

// "key value" lines (memory.stat, cpu.stat, memory.events, memory.oom_control).
std::map<std::string, uint64_t, std::less<>> ParseKeyed(std::string_view text) {
  std::map<std::string, uint64_t, std::less<>> out;
  for (std::string_view line : Split(text, '\n')) {
    const size_t sp = line.find(' ');
    if (sp == std::string_view::npos) continue;
    uint64_t v = 0;
    if (ParseU64(line.substr(sp + 1), &v)) out.emplace(std::string(line.substr(0, sp)), v);
  }
  return out;
}

absl::StatusOr<uint64_t> ReadU64(const fs::path& path) {
  absl::StatusOr<std::string> text = ReadSmall(path);
  if (!text.ok()) return text.status();
  uint64_t v = 0;
  if (!ParseU64(*text, &v)) return absl::InvalidArgumentError(StrCat("\"", path.native(), "\" is not a number"));
  return v;
}

uint64_t Get(const std::map<std::string, uint64_t, std::less<>>& m, std::string_view key) {
  auto it = m.find(key);
  return it == m.end() ? 0 : it->second;
}

}  // namespace

absl::StatusOr<CgroupLayout> CgroupLayout::Detect(const fs::path& root) {
  CgroupLayout l;
  l.root_ = root;
  std::error_code ec;
  if (fs::exists(root / "cgroup.controllers", ec)) {
    l.version_ = CgroupVersion::kV2;
    return l;
  }
  for (std::string_view c : kV1Controllers) {
    if (fs::is_directory(root / c, ec)) l.v1_controllers_.emplace_back(c);
  }
  auto has = [&](std::string_view c) {
    return std::find(l.v1_controllers_.begin(), l.v1_controllers_.end(), c) != l.v1_controllers_.end();
  };
  if (!has("memory") || !has("cpuacct")) {
    return absl::FailedPreconditionError(StrCat("no cgroup v2 mount and no cgroup v1 memory and cpuacct hierarchies at \"",
                                                root.native(), "\""));
  }
  return l;
}

std::vector<fs::path> CgroupLayout::DirsOf(std::string_view rel) const {
  if (version_ == CgroupVersion::kV2) return {ControllerDir(rel, "")};
  std::vector<fs::path> out;
  for (const std::string& c : v1_controllers_) out.push_back(ControllerDir(rel, c));
  return out;
}

fs::path CgroupLayout::ControllerDir(std::string_view rel, std::string_view controller) const {
  const std::string_view tail = rel.empty() || rel[0] != '/' ? rel : rel.substr(1);
  if (version_ == CgroupVersion::kV2) return root_ / tail;
  return root_ / controller / tail;
}

absl::StatusOr<std::string> ExpandSystemdSlice(std::string_view slice) {
  constexpr std::string_view kSuffix = ".slice";
  if (slice.size() <= kSuffix.size() || slice.substr(slice.size() - kSuffix.size()) != kSuffix ||
      slice.find('/') != std::string_view::npos) {
    return absl::InvalidArgumentError(StrCat("\"", slice, "\" is not a systemd slice name (NAME.slice)"));
  }
  const std::string_view name = slice.substr(0, slice.size() - kSuffix.size());
  if (name == "-") return std::string("/");  // the root slice
  if (name.front() == '-' || name.back() == '-' || name.find("--") != std::string_view::npos) {
    return absl::InvalidArgumentError(StrCat("\"", slice, "\" is not a valid systemd slice name"));
  }
  // Each dash starts a deeper slice: a-b-c.slice lives in a.slice/a-b.slice.
  std::string path;
  for (size_t pos = 0;;) {
    const size_t dash = name.find('-', pos);
    path += StrCat("/", name.substr(0, dash), kSuffix);
    if (dash == std::string_view::npos) break;
    pos = dash + 1;
  }
  return path;
}

absl::StatusOr<std::string> CleanCgroupPath(std::string_view rel) {
  std::string out;
  for (std::string_view part : Split(rel, '/')) {
    if (part == "." || part == "..") return absl::InvalidArgumentError(StrCat("cgroup path \"", rel, "\" has a \"", part, "\" component"));
    for (char ch : part) {
      if (ch < 0x21 || ch > 0x7e) return absl::InvalidArgumentError(StrCat("cgroup path \"", rel, "\" is not printable ASCII"));
    }
    out += StrCat("/", part);
  }
  if (out.empty()) return absl::InvalidArgumentError(StrCat("cgroup path \"", rel, "\" names the root"));
  return out;
}

namespace {

// A new v1 cpuset cgroup starts with no CPUs and no memory nodes, and the
// kernel refuses to let a process join it (ENOSPC): give each level its
// parent's, as runc does. A level that has its own keeps them.
absl::Status InheritCpuset(const fs::path& hierarchy, std::string_view rel) {
  fs::path dir = hierarchy;
  for (std::string_view part : Split(rel, '/')) {
    const fs::path parent = dir;
    dir /= part;
    for (const char* file : {"cpuset.cpus", "cpuset.mems"}) {
      absl::StatusOr<std::string> mine = ReadSmall(dir / file);
      if (!mine.ok()) return absl::OkStatus();  // not a real cpuset hierarchy (scratch trees)
      if (mine->find_first_not_of(" \n") != std::string::npos) continue;
      absl::StatusOr<std::string> theirs = ReadSmall(parent / file);
      if (!theirs.ok()) return theirs.status();
      RETURN_IF_ERROR(WriteSmall(dir / file, *theirs));
    }
  }
  return absl::OkStatus();
}

// cgroup v2: a child has a controller's files only when every level above
// enabled it for its children. kubelet does this for its own tree; levels we
// make (a default parent) need it too. A controller the level cannot offer
// is left out (the write of that one fails; the others stand).
absl::Status EnableV2Controllers(const fs::path& root, std::string_view rel) {
  fs::path dir = root;
  std::vector<std::string_view> parts = Split(rel, '/');
  for (size_t i = 0; i < parts.size(); ++i) {
    absl::StatusOr<std::string> enabled = ReadSmall(dir / "cgroup.subtree_control");
    if (!enabled.ok()) return absl::OkStatus();  // a scratch tree without the file
    std::string words = *enabled;
    std::replace(words.begin(), words.end(), '\n', ' ');
    const std::vector<std::string_view> have = Split(words, ' ');
    for (std::string_view c : {"cpu", "cpuset", "memory", "pids"}) {
      if (std::find(have.begin(), have.end(), c) != have.end()) continue;
      WriteSmall(dir / "cgroup.subtree_control", StrCat("+", c)).IgnoreError();
    }
    dir /= parts[i];
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CreateCgroup(const CgroupLayout& layout, std::string_view rel) {
  for (const fs::path& dir : layout.DirsOf(rel)) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return absl::ErrnoToStatus(ec.value(), StrCat("mkdir \"", dir.native(), "\""));
  }
  if (layout.version() == CgroupVersion::kV1) {
    const fs::path cpuset = layout.root() / "cpuset";
    std::error_code ec;
    if (fs::is_directory(cpuset, ec)) RETURN_IF_ERROR(InheritCpuset(cpuset, rel));
  } else {
    RETURN_IF_ERROR(EnableV2Controllers(layout.root(), rel));
  }
  return absl::OkStatus();
}

absl::Status WriteCgroupFile(const CgroupLayout& layout, std::string_view rel, std::string_view controller,
                             std::string_view file, std::string_view value) {
  return WriteSmall(layout.ControllerDir(rel, controller) / std::string(file), value);
}

absl::Status JoinCgroup(const CgroupLayout& layout, std::string_view rel, pid_t pid) {
  const std::string line = StrCat(pid, "\n");
  for (const fs::path& dir : layout.DirsOf(rel)) {
    if (absl::Status s = WriteSmall(dir / "cgroup.procs", line); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status RemoveCgroup(const CgroupLayout& layout, std::string_view rel) {
  absl::Status first = absl::OkStatus();
  for (const fs::path& dir : layout.DirsOf(rel)) {
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) continue;
    absl::Status s = errno == EBUSY ? absl::FailedPreconditionError(StrCat("cgroup \"", dir.native(), "\" still has processes"))
                                    : absl::ErrnoToStatus(errno, StrCat("rmdir \"", dir.native(), "\""));
    if (first.ok()) first = s;  // every hierarchy is tried
  }
  return first;
}

absl::StatusOr<std::vector<pid_t>> CgroupProcs(const CgroupLayout& layout, std::string_view rel) {
  absl::StatusOr<std::string> text = ReadSmall(layout.ControllerDir(rel, "memory") / "cgroup.procs");
  if (!text.ok()) return text.status();
  std::vector<pid_t> out;
  for (std::string_view line : Split(*text, '\n')) {
    uint64_t v = 0;
    if (ParseU64(line, &v) && v > 0 && v < (uint64_t{1} << 31)) out.push_back(static_cast<pid_t>(v));
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

// Where each version keeps the memory numbers. v1's total_* count this
// cgroup and its children (QEMU may sit in a child scope); v2's are
// hierarchical already.
struct MemoryKeys {
  const char* usage_file;
  const char* inactive_file;
  const char* rss;
  const char* pgfault;
  const char* pgmajfault;
};
constexpr MemoryKeys kV1Memory = {"memory.usage_in_bytes", "total_inactive_file", "total_rss", "total_pgfault",
                                  "total_pgmajfault"};
constexpr MemoryKeys kV2Memory = {"memory.current", "inactive_file", "anon", "pgfault", "pgmajfault"};

absl::Status ReadMemory(const fs::path& mem, const MemoryKeys& keys, CgroupSample* s) {
  ASSIGN_OR_RETURN(s->memory_usage_bytes, ReadU64(mem / keys.usage_file));
  ASSIGN_OR_RETURN(std::string stat, ReadSmall(mem / "memory.stat"));
  auto m = ParseKeyed(stat);
  const uint64_t inactive = Get(m, keys.inactive_file);
  s->memory_working_set_bytes = s->memory_usage_bytes > inactive ? s->memory_usage_bytes - inactive : 0;
  s->memory_rss_bytes = Get(m, keys.rss);
  s->page_faults = Get(m, keys.pgfault);
  s->major_page_faults = Get(m, keys.pgmajfault);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CgroupSample> ReadCgroupSample(const CgroupLayout& layout, std::string_view rel) {
  CgroupSample s;
  s.timestamp = absl::Now();
  const fs::path mem = layout.ControllerDir(rel, "memory");
  std::error_code ec;
  if (!fs::is_directory(mem, ec)) return absl::NotFoundError(StrCat("no cgroup \"", mem.native(), "\""));
  if (layout.version() == CgroupVersion::kV2) {
    ASSIGN_OR_RETURN(std::string cpu, ReadSmall(mem / "cpu.stat"));
    s.cpu_usage_ns = Get(ParseKeyed(cpu), "usage_usec") * 1000;
    RETURN_IF_ERROR(ReadMemory(mem, kV2Memory, &s));
    if (absl::StatusOr<uint64_t> max = ReadU64(mem / "memory.max"); max.ok()) s.memory_limit_bytes = *max;  // "max": 0
    if (absl::StatusOr<std::string> ev = ReadSmall(mem / "memory.events"); ev.ok()) {
      s.oom_kills = Get(ParseKeyed(*ev), "oom_kill");
    }
  } else {
    ASSIGN_OR_RETURN(s.cpu_usage_ns, ReadU64(layout.ControllerDir(rel, "cpuacct") / "cpuacct.usage"));
    RETURN_IF_ERROR(ReadMemory(mem, kV1Memory, &s));
    if (absl::StatusOr<uint64_t> lim = ReadU64(mem / "memory.limit_in_bytes"); lim.ok()) {
      // v1 says "no limit" with a huge page-rounded number.
      s.memory_limit_bytes = *lim >= (uint64_t{1} << 62) ? 0 : *lim;
    }
    if (absl::StatusOr<std::string> oom = ReadSmall(mem / "memory.oom_control"); oom.ok()) {
      s.oom_kills = Get(ParseKeyed(*oom), "oom_kill");
    }
  }
  if (absl::StatusOr<uint64_t> p = ReadU64(layout.ControllerDir(rel, "pids") / "pids.current"); p.ok()) s.pids = *p;
  return s;
}

}  // namespace kvcri::runtime::cgroup
