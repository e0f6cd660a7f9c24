// FileSandboxStore: record files, the in-memory index, Load() and its report.
#include "sandbox/file_sandbox_store.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <functional>
#include <memory>
#include <system_error>
#include <utility>

#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"

namespace kvcri::sandbox {
namespace fs = std::filesystem;
using base::StrCat;

namespace {

constexpr std::string_view kSandboxFile = "sandbox.json";
constexpr std::string_view kContainersDir = "containers";
constexpr std::string_view kJsonSuffix = ".json";
constexpr std::string_view kTrashPrefix = ".removing-";

bool StartsWith(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// WriteFileAtomic's temp files are ".<target>.tmpXXXXXX".
bool IsTempFile(std::string_view name) {
  if (name.size() < 2 || name[0] != '.') return false;
  size_t pos = name.rfind(".tmp");
  return pos != std::string_view::npos && pos > 1 && name.size() - pos == 4 + 6;
}

std::string ContainerNameKey(std::string_view sandbox_id, std::string_view name) {
  return StrCat(sandbox_id, "/", name);
}

template <typename Map>
absl::StatusOr<std::string> ResolvePrefix(const Map& map, std::string_view prefix, std::string_view what) {
  if (prefix.empty()) return absl::InvalidArgumentError(StrCat(what, " ID is empty"));
  auto it = map.lower_bound(prefix);
  if (it == map.end() || !StartsWith(it->first, prefix)) {
    return absl::NotFoundError(StrCat(what, " \"", prefix, "\" not found"));
  }
  if (it->first.size() == prefix.size()) return it->first;
  auto next = std::next(it);
  if (next != map.end() && StartsWith(next->first, prefix)) {
    return absl::InvalidArgumentError(StrCat(what, " ID prefix \"", prefix, "\" is ambiguous: it matches \"",
                                             it->first, "\" and \"", next->first, "\""));
  }
  return it->first;
}

// Lists a directory without following symlinks; a missing directory is empty.
struct DirEntry {
  std::string name;
  fs::file_type type;
};
absl::StatusOr<std::vector<DirEntry>> ListDir(const fs::path& dir) {
  std::vector<DirEntry> out;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec == std::errc::no_such_file_or_directory) return out;
  if (ec) return absl::ErrnoToStatus(ec.value(), StrCat("open directory \"", dir.string(), "\""));
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) return absl::ErrnoToStatus(ec.value(), StrCat("read directory \"", dir.string(), "\""));
    std::error_code sec;
    fs::file_status st = it->symlink_status(sec);
    out.push_back({it->path().filename().string(), sec ? fs::file_type::unknown : st.type()});
  }
  if (ec) return absl::ErrnoToStatus(ec.value(), StrCat("read directory \"", dir.string(), "\""));
  return out;
}

}  // namespace

FileSandboxStore::FileSandboxStore(fs::path root) : root_(std::move(root) / "sandboxes") {}

fs::path FileSandboxStore::SandboxDir(std::string_view id) const { return root_ / std::string(id); }

fs::path FileSandboxStore::SandboxFile(std::string_view id) const {
  return SandboxDir(id) / std::string(kSandboxFile);
}

fs::path FileSandboxStore::ContainerFile(std::string_view sandbox_id, std::string_view id) const {
  return SandboxDir(sandbox_id) / std::string(kContainersDir) / StrCat(id, kJsonSuffix);
}

absl::Mutex& FileSandboxStore::WriteLock(std::string_view sandbox_id) const {
  return write_mu_[std::hash<std::string_view>{}(sandbox_id) % kStripes];
}

// ---------------------------------------------------------------------------
// Load

void FileSandboxStore::LoadSandboxDir(const fs::path& dir, const std::string& id, Index* idx,
                                  LoadReport* report) {
  SandboxEntry entry;
  bool have_record = false;
  fs::path file = dir / std::string(kSandboxFile);

  absl::StatusOr<std::vector<DirEntry>> entries = ListDir(dir);
  std::string error;
  if (!entries.ok()) {
    error = std::string(base::Sv(entries.status().message()));
    entries = std::vector<DirEntry>{};
  }
  bool has_sandbox_file = false;
  for (const DirEntry& e : *entries) {
    if (e.name == kSandboxFile) {
      has_sandbox_file = true;
    } else if (IsTempFile(e.name)) {
      report->temp_files.push_back(dir / e.name);
    } else if (e.name != kContainersDir) {
      base::LogDebug("ignoring stray file in sandbox directory", {{"path", (dir / e.name).string()}});
    }
  }

  if (has_sandbox_file) {
    absl::StatusOr<std::string> text = base::ReadFile(file);
    absl::StatusOr<SandboxRecord> rec =
        text.ok() ? SandboxRecord::FromJson(*text) : absl::StatusOr<SandboxRecord>(text.status());
    if (rec.ok() && rec->id != id) {
      rec = absl::InvalidArgumentError(
          StrCat("sandbox record has id \"", rec->id, "\" but lives in directory \"", id, "\""));
    }
    if (rec.ok()) {
      entry.record = *std::move(rec);
      have_record = true;
    } else {
      error = std::string(base::Sv(rec.status().message()));
    }
  } else if (error.empty()) {
    error = StrCat("\"", file.string(), "\" is missing");
  }

  // Containers load even when the sandbox record is broken: the placeholder
  // keeps them reachable for Remove.
  fs::path cdir = dir / std::string(kContainersDir);
  absl::StatusOr<std::vector<DirEntry>> centries = ListDir(cdir);
  if (!centries.ok()) {
    base::LogError("cannot list containers; no domain or container directory is taken for an orphan",
                   {{"sandbox", id}, {"error", centries.status().ToString()}});
    report->complete = false;
    centries = std::vector<DirEntry>{};
  }
  for (const DirEntry& e : *centries) {
    fs::path path = cdir / e.name;
    if (IsTempFile(e.name)) {
      report->temp_files.push_back(path);
      continue;
    }
    std::string_view name = e.name;
    if (name.size() <= kJsonSuffix.size() || name.substr(name.size() - kJsonSuffix.size()) != kJsonSuffix ||
        !IsValidId(name.substr(0, name.size() - kJsonSuffix.size()))) {
      base::LogDebug("ignoring stray file in containers directory", {{"path", path.string()}});
      continue;
    }
    std::string cid(name.substr(0, name.size() - kJsonSuffix.size()));
    absl::StatusOr<ContainerRecord> rec =
        e.type == fs::file_type::regular ? [&]() -> absl::StatusOr<ContainerRecord> {
      ASSIGN_OR_RETURN(std::string text, base::ReadFile(path));
      return ContainerRecord::FromJson(text);
    }()
        : absl::InvalidArgumentError(StrCat("\"", path.string(), "\" is not a regular file"));
    if (rec.ok() && (rec->id != cid || rec->sandbox_id != id)) {
      rec = absl::InvalidArgumentError(StrCat("container record has id \"", rec->id, "\" and sandbox_id \"",
                                              rec->sandbox_id, "\" but lives at \"", path.string(), "\""));
    }
    if (idx->container_sandbox.contains(cid)) {
      base::LogWarn("container ID appears in two sandboxes; ignoring the second",
                    {{"container", cid}, {"path", path.string()}});
      continue;
    }
    ContainerRecord c;
    if (rec.ok()) {
      c = *std::move(rec);
      if (c.phase != Phase::kReady) report->unfinished_containers.push_back(cid);
      std::string key = ContainerNameKey(id, ContainerName(c.metadata));
      if (auto [it, inserted] = idx->container_names.emplace(key, cid); !inserted) {
        base::LogWarn("duplicate container name on load; second record is not indexed",
                      {{"name", key}, {"holder", it->second}, {"container", cid}});
      }
    } else {
      std::string err(base::Sv(rec.status().message()));
      base::LogError("corrupt container record", {{"path", path.string()}, {"error", err}});
      report->corrupt.push_back({id, cid, path, err});
      c.id = cid;
      c.sandbox_id = id;
      c.state = ContainerState::kUnknown;
      c.phase = Phase::kReady;
      c.load_error = std::move(err);
    }
    idx->container_sandbox.emplace(cid, id);
    entry.containers.emplace(cid, std::move(c));
  }

  if (!have_record) {
    if (!has_sandbox_file && entry.containers.empty()) {
      // Nothing was ever recorded here; side effects follow the first write.
      report->incomplete_dirs.push_back(dir);
      return;
    }
    base::LogError("corrupt sandbox record", {{"path", file.string()}, {"error", error}});
    report->corrupt.push_back({id, "", file, error});
    entry.record.id = id;
    entry.record.state = SandboxState::kNotReady;
    entry.record.phase = Phase::kReady;
    entry.record.load_error = std::move(error);
  } else {
    if (entry.record.phase != Phase::kReady) report->unfinished_sandboxes.push_back(id);
    std::string name = SandboxName(entry.record.metadata);
    if (auto [it, inserted] = idx->sandbox_names.emplace(name, id); !inserted) {
      base::LogWarn("duplicate sandbox name on load; second record is not indexed",
                    {{"name", name}, {"holder", it->second}, {"sandbox", id}});
    }
  }
  report->containers += entry.containers.size();
  report->sandboxes += 1;
  idx->sandboxes.emplace(id, std::move(entry));
}

absl::StatusOr<LoadReport> FileSandboxStore::Load() {
  // Every write lock, in index order (others take only one): no mutation
  // interleaves with the rebuild.
  std::vector<std::unique_ptr<absl::MutexLock>> wlocks;
  for (absl::Mutex& m : write_mu_) wlocks.push_back(std::make_unique<absl::MutexLock>(&m));
  RETURN_IF_ERROR(base::MakeDirs(root_));
  ASSIGN_OR_RETURN(std::vector<DirEntry> entries, ListDir(root_));
  LoadReport report;
  Index idx;  // built without the lock: mu_ is never held across disk I/O
  for (const DirEntry& e : entries) {
    fs::path path = root_ / e.name;
    if (StartsWith(e.name, kTrashPrefix) && e.type == fs::file_type::directory) {
      report.trash_dirs.push_back(path);
    } else if (IsValidId(e.name) && e.type == fs::file_type::directory) {
      LoadSandboxDir(path, e.name, &idx, &report);
    } else {
      base::LogDebug("ignoring stray entry in sandboxes directory", {{"path", path.string()}});
    }
  }
  {
    absl::MutexLock lock(&mu_);
    sandboxes_ = std::move(idx.sandboxes);
    container_sandbox_ = std::move(idx.container_sandbox);
    sandbox_names_ = std::move(idx.sandbox_names);
    container_names_ = std::move(idx.container_names);
  }
  base::LogInfo(
      "sandbox records loaded",
      {{"sandboxes", StrCat(report.sandboxes)},
       {"containers", StrCat(report.containers)},
       {"corrupt", StrCat(report.corrupt.size())},
       {"unfinished", StrCat(report.unfinished_sandboxes.size() + report.unfinished_containers.size())},
       {"garbage",
        StrCat(report.temp_files.size() + report.incomplete_dirs.size() + report.trash_dirs.size())}});
  return report;
}

absl::Status FileSandboxStore::CleanUp(const LoadReport& report) {
  absl::Status first;
  auto note = [&](absl::Status s) {
    base::LogIfError(s, "sandbox store clean-up failed");
    if (first.ok()) first = std::move(s);
  };
  for (const fs::path& p : report.temp_files) note(base::RemoveFile(p));
  for (const fs::path& p : report.trash_dirs) note(base::RemoveAll(p));
  for (const fs::path& p : report.incomplete_dirs) {
    std::string id = p.filename().string();
    absl::MutexLock wlock(&WriteLock(id));
    {
      absl::MutexLock lock(&mu_);
      if (sandboxes_.contains(id)) continue;  // recorded since Load: no longer garbage
    }
    note(base::RemoveAll(p));
  }
  return first;
}

absl::StatusOr<std::string> FileSandboxStore::NewId() const {
  for (int i = 0; i < 8; ++i) {
    ASSIGN_OR_RETURN(std::string id, base::RandomHex(kIdLength / 2));
    absl::MutexLock lock(&mu_);
    if (!sandboxes_.contains(id) && !container_sandbox_.contains(id)) return id;
  }
  return absl::InternalError("could not generate an unused ID in 8 attempts");
}

// ---------------------------------------------------------------------------
// Sandboxes

absl::Status FileSandboxStore::ReserveSandboxName(std::string_view name, std::string_view id) {
  if (name.empty()) return absl::InvalidArgumentError("sandbox name is empty");
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = sandbox_names_.emplace(std::string(name), std::string(id));
  if (!inserted && it->second != id) {
    return absl::AlreadyExistsError(
        StrCat("pod sandbox name \"", name, "\" is reserved for sandbox \"", it->second, "\""));
  }
  return absl::OkStatus();
}

void FileSandboxStore::ReleaseSandboxName(std::string_view name, std::string_view id) {
  absl::MutexLock lock(&mu_);
  auto it = sandbox_names_.find(name);
  if (it == sandbox_names_.end() || it->second != id || sandboxes_.contains(id)) return;
  sandbox_names_.erase(it);
}

absl::Status FileSandboxStore::PutSandbox(const SandboxRecord& record) {
  if (!IsValidId(record.id)) {
    return absl::InvalidArgumentError(
        StrCat("sandbox ID \"", record.id, "\" is not ", kIdLength, " lowercase hex characters"));
  }
  if (!record.load_error.empty()) {
    return absl::InvalidArgumentError(StrCat("sandbox \"", record.id, "\" is a corrupt-record placeholder"));
  }
  const std::string name = SandboxName(record.metadata);
  absl::MutexLock wlock(&WriteLock(record.id));
  bool took_name = false;
  {
    absl::MutexLock lock(&mu_);
    if (sandboxes_.contains(record.id)) {
      return absl::AlreadyExistsError(StrCat("sandbox \"", record.id, "\" already exists"));
    }
    auto [it, inserted] = sandbox_names_.emplace(name, record.id);
    if (!inserted && it->second != record.id) {
      return absl::AlreadyExistsError(
          StrCat("pod sandbox name \"", name, "\" is reserved for sandbox \"", it->second, "\""));
    }
    took_name = inserted;
  }
  absl::Status written = base::MakeDirs(SandboxDir(record.id));
  if (written.ok()) written = base::WriteFileAtomic(SandboxFile(record.id), record.ToJson());
  if (!written.ok()) {
    // The ID is new, so the directory holds nothing else of value.
    base::LogIfError(base::RemoveAll(SandboxDir(record.id)),
                     "removing directory of unwritten sandbox failed");
    absl::MutexLock lock(&mu_);
    if (took_name) sandbox_names_.erase(name);
    return written;
  }
  absl::MutexLock lock(&mu_);
  sandboxes_[record.id].record = record;
  return absl::OkStatus();
}

absl::StatusOr<SandboxRecord> FileSandboxStore::GetSandbox(std::string_view id) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) return absl::NotFoundError(StrCat("sandbox \"", id, "\" not found"));
  return it->second.record;
}

absl::StatusOr<SandboxRecord> FileSandboxStore::UpdateSandbox(
    std::string_view id, absl::FunctionRef<absl::Status(SandboxRecord&)> fn) {
  absl::MutexLock wlock(&WriteLock(id));
  SandboxRecord copy;
  {
    absl::MutexLock lock(&mu_);
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end()) return absl::NotFoundError(StrCat("sandbox \"", id, "\" not found"));
    copy = it->second.record;
  }
  if (!copy.load_error.empty()) {
    return absl::FailedPreconditionError(
        StrCat("sandbox \"", id, "\" has a corrupt record (", copy.load_error, "); it can only be removed"));
  }
  const SandboxMetadata metadata = copy.metadata;
  RETURN_IF_ERROR(fn(copy));
  if (copy.id != id || copy.metadata != metadata || !copy.load_error.empty()) {
    return absl::InvalidArgumentError(
        StrCat("update of sandbox \"", id, "\" must not change its id, metadata or load_error"));
  }
  RETURN_IF_ERROR(base::WriteFileAtomic(SandboxFile(id), copy.ToJson()));
  absl::MutexLock lock(&mu_);
  auto it = sandboxes_.find(id);
  // Cannot happen: Remove and Load take the write lock we hold.
  if (it == sandboxes_.end())
    return absl::InternalError(StrCat("sandbox \"", id, "\" vanished during update"));
  it->second.record = copy;
  return copy;
}

absl::Status FileSandboxStore::RemoveSandbox(std::string_view id) {
  absl::MutexLock wlock(&WriteLock(id));
  {
    absl::MutexLock lock(&mu_);
    if (!sandboxes_.contains(id)) return absl::NotFoundError(StrCat("sandbox \"", id, "\" not found"));
  }
  // One rename makes the removal atomic: a crash leaves either the whole
  // sandbox or a trash directory that Load reports as garbage.
  fs::path dir = SandboxDir(id);
  fs::path trash = root_ / StrCat(kTrashPrefix, id);
  RETURN_IF_ERROR(base::RemoveAll(trash));
  if (::rename(dir.c_str(), trash.c_str()) != 0 && errno != ENOENT) {
    return absl::ErrnoToStatus(errno, StrCat("rename \"", dir.string(), "\" to \"", trash.string(), "\""));
  }
  RETURN_IF_ERROR(base::SyncDir(root_));
  {
    absl::MutexLock lock(&mu_);
    auto it = sandboxes_.find(id);
    // Cannot happen: Load and other mutations of `id` take the write lock we hold.
    if (it == sandboxes_.end())
      return absl::InternalError(StrCat("sandbox \"", id, "\" vanished during removal"));
    for (const auto& [cid, c] : it->second.containers) {
      container_sandbox_.erase(cid);
      auto n = container_names_.find(ContainerNameKey(id, ContainerName(c.metadata)));
      if (n != container_names_.end() && n->second == cid) container_names_.erase(n);
    }
    // Reservations of containers that never got a record.
    for (auto n = container_names_.lower_bound(StrCat(id, "/"));
         n != container_names_.end() && StartsWith(n->first, StrCat(id, "/"));) {
      n = container_names_.erase(n);
    }
    if (it->second.record.load_error.empty()) {
      auto n = sandbox_names_.find(SandboxName(it->second.record.metadata));
      if (n != sandbox_names_.end() && n->second == id) sandbox_names_.erase(n);
    }
    sandboxes_.erase(it);
  }
  // The record is gone; a failure here only leaves garbage for CleanUp.
  base::LogIfError(base::RemoveAll(trash), "removing sandbox trash directory failed");
  return absl::OkStatus();
}

std::vector<SandboxRecord> FileSandboxStore::ListSandboxes(
    absl::FunctionRef<bool(const SandboxRecord&)> pred) const {
  std::vector<SandboxRecord> out;
  absl::ReaderMutexLock lock(&mu_);
  out.reserve(sandboxes_.size());
  for (const auto& [id, entry] : sandboxes_) {
    if (pred(entry.record)) out.push_back(entry.record);
  }
  return out;
}

size_t FileSandboxStore::SandboxCount() const {
  absl::ReaderMutexLock lock(&mu_);
  return sandboxes_.size();
}

absl::StatusOr<std::string> FileSandboxStore::ResolveSandboxId(std::string_view id_or_prefix) const {
  absl::ReaderMutexLock lock(&mu_);
  return ResolvePrefix(sandboxes_, id_or_prefix, "sandbox");
}

// ---------------------------------------------------------------------------
// Containers

absl::Status FileSandboxStore::ReserveContainerName(std::string_view sandbox_id, std::string_view name,
                                                std::string_view container_id) {
  if (name.empty()) return absl::InvalidArgumentError("container name is empty");
  absl::MutexLock lock(&mu_);
  if (!sandboxes_.contains(sandbox_id)) {
    return absl::NotFoundError(StrCat("sandbox \"", sandbox_id, "\" not found"));
  }
  auto [it, inserted] =
      container_names_.emplace(ContainerNameKey(sandbox_id, name), std::string(container_id));
  if (!inserted && it->second != container_id) {
    return absl::AlreadyExistsError(StrCat("container name \"", name, "\" in sandbox \"", sandbox_id,
                                           "\" is reserved for container \"", it->second, "\""));
  }
  return absl::OkStatus();
}

void FileSandboxStore::ReleaseContainerName(std::string_view sandbox_id, std::string_view name,
                                        std::string_view container_id) {
  absl::MutexLock lock(&mu_);
  auto it = container_names_.find(ContainerNameKey(sandbox_id, name));
  if (it == container_names_.end() || it->second != container_id ||
      container_sandbox_.contains(container_id)) {
    return;
  }
  container_names_.erase(it);
}

absl::Status FileSandboxStore::PutContainer(const ContainerRecord& record) {
  if (!IsValidId(record.id) || !IsValidId(record.sandbox_id)) {
    return absl::InvalidArgumentError(StrCat("container ID \"", record.id, "\" or sandbox ID \"",
                                             record.sandbox_id, "\" is not ", kIdLength,
                                             " lowercase hex characters"));
  }
  if (!record.load_error.empty()) {
    return absl::InvalidArgumentError(
        StrCat("container \"", record.id, "\" is a corrupt-record placeholder"));
  }
  const std::string key = ContainerNameKey(record.sandbox_id, ContainerName(record.metadata));
  absl::MutexLock wlock(&WriteLock(record.sandbox_id));
  bool took_name = false;
  {
    absl::MutexLock lock(&mu_);
    auto sb = sandboxes_.find(record.sandbox_id);
    if (sb == sandboxes_.end()) {
      return absl::NotFoundError(StrCat("sandbox \"", record.sandbox_id, "\" not found"));
    }
    if (!sb->second.record.load_error.empty()) {
      return absl::FailedPreconditionError(
          StrCat("sandbox \"", record.sandbox_id, "\" has a corrupt record; it can only be removed"));
    }
    if (container_sandbox_.contains(record.id)) {
      return absl::AlreadyExistsError(StrCat("container \"", record.id, "\" already exists"));
    }
    auto [it, inserted] = container_names_.emplace(key, record.id);
    if (!inserted && it->second != record.id) {
      return absl::AlreadyExistsError(StrCat("container name \"", ContainerName(record.metadata),
                                             "\" in sandbox \"", record.sandbox_id,
                                             "\" is reserved for container \"", it->second, "\""));
    }
    took_name = inserted;
  }
  fs::path file = ContainerFile(record.sandbox_id, record.id);
  absl::Status written = base::MakeDirs(file.parent_path());
  if (written.ok()) written = base::WriteFileAtomic(file, record.ToJson());
  absl::MutexLock lock(&mu_);
  if (!written.ok()) {
    if (took_name) container_names_.erase(key);
    return written;
  }
  sandboxes_[record.sandbox_id].containers[record.id] = record;
  container_sandbox_.emplace(record.id, record.sandbox_id);
  return absl::OkStatus();
}

absl::StatusOr<std::string> FileSandboxStore::SandboxOfContainer(std::string_view id) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = container_sandbox_.find(id);
  if (it == container_sandbox_.end()) return absl::NotFoundError(StrCat("container \"", id, "\" not found"));
  return it->second;
}

absl::StatusOr<ContainerRecord> FileSandboxStore::GetContainer(std::string_view id) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = container_sandbox_.find(id);
  if (it == container_sandbox_.end()) return absl::NotFoundError(StrCat("container \"", id, "\" not found"));
  return sandboxes_.find(it->second)->second.containers.find(id)->second;
}

absl::StatusOr<ContainerRecord> FileSandboxStore::UpdateContainer(
    std::string_view id, absl::FunctionRef<absl::Status(ContainerRecord&)> fn) {
  ASSIGN_OR_RETURN(std::string sandbox_id, SandboxOfContainer(id));
  absl::MutexLock wlock(&WriteLock(sandbox_id));
  ContainerRecord copy;
  {
    absl::MutexLock lock(&mu_);
    auto sb = sandboxes_.find(sandbox_id);
    // Removed between the lookup and the write lock.
    if (sb == sandboxes_.end() || !sb->second.containers.contains(id)) {
      return absl::NotFoundError(StrCat("container \"", id, "\" not found"));
    }
    copy = sb->second.containers.find(id)->second;
  }
  if (!copy.load_error.empty()) {
    return absl::FailedPreconditionError(StrCat("container \"", id, "\" has a corrupt record (",
                                                copy.load_error, "); it can only be removed"));
  }
  const ContainerMetadata metadata = copy.metadata;
  RETURN_IF_ERROR(fn(copy));
  if (copy.id != id || copy.sandbox_id != sandbox_id || copy.metadata != metadata ||
      !copy.load_error.empty()) {
    return absl::InvalidArgumentError(StrCat(
        "update of container \"", id, "\" must not change its id, sandbox_id, metadata or load_error"));
  }
  RETURN_IF_ERROR(base::WriteFileAtomic(ContainerFile(sandbox_id, id), copy.ToJson()));
  absl::MutexLock lock(&mu_);
  auto sb = sandboxes_.find(sandbox_id);
  // Cannot happen: Remove and Load take the write lock we hold.
  if (sb == sandboxes_.end() || !sb->second.containers.contains(id)) {
    return absl::InternalError(StrCat("container \"", id, "\" vanished during update"));
  }
  sb->second.containers.find(id)->second = copy;
  return copy;
}

absl::Status FileSandboxStore::RemoveContainer(std::string_view id) {
  ASSIGN_OR_RETURN(std::string sandbox_id, SandboxOfContainer(id));
  absl::MutexLock wlock(&WriteLock(sandbox_id));
  {
    absl::MutexLock lock(&mu_);
    auto sb = sandboxes_.find(sandbox_id);
    if (sb == sandboxes_.end() || !sb->second.containers.contains(id)) {
      return absl::NotFoundError(StrCat("container \"", id, "\" not found"));
    }
  }
  fs::path file = ContainerFile(sandbox_id, id);
  RETURN_IF_ERROR(base::RemoveFile(file));
  RETURN_IF_ERROR(base::SyncDir(file.parent_path()));
  absl::MutexLock lock(&mu_);
  auto sb = sandboxes_.find(sandbox_id);
  // Cannot happen: Remove and Load take the write lock we hold.
  if (sb == sandboxes_.end() || !sb->second.containers.contains(id)) {
    return absl::InternalError(StrCat("container \"", id, "\" vanished during removal"));
  }
  auto& containers = sb->second.containers;
  auto it = containers.find(id);
  auto n = container_names_.find(ContainerNameKey(sandbox_id, ContainerName(it->second.metadata)));
  if (n != container_names_.end() && n->second == id) container_names_.erase(n);
  containers.erase(it);
  container_sandbox_.erase(std::string(id));
  return absl::OkStatus();
}

std::vector<ContainerRecord> FileSandboxStore::ListContainers(
    absl::FunctionRef<bool(const ContainerRecord&)> pred) const {
  std::vector<ContainerRecord> out;
  absl::ReaderMutexLock lock(&mu_);
  out.reserve(container_sandbox_.size());
  for (const auto& [sid, entry] : sandboxes_) {
    for (const auto& [cid, c] : entry.containers) {
      if (pred(c)) out.push_back(c);
    }
  }
  return out;
}

absl::StatusOr<std::string> FileSandboxStore::ResolveContainerId(std::string_view id_or_prefix) const {
  absl::ReaderMutexLock lock(&mu_);
  return ResolvePrefix(container_sandbox_, id_or_prefix, "container");
}

}  // namespace kvcri::sandbox
