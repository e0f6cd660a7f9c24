// The CNI result cache on disk: one JSON file per ADD, looked up again by container ID and ifname.
#include "cni/cache.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <system_error>

#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"

namespace kvcri::cni {
namespace fs = std::filesystem;
using base::StrCat;
using nlohmann::json;

namespace {

constexpr char kKind[] = "kvcriCniCacheV1";

absl::Status Corrupt(std::string_view why) {
  return absl::InvalidArgumentError(StrCat("CNI cache entry: ", why));
}

}  // namespace

std::string CacheEntry::ToJson() const {
  json args = json::array();
  for (const auto& [k, v] : cni_args) args.push_back(json::array({k, v}));
  json doc = {
      {"kind", kKind},
      {"networkName", network_name},
      {"containerId", container_id},
      {"ifName", ifname},
      {"netns", netns},
      {"configSource", config_source},
      {"config", json::parse(config_json, nullptr, false)},
      {"cniArgs", std::move(args)},
      {"capabilityArgs", json::parse(capability_args_json, nullptr, false)},
      {"result", json::parse(result_json, nullptr, false)},
  };
  return doc.dump(2);
}

absl::StatusOr<CacheEntry> CacheEntry::FromJson(std::string_view text) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return Corrupt("not a JSON object");
  if (!doc.contains("kind") || !doc["kind"].is_string())
    return Corrupt("no \"kind\"");
  if (doc["kind"] != kKind) {
    return Corrupt(
        StrCat("unknown kind \"", doc["kind"].get<std::string>(), "\""));
  }
  CacheEntry e;
  for (auto [key, out] :
       {std::pair{"networkName", &e.network_name},
        std::pair{"containerId", &e.container_id},
        std::pair{"ifName", &e.ifname}, std::pair{"netns", &e.netns},
        std::pair{"configSource", &e.config_source}}) {
    if (!doc.contains(key) || !doc[key].is_string())
      return Corrupt(StrCat("no \"", key, "\""));
    *out = doc[key].get<std::string>();
  }
  for (auto [key, out] : {std::pair{"config", &e.config_json},
                          std::pair{"capabilityArgs", &e.capability_args_json},
                          std::pair{"result", &e.result_json}}) {
    if (!doc.contains(key) || !doc[key].is_object()) {
      return Corrupt(StrCat("\"", key, "\" is not an object"));
    }
    *out = doc[key].dump();
  }
  if (!doc.contains("cniArgs") || !doc["cniArgs"].is_array())
    return Corrupt("no \"cniArgs\"");
  for (const json& kv : doc["cniArgs"]) {
    if (!kv.is_array() || kv.size() != 2 || !kv[0].is_string() ||
        !kv[1].is_string()) {
      return Corrupt("a \"cniArgs\" entry is not a [key, value] pair");
    }
    e.cni_args.emplace_back(kv[0].get<std::string>(), kv[1].get<std::string>());
  }
  if (e.network_name.empty() || e.container_id.empty() || e.ifname.empty()) {
    return Corrupt("empty network, container id or ifname");
  }
  return e;
}

fs::path ResultCache::PathFor(std::string_view network,
                              std::string_view container_id,
                              std::string_view ifname) const {
  return dir_ / "results" / StrCat(network, "-", container_id, "-", ifname);
}

absl::Status ResultCache::Put(const CacheEntry& entry) {
  for (std::string_view part :
       {std::string_view(entry.network_name),
        std::string_view(entry.container_id), std::string_view(entry.ifname)}) {
    if (part.empty() || part.find('/') != std::string_view::npos ||
        part == "." || part == "..") {
      return absl::InvalidArgumentError(
          StrCat("CNI cache key part \"", part, "\" is not a plain file name"));
    }
  }
  for (const std::string* part : {&entry.config_json, &entry.capability_args_json,
                                 &entry.result_json}) {
    json doc = json::parse(*part, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
      return absl::InvalidArgumentError(
          StrCat("CNI cache entry for \"", entry.container_id,
                 "\": a config, capability or result document is not a JSON object"));
    }
  }
  RETURN_IF_ERROR(base::MakeDirs(dir_ / "results"));
  return base::WriteFileAtomic(
      PathFor(entry.network_name, entry.container_id, entry.ifname),
      entry.ToJson());
}

absl::StatusOr<CacheEntry> ResultCache::Get(std::string_view network,
                                            std::string_view container_id,
                                            std::string_view ifname) const {
  fs::path p = PathFor(network, container_id, ifname);
  ASSIGN_OR_RETURN(std::string text, base::ReadFile(p));
  absl::StatusOr<CacheEntry> e = CacheEntry::FromJson(text);
  if (!e.ok()) {
    return absl::InvalidArgumentError(
        StrCat(base::Sv(e.status().message()), " in \"", p.string(), "\""));
  }
  return e;
}

absl::StatusOr<std::vector<CacheEntry>> ResultCache::FindByContainer(
    std::string_view container_id, std::string_view ifname) const {
  std::vector<CacheEntry> out;
  const std::string suffix = StrCat("-", container_id, "-", ifname);
  fs::path results = dir_ / "results";
  std::error_code ec;
  std::vector<fs::path> files;
  for (fs::directory_iterator it(results, ec), end; !ec && it != end;
       it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.size() > suffix.size() && name.ends_with(suffix))
      files.push_back(it->path());
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return absl::ErrnoToStatus(
        ec.value(), StrCat("read CNI cache dir \"", results.string(), "\""));
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& p : files) {
    absl::StatusOr<std::string> text = base::ReadFile(p);
    absl::StatusOr<CacheEntry> e =
        text.ok() ? CacheEntry::FromJson(*text)
                  : absl::StatusOr<CacheEntry>(text.status());
    if (!e.ok()) {
      base::LogWarn(
          "skipping unreadable CNI cache entry",
          {{"path", p.string()}, {"error", std::string(e.status().message())}});
      continue;
    }
    // The name alone is ambiguous (names contain '-'); the content decides.
    if (e->container_id == container_id && e->ifname == ifname)
      out.push_back(*std::move(e));
  }
  return out;
}

absl::Status ResultCache::Remove(std::string_view network,
                                 std::string_view container_id,
                                 std::string_view ifname) {
  fs::path p = PathFor(network, container_id, ifname);
  std::error_code ec;
  if (!fs::exists(p, ec)) return absl::OkStatus();
  RETURN_IF_ERROR(base::RemoveFile(p));
  return base::SyncDir(p.parent_path());
}

}  // namespace kvcri::cni
