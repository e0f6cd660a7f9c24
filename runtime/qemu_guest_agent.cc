// QemuGuestAgent: guest-ping, and guest-exec + guest-exec-status polling with bounded, validated replies.
#include "runtime/qemu_guest_agent.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "absl/strings/escaping.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "runtime/hypervisor.h"

namespace kvcri::runtime {

using base::StrCat;
using nlohmann::json;

namespace {

// libvirt buffers at most 10 MiB of one agent reply (QEMU_AGENT_MAX_RESPONSE
// in src/hypervisor/qemu_agent.c) and drops the agent connection past it;
// qemu-ga 7.2 would send up to 16 MiB per stream, base64. Nothing bigger can
// be a reply libvirt handed us, whatever the Hypervisor behind it.
constexpr size_t kMaxReplyBytes = 10 << 20;
// stdin travels base64 inside one command; kept well below qemu-ga's
// JSON token limit.
constexpr size_t kMaxInputBytes = 4 << 20;
// A qemu-ga reply has a dozen members; the base64 strings are what is big.
// Counting structure before parsing keeps a reply of a million tiny values
// from becoming a million JSON nodes.
constexpr size_t kMaxReplyTokens = 256;
// Waiting for the killed process's status after the deadline.
constexpr absl::Duration kReapTimeout = absl::Seconds(5);

// The number of JSON structural characters ([ { , :) outside strings.
size_t StructuralTokens(std::string_view text) {
  size_t n = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{' || c == ',' || c == ':') {
      ++n;
    }
  }
  return n;
}

// The "return" member of a reply; errors name the command. The reply is the
// guest's: size, JSON and shape are checked before anything is read.
absl::StatusOr<json> ReturnOf(std::string_view command, const std::string& reply) {
  if (reply.size() > kMaxReplyBytes) {
    return absl::DataLossError(
        StrCat("qemu-guest-agent reply to ", command, " is ", reply.size(), " bytes, above ", kMaxReplyBytes));
  }
  if (StructuralTokens(reply) > kMaxReplyTokens) {
    return absl::DataLossError(
        StrCat("qemu-guest-agent reply to ", command, " has more than ", kMaxReplyTokens, " JSON values"));
  }
  json doc = json::parse(reply, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::DataLossError(StrCat("qemu-guest-agent reply to ", command, " is not a JSON object"));
  }
  if (auto err = doc.find("error"); err != doc.end()) {
    std::string desc = "(no description)";
    if (err->is_object()) {
      auto d = err->find("desc");
      if (d != err->end() && d->is_string()) desc = d->get<std::string>().substr(0, 512);
    }
    return absl::FailedPreconditionError(StrCat("qemu-guest-agent ", command, " failed: ", desc));
  }
  auto ret = doc.find("return");
  if (ret == doc.end()) return absl::DataLossError(StrCat("qemu-guest-agent reply to ", command, " has no \"return\""));
  return std::move(*ret);
}

std::optional<int64_t> IntField(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number_integer()) return std::nullopt;
  if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
  return it->get<int64_t>();
}

bool BoolField(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_boolean() && it->get<bool>();
}

// Decodes the base64 `key` of a guest-exec-status reply into `out`, keeping
// at most `max` bytes; sets `*truncated` when bytes were dropped.
absl::Status DecodeOutput(const json& status, const char* key, size_t max, std::string* out, bool* truncated) {
  auto it = status.find(key);
  if (it == status.end()) return absl::OkStatus();
  if (!it->is_string()) return absl::DataLossError(StrCat("qemu-guest-agent guest-exec-status ", key, " is no string"));
  const std::string& b64 = it->get_ref<const std::string&>();
  // Decoding only what can be kept bounds the work: a 4-char group is 3 bytes.
  size_t keep_chars = b64.size();
  if (max < SIZE_MAX / 4 && b64.size() / 4 * 3 > max) keep_chars = (max + 2) / 3 * 4;
  if (keep_chars < b64.size()) *truncated = true;
  if (!absl::Base64Unescape(absl::string_view(b64.data(), keep_chars), out)) {
    return absl::DataLossError(StrCat("qemu-guest-agent guest-exec-status ", key, " is not base64"));
  }
  if (out->size() > max) {
    out->resize(max);
    *truncated = true;
  }
  return absl::OkStatus();
}

// The result once `status` (a guest-exec-status return) says exited.
absl::StatusOr<GuestExecResult> ExitedResult(const json& status, size_t max_output) {
  GuestExecResult r;
  std::optional<int64_t> code = IntField(status, "exitcode");
  std::optional<int64_t> signal = IntField(status, "signal");
  if (signal) {
    if (*signal < 1 || *signal > 127) {
      return absl::DataLossError(StrCat("qemu-guest-agent guest-exec-status signal ", *signal, " is out of range"));
    }
    r.exit_code = 128 + static_cast<int>(*signal);
  } else if (code) {
    if (*code < 0 || *code > 255) {
      return absl::DataLossError(StrCat("qemu-guest-agent guest-exec-status exitcode ", *code, " is out of range"));
    }
    r.exit_code = static_cast<int>(*code);
  } else {
    return absl::DataLossError("qemu-guest-agent guest-exec-status says exited but has neither exitcode nor signal");
  }
  r.truncated = BoolField(status, "out-truncated") || BoolField(status, "err-truncated");
  if (absl::Status s = DecodeOutput(status, "out-data", max_output, &r.stdout_data, &r.truncated); !s.ok()) return s;
  if (absl::Status s = DecodeOutput(status, "err-data", max_output, &r.stderr_data, &r.truncated); !s.ok()) return s;
  return r;
}

}  // namespace

QemuGuestAgent::QemuGuestAgent(Hypervisor* hypervisor, QemuGuestAgentOptions options)
    : hypervisor_(hypervisor), options_(options) {}

absl::Status QemuGuestAgent::Ping(std::string_view domain, absl::Duration timeout) {
  absl::StatusOr<std::string> reply = hypervisor_->GuestAgentCommand(domain, R"({"execute":"guest-ping"})", timeout);
  if (!reply.ok()) return reply.status();
  return ReturnOf("guest-ping", *reply).status();
}

absl::StatusOr<int> QemuGuestAgent::SetOnlineVcpus(std::string_view domain, int n, absl::Duration timeout) {
  ASSIGN_OR_RETURN(std::string reply,
                   hypervisor_->GuestAgentCommand(domain, R"({"execute":"guest-get-vcpus"})", timeout));
  ASSIGN_OR_RETURN(json list, ReturnOf("guest-get-vcpus", reply));
  if (!list.is_array()) return absl::DataLossError("qemu-guest-agent guest-get-vcpus returned no array");
  json change = json::array();
  int online = 0;
  for (const json& cpu : list) {
    if (!cpu.is_object()) return absl::DataLossError("qemu-guest-agent guest-get-vcpus returned a non-object");
    std::optional<int64_t> id = IntField(cpu, "logical-id");
    if (!id || *id < 0) return absl::DataLossError("qemu-guest-agent guest-get-vcpus entry has no logical-id");
    const bool is_online = BoolField(cpu, "online");
    const bool want = *id < n || !BoolField(cpu, "can-offline");
    if (is_online == want) {
      online += is_online ? 1 : 0;
    } else {
      change.push_back({{"logical-id", *id}, {"online", want}});
      online += is_online ? 1 : 0;  // adjusted below by what was changed
    }
  }
  if (change.empty()) return online;
  json cmd = {{"execute", "guest-set-vcpus"}, {"arguments", {{"vcpus", change}}}};
  ASSIGN_OR_RETURN(reply, hypervisor_->GuestAgentCommand(domain, cmd.dump(), timeout));
  ASSIGN_OR_RETURN(json done, ReturnOf("guest-set-vcpus", reply));
  // The number of entries it processed, stopping at the first it could not.
  if (!done.is_number_integer()) return absl::DataLossError("qemu-guest-agent guest-set-vcpus returned no count");
  const size_t applied = static_cast<size_t>(std::clamp<int64_t>(done.get<int64_t>(), 0, change.size()));
  for (size_t i = 0; i < applied; ++i) online += change[i]["online"].get<bool>() ? 1 : -1;
  return online;
}

namespace {

// guest-exec of argv; the guest pid.
absl::StatusOr<int64_t> Spawn(Hypervisor* hv, std::string_view domain, const std::vector<std::string>& argv,
                              std::string_view input, absl::Duration timeout) {
  json args = {{"path", argv[0]}, {"arg", json::array()}, {"capture-output", true}};
  for (size_t i = 1; i < argv.size(); ++i) args["arg"].push_back(argv[i]);
  if (!input.empty()) args["input-data"] = absl::Base64Escape(absl::string_view(input.data(), input.size()));
  json cmd = {{"execute", "guest-exec"}, {"arguments", std::move(args)}};
  std::string text;
  try {
    text = cmd.dump(-1, ' ', /*ensure_ascii=*/true);
  } catch (const json::type_error&) {  // nlohmann refuses to write invalid UTF-8
    return absl::InvalidArgumentError("exec command has an argument that is not valid UTF-8");
  }
  absl::StatusOr<std::string> reply = hv->GuestAgentCommand(domain, text, timeout);
  if (!reply.ok()) return reply.status();
  absl::StatusOr<json> ret = ReturnOf("guest-exec", *reply);
  if (!ret.ok()) return ret.status();
  std::optional<int64_t> pid = ret->is_object() ? IntField(*ret, "pid") : std::nullopt;
  if (!pid || *pid <= 0) return absl::DataLossError("qemu-guest-agent guest-exec reply has no positive \"pid\"");
  return *pid;
}

// One guest-exec-status; the return object.
absl::StatusOr<json> ExecStatus(Hypervisor* hv, std::string_view domain, int64_t pid, absl::Duration timeout) {
  json cmd = {{"execute", "guest-exec-status"}, {"arguments", {{"pid", pid}}}};
  absl::StatusOr<std::string> reply = hv->GuestAgentCommand(domain, cmd.dump(), timeout);
  if (!reply.ok()) return reply.status();
  absl::StatusOr<json> ret = ReturnOf("guest-exec-status", *reply);
  if (!ret.ok()) return ret.status();
  if (!ret->is_object() || !ret->contains("exited") || !(*ret)["exited"].is_boolean()) {
    return absl::DataLossError("qemu-guest-agent guest-exec-status reply has no boolean \"exited\"");
  }
  return ret;
}

// Polls guest-exec-status of `pid` until it exited or `deadline`; nullopt at the deadline.
absl::StatusOr<std::optional<json>> WaitExited(Hypervisor* hv, std::string_view domain, int64_t pid,
                                               absl::Time deadline, const QemuGuestAgentOptions& o) {
  while (true) {
    absl::StatusOr<json> st = ExecStatus(hv, domain, pid, o.command_timeout);
    if (!st.ok()) return st.status();
    if ((*st)["exited"].get<bool>()) return std::optional<json>(std::move(*st));
    const absl::Time now = absl::Now();
    if (now >= deadline) return std::optional<json>();
    absl::SleepFor(std::min(o.poll_interval, deadline - now));
  }
}

}  // namespace

absl::StatusOr<GuestExecResult> QemuGuestAgent::Exec(std::string_view domain, const std::vector<std::string>& argv,
                                                     std::string_view input, absl::Time deadline) {
  if (argv.empty() || argv[0].empty()) return absl::InvalidArgumentError("exec command is empty");
  if (input.size() > kMaxInputBytes) {
    return absl::InvalidArgumentError(
        StrCat("exec stdin is ", input.size(), " bytes; qemu-guest-agent exec takes at most ", kMaxInputBytes));
  }
  absl::StatusOr<int64_t> pid = Spawn(hypervisor_, domain, argv, input, options_.command_timeout);
  if (!pid.ok()) return pid.status();
  absl::StatusOr<std::optional<json>> done = WaitExited(hypervisor_, domain, *pid, deadline, options_);
  if (!done.ok()) return done.status();
  if (done->has_value()) return ExitedResult(**done, options_.max_output_bytes);

  // The deadline passed. qemu-ga 7.2 has no command to end a guest-exec
  // process, so run kill in the guest. First a shell that stops and kills
  // the whole tree (children from /proc/<pid>/task/*/children): qemu-ga
  // reports "exited" only once the captured pipes closed, which a forked
  // child keeps open. Then plain kill(1) of the pid. A missing binary fails
  // guest-exec at once and the next is tried.
  const std::string pid_text = StrCat(*pid);
  const std::vector<std::vector<std::string>> killers = {
      {"/bin/sh", "-c",
       StrCat("t() { kill -STOP $1 2>/dev/null; for c in $(cat /proc/$1/task/*/children 2>/dev/null); do t $c; done; "
              "kill -KILL $1 2>/dev/null; }; t ",
              pid_text)},
      {"/bin/kill", "-KILL", pid_text},
      {"/usr/bin/kill", "-KILL", pid_text},
  };
  absl::Status kill_error = absl::UnavailableError("no kill command ran");
  for (const auto& killer : killers) {
    absl::StatusOr<int64_t> kpid = Spawn(hypervisor_, domain, killer, "", options_.command_timeout);
    if (!kpid.ok()) {
      kill_error = kpid.status();
      continue;
    }
    // Collect the killer's own status too, so qemu-ga frees its entry.
    absl::StatusOr<std::optional<json>> kdone =
        WaitExited(hypervisor_, domain, *kpid, absl::Now() + kReapTimeout, options_);
    absl::StatusOr<std::optional<json>> gone =
        WaitExited(hypervisor_, domain, *pid, absl::Now() + kReapTimeout, options_);
    if (gone.ok() && gone->has_value()) {
      return absl::DeadlineExceededError(
          StrCat("exec \"", argv[0], "\" did not finish before the deadline; guest pid ", *pid, " was killed"));
    }
    kill_error = !gone.ok()    ? gone.status()
                 : !kdone.ok() ? kdone.status()
                               : absl::UnavailableError(StrCat("\"", killer[0], "\" did not end pid ", *pid));
  }
  return absl::DeadlineExceededError(StrCat("exec \"", argv[0], "\" did not finish before the deadline and guest pid ",
                                            *pid, " could not be killed: ", kill_error.message()));
}

}  // namespace kvcri::runtime
