#pragma once

#include <array>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "sandbox/records.h"

namespace kvcri::sandbox {

// A record file Load() could not use. It is also kept in memory as a
// placeholder (SandboxRecord/ContainerRecord with `load_error` set) so that
// List shows it NOTREADY/UNKNOWN and Remove can delete it.
struct CorruptRecord {
  std::string sandbox_id;
  std::string container_id;  // empty for a sandbox record
  std::filesystem::path path;
  std::string error;
};

// What Load() found besides good, finished records. Recovery (the daemon's
// start-up) acts on it: undo or finish `unfinished_*`, then CleanUp().
struct LoadReport {
  size_t sandboxes = 0;   // in memory after Load, placeholders included
  size_t containers = 0;  // idem
  std::vector<CorruptRecord> corrupt;
  // Records whose phase is kCreating or kRemoving: an operation was cut short.
  std::vector<std::string> unfinished_sandboxes;
  std::vector<std::string> unfinished_containers;
  // ".<file>.tmpXXXXXX" left by a crash inside WriteFileAtomic; the real file
  // (old content, or none) is intact, so these are garbage.
  std::vector<std::filesystem::path> temp_files;
  // Sandbox directories holding neither sandbox.json nor containers: a crash
  // before the first record write, so no side effect can exist. Garbage.
  std::vector<std::filesystem::path> incomplete_dirs;
  // ".removing-<id>" directories of an interrupted RemoveSandbox. Garbage.
  std::vector<std::filesystem::path> trash_dirs;
};

// Sandbox and container records: memory maps backed by one file per record.
//
// Layout under `root` (config.root):
//   sandboxes/<sandbox id>/sandbox.json
//   sandboxes/<sandbox id>/containers/<container id>.json
// A sandbox's containers live in its directory so removing a sandbox is one
// rename of that directory (to sandboxes/.removing-<id>) followed by rm -rf.
//
// Every mutation writes the file atomically (WriteFileAtomic) before memory
// changes. Reads and List touch memory only, under `mu_`, which is never held
// across disk I/O; mutations of one sandbox (its record and its containers)
// are serialized by a striped write lock held across the read-modify-write.
//
// Name index, with CRI semantics: a sandbox name "<name>_<namespace>_<uid>_<attempt>"
// is unique among sandboxes, a container name "<name>_<attempt>" within its
// sandbox. A name is held from Reserve*Name (or Put*) until Release*Name (for
// a reservation without record) or Remove*.
class SandboxStore {
 public:
  explicit SandboxStore(std::filesystem::path root);
  SandboxStore(const SandboxStore&) = delete;
  SandboxStore& operator=(const SandboxStore&) = delete;

  // Rebuilds memory from disk, replacing what was there; meant for start-up,
  // before serving (it holds every write lock while it reads). Unreadable
  // records become placeholders and are listed in the report; stray files
  // (unknown names, symlinks) are ignored. Fails only when the sandboxes
  // directory cannot be created or read.
  absl::StatusOr<LoadReport> Load();

  // Deletes the garbage a report lists (temp files, incomplete and trash
  // directories). Continues past failures; returns the first error.
  absl::Status CleanUp(const LoadReport& report);

  // A fresh ID (32 random bytes as 64 hex) not used by any sandbox or container.
  absl::StatusOr<std::string> NewId() const;

  // Holds `name` for sandbox `id` before its record exists. OK when `id`
  // already holds it; AlreadyExists naming the holder otherwise.
  absl::Status ReserveSandboxName(std::string_view name, std::string_view id);
  // Drops a reservation made by `id` that has no record (a failed create).
  // No-op when `id` does not hold `name` or its record exists.
  void ReleaseSandboxName(std::string_view name, std::string_view id);

  // Stores a new sandbox record; AlreadyExists when the ID exists or its name
  // (SandboxName(metadata)) is held by another ID. Takes the name if free.
  absl::Status PutSandbox(const SandboxRecord& record);
  // NotFound when absent.
  absl::StatusOr<SandboxRecord> GetSandbox(std::string_view id) const;
  // Read-modify-write: `fn` edits a copy; on OK the copy is written, then
  // replaces memory, and is returned. An error from `fn` changes nothing.
  // `fn` must not change id or metadata (InvalidArgument). FailedPrecondition
  // for a corrupt-record placeholder.
  absl::StatusOr<SandboxRecord> UpdateSandbox(std::string_view id,
                                              absl::FunctionRef<absl::Status(SandboxRecord&)> fn);
  // Deletes the record, its containers' records and their names. NotFound when absent.
  absl::Status RemoveSandbox(std::string_view id);
  // Copies of all records, or of those matching `pred`, ordered by ID. Memory only.
  std::vector<SandboxRecord> ListSandboxes() const;
  std::vector<SandboxRecord> ListSandboxes(absl::FunctionRef<bool(const SandboxRecord&)> pred) const;
  size_t SandboxCount() const;
  // The full ID of the only sandbox whose ID starts with `id_or_prefix`.
  // NotFound when none does, InvalidArgument when empty or ambiguous.
  absl::StatusOr<std::string> ResolveSandboxId(std::string_view id_or_prefix) const;

  // Container names are per sandbox; NotFound when the sandbox is absent.
  absl::Status ReserveContainerName(std::string_view sandbox_id, std::string_view name,
                                    std::string_view container_id);
  void ReleaseContainerName(std::string_view sandbox_id, std::string_view name,
                            std::string_view container_id);

  // Stores a new container record in its sandbox. NotFound when the sandbox
  // is absent, FailedPrecondition when it is a corrupt placeholder,
  // AlreadyExists when the ID exists or the name is held by another ID.
  absl::Status PutContainer(const ContainerRecord& record);
  absl::StatusOr<ContainerRecord> GetContainer(std::string_view id) const;
  // As UpdateSandbox; `fn` must not change id, sandbox_id or metadata.
  absl::StatusOr<ContainerRecord> UpdateContainer(std::string_view id,
                                                  absl::FunctionRef<absl::Status(ContainerRecord&)> fn);
  absl::Status RemoveContainer(std::string_view id);
  // Ordered by sandbox ID, then container ID. Memory only.
  std::vector<ContainerRecord> ListContainers() const;
  std::vector<ContainerRecord> ListContainers(absl::FunctionRef<bool(const ContainerRecord&)> pred) const;
  absl::StatusOr<std::string> ResolveContainerId(std::string_view id_or_prefix) const;

  std::filesystem::path SandboxDir(std::string_view id) const;
  std::filesystem::path SandboxFile(std::string_view id) const;
  std::filesystem::path ContainerFile(std::string_view sandbox_id, std::string_view id) const;

 private:
  struct SandboxEntry {
    SandboxRecord record;
    std::map<std::string, ContainerRecord, std::less<>> containers;  // by container ID
  };
  // The maps Load() builds before swapping them in; same meaning as the members.
  struct Index {
    std::map<std::string, SandboxEntry, std::less<>> sandboxes;
    std::map<std::string, std::string, std::less<>> container_sandbox;
    std::map<std::string, std::string, std::less<>> sandbox_names;
    std::map<std::string, std::string, std::less<>> container_names;
  };
  static constexpr size_t kStripes = 16;

  // The write lock of everything belonging to sandbox `sandbox_id`.
  absl::Mutex& WriteLock(std::string_view sandbox_id) const;
  // The sandbox a container belongs to, or NotFound.
  absl::StatusOr<std::string> SandboxOfContainer(std::string_view id) const;
  static void LoadSandboxDir(const std::filesystem::path& dir, const std::string& id, Index* idx,
                             LoadReport* report);

  const std::filesystem::path root_;                    // <root>/sandboxes
  mutable std::array<absl::Mutex, kStripes> write_mu_;  // held across disk I/O, before mu_
  mutable absl::Mutex mu_;                              // memory only; never held across disk I/O
  std::map<std::string, SandboxEntry, std::less<>> sandboxes_ ABSL_GUARDED_BY(mu_);
  // container ID → sandbox ID; ordered for prefix resolution.
  std::map<std::string, std::string, std::less<>> container_sandbox_ ABSL_GUARDED_BY(mu_);
  // sandbox name → ID (reservations and records).
  std::map<std::string, std::string, std::less<>> sandbox_names_ ABSL_GUARDED_BY(mu_);
  // "<sandbox id>/<container name>" → container ID.
  std::map<std::string, std::string, std::less<>> container_names_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvcri::sandbox
