// Attach to a VM's serial console: one connection per VM to QEMU's console socket, fanned out to every attacher.
#pragma once

// QEMU's console socket (VmSpec::console_socket, a chardev server) serves one
// client at a time, so each VM has one hub holding that connection. A reader
// thread per hub drains the socket at once, whatever the attachers do, so
// neither the guest nor QEMU ever waits for an attacher (the console log file
// QEMU writes, which runtime/console_log copies into the CRI log, is
// independent of all this). Every attacher gets its own bounded queue; one
// that falls more than max_queued_bytes behind is disconnected (its Next
// returns ResourceExhausted) rather than fed a console stream with holes in
// it: a terminal that missed bytes shows garbage, an error says what happened.
// Input from any attacher goes to the console as is, one Write at a time.
// The hub closes its connection when its last attacher leaves.

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace kvcri::runtime {

struct ConsoleAttachOptions {
  // Console output an attacher may have waiting; more: it is disconnected.
  size_t max_queued_bytes = 1 << 20;
  // Attachers per VM at once; more: ResourceExhausted.
  size_t max_attachers = 16;
  // Bytes read from the console socket at a time.
  size_t read_chunk_bytes = 16 << 10;
};

class ConsoleHub;
struct ConsoleSubscriber;

// One attacher of one VM's console. Destroying it detaches.
class ConsoleAttacher {
 public:
  ConsoleAttacher(std::shared_ptr<ConsoleHub> hub, std::shared_ptr<ConsoleSubscriber> sub);
  ~ConsoleAttacher();
  ConsoleAttacher(const ConsoleAttacher&) = delete;
  ConsoleAttacher& operator=(const ConsoleAttacher&) = delete;

  // Blocks for the next console output. Empty at the end (the console
  // closed: the VM stopped); ResourceExhausted when this attacher fell too
  // far behind and was disconnected; Cancelled after Close().
  absl::StatusOr<std::string> Next();
  // Writes `input` to the console (the guest's ttyS0). Blocks while QEMU
  // does not take more (the guest does not read its serial port); Cancelled
  // once Close() was called or the console closed meanwhile.
  absl::Status Write(std::string_view input);
  // Wakes a blocked Next (Cancelled); from any thread, idempotent.
  void Close();

 private:
  std::shared_ptr<ConsoleHub> hub_;
  std::shared_ptr<ConsoleSubscriber> sub_;
};

// The hubs of all VMs, by key (the container ID). Thread-safe.
class ConsoleHubs {
 public:
  explicit ConsoleHubs(ConsoleAttachOptions options = {});
  ~ConsoleHubs();

  // A new attacher of `key`'s console, connecting to `socket` when the VM
  // has no live hub. Unavailable when the socket does not answer (the VM is
  // not running); ResourceExhausted over max_attachers.
  absl::StatusOr<std::unique_ptr<ConsoleAttacher>> Attach(const std::string& key,
                                                          const std::filesystem::path& socket);

 private:
  const ConsoleAttachOptions options_;
  absl::Mutex mu_;
  // Weak: a hub lives as long as its attachers.
  absl::flat_hash_map<std::string, std::weak_ptr<ConsoleHub>> hubs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvcri::runtime
