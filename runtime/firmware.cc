// Firmware choice and the VM's NVRAM copy: annotation and label parsing, OVMF file checks, swtpm lookup.
#include "runtime/firmware.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <vector>

#include "config/base/file_util.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"

namespace kvcri::runtime {

using base::StrCat;

namespace {

constexpr std::string_view kFirmwareNames = "\"bios\", \"uefi\" or \"uefi-secure\"";

bool IsReadableFile(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec) && ::access(p.c_str(), R_OK) == 0;
}

}  // namespace

std::string_view FirmwareName(Firmware f) {
  switch (f) {
    case Firmware::kBios:
      return "bios";
    case Firmware::kUefi:
      return "uefi";
    case Firmware::kUefiSecure:
      return "uefi-secure";
  }
  return "unknown";
}

std::optional<Firmware> ParseFirmwareName(std::string_view name) {
  for (Firmware f : {Firmware::kBios, Firmware::kUefi, Firmware::kUefiSecure}) {
    if (name == FirmwareName(f)) return f;
  }
  return std::nullopt;
}

absl::StatusOr<Firmware> ChooseFirmware(const std::map<std::string, std::string>& pod_annotations,
                                        const std::map<std::string, std::string>& image_labels,
                                        std::string_view image) {
  if (auto it = pod_annotations.find(std::string(kFirmwareAnnotation)); it != pod_annotations.end()) {
    std::optional<Firmware> f = ParseFirmwareName(it->second);
    if (!f) {
      return absl::InvalidArgumentError(
          StrCat("annotation ", kFirmwareAnnotation, " is \"", it->second, "\"; it must be ", kFirmwareNames));
    }
    return *f;
  }
  if (auto it = image_labels.find(std::string(kFirmwareLabel)); it != image_labels.end()) {
    std::optional<Firmware> f = ParseFirmwareName(it->second);
    if (!f) {
      return absl::InvalidArgumentError(StrCat("image \"", image, "\" has label ", kFirmwareLabel, " \"", it->second,
                                               "\", which must be ", kFirmwareNames, "; annotation ",
                                               kFirmwareAnnotation, " overrides it"));
    }
    return *f;
  }
  return Firmware::kBios;
}

absl::StatusOr<bool> WantsTpm(const std::map<std::string, std::string>& pod_annotations) {
  auto it = pod_annotations.find(std::string(kTpmAnnotation));
  if (it == pod_annotations.end()) return false;
  if (it->second != kTpmVersion) {
    return absl::InvalidArgumentError(StrCat("annotation ", kTpmAnnotation, " is \"", it->second,
                                             "\"; the only value is \"", kTpmVersion, "\" (a TPM 2.0)"));
  }
  return true;
}

UefiSpec UefiFilesFor(Firmware f, const config::VmConfig& vm, const std::filesystem::path& nvram) {
  UefiSpec u;
  const bool secure = f == Firmware::kUefiSecure;
  u.code = secure ? vm.uefi_secure_code : vm.uefi_code;
  u.vars_template = secure ? vm.uefi_secure_vars : vm.uefi_vars;
  u.nvram = nvram;
  return u;
}

absl::Status CheckUefiFiles(Firmware f, const UefiSpec& uefi) {
  const bool secure = f == Firmware::kUefiSecure;
  for (auto [key, path] : {std::pair<std::string_view, const std::filesystem::path*>{
                               secure ? "vm.uefi_secure_code" : "vm.uefi_code", &uefi.code},
                           {secure ? "vm.uefi_secure_vars" : "vm.uefi_vars", &uefi.vars_template}}) {
    if (!IsReadableFile(*path)) {
      return absl::FailedPreconditionError(StrCat("firmware ", FirmwareName(f), " needs \"", path->native(), "\" (",
                                                  key,
                                                  "), which is not a readable file: install the package ovmf "
                                                  "or set ",
                                                  key, " in the config"));
    }
  }
  return absl::OkStatus();
}

absl::Status CopyNvramTemplate(const UefiSpec& uefi) {
  absl::StatusOr<std::string> vars = base::ReadFile(uefi.vars_template);
  if (!vars.ok()) {
    return absl::Status(vars.status().code(),
                        StrCat("read the UEFI variable store template: ", vars.status().message()));
  }
  base::UniqueFd fd(::open(uefi.nvram.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, StrCat("create \"", uefi.nvram.native(), "\""));
  std::string_view left = *vars;
  while (!left.empty()) {
    ssize_t n = ::write(fd.get(), left.data(), left.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, StrCat("write \"", uefi.nvram.native(), "\""));
    left.remove_prefix(static_cast<size_t>(n));
  }
  if (::fsync(fd.get()) != 0) return absl::ErrnoToStatus(errno, StrCat("fsync \"", uefi.nvram.native(), "\""));
  return absl::OkStatus();
}

namespace {

absl::Status PwriteAll(int fd, std::string_view data, off_t at, const std::filesystem::path& path) {
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd, data.data(), data.size(), at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return absl::ErrnoToStatus(errno, StrCat("write \"", path.native(), "\""));
    data.remove_prefix(static_cast<size_t>(n));
    at += n;
  }
  return absl::OkStatus();
}

std::string NvramMark(Firmware f) {
  std::string mark = StrCat("kvcri-nvram 1 firmware=", FirmwareName(f), "\n");
  mark.resize(kNvramMarkBytes, '\0');
  return mark;
}

}  // namespace

absl::Status PrepareNvramDevice(const UefiSpec& uefi, Firmware f, std::string_view field, bool* initialised) {
  *initialised = false;
  absl::StatusOr<std::string> vars = base::ReadFile(uefi.vars_template);
  if (!vars.ok()) {
    return absl::Status(vars.status().code(),
                        StrCat("read the UEFI variable store template: ", vars.status().message()));
  }
  base::UniqueFd fd(::open(uefi.nvram.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, StrCat(field, ": open \"", uefi.nvram.native(), "\""));
  ASSIGN_OR_RETURN(const uint64_t size, base::FileOrBlockDeviceSize(fd.get(), uefi.nvram));
  const uint64_t need = vars->size() + kNvramMarkBytes;
  if (size < need) {
    return absl::InvalidArgumentError(StrCat(field, ": the device \"", uefi.nvram.native(), "\" has ", size,
                                             " bytes; the UEFI variable store needs ", need, " (",
                                             uefi.vars_template.native(), " and 512 bytes of ours)"));
  }
  char head[48] = {};
  char mark[kNvramMarkBytes] = {};
  if (::pread(fd.get(), head, sizeof head, 0) != static_cast<ssize_t>(sizeof head) ||
      ::pread(fd.get(), mark, sizeof mark, static_cast<off_t>(vars->size())) != static_cast<ssize_t>(sizeof mark)) {
    return absl::ErrnoToStatus(errno ? errno : EIO, StrCat("read \"", uefi.nvram.native(), "\""));
  }
  const std::string want = NvramMark(f);
  if (std::string_view(head + 40, 4) == "_FVH") {
    std::string_view have(mark, sizeof mark);
    if (have == want) return absl::OkStatus();
    if (have.starts_with("kvcri-nvram 1 firmware=")) {
      std::string_view kind = have.substr(23, have.find('\n') - 23);
      return absl::FailedPreconditionError(StrCat(
          field, ": the UEFI variable store on \"", uefi.nvram.native(), "\" was initialised for firmware ", kind,
          ", and this VM boots ", FirmwareName(f), "; the two OVMF builds keep different stores (use ", kind,
          ", or a new device)"));
    }
    // A store from elsewhere (another runtime, a restored backup): kept, and marked ours from now on.
    RETURN_IF_ERROR(PwriteAll(fd.get(), want, static_cast<off_t>(vars->size()), uefi.nvram));
  } else {
    RETURN_IF_ERROR(PwriteAll(fd.get(), *vars, 0, uefi.nvram));
    RETURN_IF_ERROR(PwriteAll(fd.get(), want, static_cast<off_t>(vars->size()), uefi.nvram));
    *initialised = true;
  }
  if (::fsync(fd.get()) != 0) return absl::ErrnoToStatus(errno, StrCat("fsync \"", uefi.nvram.native(), "\""));
  return absl::OkStatus();
}

absl::Status CheckSwtpmInstalled(std::string_view search_path) {
  std::vector<std::string> missing;
  for (const char* tool : {"swtpm", "swtpm_setup"}) {
    bool found = false;
    for (std::string_view rest = search_path; !found;) {
      size_t colon = rest.find(':');
      std::string_view dir = rest.substr(0, colon);
      if (!dir.empty()) found = ::access((std::filesystem::path(std::string(dir)) / tool).c_str(), X_OK) == 0;
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
    if (!found) missing.push_back(tool);
  }
  if (missing.empty()) return absl::OkStatus();
  std::string names;
  for (const std::string& m : missing) names += (names.empty() ? "" : ", ") + m;
  return absl::FailedPreconditionError(StrCat("annotation ", kTpmAnnotation, " asks for a TPM, but ", names,
                                              " (packages swtpm and swtpm-tools), which libvirt runs to emulate it, ",
                                              "is not installed in \"", search_path, "\""));
}

}  // namespace kvcri::runtime
