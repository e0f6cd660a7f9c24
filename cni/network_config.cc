// Parsing CNI .conf/.conflist files and finding the node's default network among them.
#include "cni/network_config.h"

#include <algorithm>
#include <cctype>
#include <system_error>

#include <nlohmann/json.hpp>

#include "config/base/str.h"
#include "absl/strings/str_join.h"
#include "cni/result.h"
#include "config/base/file_util.h"

namespace kvcri::cni {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

absl::Status Bad(const fs::path& source, std::string_view why) {
  return absl::InvalidArgumentError(
      base::StrCat("CNI config \"", source.string(), "\": ", why));
}

}  // namespace

absl::StatusOr<NetworkConfigList> ParseNetworkConfig(std::string_view text,
                                                     const fs::path& source) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return Bad(source, "not a JSON object");
  bool is_list = source.extension() == ".conflist";
  if (is_list && !doc.contains("plugins")) return Bad(source, "missing \"plugins\"");
  if (!is_list) {
    // A single plugin config: wrap it as a list of one.
    if (!doc.contains("type") || !doc["type"].is_string()) return Bad(source, "missing \"type\"");
    json plugin = doc;
    json list = {{"cniVersion", doc.contains("cniVersion") ? doc["cniVersion"] : json("")},
                 {"name", doc.contains("name") ? doc["name"] : json("")},
                 {"plugins", json::array({plugin})}};
    doc = std::move(list);
  }
  NetworkConfigList out;
  out.source = source;
  if (!doc.contains("name") || !doc["name"].is_string() || doc["name"].get<std::string>().empty())
    return Bad(source, "missing \"name\"");
  out.name = doc["name"].get<std::string>();
  for (char c : out.name) {
    // The spec's rule for network names; they also become cache file names.
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '.' || c == '-';
    if (!ok) return Bad(source, base::StrCat("network name \"", out.name, "\" has a character other than [A-Za-z0-9_.-]"));
  }
  if (!std::isalnum(static_cast<unsigned char>(out.name[0])))
    return Bad(source, base::StrCat("network name \"", out.name, "\" must start with a letter or digit"));
  if (doc.contains("cniVersion") && doc["cniVersion"].is_string())
    out.cni_version = doc["cniVersion"].get<std::string>();
  if (!IsSupportedCniVersion(out.cni_version))
    return Bad(source, base::StrCat("unsupported cniVersion \"", out.cni_version,
                                    "\" (supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0)"));
  if (doc.contains("disabled") && doc["disabled"].is_boolean() && doc["disabled"].get<bool>())
    return Bad(source, "the network list is disabled");
  const json& plugins = doc["plugins"];
  if (!plugins.is_array() || plugins.empty()) return Bad(source, "\"plugins\" is not a non-empty array");
  for (const json& p : plugins) {
    if (!p.is_object() || !p.contains("type") || !p["type"].is_string())
      return Bad(source, "a plugin has no \"type\"");
    out.plugin_types.push_back(p["type"].get<std::string>());
  }
  out.json = doc.dump();
  return out;
}

absl::StatusOr<NetworkConfigList> FindDefaultNetwork(const fs::path& conf_dir) {
  std::error_code ec;
  std::vector<fs::path> files;
  for (fs::directory_iterator it(conf_dir, ec), end; !ec && it != end; it.increment(ec)) {
    fs::path p = it->path();
    std::string ext = p.extension().string();
    if (ext == ".conflist" || ext == ".conf" || ext == ".json") files.push_back(p);
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return absl::ErrnoToStatus(ec.value(), base::StrCat("read CNI config dir \"", conf_dir.string(), "\""));
  }
  std::sort(files.begin(), files.end());
  std::vector<std::string> skipped;
  for (const fs::path& p : files) {
    absl::StatusOr<std::string> text = base::ReadFile(p);
    if (!text.ok()) {
      skipped.push_back(std::string(text.status().message()));
      continue;
    }
    absl::StatusOr<NetworkConfigList> parsed = ParseNetworkConfig(*text, p);
    if (parsed.ok()) return parsed;
    skipped.push_back(std::string(parsed.status().message()));
  }
  std::string msg = base::StrCat("no valid CNI network config in \"", conf_dir.string(), "\"");
  if (skipped.empty()) return absl::NotFoundError(msg);
  // Files exist but none is usable: that is a configuration error.
  absl::StrAppend(&msg, " (", absl::StrJoin(skipped, "; "), ")");
  return absl::InvalidArgumentError(msg);
}

}  // namespace kvcri::cni
