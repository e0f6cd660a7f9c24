// SystemdPlacer: transient scopes for VM containers via systemd's D-Bus Manager API, limits as unit properties.
#include "runtime/cgroup/systemd_placer.h"

#include <errno.h>
#include <systemd/sd-bus.h>

#include <cstdlib>
#include <limits>
#include <tuple>
#include <variant>

#include "absl/container/flat_hash_map.h"
#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"

// One connection per operation, not one shared connection. An sd_bus is not
// thread-safe, and Place/Remove must wait for a JobRemoved signal: on a
// shared bus, either a mutex is held across that wait (up to job_timeout,
// stalling every other Pod's call) or a dispatcher thread routes signals
// to waiters, with the locking that brings. A private connection per call
// has neither: a slow job stalls only its own call, signals for our job
// arrive on the connection that asked for it, and a systemd or dbus-daemon
// restart costs one failed call instead of a dead shared connection (runc
// needs retryOnDisconnect for that). The price is one connect + auth + Hello
// per Place/Remove/SetLimits, a millisecond next to a VM boot.

namespace kvcri::runtime::cgroup {

using base::StrCat;

void SdBusClose::operator()(sd_bus* bus) const { sd_bus_flush_close_unref(bus); }

namespace {

constexpr char kService[] = "org.freedesktop.systemd1";
constexpr char kObject[] = "/org/freedesktop/systemd1";
constexpr char kManager[] = "org.freedesktop.systemd1.Manager";

struct MessageUnref {
  void operator()(sd_bus_message* m) const { sd_bus_message_unref(m); }
};
using MessagePtr = std::unique_ptr<sd_bus_message, MessageUnref>;
struct SlotUnref {
  void operator()(sd_bus_slot* s) const { sd_bus_slot_unref(s); }
};
using SlotPtr = std::unique_ptr<sd_bus_slot, SlotUnref>;

// sd_bus_error frees its strings only when told to.
class BusError {
 public:
  BusError() = default;
  BusError(const BusError&) = delete;
  BusError& operator=(const BusError&) = delete;
  ~BusError() { sd_bus_error_free(&e_); }
  sd_bus_error* get() { return &e_; }
  bool Has(const char* name) const { return sd_bus_error_has_name(&e_, name) > 0; }
  std::string Describe() const { return StrCat(e_.name ? e_.name : "", ": ", e_.message ? e_.message : ""); }

 private:
  sd_bus_error e_ = SD_BUS_ERROR_NULL;
};

absl::Status BusStatus(int r, std::string_view what) {
  return absl::ErrnoToStatus(-r, StrCat(what, " (D-Bus connection to systemd)"));
}

// One unit property of an a(sv) argument, with the D-Bus type systemd wants.
struct Property {
  std::string name;
  std::variant<std::string, bool, uint64_t, std::vector<uint32_t>, std::vector<uint8_t>> value;
};

int AppendProperty(sd_bus_message* m, const Property& p) {
  int r = sd_bus_message_open_container(m, 'r', "sv");
  if (r < 0) return r;
  if ((r = sd_bus_message_append_basic(m, 's', p.name.c_str())) < 0) return r;
  if (const auto* s = std::get_if<std::string>(&p.value)) {
    r = sd_bus_message_append(m, "v", "s", s->c_str());
  } else if (const auto* b = std::get_if<bool>(&p.value)) {
    r = sd_bus_message_append(m, "v", "b", static_cast<int>(*b));
  } else if (const auto* t = std::get_if<uint64_t>(&p.value)) {
    r = sd_bus_message_append(m, "v", "t", *t);
  } else if (const auto* au = std::get_if<std::vector<uint32_t>>(&p.value)) {
    if ((r = sd_bus_message_open_container(m, 'v', "au")) < 0) return r;
    if ((r = sd_bus_message_append_array(m, 'u', au->data(), au->size() * sizeof(uint32_t))) < 0) return r;
    r = sd_bus_message_close_container(m);
  } else {
    const auto& ay = std::get<std::vector<uint8_t>>(p.value);
    if ((r = sd_bus_message_open_container(m, 'v', "ay")) < 0) return r;
    if ((r = sd_bus_message_append_array(m, 'y', ay.data(), ay.size())) < 0) return r;
    r = sd_bus_message_close_container(m);
  }
  if (r < 0) return r;
  return sd_bus_message_close_container(m);
}

int AppendProperties(sd_bus_message* m, const std::vector<Property>& props) {
  int r = sd_bus_message_open_container(m, 'a', "(sv)");
  if (r < 0) return r;
  for (const Property& p : props) {
    if ((r = AppendProperty(m, p)) < 0) return r;
  }
  return sd_bus_message_close_container(m);
}

// The JobRemoved signals one connection saw, by job object path. Installed
// before the call that makes the job, so a job that ends before the call's
// reply is read is not missed (the signal queues behind the reply).
// Single-threaded: it lives and dies within one operation's connection.
class JobWatch {
 public:
  static absl::StatusOr<std::unique_ptr<JobWatch>> Install(sd_bus* bus) {
    auto w = std::unique_ptr<JobWatch>(new JobWatch());
    sd_bus_slot* slot = nullptr;
    // The sender is matched too: on the system bus dbus-daemon resolves the
    // name, on systemd's private socket (and our test fake) it is the
    // sender field, so no other peer can fake a job's end.
    const int r =
        sd_bus_match_signal(bus, &slot, kService, kObject, kManager, "JobRemoved", &JobWatch::OnSignal, w.get());
    if (r < 0) return BusStatus(r, "subscribe to systemd's JobRemoved signal");
    w->slot_.reset(slot);
    return w;
  }

  // The job's result ("done", "failed", "canceled", "timeout", ...).
  absl::StatusOr<std::string> Wait(sd_bus* bus, const std::string& job, const std::string& unit,
                                   absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      if (auto it = results_.find(job); it != results_.end()) return it->second;
      const int r = sd_bus_process(bus, nullptr);
      if (r < 0) return BusStatus(r, StrCat("wait for systemd job \"", job, "\" of unit \"", unit, "\""));
      if (r > 0) continue;  // dispatched something: look again before sleeping
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        return absl::DeadlineExceededError(StrCat("systemd job \"", job, "\" of unit \"", unit,
                                                  "\" did not end within ", absl::FormatDuration(timeout)));
      }
      const int w = sd_bus_wait(bus, static_cast<uint64_t>(absl::ToInt64Microseconds(left)) + 1);
      if (w < 0 && w != -EINTR) return BusStatus(w, StrCat("wait for systemd job \"", job, "\""));
    }
  }

 private:
  JobWatch() = default;

  static int OnSignal(sd_bus_message* m, void* userdata, sd_bus_error*) {
    uint32_t id = 0;
    const char* job = nullptr;
    const char* unit = nullptr;
    const char* result = nullptr;
    if (sd_bus_message_read(m, "uoss", &id, &job, &unit, &result) < 0) return 0;  // not the signal we know: ignore
    static_cast<JobWatch*>(userdata)->results_[job] = result;
    return 0;
  }

  absl::flat_hash_map<std::string, std::string> results_;
  SlotPtr slot_;
};

// A Manager method call: builds the message with `append`, sends it, and
// returns the reply. D-Bus errors become Status codes by name.
template <typename AppendFn>
absl::StatusOr<MessagePtr> CallManager(sd_bus* bus, const char* method, const std::string& unit, absl::Duration timeout,
                                       AppendFn append) {
  const std::string what = StrCat("systemd ", method, " of unit \"", unit, "\"");
  sd_bus_message* raw = nullptr;
  int r = sd_bus_message_new_method_call(bus, &raw, kService, kObject, kManager, method);
  if (r < 0) return BusStatus(r, what);
  MessagePtr call(raw);
  if ((r = append(call.get())) < 0) return BusStatus(r, StrCat("build the message for ", what));
  BusError error;
  sd_bus_message* reply = nullptr;
  r = sd_bus_call(bus, call.get(), static_cast<uint64_t>(absl::ToInt64Microseconds(timeout)), error.get(), &reply);
  MessagePtr reply_ptr(reply);
  if (r >= 0) return reply_ptr;
  if (!sd_bus_error_is_set(error.get())) {
    if (r == -ETIMEDOUT)
      return absl::DeadlineExceededError(StrCat(what, ": no reply within ", absl::FormatDuration(timeout)));
    return absl::UnavailableError(StrCat(what, ": ", absl::ErrnoToStatus(-r, "D-Bus").message()));
  }
  const std::string msg = StrCat(what, ": ", error.Describe());
  if (error.Has("org.freedesktop.systemd1.NoSuchUnit")) return absl::NotFoundError(msg);
  if (error.Has("org.freedesktop.systemd1.UnitExists")) return absl::AlreadyExistsError(msg);
  if (error.Has(SD_BUS_ERROR_ACCESS_DENIED)) return absl::PermissionDeniedError(msg);
  if (error.Has(SD_BUS_ERROR_INVALID_ARGS) || error.Has(SD_BUS_ERROR_PROPERTY_READ_ONLY)) {
    return absl::InvalidArgumentError(msg);
  }
  if (error.Has(SD_BUS_ERROR_SERVICE_UNKNOWN) || error.Has(SD_BUS_ERROR_NO_REPLY) ||
      error.Has(SD_BUS_ERROR_DISCONNECTED)) {
    return absl::UnavailableError(msg);
  }
  return absl::InternalError(msg);
}

absl::StatusOr<std::string> ReadJobPath(sd_bus_message* reply, const std::string& unit) {
  const char* job = nullptr;
  const int r = sd_bus_message_read(reply, "o", &job);
  if (r < 0) return BusStatus(r, StrCat("read the job of unit \"", unit, "\" from systemd's reply"));
  return std::string(job);
}

absl::Status ResetFailedUnit(sd_bus* bus, const std::string& unit, absl::Duration timeout) {
  absl::StatusOr<MessagePtr> reply = CallManager(bus, "ResetFailedUnit", unit, timeout, [&](sd_bus_message* m) {
    return sd_bus_message_append(m, "s", unit.c_str());
  });
  if (!reply.ok() && !absl::IsNotFound(reply.status())) return reply.status();
  return absl::OkStatus();
}

// "replace": a start job still queued (after a timed-out Place) gives way.
absl::StatusOr<std::string> StopUnit(sd_bus* bus, const std::string& unit, const char* mode, absl::Duration timeout) {
  ASSIGN_OR_RETURN(MessagePtr reply, CallManager(bus, "StopUnit", unit, timeout, [&](sd_bus_message* m) {
                     return sd_bus_message_append(m, "ss", unit.c_str(), mode);
                   }));
  return ReadJobPath(reply.get(), unit);
}

// Best effort after a failed Place: the caller destroys the VM, and its
// Remove (the target is in the record) finishes what this leaves.
void Abandon(sd_bus* bus, const std::string& unit, absl::Duration timeout) {
  absl::StatusOr<std::string> stop = StopUnit(bus, unit, "replace", timeout);
  if (!stop.ok() && !absl::IsNotFound(stop.status())) base::LogIfError(stop.status(), "stop of a failed scope");
  base::LogIfError(ResetFailedUnit(bus, unit, timeout), "reset-failed of a failed scope");
}

// runc's conversion of cgroup v1 cpu.shares [2, 262144] to v2 cpu.weight
// [1, 10000] (the same formula as the cgroupfs files in cgroup_placer.cc,
// so either driver gives a Pod the same weight).
uint64_t SharesToWeight(uint64_t shares) {
  if (shares < 2) shares = 2;
  if (shares > 262144) shares = 262144;
  return 1 + ((shares - 2) * 9999) / 262142;
}

// systemd knows CPU quota only as CPUQuotaPerSecUSec and keeps it in whole
// percent of a CPU (10 ms per second). Rounded up as runc does, and
// `*quota_us` changed to match, so the cgroup file we write afterwards says
// what systemd will re-apply on its next reload.
void AddCpuQuota(int systemd_version, int64_t* quota_us, int64_t period_us, std::vector<Property>* props) {
  if (period_us > 0 && systemd_version >= 242) {  // CPUQuotaPeriodUSec is v242+; the file still gets it
    props->push_back({"CPUQuotaPeriodUSec", static_cast<uint64_t>(period_us)});
  }
  if (*quota_us == 0 && period_us <= 0) return;
  uint64_t per_sec = std::numeric_limits<uint64_t>::max();  // USEC_INFINITY: no quota
  if (*quota_us > 0) {
    const uint64_t period = period_us > 0 ? static_cast<uint64_t>(period_us) : 100000;
    per_sec = static_cast<uint64_t>(*quota_us) * 1000000 / period;
    if (per_sec % 10000 != 0) {
      per_sec = (per_sec / 10000 + 1) * 10000;
      *quota_us = static_cast<int64_t>(per_sec * period / 1000000);
    }
  }
  props->push_back({"CPUQuotaPerSecUSec", per_sec});
}

bool ValidUnitChars(std::string_view s) {
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.' || c == ':' || c == '\\';
    if (!ok) return false;
  }
  return true;
}

absl::StatusOr<int> ProbeVersion(sd_bus* bus) {
  BusError error;
  char* raw = nullptr;
  const int r = sd_bus_get_property_string(bus, kService, kObject, kManager, "Version", error.get(), &raw);
  if (r < 0) {
    return absl::UnavailableError(sd_bus_error_is_set(error.get())
                                      ? error.Describe()
                                      : std::string(absl::ErrnoToStatus(-r, "Manager.Version").message()));
  }
  const std::string text(raw);
  std::free(raw);
  // "252.39-1~deb12u2", "v245.4-1.fc32", "245": the leading number.
  size_t i = text.find_first_of("0123456789");
  int version = 0;
  for (; i != std::string::npos && i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    version = version * 10 + (text[i] - '0');
    if (version > 100000) break;
  }
  if (version == 0) return absl::UnavailableError(StrCat("systemd reports version \"", text, "\", not a number"));
  return version;
}

}  // namespace

absl::StatusOr<std::vector<uint8_t>> CpuListToMask(std::string_view list) {
  std::vector<uint8_t> mask;
  auto bad = [&] {
    return absl::InvalidArgumentError(StrCat("\"", list, "\" is not a CPU or memory node list (\"0-3,6\")"));
  };
  auto parse = [](std::string_view s, uint32_t* out) {
    if (s.empty() || s.size() > 5) return false;  // at most 99999: a bitmask of 12 KiB
    uint32_t v = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
      v = v * 10 + static_cast<uint32_t>(c - '0');
    }
    *out = v;
    return true;
  };
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string_view::npos) comma = list.size();
    std::string_view item = list.substr(pos, comma - pos);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\n')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\n')) item.remove_suffix(1);
    pos = comma + 1;
    if (item.empty()) continue;  // "1,,2" and a trailing comma, as the kernel accepts
    uint32_t first = 0, last = 0;
    const size_t dash = item.find('-');
    if (dash == std::string_view::npos) {
      if (!parse(item, &first)) return bad();
      last = first;
    } else if (!parse(item.substr(0, dash), &first) || !parse(item.substr(dash + 1), &last) || first > last) {
      return bad();
    }
    if (mask.size() < last / 8 + 1) mask.resize(last / 8 + 1, 0);
    for (uint32_t c = first; c <= last; ++c) mask[c / 8] |= static_cast<uint8_t>(1u << (c % 8));
  }
  if (mask.empty()) return bad();
  return mask;
}

SystemdPlacer::SystemdPlacer(CgroupLayout layout, std::string default_slice, SdBusFactory bus_factory,
                             SystemdPlacerOptions options, int systemd_version)
    : CgroupPlacer(std::move(layout)),
      default_slice_(std::move(default_slice)),
      bus_factory_(std::move(bus_factory)),
      options_(options),
      systemd_version_(systemd_version) {}

absl::StatusOr<std::unique_ptr<SystemdPlacer>> SystemdPlacer::Create(CgroupLayout layout, std::string default_slice,
                                                                     SdBusFactory bus_factory,
                                                                     SystemdPlacerOptions options) {
  if (absl::StatusOr<std::string> s = ExpandSystemdSlice(default_slice); !s.ok()) {
    return absl::InvalidArgumentError(StrCat("default cgroup parent for the systemd driver: ", s.status().message()));
  }
  auto refuse = [](const absl::Status& s) {
    return absl::FailedPreconditionError(
        StrCat("runtime.cgroup_driver is \"systemd\", but systemd does not answer on the system bus (", s.message(),
               "); run kubevirt-cri on a host booted with systemd, or use cgroup_driver = \"cgroupfs\""));
  };
  absl::StatusOr<SdBusPtr> bus = bus_factory();
  if (!bus.ok()) return refuse(bus.status());
  absl::StatusOr<int> version = ProbeVersion(bus->get());
  if (!version.ok()) return refuse(version.status());
  return std::unique_ptr<SystemdPlacer>(
      new SystemdPlacer(std::move(layout), std::move(default_slice), std::move(bus_factory), options, *version));
}

absl::StatusOr<std::unique_ptr<SystemdPlacer>> SystemdPlacer::Connect(CgroupLayout layout, std::string default_slice,
                                                                      SystemdPlacerOptions options) {
  SdBusFactory system_bus = []() -> absl::StatusOr<SdBusPtr> {
    sd_bus* raw = nullptr;
    const int r = sd_bus_open_system(&raw);
    if (r < 0) return absl::UnavailableError(absl::ErrnoToStatus(-r, "connect to the D-Bus system bus").message());
    return SdBusPtr(raw);
  };
  return Create(std::move(layout), std::move(default_slice), std::move(system_bus), options);
}

absl::StatusOr<CgroupTarget> SystemdPlacer::Plan(std::string_view cgroup_parent, std::string_view container_id) const {
  const std::string_view slice = cgroup_parent.empty() ? std::string_view(default_slice_) : cgroup_parent;
  absl::StatusOr<std::string> expanded = ExpandSystemdSlice(slice);
  if (!expanded.ok()) {
    return absl::InvalidArgumentError(StrCat("linux.cgroup_parent \"", slice,
                                             "\" is not a systemd slice (NAME.slice), but the cgroup driver is "
                                             "systemd (kubelet's cgroupDriver and kubevirt-cri's "
                                             "runtime.cgroup_driver must agree)"));
  }
  if (container_id.empty() || !ValidUnitChars(container_id)) {
    return absl::InvalidArgumentError(StrCat("container id \"", container_id, "\" cannot name a systemd unit"));
  }
  CgroupTarget t;
  t.unit = StrCat(ContainerCgroupName(container_id), ".scope");
  if (t.unit.size() > 255) return absl::InvalidArgumentError(StrCat("systemd unit name \"", t.unit, "\" is too long"));
  t.slice = std::string(slice);
  t.path = *expanded == "/" ? StrCat("/", t.unit) : StrCat(*expanded, "/", t.unit);
  return t;
}

absl::Status SystemdPlacer::Place(const CgroupTarget& t, const std::vector<pid_t>& pids) {
  if (t.unit.empty() || t.slice.empty()) {
    return absl::InvalidArgumentError(StrCat("cgroup target \"", t.path, "\" names no systemd unit and slice"));
  }
  if (pids.empty()) return absl::InvalidArgumentError(StrCat("systemd scope \"", t.unit, "\" needs a process"));
  const bool v1 = layout().version() == CgroupVersion::kV1;
  std::vector<uint32_t> pid_list(pids.begin(), pids.end());
  // What runc's systemd driver asks for a container scope.
  std::vector<Property> props = {
      {"Description", StrCat("kubevirt-cri VM container ", t.unit.substr(0, t.unit.size() - 6))},
      {"Slice", t.slice},
      {"Delegate", true},  // the subtree below the scope is ours; systemd leaves it alone
      {"PIDs", pid_list},
      // Accounting everywhere, as runc: the kernel charges a process only
      // to controllers enabled when it joins, and the stats need them all.
      {"MemoryAccounting", true},
      {"CPUAccounting", true},
      {v1 ? "BlockIOAccounting" : "IOAccounting", true},
      {"TasksAccounting", true},
      // Without it a scope gets Conflicts=shutdown.target: systemd would
      // stop (kill) the VM at the start of a shutdown, before kubelet and we
      // could stop it in order.
      {"DefaultDependencies", false},
  };

  ASSIGN_OR_RETURN(SdBusPtr bus, bus_factory_());
  ASSIGN_OR_RETURN(std::unique_ptr<JobWatch> watch, JobWatch::Install(bus.get()));
  auto start = [&]() -> absl::StatusOr<std::string> {
    ASSIGN_OR_RETURN(
        MessagePtr reply,
        CallManager(bus.get(), "StartTransientUnit", t.unit, options_.call_timeout, [&](sd_bus_message* m) {
          int r = sd_bus_message_append(m, "ss", t.unit.c_str(), "fail");
          if (r < 0) return r;
          if ((r = AppendProperties(m, props)) < 0) return r;
          return sd_bus_message_append(m, "a(sa(sv))", 0);  // no auxiliary units
        }));
    return ReadJobPath(reply.get(), t.unit);
  };
  absl::StatusOr<std::string> job = start();
  if (absl::IsAlreadyExists(job.status())) {
    // A scope of this name from an earlier attempt (a daemon crash between
    // Place and the record): a failed one is gone after reset-failed...
    base::LogIfError(ResetFailedUnit(bus.get(), t.unit, options_.call_timeout), "reset-failed of an old scope");
    job = start();
    if (absl::IsAlreadyExists(job.status())) {
      // ...a running one is ours already (the name holds the container
      // ID), made with these properties: it gets the PIDs.
      base::LogInfo("systemd scope exists, adding the processes", {{"unit", t.unit}});
      absl::StatusOr<MessagePtr> attached =
          CallManager(bus.get(), "AttachProcessesToUnit", t.unit, options_.call_timeout, [&](sd_bus_message* m) {
            int r = sd_bus_message_append(m, "ss", t.unit.c_str(), "");
            if (r < 0) return r;
            return sd_bus_message_append_array(m, 'u', pid_list.data(), pid_list.size() * sizeof(uint32_t));
          });
      RETURN_IF_ERROR(attached.status());
      job = std::string();  // nothing to wait for
    }
  }
  RETURN_IF_ERROR(job.status());
  if (!job->empty()) {
    absl::StatusOr<std::string> result = watch->Wait(bus.get(), *job, t.unit, options_.job_timeout);
    if (!result.ok()) {
      Abandon(bus.get(), t.unit, options_.call_timeout);
      return result.status();
    }
    if (*result != "done") {
      Abandon(bus.get(), t.unit, options_.call_timeout);
      return absl::InternalError(StrCat("systemd could not start scope \"", t.unit, "\" in slice \"", t.slice,
                                        "\": its job ended \"", *result, "\" (journalctl -u ", t.unit, " says why)"));
    }
  }
  if (v1) {
    // systemd on v1 puts the PIDs into the hierarchies it manages only (not
    // cpuset); the rest get the same path through the files, as runc's
    // joinCgroups does. Memory charged before this move stays where it was
    // (v1 moves charges only with move_charge_at_immigrate, which cannot be
    // set before systemd makes the scope): QEMU is paused, its guest RAM
    // mostly untouched, so that is little.
    absl::Status s = CreateCgroup(layout(), t.path);
    for (pid_t pid : pids) {
      if (!s.ok()) break;
      s = JoinCgroup(layout(), t.path, pid);
    }
    if (!s.ok()) {
      Abandon(bus.get(), t.unit, options_.call_timeout);
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status SystemdPlacer::Remove(const CgroupTarget& t) {
  if (t.unit.empty()) return absl::OkStatus();  // planned by no driver, or by cgroupfs
  // Same contract as cgroupfs: refuse while a process is inside. Stopping a
  // scope would kill its processes (KillMode=control-group) and wait for
  // them in the job: that is the VM's teardown, not ours.
  if (absl::StatusOr<std::vector<pid_t>> procs = CgroupProcs(layout(), t.path); procs.ok() && !procs->empty()) {
    return absl::FailedPreconditionError(StrCat("systemd scope \"", t.unit, "\" still has ", procs->size(),
                                                " process(es), the first pid ", procs->front()));
  }
  ASSIGN_OR_RETURN(SdBusPtr bus, bus_factory_());
  ASSIGN_OR_RETURN(std::unique_ptr<JobWatch> watch, JobWatch::Install(bus.get()));
  absl::StatusOr<std::string> job = StopUnit(bus.get(), t.unit, "fail", options_.call_timeout);
  if (job.ok()) {
    ASSIGN_OR_RETURN(std::string result, watch->Wait(bus.get(), *job, t.unit, options_.job_timeout));
    // As runc: a stop that did not end "done" leaves a failed unit, which
    // the reset below clears; the rmdir below tells whether the cgroup is gone.
    if (result != "done") base::LogWarn("systemd scope stop did not end done", {{"unit", t.unit}, {"result", result}});
  } else if (!absl::IsNotFound(job.status())) {
    return job.status();
  }
  // A failed unit keeps its name until reset, and the next Place of that
  // name would meet UnitExists.
  RETURN_IF_ERROR(ResetFailedUnit(bus.get(), t.unit, options_.call_timeout));
  // What systemd does not own: the v1 hierarchies Place joined by files
  // (cpuset), a sub-cgroup systemd before v240 leaves behind. OK when gone.
  return RemoveCgroup(layout(), t.path);
}

absl::Status SystemdPlacer::SetLimits(const CgroupTarget& t, const CgroupLimits& l) {
  if (t.unit.empty()) return absl::InvalidArgumentError(StrCat("cgroup target \"", t.path, "\" names no systemd unit"));
  const bool v1 = layout().version() == CgroupVersion::kV1;
  CgroupLimits files = l;
  std::vector<Property> props;
  if (l.memory_limit_bytes > 0) props.push_back({v1 ? "MemoryLimit" : "MemoryMax", l.memory_limit_bytes});
  if (l.cpu_shares > 0) {
    props.push_back(v1 ? Property{"CPUShares", l.cpu_shares} : Property{"CPUWeight", SharesToWeight(l.cpu_shares)});
  }
  AddCpuQuota(systemd_version_, &files.cpu_quota_us, l.cpu_period_us, &props);
  for (const auto& [list, name, field] : {std::tuple{&l.cpuset_cpus, "AllowedCPUs", "cpuset_cpus"},
                                          std::tuple{&l.cpuset_mems, "AllowedMemoryNodes", "cpuset_mems"}}) {
    if (list->empty()) continue;
    absl::StatusOr<std::vector<uint8_t>> mask = CpuListToMask(*list);
    if (!mask.ok()) return absl::InvalidArgumentError(StrCat("linux.resources.", field, ": ", mask.status().message()));
    if (systemd_version_ >= 244) props.push_back({name, *std::move(mask)});  // v244+; the file still gets it
  }
  if (!props.empty()) {
    ASSIGN_OR_RETURN(SdBusPtr bus, bus_factory_());
    RETURN_IF_ERROR(CallManager(bus.get(), "SetUnitProperties", t.unit, options_.call_timeout, [&](sd_bus_message* m) {
                      // runtime: the values last until reboot, in /run; the scope does not outlive that.
                      int r = sd_bus_message_append(m, "sb", t.unit.c_str(), 1);
                      if (r < 0) return r;
                      return AppendProperties(m, props);
                    }).status());
  }
  // Then the files too, as runc does (fsMgr.Set after setUnitProperties):
  // systemd older than a property ignores it (period < v242, cpuset <
  // v244), systemd on v1 has no cpuset controller at all, and the file gets
  // the exact value where systemd keeps a rounded one. The properties
  // first, so that systemd's own view (re-applied on every daemon-reload)
  // agrees with the files: the quota rounding above makes both the same.
  return CgroupPlacer::SetLimits(t, files);
}

}  // namespace kvcri::runtime::cgroup
