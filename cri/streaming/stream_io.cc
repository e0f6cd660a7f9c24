// The messages every streaming protocol shares: the exit status JSON of remotecommand v4+ and resize events.
#include "cri/streaming/stream_io.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace kvcri::streaming {
namespace {

using json = nlohmann::json;

}  // namespace

std::string StatusJson(const CommandResult& result) {
  json j = {{"metadata", json::object()}};
  if (!result.status.ok()) {
    const std::string message = absl::StrCat("Internal error occurred: ", result.status.message());
    j["status"] = "Failure";
    j["message"] = message;
    j["reason"] = "InternalError";
    j["details"] = {{"causes", json::array({{{"message", std::string(result.status.message())}}})}};
    j["code"] = 500;
  } else if (result.exit_code != 0) {
    j["status"] = "Failure";
    j["message"] = absl::StrCat("command terminated with non-zero exit code: exit status ", result.exit_code);
    j["reason"] = "NonZeroExitCode";
    j["details"] = {{"causes", json::array({{{"reason", "ExitCode"}, {"message", std::to_string(result.exit_code)}}})}};
  } else {
    j["status"] = "Success";
  }
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string LegacyErrorText(const CommandResult& result) {
  if (!result.status.ok()) return std::string(result.status.message());
  if (result.exit_code != 0) return absl::StrCat("command terminated with non-zero exit code: exit status ", result.exit_code);
  return "";
}

absl::StatusOr<TerminalSize> ParseTerminalSize(std::string_view text) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return absl::InvalidArgumentError("resize message is not a JSON object");
  TerminalSize size;
  for (auto [key, out] : {std::pair{"Width", &size.width}, std::pair{"Height", &size.height}}) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_unsigned() || it->get<uint64_t>() > 0xffff) {
      return absl::InvalidArgumentError(absl::StrCat("resize message field \"", key, "\" is missing or not a uint16"));
    }
    *out = static_cast<uint16_t>(it->get<uint64_t>());
  }
  return size;
}

}  // namespace kvcri::streaming
