// kvcri-test-multi: a CNI meta-plugin for the tests that behaves like Multus (delegates per ifname, merged result).
//
// Multus is not packaged for Debian; this is the part of its behaviour the
// daemon sees. The network config names the delegates:
//
//   {"cniVersion": "1.0.0", "name": "multi", "type": "kvcri-test-multi",
//    "networks": [{"ifname": "eth0", "config": {"type": "bridge", ...}},
//                 {"ifname": "net1", "config": {"type": "bridge", ...}}]}
//
// ADD runs each delegate (found in CNI_PATH) with CNI_IFNAME set to its
// ifname (the first takes the runtime's CNI_IFNAME), cniVersion and a name
// "<name>-<ifname>" of its own, and prints one result: the interfaces one
// after the other, "ips" with "interface" re-indexed into that list, the
// routes of all, the first delegate's DNS. A failed ADD deletes what the
// earlier delegates added. DEL runs every delegate in reverse and reports the
// first failure. CHECK runs every delegate with its part of the prevResult.
// VERSION answers for 0.4.0 and 1.0.0.

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

using nlohmann::json;

struct Delegate {
  std::string ifname;
  json config;
};

struct RunResult {
  int exit_code = 0;
  std::string out;
};

[[noreturn]] void Fail(int code, const std::string& msg, const std::string& details = "") {
  std::cout << json{{"cniVersion", "1.0.0"}, {"code", code}, {"msg", msg}, {"details", details}}.dump() << "\n";
  std::exit(1);
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

std::string FindPlugin(const std::string& type) {
  std::stringstream path(Env("CNI_PATH"));
  for (std::string dir; std::getline(path, dir, ':');) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + type;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  Fail(7, "delegate plugin \"" + type + "\" not found in CNI_PATH", Env("CNI_PATH"));
}

bool WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Runs a delegate with `command` and `ifname`, the config on stdin; its
// stdout is returned, its stderr is ours.
RunResult Run(const std::string& command, const std::string& ifname, const json& config) {
  const std::string plugin = FindPlugin(config.value("type", ""));
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) Fail(11, "pipe", std::strerror(errno));
  pid_t pid = ::fork();
  if (pid < 0) Fail(11, "fork", std::strerror(errno));
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::setenv("CNI_COMMAND", command.c_str(), 1);
    ::setenv("CNI_IFNAME", ifname.c_str(), 1);
    ::execl(plugin.c_str(), plugin.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  // The configs are far below a pipe's buffer: write all, then read.
  const bool written = WriteAll(in[1], config.dump());
  ::close(in[1]);
  RunResult r;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    r.out.append(buf, static_cast<size_t>(n));
  }
  ::close(out[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  if (!written && r.exit_code == 0) Fail(11, "writing the config of \"" + plugin + "\" failed");
  return r;
}

std::vector<Delegate> Delegates(const json& conf) {
  std::vector<Delegate> out;
  auto it = conf.find("networks");
  if (it == conf.end() || !it->is_array() || it->empty()) Fail(7, "config has no \"networks\"");
  const std::string name = conf.value("name", "multi");
  const std::string version = conf.value("cniVersion", "1.0.0");
  const std::string runtime_ifname = Env("CNI_IFNAME");
  for (size_t i = 0; i < it->size(); ++i) {
    const json& n = (*it)[i];
    if (!n.is_object() || !n.contains("config") || !n["config"].is_object()) {
      Fail(7, "networks[" + std::to_string(i) + "] has no \"config\" object");
    }
    Delegate d;
    d.ifname = i == 0 && !runtime_ifname.empty() ? runtime_ifname : n.value("ifname", "");
    if (d.ifname.empty()) Fail(7, "networks[" + std::to_string(i) + "] has no \"ifname\"");
    d.config = n["config"];
    d.config["cniVersion"] = version;
    d.config["name"] = name + "-" + d.ifname;
    if (conf.contains("runtimeConfig")) d.config["runtimeConfig"] = conf["runtimeConfig"];
    out.push_back(std::move(d));
  }
  return out;
}

json ParseResult(const RunResult& r, const Delegate& d) {
  json j = json::parse(r.out, nullptr, false);
  if (j.is_discarded() || !j.is_object()) Fail(11, "delegate for \"" + d.ifname + "\" printed no result", r.out);
  return j;
}

int Del(const std::vector<Delegate>& delegates, size_t count) {
  std::optional<RunResult> first_failure;
  for (size_t i = count; i-- > 0;) {
    RunResult r = Run("DEL", delegates[i].ifname, delegates[i].config);
    if (r.exit_code != 0 && !first_failure) first_failure = r;
  }
  if (first_failure) {
    std::cout << first_failure->out;
    return first_failure->exit_code;
  }
  return 0;
}

int Add(const std::vector<Delegate>& delegates, const std::string& version) {
  json merged = {{"cniVersion", version},
                 {"interfaces", json::array()},
                 {"ips", json::array()},
                 {"routes", json::array()},
                 {"dns", json::object()}};
  for (size_t i = 0; i < delegates.size(); ++i) {
    const Delegate& d = delegates[i];
    RunResult r = Run("ADD", d.ifname, d.config);
    if (r.exit_code != 0) {
      // Roll back this one (a failed ADD may hold an IP) and the earlier ones.
      Del(delegates, i + 1);
      std::cout << r.out;
      return r.exit_code;
    }
    json res = ParseResult(r, d);
    const size_t base = merged["interfaces"].size();
    for (const json& iface : res.value("interfaces", json::array())) merged["interfaces"].push_back(iface);
    for (json ip : res.value("ips", json::array())) {
      if (ip.contains("interface") && ip["interface"].is_number_integer()) {
        ip["interface"] = ip["interface"].get<int>() + static_cast<int>(base);
      }
      merged["ips"].push_back(std::move(ip));
    }
    for (const json& route : res.value("routes", json::array())) merged["routes"].push_back(route);
    if (i == 0 && res.contains("dns")) merged["dns"] = res["dns"];
  }
  std::cout << merged.dump() << "\n";
  return 0;
}

// CHECK: each delegate gets the part of the merged prevResult that is its
// own interfaces (matched by the name it created in the sandbox).
int Check(const std::vector<Delegate>& delegates, const json& conf) {
  const json prev = conf.value("prevResult", json::object());
  const json ifaces = prev.value("interfaces", json::array());
  for (const Delegate& d : delegates) {
    json part = {{"cniVersion", d.config["cniVersion"]},
                 {"interfaces", json::array()},
                 {"ips", json::array()},
                 {"routes", json::array()}};
    // A delegate's interfaces are contiguous and end with its sandbox one.
    int sandbox_index = -1;
    for (size_t k = 0; k < ifaces.size(); ++k) {
      if (ifaces[k].value("name", "") == d.ifname && !ifaces[k].value("sandbox", "").empty()) {
        sandbox_index = static_cast<int>(k);
      }
    }
    if (sandbox_index < 0) Fail(11, "prevResult has no interface \"" + d.ifname + "\"");
    int start = sandbox_index;
    while (start > 0 && ifaces[static_cast<size_t>(start - 1)].value("sandbox", "").empty()) --start;
    for (int k = start; k <= sandbox_index; ++k) part["interfaces"].push_back(ifaces[static_cast<size_t>(k)]);
    for (json ip : prev.value("ips", json::array())) {
      int idx = ip.value("interface", -1);
      if (idx < start || idx > sandbox_index) continue;
      ip["interface"] = idx - start;
      part["ips"].push_back(std::move(ip));
    }
    json cfg = d.config;
    cfg["prevResult"] = part;
    RunResult r = Run("CHECK", d.ifname, cfg);
    if (r.exit_code != 0) {
      std::cout << r.out;
      return r.exit_code;
    }
  }
  return 0;
}

}  // namespace

int main() {
  const std::string command = Env("CNI_COMMAND");
  if (command == "VERSION") {
    std::cout << R"({"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]})" << "\n";
    return 0;
  }
  std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  json conf = json::parse(input, nullptr, false);
  if (conf.is_discarded() || !conf.is_object()) Fail(6, "network config is not a JSON object");
  std::vector<Delegate> delegates = Delegates(conf);
  if (command == "ADD") return Add(delegates, conf.value("cniVersion", "1.0.0"));
  if (command == "DEL") return Del(delegates, delegates.size());
  if (command == "CHECK") return Check(delegates, conf);
  Fail(4, "unknown CNI_COMMAND \"" + command + "\"");
}
