// BuildDomainXml: VmSpec validated and written as libvirt domain XML; our metadata parsed back.
#include "runtime/domain_xml.h"

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <cstdio>
#include <initializer_list>
#include <memory>

#include "config/base/str.h"
#include "runtime/agent/agent_client.h"
#include "runtime/xml_writer.h"

namespace kvcri::runtime {

using base::StrCat;

namespace {

// "0x10": libvirt's PCI address notation.
std::string PciSlot(size_t slot) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02zx", slot);
  return buf;
}

constexpr std::string_view kMetadataVersion = "1";

absl::Status CheckText(std::string_view field, std::string_view value) {
  if (!IsXmlSafe(value)) {
    return absl::InvalidArgumentError(StrCat("vm spec ", field, " contains control characters"));
  }
  return absl::OkStatus();
}

bool IsOneOf(std::string_view v, std::initializer_list<std::string_view> allowed) {
  for (std::string_view a : allowed) {
    if (v == a) return true;
  }
  return false;
}

absl::Status ValidateDiskModes(size_t i, const DiskSpec& d) {
  if (!IsOneOf(d.cache, {"", "none", "writeback", "writethrough", "directsync", "unsafe"})) {
    return absl::InvalidArgumentError(StrCat("vm spec disks[", i, "].cache \"", d.cache, "\" is unknown"));
  }
  if (!IsOneOf(d.io, {"", "native", "io_uring", "threads"})) {
    return absl::InvalidArgumentError(StrCat("vm spec disks[", i, "].io \"", d.io, "\" is unknown"));
  }
  // QEMU's Linux AIO needs O_DIRECT; libvirt rejects io='native' otherwise.
  if (d.io == "native" && d.cache != "none" && d.cache != "directsync") {
    return absl::InvalidArgumentError(
        StrCat("vm spec disks[", i, "].io \"native\" needs cache \"none\" or \"directsync\""));
  }
  return absl::OkStatus();
}

absl::Status ValidateFilesystems(const VmSpec& spec) {
  for (size_t i = 0; i < spec.filesystems.size(); ++i) {
    const FilesystemSpec& f = spec.filesystems[i];
    const std::string field = StrCat("filesystems[", i, "]");
    if (!f.source_dir.is_absolute()) {
      return absl::InvalidArgumentError(
          StrCat("vm spec ", field, ".source_dir \"", f.source_dir.native(), "\" is not absolute"));
    }
    if (absl::Status s = CheckText(StrCat(field, ".source_dir"), f.source_dir.native()); !s.ok()) return s;
    if (absl::Status s = CheckText(StrCat(field, ".virtiofsd"), f.virtiofsd.native()); !s.ok()) return s;
    if (!IsValidMountTag(f.tag)) {
      return absl::InvalidArgumentError(StrCat("vm spec ", field, ".tag \"", f.tag, "\" is not 1 to ",
                                               kMaxMountTagLength, " characters of [A-Za-z0-9._-]"));
    }
    for (size_t j = 0; j < i; ++j) {
      if (spec.filesystems[j].tag == f.tag) {
        return absl::InvalidArgumentError(StrCat("vm spec ", field, ".tag \"", f.tag, "\" repeats filesystems[", j, "]"));
      }
    }
    if (f.driver == FsDriver::kVirtiofs && spec.uid != 0) {
      // libvirt 9.0 runs virtiofsd as root whatever QEMU's label: a guest
      // could chmod 4755 a root-owned file it created there.
      return absl::InvalidArgumentError(
          StrCat("vm spec ", field, " is virtiofs in a VM confined to uid ", spec.uid,
                 ", but virtiofsd would serve it as root; confined VMs share directories over 9p"));
    }
    if (f.driver == FsDriver::kVirtiofs && f.read_only) {
      // libvirt 9.0 refuses <readonly/> with virtiofs (and Debian 12's C
      // virtiofsd has no read-only mode): read-only shares use 9p.
      return absl::InvalidArgumentError(StrCat("vm spec ", field, " is read-only virtiofs, which libvirt cannot do"));
    }
  }
  return absl::OkStatus();
}

// A socket QEMU (or libvirt for it) binds: absolute, and short enough for
// sockaddr_un, which libvirt would otherwise refuse only at start.
absl::Status ValidateSocketPath(std::string_view field, const std::filesystem::path& path) {
  if (path.empty()) return absl::OkStatus();
  if (!path.is_absolute()) {
    return absl::InvalidArgumentError(StrCat("vm spec ", field, " \"", path.native(), "\" is not absolute"));
  }
  if (path.native().size() > kMaxUnixSocketPathLength) {
    return absl::InvalidArgumentError(StrCat("vm spec ", field, " \"", path.native(), "\" is ", path.native().size(),
                                             " bytes, longer than a unix socket path may be (",
                                             kMaxUnixSocketPathLength, ")"));
  }
  return CheckText(field, path.native());
}

absl::Status ValidateFirmware(const VmSpec& spec) {
  if (spec.tpm && spec.uid != 0) {
    // libvirt 9.0 hands swtpm's socket to QEMU only by relabeling, which our
    // qemu.conf turns off (dynamic_ownership = 0, relabel='no').
    return absl::InvalidArgumentError(
        StrCat("vm spec has a TPM in a VM confined to uid ", spec.uid, ", whose QEMU could not open swtpm's socket"));
  }
  const UefiSpec& u = spec.uefi;
  if (spec.firmware == Firmware::kBios) {
    if (!u.code.empty() || !u.vars_template.empty() || !u.nvram.empty()) {
      return absl::InvalidArgumentError("vm spec has UEFI files but firmware bios");
    }
    return absl::OkStatus();
  }
  if (spec.firmware != Firmware::kUefi && spec.firmware != Firmware::kUefiSecure) {
    return absl::InvalidArgumentError(StrCat("vm spec firmware ", static_cast<int>(spec.firmware), " is unknown"));
  }
  for (auto [field, path] : {std::pair<std::string_view, const std::filesystem::path*>{"uefi.code", &u.code},
                             {"uefi.vars_template", &u.vars_template},
                             {"uefi.nvram", &u.nvram}}) {
    if (!path->is_absolute()) {
      return absl::InvalidArgumentError(StrCat("vm spec ", field, " \"", path->native(), "\" is not absolute"));
    }
    if (absl::Status s = CheckText(field, path->native()); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Validate(const VmSpec& spec) {
  if (spec.name.empty()) return absl::InvalidArgumentError("vm spec name is empty");
  if (spec.name.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(StrCat("vm spec name \"", spec.name, "\" contains '/'"));
  }
  for (auto [field, value] : {std::pair<std::string_view, std::string_view>{"name", spec.name},
                              {"pod_id", spec.pod_id},
                              {"container_id", spec.container_id},
                              {"pod_namespace", spec.pod_namespace},
                              {"pod_name", spec.pod_name},
                              {"cmdline", spec.cmdline},
                              {"kernel", spec.kernel.native()},
                              {"initrd", spec.initrd.native()},
                              {"console_log", spec.console_log.native()}}) {
    if (absl::Status s = CheckText(field, value); !s.ok()) return s;
  }
  if (absl::Status s = ValidateSocketPath("console_socket", spec.console_socket); !s.ok()) return s;
  if (absl::Status s = ValidateSocketPath("agent_socket", spec.agent_socket); !s.ok()) return s;
  if (absl::Status s = ValidateSocketPath("qga_socket", spec.qga_socket); !s.ok()) return s;
  if (!spec.qga_socket.empty() && (spec.qga_socket == spec.agent_socket || spec.qga_socket == spec.console_socket)) {
    return absl::InvalidArgumentError("vm spec qga_socket is the same path as another socket");
  }
  if (!spec.agent_socket.empty() && spec.agent_socket == spec.console_socket) {
    return absl::InvalidArgumentError("vm spec agent_socket and console_socket are the same path");
  }
  if (spec.vcpus < 1) return absl::InvalidArgumentError(StrCat("vm spec vcpus ", spec.vcpus, " is below 1"));
  if (spec.max_vcpus > 240) {
    return absl::InvalidArgumentError(StrCat("vm spec max_vcpus ", spec.max_vcpus, " is above 240 (i440fx)"));
  }
  if (spec.memory_mib < 16) {
    return absl::InvalidArgumentError(StrCat("vm spec memory_mib ", spec.memory_mib, " is below 16"));
  }
  if ((spec.uid == 0) != (spec.gid == 0)) {
    return absl::InvalidArgumentError(StrCat("vm spec uid ", spec.uid, " and gid ", spec.gid, " must both be 0 or not"));
  }
  if (spec.accel != config::Accelerator::kKvm && spec.accel != config::Accelerator::kTcg) {
    return absl::InvalidArgumentError(
        StrCat("vm spec accel \"", config::AcceleratorName(spec.accel), "\" is neither kvm nor tcg"));
  }
  if (!spec.initrd.empty() && spec.kernel.empty()) {
    return absl::InvalidArgumentError("vm spec has an initrd but no kernel");
  }
  int boot_disks = 0;
  for (size_t i = 0; i < spec.disks.size(); ++i) {
    const DiskSpec& d = spec.disks[i];
    if (d.path.empty()) return absl::InvalidArgumentError(StrCat("vm spec disks[", i, "].path is empty"));
    if (d.format != "qcow2" && d.format != "raw") {
      return absl::InvalidArgumentError(
          StrCat("vm spec disks[", i, "].format \"", d.format, "\" is neither qcow2 nor raw"));
    }
    if (absl::Status s = CheckText(StrCat("disks[", i, "].path"), d.path.native()); !s.ok()) return s;
    if (absl::Status s = CheckText(StrCat("disks[", i, "].serial"), d.serial); !s.ok()) return s;
    if (d.serial.size() > kMaxDiskSerialLength) {
      return absl::InvalidArgumentError(StrCat("vm spec disks[", i, "].serial \"", d.serial, "\" is longer than ",
                                               kMaxDiskSerialLength, " bytes (virtio-blk's limit)"));
    }
    if (absl::Status s = ValidateDiskModes(i, d); !s.ok()) return s;
    if (d.boot) ++boot_disks;
  }
  if (boot_disks > 1) return absl::InvalidArgumentError("vm spec has more than one boot disk");
  if (spec.kernel.empty() && boot_disks == 0) {
    return absl::InvalidArgumentError("vm spec has neither a kernel nor a boot disk");
  }
  if (absl::Status s = ValidateFilesystems(spec); !s.ok()) return s;
  if (absl::Status s = ValidateFirmware(spec); !s.ok()) return s;
  if (spec.nics.size() > kMaxNics) {
    return absl::InvalidArgumentError(
        StrCat("vm spec has ", spec.nics.size(), " nics; at most ", kMaxNics, " fit their PCI slots"));
  }
  for (size_t i = 0; i < spec.nics.size(); ++i) {
    const NicSpec& n = spec.nics[i];
    if (n.tap_name.empty()) return absl::InvalidArgumentError(StrCat("vm spec nics[", i, "].tap_name is empty"));
    if (absl::Status s = CheckText(StrCat("nics[", i, "].tap_name"), n.tap_name); !s.ok()) return s;
    if (absl::Status s = CheckText(StrCat("nics[", i, "].mac"), n.mac); !s.ok()) return s;
    if (n.mtu < 0) return absl::InvalidArgumentError(StrCat("vm spec nics[", i, "].mtu ", n.mtu, " is negative"));
  }
  return absl::OkStatus();
}

bool NeedsSharedMemory(const VmSpec& spec) {
  for (const FilesystemSpec& f : spec.filesystems) {
    if (f.driver == FsDriver::kVirtiofs) return true;
  }
  return false;
}

void WriteFilesystem(XmlWriter& w, const FilesystemSpec& f) {
  if (f.driver == FsDriver::kVirtiofs) {
    w.Open("filesystem", {{"type", "mount"}, {"accessmode", "passthrough"}});
    w.Leaf("driver", {{"type", "virtiofs"}, {"queue", "1024"}});
    // libvirt starts virtiofsd before QEMU and kills it with the domain; it
    // exits by itself when QEMU closes the vhost-user socket. Sandbox
    // "namespace": virtiofsd pivot_roots into the shared directory, so no
    // path, including a symlink the guest made, resolves outside it.
    if (!f.virtiofsd.empty()) {
      w.Open("binary", {{"path", f.virtiofsd.native()}, {"xattr", "off"}});
    } else {
      w.Open("binary", {{"xattr", "off"}});
    }
    w.Leaf("sandbox", {{"mode", "namespace"}});
    w.Close();
  } else {
    // multidevs='remap': files of different host filesystems below the
    // share keep distinct inode numbers in the guest. accessmode 'squash':
    // QEMU creates files with its own credentials (the VM's uid) and ignores
    // a failed chown, where passthrough would fail every create of a guest
    // uid QEMU cannot chown to. A guest's chmod 4755 thus makes a file
    // setuid to the VM's unprivileged uid at most, and its mknod of a device
    // fails (QEMU has no CAP_MKNOD).
    w.Open("filesystem", {{"type", "mount"}, {"accessmode", "squash"}, {"multidevs", "remap"}});
    w.Leaf("driver", {{"type", "path"}});
  }
  w.Leaf("source", {{"dir", f.source_dir.native()}});
  w.Leaf("target", {{"dir", f.tag}});
  // QEMU's -fsdev readonly: the guest's writes fail with EROFS on the host side.
  if (f.read_only) w.Leaf("readonly");
  w.Close();
}

// ttyS0: appended to console_log; with console_socket also a unix socket QEMU
// listens on (attach). QEMU writes the log whether or not a client is
// connected, and drops output (never blocks the guest) while none is.
void WriteConsole(XmlWriter& w, const VmSpec& spec) {
  if (spec.console_log.empty() && spec.console_socket.empty()) return;
  // <serial> and its <console> alias must describe the same character
  // device, or libvirt treats them as two.
  for (const char* element : {"serial", "console"}) {
    const bool is_console = std::string_view(element) == "console";
    if (spec.console_socket.empty()) {
      // QEMU appends ttyS0 to a plain file: nothing of ours has to be up for
      // the guest to write its console, and the file outlives a daemon restart.
      w.Open(element, {{"type", "file"}});
      w.Leaf("source", {{"path", spec.console_log.native()}, {"append", "on"}});
    } else {
      w.Open(element, {{"type", "unix"}});
      w.Leaf("source", {{"mode", "bind"}, {"path", spec.console_socket.native()}});
      if (!spec.console_log.empty()) w.Leaf("log", {{"file", spec.console_log.native()}, {"append", "on"}});
    }
    if (is_console) {
      w.Leaf("target", {{"type", "serial"}, {"port", "0"}});
    } else {
      w.Leaf("target", {{"port", "0"}});
    }
    w.Close();
  }
}

}  // namespace

bool IsValidMountTag(std::string_view tag) {
  if (tag.empty() || tag.size() > kMaxMountTagLength) return false;
  for (char c : tag) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string DiskTargetName(size_t index) {
  // Spreadsheet-column naming, as the Linux virtio_blk driver names disks.
  std::string suffix;
  size_t n = index + 1;
  while (n > 0) {
    --n;
    suffix.insert(suffix.begin(), static_cast<char>('a' + n % 26));
    n /= 26;
  }
  return "vd" + suffix;
}

absl::StatusOr<std::string> BuildDomainXml(const VmSpec& spec, const DomainXmlOptions& options) {
  if (absl::Status s = Validate(spec); !s.ok()) return s;
  if (!IsXmlSafe(options.emulator)) return absl::InvalidArgumentError("emulator path contains control characters");
  const bool kvm = spec.accel == config::Accelerator::kKvm;
  const std::string mem = StrCat(spec.memory_mib);

  XmlWriter w;
  // type='qemu' is TCG (software emulation); type='kvm' needs working KVM.
  w.Open("domain", {{"type", kvm ? "kvm" : "qemu"}});
  w.Text("name", spec.name);
  w.Open("metadata");
  std::string ns_attr = StrCat("xmlns:", kMetadataPrefix);
  w.Leaf(StrCat(kMetadataPrefix, ":container"), {{ns_attr, kMetadataUri},
                                                  {"version", kMetadataVersion},
                                                  {"id", spec.container_id},
                                                  {"pod-id", spec.pod_id},
                                                  {"pod-namespace", spec.pod_namespace},
                                                  {"pod-name", spec.pod_name}});
  w.Close();
  w.Leaf("memory", {{"unit", "MiB"}}, mem);
  w.Leaf("currentMemory", {{"unit", "MiB"}}, mem);
  if (NeedsSharedMemory(spec)) {
    // vhost-user (virtiofsd) maps guest RAM: it must be a shareable memfd.
    w.Open("memoryBacking");
    w.Leaf("source", {{"type", "memfd"}});
    w.Leaf("access", {{"mode", "shared"}});
    w.Close();
  }
  if (spec.max_vcpus > spec.vcpus) {
    // Slots up to max_vcpus, `vcpus` of them present at boot: the rest can be
    // hot-plugged (PlugVcpus) without a reboot.
    w.Leaf("vcpu", {{"placement", "static"}, {"current", StrCat(spec.vcpus)}}, StrCat(spec.max_vcpus));
  } else {
    w.Leaf("vcpu", {{"placement", "static"}}, StrCat(spec.vcpus));
  }

  const bool uefi = spec.firmware != Firmware::kBios;
  const bool secure_boot = spec.firmware == Firmware::kUefiSecure;
  w.Open("os");
  if (!uefi) {
    // i440fx ('pc') with SeaBIOS: fewer devices than q35 (no PCIe root ports),
    // so it starts faster under TCG, and the BIOS boots MBR disks.
    w.Leaf("type", {{"arch", "x86_64"}, {"machine", "pc"}}, "hvm");
  } else {
    // q35: Secure Boot needs SMM, which only q35's OVMF build supports; plain
    // UEFI uses it too, so one machine type carries every UEFI VM. No device
    // address is pinned: libvirt puts each on a pcie-root-port of its own.
    w.Leaf("type", {{"arch", "x86_64"}, {"machine", "q35"}}, "hvm");
    // Explicit paths, not <os firmware='efi'> auto-selection: we copy the
    // variable store ourselves (UefiSpec), so we must know its template, and
    // the code must be the one built for that template.
    w.Leaf("loader", {{"readonly", "yes"}, {"secure", secure_boot ? "yes" : "no"}, {"type", "pflash"}},
           spec.uefi.code.native());
    if (spec.uefi.nvram_is_device) {
      // No template: kubevirt-cri initialised the device (PrepareNvramDevice),
      // and libvirt must never rewrite a persistent VM's store.
      w.Open("nvram", {{"type", "block"}});
      w.Leaf("source", {{"dev", spec.uefi.nvram.native()}});
      w.Close();
    } else {
      w.Leaf("nvram", {{"template", spec.uefi.vars_template.native()}}, spec.uefi.nvram.native());
    }
  }
  if (!spec.kernel.empty()) {
    w.Text("kernel", spec.kernel.native());
    if (!spec.initrd.empty()) w.Text("initrd", spec.initrd.native());
    if (!spec.cmdline.empty()) w.Text("cmdline", spec.cmdline);
  }
  w.Close();

  // ACPI: the power button is how Shutdown() asks the guest to stop.
  w.Open("features");
  w.Leaf("acpi");
  w.Leaf("apic");
  // secure='yes' firmware keeps its variable store writable only from SMM,
  // so the guest OS cannot rewrite the Secure Boot keys.
  if (secure_boot) w.Leaf("smm", {{"state", "on"}});
  w.Close();
  if (kvm) {
    w.Leaf("cpu", {{"mode", "host-passthrough"}, {"check", "none"}});
  } else {
    // qemu64 is the cheapest model to emulate; every x86-64 kernel runs on it.
    w.Open("cpu", {{"mode", "custom"}, {"match", "exact"}, {"check", "none"}});
    w.Leaf("model", {{"fallback", "forbid"}}, "qemu64");
    w.Close();
  }
  w.Leaf("clock", {{"offset", "utc"}});
  // A persistent domain keeps its shutoff state and reason after QEMU exits,
  // which is how Status() reports exit codes, also after a daemon restart.
  // Crash → destroy still records reason CRASHED (pvpanic device below).
  w.Text("on_poweroff", "destroy");
  w.Text("on_reboot", "restart");
  w.Text("on_crash", "destroy");
  w.Open("pm");
  w.Leaf("suspend-to-mem", {{"enabled", "no"}});
  w.Leaf("suspend-to-disk", {{"enabled", "no"}});
  w.Close();

  w.Open("devices");
  if (!options.emulator.empty()) w.Text("emulator", options.emulator);
  for (size_t i = 0; i < spec.disks.size(); ++i) {
    const DiskSpec& d = spec.disks[i];
    w.Open("disk", {{"type", d.block_device ? "block" : "file"}, {"device", "disk"}});
    // The format is always explicit: probing would let a raw guest disk claim
    // to be qcow2 with a backing file on the host. error_policy 'enospace'
    // (QEMU's werror=enospc, stated so a default cannot change under us): a
    // write that finds the host file system full pauses the VM instead of
    // failing in the guest, and the daemon reports and resumes it; other
    // write errors reach the guest as I/O errors.
    if (!d.cache.empty() && !d.io.empty()) {
      w.Leaf("driver", {{"name", "qemu"},
                        {"type", d.format},
                        {"cache", d.cache},
                        {"io", d.io},
                        {"discard", "unmap"},
                        {"error_policy", "enospace"}});
    } else if (!d.cache.empty()) {
      w.Leaf("driver", {{"name", "qemu"},
                        {"type", d.format},
                        {"cache", d.cache},
                        {"discard", "unmap"},
                        {"error_policy", "enospace"}});
    } else if (!d.io.empty()) {
      w.Leaf("driver",
             {{"name", "qemu"}, {"type", d.format}, {"io", d.io}, {"discard", "unmap"}, {"error_policy", "enospace"}});
    } else {
      w.Leaf("driver", {{"name", "qemu"}, {"type", d.format}, {"discard", "unmap"}, {"error_policy", "enospace"}});
    }
    w.Leaf("source", {{d.block_device ? "dev" : "file", d.path.native()}});
    w.Leaf("target", {{"dev", DiskTargetName(i)}, {"bus", "virtio"}});
    if (!d.serial.empty()) w.Text("serial", d.serial);
    if (d.read_only) w.Leaf("readonly");
    if (d.boot && spec.kernel.empty()) w.Leaf("boot", {{"order", "1"}});
    w.Close();
  }
  for (const FilesystemSpec& f : spec.filesystems) WriteFilesystem(w, f);
  for (size_t i = 0; i < spec.nics.size(); ++i) {
    const NicSpec& n = spec.nics[i];
    // The tap exists already (cni/ made it in the Pod's netns); QEMU only opens it.
    w.Open("interface", {{"type", "ethernet"}});
    if (!n.mac.empty()) w.Leaf("mac", {{"address", n.mac}});
    w.Leaf("target", {{"dev", n.tap_name}, {"managed", "no"}});
    w.Leaf("model", {{"type", "virtio"}});
    if (n.mtu > 0) w.Leaf("mtu", {{"size", StrCat(n.mtu)}});
    w.Leaf("address", {{"type", "pci"},
                       {"domain", "0x0000"},
                       {"bus", "0x00"},
                       {"slot", PciSlot(kFirstNicPciSlot + i)},
                       {"function", "0x0"}});
    w.Close();
  }
  w.Leaf("controller", {{"type", "usb"}, {"model", "none"}});
  WriteConsole(w, spec);
  // One virtio-serial controller carries both guest agent channels.
  w.Leaf("controller", {{"type", "virtio-serial"}, {"index", "0"}});
  // qemu-guest-agent's channel is libvirt's own: libvirt connects to it
  // itself (virDomainQemuAgentCommand), whatever its path. Without a source
  // path libvirt binds it in its per-domain channel directory, whose path
  // grows with the domain id (see VmSpec::qga_socket).
  w.Open("channel", {{"type", "unix"}});
  if (!spec.qga_socket.empty()) w.Leaf("source", {{"mode", "bind"}, {"path", spec.qga_socket.native()}});
  w.Leaf("target", {{"type", "virtio"}, {"name", kQemuGuestAgentChannelName}});
  w.Close();
  if (!spec.agent_socket.empty()) {
    // kvcri-agent's channel: the daemon connects to this socket itself.
    w.Open("channel", {{"type", "unix"}});
    w.Leaf("source", {{"mode", "bind"}, {"path", spec.agent_socket.native()}});
    w.Leaf("target", {{"type", "virtio"}, {"name", agent::kAgentChannelName}});
    w.Close();
  }
  w.Open("memballoon", {{"model", "virtio"}});
  w.Leaf("stats", {{"period", "10"}});
  w.Close();
  w.Open("rng", {{"model", "virtio"}});
  w.Leaf("backend", {{"model", "random"}}, "/dev/urandom");
  w.Close();
  // pvpanic: a guest kernel panic becomes a QEMU event, so libvirt records
  // the domain as crashed instead of seeing a reboot loop.
  w.Leaf("panic", {{"model", "isa"}});
  if (spec.tpm) {
    // CRB, the interface TPM 2.0 defines (TIS is its TPM 1.2 heritage);
    // OVMF measures the boot into it, Linux finds it through ACPI.
    w.Open("tpm", {{"model", "tpm-crb"}});
    w.Leaf("backend", {{"type", "emulator"}, {"version", "2.0"}});
    w.Close();
  }
  w.Close();  // devices
  if (spec.uid != 0) {
    // QEMU runs as the VM's own uid and gid. relabel='no': libvirt chowns
    // none of the domain's files (we grant exactly those, vm_confinement.h);
    // its per-domain directory and monitor socket still get this label.
    w.Open("seclabel", {{"type", "static"}, {"model", "dac"}, {"relabel", "no"}});
    w.Text("label", StrCat("+", spec.uid, ":+", spec.gid));
    w.Close();
  }
  w.Close();  // domain
  return w.Finish();
}

namespace {
struct XmlDocFree {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
struct XmlCharFree {
  void operator()(xmlChar* s) const { xmlFree(s); }
};

std::string Attr(xmlNode* node, const char* name) {
  std::unique_ptr<xmlChar, XmlCharFree> v(xmlGetProp(node, reinterpret_cast<const xmlChar*>(name)));
  return v ? std::string(reinterpret_cast<const char*>(v.get())) : std::string();
}
}  // namespace

absl::StatusOr<VmMetadata> ParseMetadataXml(std::string_view xml) {
  std::unique_ptr<xmlDoc, XmlDocFree> doc(xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "metadata.xml",
                                                        nullptr, XML_PARSE_NONET | XML_PARSE_NOERROR |
                                                                     XML_PARSE_NOWARNING));
  if (!doc) return absl::InvalidArgumentError("domain metadata is not well-formed XML");
  xmlNode* root = xmlDocGetRootElement(doc.get());
  // virDomainGetMetadata selects by namespace and returns the element with
  // the namespace stripped; a namespace, if any, must be ours.
  bool foreign_ns = root != nullptr && root->ns != nullptr && root->ns->href != nullptr &&
                    std::string_view(reinterpret_cast<const char*>(root->ns->href)) != kMetadataUri;
  if (root == nullptr || foreign_ns || std::string_view(reinterpret_cast<const char*>(root->name)) != "container") {
    return absl::InvalidArgumentError(StrCat("domain metadata is not a {", kMetadataUri, "}container element"));
  }
  std::string version = Attr(root, "version");
  if (version != kMetadataVersion) {
    return absl::InvalidArgumentError(StrCat("domain metadata version \"", version, "\" is unknown"));
  }
  VmMetadata m;
  m.container_id = Attr(root, "id");
  m.pod_id = Attr(root, "pod-id");
  m.pod_namespace = Attr(root, "pod-namespace");
  m.pod_name = Attr(root, "pod-name");
  return m;
}

absl::StatusOr<bool> ParseChannelConnected(std::string_view xml, std::string_view channel) {
  std::unique_ptr<xmlDoc, XmlDocFree> doc(xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "domain.xml", nullptr,
                                                        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
  if (!doc) return absl::InvalidArgumentError("domain XML is not well-formed");
  xmlNode* root = xmlDocGetRootElement(doc.get());
  auto is = [](xmlNode* n, std::string_view name) {
    return n->type == XML_ELEMENT_NODE && std::string_view(reinterpret_cast<const char*>(n->name)) == name;
  };
  for (xmlNode* devices = root != nullptr ? root->children : nullptr; devices != nullptr; devices = devices->next) {
    if (!is(devices, "devices")) continue;
    for (xmlNode* ch = devices->children; ch != nullptr; ch = ch->next) {
      if (!is(ch, "channel")) continue;
      for (xmlNode* t = ch->children; t != nullptr; t = t->next) {
        if (!is(t, "target") || Attr(t, "type") != "virtio" || Attr(t, "name") != channel) continue;
        return Attr(t, "state") == "connected";
      }
    }
  }
  return absl::NotFoundError(StrCat("domain has no virtio channel \"", channel, "\""));
}

}  // namespace kvcri::runtime
