// Firmware choice (bios, uefi, uefi-secure) from a Pod annotation or an image label, the vTPM opt-in, a VM's NVRAM.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/config.h"
#include "runtime/hypervisor.h"

namespace kvcri::runtime {

// Pod annotation choosing the firmware; it wins over the image's label.
inline constexpr std::string_view kFirmwareAnnotation = "kubevirt-cri.io/firmware";
// Image config label with the firmware the image's disk needs.
inline constexpr std::string_view kFirmwareLabel = "io.kubevirt-cri.firmware";
// Pod annotation asking for a TPM; kTpmVersion is its only value.
inline constexpr std::string_view kTpmAnnotation = "kubevirt-cri.io/tpm";
inline constexpr std::string_view kTpmVersion = "2.0";

// "bios", "uefi", "uefi-secure": the values of the annotation and the label.
std::string_view FirmwareName(Firmware f);
std::optional<Firmware> ParseFirmwareName(std::string_view name);

// The firmware of a VM: the Pod's annotation, else the image's label, else
// kBios. InvalidArgument names the annotation, or the label and `image`,
// whose value is not one of the names.
absl::StatusOr<Firmware> ChooseFirmware(const std::map<std::string, std::string>& pod_annotations,
                                        const std::map<std::string, std::string>& image_labels, std::string_view image);

// Whether the Pod asks for a TPM (annotation kTpmAnnotation = kTpmVersion).
// InvalidArgument for any other value.
absl::StatusOr<bool> WantsTpm(const std::map<std::string, std::string>& pod_annotations);

// The OVMF files of `f` (not kBios) as [vm] configures them, with `nvram`
// as the VM's variable store.
UefiSpec UefiFilesFor(Firmware f, const config::VmConfig& vm, const std::filesystem::path& nvram);

// FailedPrecondition naming the file and its [vm] key when the code or the
// template of `uefi` is not a readable file (the ovmf package is missing).
absl::Status CheckUefiFiles(Firmware f, const UefiSpec& uefi);

// Creates uefi.nvram (0600, fsynced; it must not exist) as a copy of
// uefi.vars_template: the VM's own variable store, which the firmware then
// writes (boot entries, Secure Boot state).
absl::Status CopyNvramTemplate(const UefiSpec& uefi);

// A persistent VM's variable store on a block device (uefi.nvram,
// kubevirt-cri.io/nvram-device), made ready before each of its VMs:
//   - a device already holding an OVMF store (the firmware volume header
//     "_FVH" at offset 40) is left as it is, so boot entries and enrolled
//     keys follow the VM from Pod to Pod; our mark right after the store
//     names the firmware kind that initialised it, and another kind is
//     FailedPrecondition naming both (OVMF's Secure Boot build and the plain
//     one keep different stores);
//   - any other device (a new, zeroed volume) gets the template, then the mark,
//     fsynced; *initialised says so.
// InvalidArgument naming `field` when the device is smaller than the template
// plus the mark's 512 bytes. A regular file works too (tests).
absl::Status PrepareNvramDevice(const UefiSpec& uefi, Firmware f, std::string_view field, bool* initialised);
inline constexpr size_t kNvramMarkBytes = 512;

// FailedPrecondition naming what is missing when swtpm or swtpm_setup
// (packages swtpm, swtpm-tools), which libvirt runs for a vTPM, is not in
// `search_path` (a PATH-like list).
absl::Status CheckSwtpmInstalled(std::string_view search_path);

}  // namespace kvcri::runtime
