// containerd-shim-kubevirt-v1 start/delete plumbing: Go flags, socket address, grouping id, address file, delete reply.
#include "shim/containerd/bootstrap.h"

#include <openssl/evp.h>

#include <algorithm>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/base/file_util.h"
#include "config/base/str.h"
#include "shim/containerd/names.h"
#include "shim/containerd/proto/task.pb.h"

namespace kvcri::shim::containerd {
namespace {

using base::StrCat;

// Go's strconv.ParseBool, which `flag` uses for `-debug=<value>`.
std::optional<bool> ParseGoBool(std::string_view v) {
  if (v == "1" || v == "t" || v == "T" || v == "TRUE" || v == "true" || v == "True") return true;
  if (v == "0" || v == "f" || v == "F" || v == "FALSE" || v == "false" || v == "False") return false;
  return std::nullopt;
}

// The string flag called `name`, or nullptr when it is not one of ours.
std::string* StringFlag(ShimArgs& args, std::string_view name) {
  if (name == "namespace") return &args.namespace_name;
  if (name == "address") return &args.address;
  if (name == "publish-binary") return &args.publish_binary;
  if (name == "id") return &args.id;
  if (name == "bundle") return &args.bundle;
  if (name == "socket") return &args.socket;
  return nullptr;
}

bool* BoolFlag(ShimArgs& args, std::string_view name) {
  if (name == "debug") return &args.debug;
  if (name == "v") return &args.version;
  return nullptr;
}

std::string LowerHex(const unsigned char* bytes, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[bytes[i] >> 4]);
    out.push_back(kDigits[bytes[i] & 0xf]);
  }
  return out;
}

absl::StatusOr<std::string> Sha256Hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr) != 1) {
    return absl::InternalError("sha256 of the shim socket's key failed in libcrypto");
  }
  return LowerHex(digest, len);
}

absl::Status CheckSocketPathLength(std::string_view path) {
  if (path.size() > kSocketPathLimit) {
    return absl::InvalidArgumentError(StrCat("socket path \"", path, "\" is ", path.size(),
                                             " bytes, above containerd's limit of ", kSocketPathLimit));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ShimArgs> ParseShimArgs(int argc, const char* const* argv) {
  ShimArgs args;
  std::vector<std::string_view> words;
  for (int i = 1; i < argc; ++i) words.emplace_back(argv[i]);

  size_t i = 0;
  while (i < words.size()) {
    std::string_view word = words[i];
    // Go: "-" alone and anything not starting with '-' is the first non-flag.
    if (word.size() < 2 || word[0] != '-') break;
    size_t dashes = word[1] == '-' ? 2 : 1;
    if (dashes == 2 && word.size() == 2) {  // "--" ends the flags and is consumed
      ++i;
      break;
    }
    std::string_view body = word.substr(dashes);
    if (body.empty() || body[0] == '-' || body[0] == '=') {
      return absl::InvalidArgumentError(StrCat("bad flag syntax \"", word, "\""));
    }
    ++i;
    std::string_view name = body;
    std::optional<std::string_view> value;
    if (size_t eq = body.find('='); eq != std::string_view::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
    }
    if (bool* flag = BoolFlag(args, name)) {
      // A bool flag never takes the next word: `-debug start` is debug + start.
      if (!value) {
        *flag = true;
        continue;
      }
      std::optional<bool> b = ParseGoBool(*value);
      if (!b) {
        return absl::InvalidArgumentError(StrCat("flag -", name, " has the invalid boolean value \"", *value, "\""));
      }
      *flag = *b;
      continue;
    }
    std::string* flag = StringFlag(args, name);
    if (flag == nullptr) {
      return absl::InvalidArgumentError(StrCat("flag -", name, " is not a flag of this shim"));
    }
    if (!value) {
      // Go takes the next word whatever it looks like: `-id -x` sets id "-x".
      if (i == words.size()) return absl::InvalidArgumentError(StrCat("flag -", name, " needs a value"));
      value = words[i++];
    }
    *flag = std::string(*value);
  }

  if (i < words.size()) {
    std::string_view sub = words[i++];
    if (sub != kSubcommandStart && sub != kSubcommandDelete) {
      // runc's shim serves on any other word; starting a server nobody asked
      // for would hide the mistake, so we refuse.
      return absl::InvalidArgumentError(
          StrCat("subcommand \"", sub, "\" is not one of \"start\", \"delete\" (or none, to serve)"));
    }
    args.subcommand = std::string(sub);
  }
  if (i < words.size()) {
    return absl::InvalidArgumentError(
        StrCat("unexpected argument \"", words[i], "\" after the subcommand \"", args.subcommand, "\""));
  }

  if (args.version) return args;  // -v prints the version: nothing else matters
  if (args.namespace_name.empty()) return absl::InvalidArgumentError("flag -namespace is empty or missing");
  if (!args.subcommand.empty() && args.id.empty()) {
    return absl::InvalidArgumentError(StrCat("flag -id is empty or missing (needed by \"", args.subcommand, "\")"));
  }
  if (args.subcommand == kSubcommandStart && args.address.empty()) {
    return absl::InvalidArgumentError("flag -address is empty or missing (needed by \"start\")");
  }
  return args;
}

std::string CleanPath(std::string_view path) {
  // A transcription of Go's path.Clean: `out` is the result so far, `dotdot`
  // the length below which ".." may not back up (past a leading "/" or a
  // prefix of ".." elements of a relative path).
  if (path.empty()) return ".";
  const bool rooted = path[0] == '/';
  const size_t n = path.size();
  std::string out;
  out.reserve(n);
  size_t r = 0;
  size_t dotdot = 0;
  if (rooted) {
    out.push_back('/');
    r = 1;
    dotdot = 1;
  }
  while (r < n) {
    if (path[r] == '/') {
      ++r;  // empty element
    } else if (path[r] == '.' && (r + 1 == n || path[r + 1] == '/')) {
      ++r;  // "." element
    } else if (path[r] == '.' && path[r + 1] == '.' && (r + 2 == n || path[r + 2] == '/')) {
      r += 2;  // ".." element: back up one element if we can
      if (out.size() > dotdot) {
        size_t w = out.size() - 1;
        while (w > dotdot && out[w] != '/') --w;
        out.resize(w);
      } else if (!rooted) {
        if (!out.empty()) out.push_back('/');
        out.append("..");
        dotdot = out.size();
      }
    } else {
      if ((rooted && out.size() != 1) || (!rooted && !out.empty())) out.push_back('/');
      for (; r < n && path[r] != '/'; ++r) out.push_back(path[r]);
    }
  }
  if (out.empty()) return ".";
  return out;
}

std::string JoinPath(std::string_view a, std::string_view b, std::string_view c) {
  std::string joined;
  for (std::string_view e : {a, b, c}) {
    if (e.empty()) continue;
    if (!joined.empty()) joined.push_back('/');
    joined.append(e);
  }
  if (joined.empty()) return "";
  return CleanPath(joined);
}

absl::StatusOr<std::string> SocketAddress(std::string_view address, std::string_view ns, std::string_view group_id) {
  // Empty parts would not fail in Go (Join skips them) but would silently
  // merge the sockets of different shims.
  if (address.empty()) return absl::InvalidArgumentError("flag -address is empty: no socket address to derive");
  if (ns.empty()) return absl::InvalidArgumentError("flag -namespace is empty: no socket address to derive");
  if (group_id.empty()) return absl::InvalidArgumentError("the grouping id is empty: no socket address to derive");
  absl::StatusOr<std::string> hex = Sha256Hex(JoinPath(address, ns, group_id));
  if (!hex.ok()) return hex.status();
  std::string path = StrCat(kSocketDir, "/", *hex);
  if (absl::Status s = CheckSocketPathLength(path); !s.ok()) return s;
  return StrCat("unix://", path);
}

absl::StatusOr<std::string> SocketPathOf(std::string_view address) {
  constexpr std::string_view kScheme = "unix://";
  if (address.substr(0, kScheme.size()) != kScheme) {
    return absl::InvalidArgumentError(
        StrCat("address \"", address,
               "\" has no unix:// and would be dialled as an abstract socket; this shim serves filesystem "
               "sockets only (CVE-2020-15257)"));
  }
  std::string_view path = address.substr(kScheme.size());
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(StrCat("address \"", address, "\" does not name an absolute socket path"));
  }
  if (path.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError(StrCat("address \"", address, "\" has a NUL byte in its path"));
  }
  if (absl::Status s = CheckSocketPathLength(path); !s.ok()) return s;
  return std::string(path);
}

absl::StatusOr<std::string> GroupingId(std::string_view config_json, std::string_view task_id) {
  using nlohmann::json;
  if (config_json.size() > kMaxConfigJsonBytes) {
    return absl::InvalidArgumentError(
        StrCat("config.json is ", config_json.size(), " bytes, above the bound of ", kMaxConfigJsonBytes));
  }
  // No exceptions: a parse error is a discarded value. nlohmann 3.11 parses
  // and destroys iteratively, so deep nesting does not exhaust the stack.
  json spec = json::parse(config_json.begin(), config_json.end(), /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (spec.is_discarded()) return absl::InvalidArgumentError("config.json is not valid JSON");
  if (!spec.is_object()) return absl::InvalidArgumentError("config.json is not a JSON object");
  std::string group(task_id);
  std::string_view source = "flag -id";
  if (auto it = spec.find("annotations"); it != spec.end() && !it->is_null()) {
    if (!it->is_object()) return absl::InvalidArgumentError("config.json annotations is not a JSON object");
    // Go unmarshals annotations into map[string]string: any non-string value fails the whole spec.
    for (const auto& [key, value] : it->items()) {
      if (!value.is_string()) {
        return absl::InvalidArgumentError(StrCat("config.json annotation \"", key, "\" is not a string"));
      }
    }
    for (std::string_view key : {kAnnotationShimGroup, kAnnotationSandboxId}) {
      if (auto a = it->find(std::string(key)); a != it->end()) {
        group = a->get<std::string>();
        source = key;
        break;  // present, even if empty, wins: runc's rule (empty is refused below)
      }
    }
  }
  if (group.empty()) return absl::InvalidArgumentError(StrCat("grouping id from ", source, " is empty"));
  return group;
}

absl::StatusOr<std::string> ReadBundleConfig(const std::filesystem::path& bundle_dir) {
  const std::filesystem::path path = bundle_dir / kBundleConfigFile;
  absl::StatusOr<std::string> text = base::ReadFileAtMost(path, kMaxConfigJsonBytes);
  if (absl::IsOutOfRange(text.status())) {
    return absl::InvalidArgumentError(
        StrCat("config.json \"", path.string(), "\" is larger than the bound of ", kMaxConfigJsonBytes, " bytes"));
  }
  return text;
}

absl::Status WriteAddressFile(const std::filesystem::path& bundle_dir, std::string_view address) {
  if (absl::StatusOr<std::string> path = SocketPathOf(address); !path.ok()) return path.status();
  // WriteFileAtomic's temp name is unique (".address.tmpXXXXXX"), unlike the
  // fixed ".address" of containerd's shims, whose O_EXCL open fails for good
  // once a crash has left that file behind.
  return base::WriteFileAtomic(bundle_dir / kBundleAddressFile, address, 0644);
}

absl::StatusOr<std::string> SocketPathInAddressFile(const std::filesystem::path& bundle_dir) {
  absl::StatusOr<std::string> address = base::ReadFileAtMost(bundle_dir / kBundleAddressFile, 4096);
  if (!address.ok()) return address.status();
  // Written without a newline by us; tolerate one written by hand.
  while (!address->empty() && (address->back() == '\n' || address->back() == ' ')) address->pop_back();
  return SocketPathOf(*address);
}

void ToTimestamp(absl::Time t, google::protobuf::Timestamp* out) {
  // google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
  constexpr int64_t kMinSeconds = -62135596800;
  constexpr int64_t kMaxSeconds = 253402300799;
  const absl::Time min = absl::FromUnixSeconds(kMinSeconds);
  const absl::Time max = absl::FromUnixSeconds(kMaxSeconds) + absl::Nanoseconds(999999999);
  t = std::clamp(t, min, max);
  // ToUnixSeconds rounds toward the infinite past, so nanos is in [0, 1e9).
  int64_t seconds = absl::ToUnixSeconds(t);
  int64_t nanos = absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(seconds));
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(nanos));
}

std::string EncodeDeleteResponse(uint32_t pid, uint32_t exit_status, absl::Time exited_at) {
  pb::DeleteResponse response;
  response.set_pid(pid);
  response.set_exit_status(exit_status);
  ToTimestamp(exited_at, response.mutable_exited_at());
  return response.SerializeAsString();
}

}  // namespace kvcri::shim::containerd
