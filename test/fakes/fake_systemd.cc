// FakeSystemd: the Manager methods the systemd cgroup driver uses, served with sd-bus, a thread per connection.
#include "test/fakes/fake_systemd.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-id128.h>
#include <unistd.h>

#include <utility>

#include "config/base/str.h"

namespace kvcri::testing {

namespace {

constexpr char kObject[] = "/org/freedesktop/systemd1";
constexpr char kManager[] = "org.freedesktop.systemd1.Manager";
constexpr char kNoSuchUnit[] = "org.freedesktop.systemd1.NoSuchUnit";

// Reads an a(sv) of unit properties, keeping each variant's value.
int ReadProperties(sd_bus_message* m, std::vector<FakeSystemd::Property>* out) {
  int r = sd_bus_message_enter_container(m, 'a', "(sv)");
  if (r < 0) return r;
  while ((r = sd_bus_message_enter_container(m, 'r', "sv")) > 0) {
    FakeSystemd::Property p;
    const char* name = nullptr;
    if ((r = sd_bus_message_read(m, "s", &name)) < 0) return r;
    p.name = name;
    char type = 0;
    const char* contents = nullptr;
    if ((r = sd_bus_message_peek_type(m, &type, &contents)) < 0) return r;
    if (type != 'v') return -EBADMSG;
    p.signature = contents;
    if ((r = sd_bus_message_enter_container(m, 'v', contents)) < 0) return r;
    if (p.signature == "s") {
      const char* v = nullptr;
      r = sd_bus_message_read(m, "s", &v);
      if (r >= 0) p.s = v;
    } else if (p.signature == "b") {
      int v = 0;
      r = sd_bus_message_read(m, "b", &v);
      p.b = v != 0;
    } else if (p.signature == "t") {
      r = sd_bus_message_read(m, "t", &p.t);
    } else if (p.signature == "au") {
      const void* data = nullptr;
      size_t size = 0;
      r = sd_bus_message_read_array(m, 'u', &data, &size);
      if (r >= 0) {
        const auto* u = static_cast<const uint32_t*>(data);
        p.au.assign(u, u + size / sizeof(uint32_t));
      }
    } else if (p.signature == "ay") {
      const void* data = nullptr;
      size_t size = 0;
      r = sd_bus_message_read_array(m, 'y', &data, &size);
      if (r >= 0) {
        const auto* y = static_cast<const uint8_t*>(data);
        p.ay.assign(y, y + size);
      }
    } else {
      r = sd_bus_message_skip(m, contents);
    }
    if (r < 0) return r;
    if ((r = sd_bus_message_exit_container(m)) < 0) return r;  // v
    if ((r = sd_bus_message_exit_container(m)) < 0) return r;  // (sv)
    out->push_back(std::move(p));
  }
  if (r < 0) return r;
  return sd_bus_message_exit_container(m);
}

}  // namespace

const FakeSystemd::Property* FakeSystemd::Call::Find(const std::string& name) const {
  for (const Property& p : properties) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

// The vtable's handlers: friends, so they reach the fake's state.
struct FakeSystemdHandlers {
  static FakeSystemd* Self(void* ud) { return static_cast<FakeSystemd*>(ud); }

  // Replies with a job path, then (unless told not to) emits its
  // JobRemoved, in that order on the wire, as systemd's job queue does.
  static int ReplyJob(sd_bus_message* m, FakeSystemd* f, const std::string& unit, const std::string& result) {
    uint32_t id = 0;
    bool emit = true;
    {
      absl::MutexLock l(&f->mu_);
      id = f->next_job_++;
      emit = !f->never_end_ && f->hang_.count(unit) == 0;
    }
    const std::string job = base::StrCat(kObject, "/job/", id);
    int r = sd_bus_reply_method_return(m, "o", job.c_str());
    if (r < 0 || !emit) return r;
    return sd_bus_emit_signal(sd_bus_message_get_bus(m), kObject, kManager, "JobRemoved", "uoss", id, job.c_str(),
                              unit.c_str(), result.c_str());
  }

  static int Start(sd_bus_message* m, void* ud, sd_bus_error* error) {
    FakeSystemd* f = Self(ud);
    FakeSystemd::Call c;
    c.method = "StartTransientUnit";
    const char* unit = nullptr;
    const char* mode = nullptr;
    int r = sd_bus_message_read(m, "ss", &unit, &mode);
    if (r < 0) return r;
    c.unit = unit;
    c.mode = mode;
    if ((r = ReadProperties(m, &c.properties)) < 0) return r;
    if ((r = sd_bus_message_enter_container(m, 'a', "(sa(sv))")) < 0) return r;
    while ((r = sd_bus_message_enter_container(m, 'r', "sa(sv)")) > 0) {
      ++c.aux_units;
      if ((r = sd_bus_message_skip(m, "sa(sv)")) < 0) return r;
      if ((r = sd_bus_message_exit_container(m)) < 0) return r;
    }
    if (r < 0 || (r = sd_bus_message_exit_container(m)) < 0) return r;
    std::string result;
    std::function<void(const std::string&)> hook;
    {
      absl::MutexLock l(&f->mu_);
      f->calls_.push_back(c);
      if (f->units_.count(c.unit)) {
        return sd_bus_error_setf(error, "org.freedesktop.systemd1.UnitExists", "Unit %s already exists.", unit);
      }
      result = f->start_result_;
      f->units_[c.unit] = result == "done" ? "active" : "failed";
      hook = f->on_start_;
    }
    if (hook) hook(c.unit);
    return ReplyJob(m, f, c.unit, result);
  }

  static int Stop(sd_bus_message* m, void* ud, sd_bus_error* error) {
    FakeSystemd* f = Self(ud);
    FakeSystemd::Call c;
    c.method = "StopUnit";
    const char* unit = nullptr;
    const char* mode = nullptr;
    int r = sd_bus_message_read(m, "ss", &unit, &mode);
    if (r < 0) return r;
    c.unit = unit;
    c.mode = mode;
    std::string result;
    std::function<void(const std::string&)> hook;
    {
      absl::MutexLock l(&f->mu_);
      f->calls_.push_back(c);
      hook = f->on_stop_;
      auto it = f->units_.find(c.unit);
      if (it == f->units_.end()) return sd_bus_error_setf(error, kNoSuchUnit, "Unit %s not loaded.", unit);
      result = f->stop_result_;
      if (result == "done") {
        f->units_.erase(it);
      } else {
        it->second = "failed";
      }
    }
    if (hook) hook(c.unit);
    return ReplyJob(m, f, c.unit, result);
  }

  static int ResetFailed(sd_bus_message* m, void* ud, sd_bus_error* error) {
    FakeSystemd* f = Self(ud);
    const char* unit = nullptr;
    int r = sd_bus_message_read(m, "s", &unit);
    if (r < 0) return r;
    {
      absl::MutexLock l(&f->mu_);
      f->calls_.push_back({.method = "ResetFailedUnit", .unit = unit});
      auto it = f->units_.find(unit);
      if (it == f->units_.end()) return sd_bus_error_setf(error, kNoSuchUnit, "Unit %s not loaded.", unit);
      if (it->second == "failed") f->units_.erase(it);  // an active unit stays: reset-failed is a no-op there
    }
    return sd_bus_reply_method_return(m, "");
  }

  static int SetProperties(sd_bus_message* m, void* ud, sd_bus_error* error) {
    FakeSystemd* f = Self(ud);
    FakeSystemd::Call c;
    c.method = "SetUnitProperties";
    const char* unit = nullptr;
    int runtime = 0;
    int r = sd_bus_message_read(m, "sb", &unit, &runtime);
    if (r < 0) return r;
    c.unit = unit;
    c.runtime = runtime != 0;
    if ((r = ReadProperties(m, &c.properties)) < 0) return r;
    {
      absl::MutexLock l(&f->mu_);
      f->calls_.push_back(c);
      if (!f->units_.count(c.unit)) return sd_bus_error_setf(error, kNoSuchUnit, "Unit %s not loaded.", unit);
    }
    return sd_bus_reply_method_return(m, "");
  }

  static int Attach(sd_bus_message* m, void* ud, sd_bus_error* error) {
    FakeSystemd* f = Self(ud);
    FakeSystemd::Call c;
    c.method = "AttachProcessesToUnit";
    const char* unit = nullptr;
    const char* sub = nullptr;
    int r = sd_bus_message_read(m, "ss", &unit, &sub);
    if (r < 0) return r;
    c.unit = unit;
    c.subcgroup = sub;
    const void* data = nullptr;
    size_t size = 0;
    if ((r = sd_bus_message_read_array(m, 'u', &data, &size)) < 0) return r;
    const auto* u = static_cast<const uint32_t*>(data);
    c.pids.assign(u, u + size / sizeof(uint32_t));
    {
      absl::MutexLock l(&f->mu_);
      f->calls_.push_back(c);
      if (!f->units_.count(c.unit)) return sd_bus_error_setf(error, kNoSuchUnit, "Unit %s not loaded.", unit);
    }
    return sd_bus_reply_method_return(m, "");
  }

  // dbus-daemon's part, for ListenAsSystemBus: a unique name, matches
  // accepted (the fake sends every signal anyway; the client filters).
  static int Hello(sd_bus_message* m, void* ud, sd_bus_error*) {
    FakeSystemd* f = Self(ud);
    uint32_t n = 0;
    {
      absl::MutexLock l(&f->mu_);
      n = f->next_unique_++;
    }
    return sd_bus_reply_method_return(m, "s", base::StrCat(":1.", n).c_str());
  }
  static int Match(sd_bus_message* m, void* ud, sd_bus_error*) {
    const char* rule = nullptr;
    int r = sd_bus_message_read(m, "s", &rule);
    if (r < 0) return r;
    if (std::string(sd_bus_message_get_member(m)) == "AddMatch") {
      absl::MutexLock l(&Self(ud)->mu_);
      Self(ud)->calls_.push_back({.method = "AddMatch", .unit = rule});
    }
    return sd_bus_reply_method_return(m, "");
  }

  static int Version(sd_bus*, const char*, const char*, const char*, sd_bus_message* reply, void* ud, sd_bus_error*) {
    FakeSystemd* f = Self(ud);
    std::string v;
    {
      absl::MutexLock l(&f->mu_);
      v = f->version_;
    }
    return sd_bus_message_append(reply, "s", v.c_str());
  }
};

namespace {

const sd_bus_vtable kVtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("StartTransientUnit", "ssa(sv)a(sa(sv))", "o", FakeSystemdHandlers::Start,
                  SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("StopUnit", "ss", "o", FakeSystemdHandlers::Stop, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("ResetFailedUnit", "s", "", FakeSystemdHandlers::ResetFailed, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("SetUnitProperties", "sba(sv)", "", FakeSystemdHandlers::SetProperties, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("AttachProcessesToUnit", "ssau", "", FakeSystemdHandlers::Attach, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_PROPERTY("Version", "s", FakeSystemdHandlers::Version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_SIGNAL("JobRemoved", "uoss", 0),
    SD_BUS_VTABLE_END,
};

const sd_bus_vtable kBusVtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("Hello", "", "s", FakeSystemdHandlers::Hello, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("AddMatch", "s", "", FakeSystemdHandlers::Match, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("RemoveMatch", "s", "", FakeSystemdHandlers::Match, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_VTABLE_END,
};

}  // namespace

FakeSystemd::FakeSystemd() = default;

FakeSystemd::~FakeSystemd() {
  stop_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  std::vector<std::thread> threads;
  {
    absl::MutexLock l(&mu_);
    threads.swap(threads_);
  }
  for (std::thread& t : threads) t.join();
}

absl::Status FakeSystemd::ListenAsSystemBus(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return absl::InvalidArgumentError("socket path too long");
  path.copy(addr.sun_path, path.size());
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return absl::ErrnoToStatus(errno, "socket");
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return absl::ErrnoToStatus(errno, "bind " + path);
  }
  if (::listen(listen_fd_, 16) != 0) return absl::ErrnoToStatus(errno, "listen");
  acceptor_ = std::thread([this] { Accept(listen_fd_); });
  return absl::OkStatus();
}

void FakeSystemd::Accept(int listen_fd) {
  while (!stop_) {
    pollfd p{listen_fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;  // wakes up to see stop_
    const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    absl::MutexLock l(&mu_);
    ++connections_;
    threads_.emplace_back([this, fd] { Serve(fd, /*as_bus_daemon=*/true); });
  }
}

void FakeSystemd::Serve(int fd, bool as_bus_daemon) {
  sd_bus* raw = nullptr;
  if (sd_bus_new(&raw) < 0) {
    ::close(fd);
    return;
  }
  runtime::cgroup::SdBusPtr bus(raw);
  sd_id128_t id;
  sd_id128_randomize(&id);
  // systemd does the same on its private socket: without a bus daemon the
  // sender field is what a client's match on "org.freedesktop.systemd1" sees.
  if (sd_bus_set_fd(raw, fd, fd) < 0 || sd_bus_set_server(raw, 1, id) < 0 ||
      sd_bus_set_sender(raw, "org.freedesktop.systemd1") < 0 ||
      sd_bus_add_object_vtable(raw, nullptr, kObject, kManager, kVtable, this) < 0) {
    return;
  }
  if (as_bus_daemon &&
      sd_bus_add_object_vtable(raw, nullptr, "/org/freedesktop/DBus", "org.freedesktop.DBus", kBusVtable, this) < 0) {
    return;
  }
  if (sd_bus_start(raw) < 0) return;
  while (!stop_) {
    const int r = sd_bus_process(raw, nullptr);
    if (r < 0) break;  // the client closed its end
    if (r > 0) continue;
    const int w = sd_bus_wait(raw, 100000);  // wakes up to see stop_
    if (w < 0 && w != -EINTR) break;
  }
}

runtime::cgroup::SdBusFactory FakeSystemd::Factory() {
  return [this]() -> absl::StatusOr<runtime::cgroup::SdBusPtr> {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      return absl::ErrnoToStatus(errno, "socketpair");
    }
    {
      absl::MutexLock l(&mu_);
      ++connections_;
      threads_.emplace_back([this, fd = sv[1]] { Serve(fd, /*as_bus_daemon=*/false); });
    }
    sd_bus* raw = nullptr;
    if (int r = sd_bus_new(&raw); r < 0) {
      ::close(sv[0]);
      return absl::ErrnoToStatus(-r, "sd_bus_new");
    }
    runtime::cgroup::SdBusPtr bus(raw);
    if (int r = sd_bus_set_fd(raw, sv[0], sv[0]); r < 0) {
      ::close(sv[0]);
      return absl::ErrnoToStatus(-r, "sd_bus_set_fd");
    }
    if (int r = sd_bus_start(raw); r < 0) return absl::ErrnoToStatus(-r, "sd_bus_start");
    return bus;
  };
}

void FakeSystemd::SetVersion(std::string v) {
  absl::MutexLock l(&mu_);
  version_ = std::move(v);
}
void FakeSystemd::SetStartResult(std::string result) {
  absl::MutexLock l(&mu_);
  start_result_ = std::move(result);
}
void FakeSystemd::SetStopResult(std::string result) {
  absl::MutexLock l(&mu_);
  stop_result_ = std::move(result);
}
void FakeSystemd::SetJobsNeverEnd(bool never) {
  absl::MutexLock l(&mu_);
  never_end_ = never;
}
void FakeSystemd::HangJobsOf(std::string unit) {
  absl::MutexLock l(&mu_);
  hang_.insert(std::move(unit));
}
void FakeSystemd::AddUnit(std::string unit, std::string state) {
  absl::MutexLock l(&mu_);
  units_[std::move(unit)] = std::move(state);
}
void FakeSystemd::OnStart(std::function<void(const std::string& unit)> fn) {
  absl::MutexLock l(&mu_);
  on_start_ = std::move(fn);
}
void FakeSystemd::OnStop(std::function<void(const std::string& unit)> fn) {
  absl::MutexLock l(&mu_);
  on_stop_ = std::move(fn);
}

std::vector<FakeSystemd::Call> FakeSystemd::calls() const {
  absl::MutexLock l(&mu_);
  return calls_;
}
std::vector<std::string> FakeSystemd::methods() const {
  absl::MutexLock l(&mu_);
  std::vector<std::string> out;
  for (const Call& c : calls_) out.push_back(c.method);
  return out;
}
std::map<std::string, std::string> FakeSystemd::units() const {
  absl::MutexLock l(&mu_);
  return units_;
}
int FakeSystemd::connections() const {
  absl::MutexLock l(&mu_);
  return connections_;
}

}  // namespace kvcri::testing
