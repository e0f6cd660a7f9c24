// The serial console hub: one reader per VM draining QEMU's console socket into bounded per-attacher queues.
#include "runtime/console_attach.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <thread>
#include <vector>

#include "config/base/str.h"
#include "config/base/log.h"
#include "config/base/unique_fd.h"

namespace kvcri::runtime {

// How often a writer waiting for room on the console checks whether its
// attacher was closed meanwhile.
constexpr int kWritePollMs = 100;

// One attacher's side of the hub, guarded by the hub's mutex.
struct ConsoleSubscriber {
  enum class State { kOpen, kOverflowed, kClosed };
  std::deque<std::string> queue;
  size_t queued_bytes = 0;
  State state = State::kOpen;
};

class ConsoleHub {
 public:
  ConsoleHub(std::string key, base::UniqueFd fd, const ConsoleAttachOptions& options)
      : key_(std::move(key)), fd_(std::move(fd)), options_(options) {}
  ~ConsoleHub() {
    // Wakes the reader blocked in recv; the fd is closed after the join.
    ::shutdown(fd_.get(), SHUT_RDWR);
    if (reader_.joinable()) reader_.join();
  }

  // Starts reading the console. Called once the first attacher has
  // subscribed, so what the guest prints right after the connect reaches it.
  void Start() { reader_ = std::thread([this] { ReadLoop(); }); }

  bool Ended() {
    absl::MutexLock l(&mu_);
    return ended_;
  }

  absl::StatusOr<std::shared_ptr<ConsoleSubscriber>> Subscribe() {
    absl::MutexLock l(&mu_);
    if (subs_.size() >= options_.max_attachers) {
      return absl::ResourceExhaustedError(
          base::StrCat("container ", key_, ": ", subs_.size(), " attachers already (at most ", options_.max_attachers,
                       ")"));
    }
    auto sub = std::make_shared<ConsoleSubscriber>();
    subs_.push_back(sub);
    return sub;
  }

  void Unsubscribe(const std::shared_ptr<ConsoleSubscriber>& sub) {
    absl::MutexLock l(&mu_);
    std::erase(subs_, sub);
  }

  void Close(ConsoleSubscriber& sub) {
    absl::MutexLock l(&mu_);
    if (sub.state == ConsoleSubscriber::State::kOpen) sub.state = ConsoleSubscriber::State::kClosed;
    sub.queue.clear();
    sub.queued_bytes = 0;
  }

  absl::StatusOr<std::string> Next(ConsoleSubscriber& sub) {
    absl::MutexLock l(&mu_);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !sub.queue.empty() || sub.state != ConsoleSubscriber::State::kOpen || ended_;
    };
    mu_.Await(absl::Condition(&ready));
    switch (sub.state) {
      case ConsoleSubscriber::State::kClosed:
        return absl::CancelledError("attach closed");
      case ConsoleSubscriber::State::kOverflowed:
        return absl::ResourceExhaustedError(
            base::StrCat("container ", key_, ": this attacher fell more than ", options_.max_queued_bytes,
                         " bytes of console output behind and was disconnected"));
      case ConsoleSubscriber::State::kOpen:
        break;
    }
    if (sub.queue.empty()) return std::string();  // ended_: the console closed
    std::string out = std::move(sub.queue.front());
    sub.queue.pop_front();
    sub.queued_bytes -= out.size();
    return out;
  }

  absl::Status Write(ConsoleSubscriber& sub, std::string_view input) {
    // One writer at a time keeps each attacher's input in one piece. A guest
    // that does not read its serial port fills the socket: the writer then
    // waits, but gives up once its attacher was closed, so a detaching
    // client never leaves a thread stuck here.
    absl::MutexLock l(&write_mu_);
    while (!input.empty()) {
      ssize_t n = ::send(fd_.get(), input.data(), input.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0) {
        input.remove_prefix(static_cast<size_t>(n));
        continue;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        return absl::ErrnoToStatus(errno, base::StrCat("container ", key_, ": write to the console"));
      }
      {
        absl::MutexLock sl(&mu_);
        if (sub.state != ConsoleSubscriber::State::kOpen || ended_) return absl::CancelledError("attach closed");
      }
      pollfd p{fd_.get(), POLLOUT, 0};
      ::poll(&p, 1, kWritePollMs);
    }
    return absl::OkStatus();
  }

 private:
  void ReadLoop() {
    std::vector<char> buf(options_.read_chunk_bytes);
    for (;;) {
      ssize_t n = ::recv(fd_.get(), buf.data(), buf.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      absl::MutexLock l(&mu_);
      for (const auto& sub : subs_) {
        if (sub->state != ConsoleSubscriber::State::kOpen) continue;
        if (sub->queued_bytes + static_cast<size_t>(n) > options_.max_queued_bytes) {
          sub->state = ConsoleSubscriber::State::kOverflowed;
          sub->queue.clear();
          sub->queued_bytes = 0;
          base::LogWarn("console attacher disconnected: too slow",
                        {{"container", key_}, {"max_queued_bytes", std::to_string(options_.max_queued_bytes)}});
          continue;
        }
        sub->queue.emplace_back(buf.data(), static_cast<size_t>(n));
        sub->queued_bytes += static_cast<size_t>(n);
      }
    }
    absl::MutexLock l(&mu_);
    ended_ = true;
  }

  const std::string key_;
  const base::UniqueFd fd_;
  const ConsoleAttachOptions options_;
  absl::Mutex mu_;
  std::vector<std::shared_ptr<ConsoleSubscriber>> subs_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  absl::Mutex write_mu_;
  std::thread reader_;  // started by Start(), after the first Subscribe
};

ConsoleAttacher::ConsoleAttacher(std::shared_ptr<ConsoleHub> hub, std::shared_ptr<ConsoleSubscriber> sub)
    : hub_(std::move(hub)), sub_(std::move(sub)) {}

ConsoleAttacher::~ConsoleAttacher() { hub_->Unsubscribe(sub_); }

absl::StatusOr<std::string> ConsoleAttacher::Next() { return hub_->Next(*sub_); }

absl::Status ConsoleAttacher::Write(std::string_view input) { return hub_->Write(*sub_, input); }

void ConsoleAttacher::Close() { hub_->Close(*sub_); }

namespace {

absl::StatusOr<base::UniqueFd> ConnectUnix(const std::filesystem::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string p = path.string();
  if (p.empty() || p.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(base::StrCat("console socket path \"", p, "\" is empty or too long"));
  }
  std::memcpy(addr.sun_path, p.data(), p.size());
  base::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, "socket(AF_UNIX)");
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    return absl::UnavailableError(
        base::StrCat("connect to the console socket \"", p, "\": ", std::strerror(errno)));
  }
  return fd;
}

}  // namespace

ConsoleHubs::ConsoleHubs(ConsoleAttachOptions options) : options_(options) {}

ConsoleHubs::~ConsoleHubs() = default;

absl::StatusOr<std::unique_ptr<ConsoleAttacher>> ConsoleHubs::Attach(const std::string& key,
                                                                     const std::filesystem::path& socket) {
  std::shared_ptr<ConsoleHub> hub;
  {
    absl::MutexLock l(&mu_);
    // Drop entries whose hub is gone, so the map holds live VMs only.
    for (auto it = hubs_.begin(); it != hubs_.end();) {
      if (it->second.expired()) {
        hubs_.erase(it++);
      } else {
        ++it;
      }
    }
    auto it = hubs_.find(key);
    if (it != hubs_.end()) hub = it->second.lock();
    if (hub == nullptr || hub->Ended()) {
      // A local connect answers at once (accepted or refused), so holding the
      // map lock here delays no one; it keeps two attachers of one VM from
      // racing for the single connection QEMU serves.
      absl::StatusOr<base::UniqueFd> fd = ConnectUnix(socket);
      if (!fd.ok()) return fd.status();
      hub = std::make_shared<ConsoleHub>(key, std::move(*fd), options_);
      hubs_[key] = hub;
      absl::StatusOr<std::shared_ptr<ConsoleSubscriber>> first = hub->Subscribe();
      if (!first.ok()) return first.status();
      hub->Start();
      return std::make_unique<ConsoleAttacher>(std::move(hub), std::move(*first));
    }
  }
  absl::StatusOr<std::shared_ptr<ConsoleSubscriber>> sub = hub->Subscribe();
  if (!sub.ok()) return sub.status();
  return std::make_unique<ConsoleAttacher>(std::move(hub), std::move(*sub));
}

}  // namespace kvcri::runtime
