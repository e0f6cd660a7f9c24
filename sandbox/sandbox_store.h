// The SandboxStore interface: the sandbox and container records cri/ reads and writes.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sandbox/records.h"

namespace kvcri::sandbox {

// A record file the store could not use at start-up. It is also kept in
// memory as a placeholder (SandboxRecord/ContainerRecord with `load_error`
// set) so that List shows it NOTREADY/UNKNOWN and Remove can delete it.
struct CorruptRecord {
  std::string sandbox_id;
  std::string container_id;  // empty for a sandbox record
  std::filesystem::path path;
  std::string error;
};

// What loading the store found besides good, finished records. Recovery (the
// daemon's start-up) acts on it: undo or finish `unfinished_*`, then CleanUp().
struct LoadReport {
  size_t sandboxes = 0;   // in memory after loading, placeholders included
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
  // False when a sandbox's containers directory could not be listed: some
  // records may be missing from memory, so nothing (a domain, a container
  // directory) may be taken for an orphan because no record names it.
  bool complete = true;
};

// Sandbox and container records with CRI's name rules: a sandbox name
// "<name>_<namespace>_<uid>_<attempt>" is unique among sandboxes, a container
// name "<name>_<attempt>" within its sandbox. A mutation is durable when it
// returns OK; reads and lists see memory only. Thread-safe. The real one is
// FileSandboxStore (sandbox/file_sandbox_store.h).
class SandboxStore {
 public:
  virtual ~SandboxStore() = default;

  // Deletes the garbage a report of the start-up load lists (temp files,
  // incomplete and trash directories). Continues past failures; returns the
  // first error.
  virtual absl::Status CleanUp(const LoadReport& report) = 0;

  // A fresh ID (32 random bytes as 64 hex) not used by any sandbox or container.
  virtual absl::StatusOr<std::string> NewId() const = 0;

  // Stores a new sandbox record; AlreadyExists when the ID exists or its name
  // (SandboxName(metadata)) is held by another ID. Takes the name if free.
  virtual absl::Status PutSandbox(const SandboxRecord& record) = 0;
  // NotFound when absent.
  virtual absl::StatusOr<SandboxRecord> GetSandbox(std::string_view id) const = 0;
  // Read-modify-write: `fn` edits a copy; on OK the copy is stored, then
  // replaces memory, and is returned. An error from `fn` changes nothing.
  // `fn` must not change id or metadata (InvalidArgument). FailedPrecondition
  // for a corrupt-record placeholder.
  virtual absl::StatusOr<SandboxRecord> UpdateSandbox(std::string_view id,
                                                      absl::FunctionRef<absl::Status(SandboxRecord&)> fn) = 0;
  // Deletes the record, its containers' records and their names. NotFound when absent.
  virtual absl::Status RemoveSandbox(std::string_view id) = 0;
  // Copies of the records matching `pred`, ordered by ID. Memory only.
  virtual std::vector<SandboxRecord> ListSandboxes(absl::FunctionRef<bool(const SandboxRecord&)> pred) const = 0;
  std::vector<SandboxRecord> ListSandboxes() const {
    return ListSandboxes([](const SandboxRecord&) { return true; });
  }
  virtual size_t SandboxCount() const = 0;
  // The full ID of the only sandbox whose ID starts with `id_or_prefix`.
  // NotFound when none does, InvalidArgument when empty or ambiguous.
  virtual absl::StatusOr<std::string> ResolveSandboxId(std::string_view id_or_prefix) const = 0;

  // Stores a new container record in its sandbox. NotFound when the sandbox
  // is absent, FailedPrecondition when it is a corrupt placeholder,
  // AlreadyExists when the ID exists or the name is held by another ID.
  virtual absl::Status PutContainer(const ContainerRecord& record) = 0;
  virtual absl::StatusOr<ContainerRecord> GetContainer(std::string_view id) const = 0;
  // As UpdateSandbox; `fn` must not change id, sandbox_id or metadata.
  virtual absl::StatusOr<ContainerRecord> UpdateContainer(std::string_view id,
                                                          absl::FunctionRef<absl::Status(ContainerRecord&)> fn) = 0;
  virtual absl::Status RemoveContainer(std::string_view id) = 0;
  // Ordered by sandbox ID, then container ID. Memory only.
  virtual std::vector<ContainerRecord> ListContainers(absl::FunctionRef<bool(const ContainerRecord&)> pred) const = 0;
  std::vector<ContainerRecord> ListContainers() const {
    return ListContainers([](const ContainerRecord&) { return true; });
  }
  virtual absl::StatusOr<std::string> ResolveContainerId(std::string_view id_or_prefix) const = 0;
};

}  // namespace kvcri::sandbox
