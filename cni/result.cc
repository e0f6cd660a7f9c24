// Parsing CNI results of every supported spec version into CniResult, and the Pod IPs in them.
#include "cni/result.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <nlohmann/json.hpp>

#include "config/base/str.h"

namespace kvcri::cni {
using base::StrCat;
using nlohmann::json;

namespace {

std::optional<std::array<int, 3>> ParseVersion(std::string_view v) {
  std::array<int, 3> out = {0, 0, 0};
  for (int i = 0; i < 3; ++i) {
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out[i]);
    if (ec != std::errc() || end == v.data()) return std::nullopt;
    v.remove_prefix(static_cast<size_t>(end - v.data()));
    if (i < 2) {
      if (v.empty() || v.front() != '.') return std::nullopt;
      v.remove_prefix(1);
    }
  }
  if (!v.empty()) return std::nullopt;
  return out;
}

std::string Str(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>()
                                            : std::string();
}

std::vector<std::string> Strs(const json& obj, const char* key) {
  std::vector<std::string> out;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_array()) return out;
  for (const json& v : *it) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

void ParseRoutes(const json& obj, std::vector<CniRoute>* out) {
  auto it = obj.find("routes");
  if (it == obj.end() || !it->is_array()) return;
  for (const json& r : *it) {
    if (r.is_object()) out->push_back({Str(r, "dst"), Str(r, "gw")});
  }
}

}  // namespace

bool IsSupportedCniVersion(std::string_view version) {
  return version == "0.3.0" || version == "0.3.1" || version == "0.4.0" ||
         version == "1.0.0" || version == "1.1.0";
}

bool CniVersionAtLeast(std::string_view version, std::string_view min) {
  std::optional<std::array<int, 3>> a = ParseVersion(version),
                                    b = ParseVersion(min);
  return a && b && *a >= *b;
}

absl::StatusOr<CniResult> ParseCniResult(std::string_view text,
                                         std::string_view what) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::InvalidArgumentError(StrCat(
        "CNI ", what, " is not a JSON object: \"", text.substr(0, 256), "\""));
  }
  CniResult out;
  out.cni_version = Str(doc, "cniVersion");
  out.raw_json = doc.dump();
  if (auto it = doc.find("interfaces"); it != doc.end() && it->is_array()) {
    for (const json& i : *it) {
      if (!i.is_object()) continue;
      CniInterface iface{Str(i, "name"), Str(i, "mac"), std::nullopt,
                         Str(i, "sandbox")};
      if (auto m = i.find("mtu"); m != i.end() && m->is_number_integer())
        iface.mtu = m->get<int>();
      out.interfaces.push_back(std::move(iface));
    }
  }
  if (auto it = doc.find("ips"); it != doc.end() && it->is_array()) {
    // 0.3.x/0.4.0 add "version": "4"/"6"; the address says as much.
    for (const json& ip : *it) {
      if (!ip.is_object()) continue;
      CniIpConfig c{Str(ip, "address"), Str(ip, "gateway"), std::nullopt};
      if (auto n = ip.find("interface");
          n != ip.end() && n->is_number_integer()) {
        c.interface = n->get<int>();
      }
      if (c.address.empty()) {
        return absl::InvalidArgumentError(
            StrCat("CNI ", what, ": an \"ips\" entry has no address"));
      }
      out.ips.push_back(std::move(c));
    }
  }
  // 0.2.0 and older: "ip4"/"ip6" objects with their own routes.
  for (const char* key : {"ip4", "ip6"}) {
    if (auto it = doc.find(key); it != doc.end() && it->is_object()) {
      out.ips.push_back({Str(*it, "ip"), Str(*it, "gateway"), std::nullopt});
      ParseRoutes(*it, &out.routes);
    }
  }
  ParseRoutes(doc, &out.routes);
  if (auto it = doc.find("dns"); it != doc.end() && it->is_object()) {
    out.dns.nameservers = Strs(*it, "nameservers");
    out.dns.domain = Str(*it, "domain");
    out.dns.search = Strs(*it, "search");
    out.dns.options = Strs(*it, "options");
  }
  return out;
}

std::vector<std::string> PodIps(const CniResult& result,
                                std::string_view ifname) {
  std::vector<std::string> v4, v6;
  for (const CniIpConfig& ip : result.ips) {
    if (ip.interface) {
      int idx = *ip.interface;
      if (idx < 0 || static_cast<size_t>(idx) >= result.interfaces.size())
        continue;
      const CniInterface& iface = result.interfaces[static_cast<size_t>(idx)];
      if (iface.sandbox.empty() || iface.name != ifname) continue;
    }
    std::string addr = ip.address.substr(0, ip.address.find('/'));
    (addr.find(':') == std::string::npos ? v4 : v6).push_back(std::move(addr));
  }
  v4.insert(v4.end(), v6.begin(), v6.end());
  return v4;
}

std::vector<std::string> SandboxInterfaces(const CniResult& result, std::string_view netns,
                                           std::string_view default_ifname) {
  std::vector<std::string> out;
  for (const CniInterface& iface : result.interfaces) {
    if (iface.name.empty() || iface.sandbox.empty() || iface.sandbox != netns) continue;
    if (std::find(out.begin(), out.end(), iface.name) == out.end()) out.push_back(iface.name);
  }
  if (out.empty()) out.emplace_back(default_ifname);
  return out;
}

}  // namespace kvcri::cni
