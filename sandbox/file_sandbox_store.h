// FileSandboxStore: the SandboxStore that keeps one JSON file per record under <root>/sandboxes.
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
#include "sandbox/sandbox_store.h"

namespace kvcri::sandbox {

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
// Name index (the rules are SandboxStore's): a name is held from Reserve*Name
// (or Put*) until Release*Name (for a reservation without record) or Remove*.
class FileSandboxStore final : public SandboxStore {
 public:
  explicit FileSandboxStore(std::filesystem::path root);
  FileSandboxStore(const FileSandboxStore&) = delete;
  FileSandboxStore& operator=(const FileSandboxStore&) = delete;

  // Rebuilds memory from disk, replacing what was there; meant for start-up,
  // before serving (it holds every write lock while it reads). Unreadable
  // records become placeholders and are listed in the report; stray files
  // (unknown names, symlinks) are ignored. Fails only when the sandboxes
  // directory cannot be created or read.
  absl::StatusOr<LoadReport> Load();

  // Holds `name` for sandbox `id` before its record exists. OK when `id`
  // already holds it; AlreadyExists naming the holder otherwise.
  absl::Status ReserveSandboxName(std::string_view name, std::string_view id);
  // Drops a reservation made by `id` that has no record (a failed create).
  // No-op when `id` does not hold `name` or its record exists.
  void ReleaseSandboxName(std::string_view name, std::string_view id);
  // Container names are per sandbox; NotFound when the sandbox is absent.
  absl::Status ReserveContainerName(std::string_view sandbox_id, std::string_view name, std::string_view container_id);
  void ReleaseContainerName(std::string_view sandbox_id, std::string_view name, std::string_view container_id);

  // Where a record lives on disk.
  std::filesystem::path SandboxFile(std::string_view id) const;
  std::filesystem::path ContainerFile(std::string_view sandbox_id, std::string_view id) const;

  // SandboxStore; see there. Mutations write their file before memory changes.
  absl::Status CleanUp(const LoadReport& report) override;
  absl::StatusOr<std::string> NewId() const override;
  absl::Status PutSandbox(const SandboxRecord& record) override;
  absl::StatusOr<SandboxRecord> GetSandbox(std::string_view id) const override;
  absl::StatusOr<SandboxRecord> UpdateSandbox(std::string_view id,
                                              absl::FunctionRef<absl::Status(SandboxRecord&)> fn) override;
  absl::Status RemoveSandbox(std::string_view id) override;
  using SandboxStore::ListSandboxes;
  std::vector<SandboxRecord> ListSandboxes(absl::FunctionRef<bool(const SandboxRecord&)> pred) const override;
  size_t SandboxCount() const override;
  absl::StatusOr<std::string> ResolveSandboxId(std::string_view id_or_prefix) const override;
  absl::Status PutContainer(const ContainerRecord& record) override;
  absl::StatusOr<ContainerRecord> GetContainer(std::string_view id) const override;
  absl::StatusOr<ContainerRecord> UpdateContainer(std::string_view id,
                                                  absl::FunctionRef<absl::Status(ContainerRecord&)> fn) override;
  absl::Status RemoveContainer(std::string_view id) override;
  using SandboxStore::ListContainers;
  std::vector<ContainerRecord> ListContainers(absl::FunctionRef<bool(const ContainerRecord&)> pred) const override;
  absl::StatusOr<std::string> ResolveContainerId(std::string_view id_or_prefix) const override;

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

  std::filesystem::path SandboxDir(std::string_view id) const;
  // The write lock of everything belonging to sandbox `sandbox_id`.
  absl::Mutex& WriteLock(std::string_view sandbox_id) const;
  // The sandbox a container belongs to, or NotFound.
  absl::StatusOr<std::string> SandboxOfContainer(std::string_view id) const;
  static void LoadSandboxDir(const std::filesystem::path& dir, const std::string& id, Index* idx, LoadReport* report);

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
