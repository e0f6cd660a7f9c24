// The libvirt domain XML of a VmSpec: the only place domain XML is written.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "runtime/hypervisor.h"

namespace kvcri::runtime {

// XML namespace of the <metadata> element that marks our domains.
inline constexpr std::string_view kMetadataUri = "https://kubevirt-cri.io/xmlns/v1";
inline constexpr std::string_view kMetadataPrefix = "kvcri";

struct DomainXmlOptions {
  std::string emulator;  // QEMU binary; empty lets libvirt choose
};

// The libvirt domain XML for `spec`; the only place domain XML is written.
// InvalidArgument for specs libvirt would reject or misread (empty or
// slash-containing name, control characters, unknown disk format, nothing
// to boot).
absl::StatusOr<std::string> BuildDomainXml(const VmSpec& spec, const DomainXmlOptions& options = {});

// What our <metadata> element (<kvcri:container version='1' id=... pod-id=...
// pod-namespace=... pod-name=.../>) records.
struct VmMetadata {
  std::string pod_id, container_id, pod_namespace, pod_name;
};
// Parses the element virDomainGetMetadata returns (namespace stripped).
// InvalidArgument when it is not ours or of an unknown version.
absl::StatusOr<VmMetadata> ParseMetadataXml(std::string_view xml);

// Whether the live domain XML `xml` (virDomainGetXMLDesc) shows the virtio
// channel named `channel` opened by the guest: libvirt keeps
// <target type='virtio' name=... state='connected'/> from QEMU's
// VSERPORT_CHANGE events. NotFound when the domain has no such channel;
// false when libvirt reports no state.
absl::StatusOr<bool> ParseChannelConnected(std::string_view xml, std::string_view channel);

// virtio-blk carries at most 20 bytes of serial (VIRTIO_BLK_ID_BYTES).
inline constexpr size_t kMaxDiskSerialLength = 20;
// Guest NICs sit at fixed PCI addresses: NIC i (the Pod's CNI interfaces in
// the result's order: eth0, net1, ...) at bus 0, slot kFirstNicPciSlot + i,
// so a NIC's slot never depends on how many disks or file systems the VM has
// (libvirt fills the slots below with those), and a guest that names NICs by
// slot (ens16, ens17, ...) sees the same names in every Pod. 16 slots: at most
// kMaxNics NICs.
inline constexpr unsigned kFirstNicPciSlot = 0x10;
inline constexpr size_t kMaxNics = 16;
// The virtio-fs config space holds a 36-byte tag; we use the same limit for 9p.
inline constexpr size_t kMaxMountTagLength = 36;

// sockaddr_un's sun_path holds 108 bytes including the terminating NUL.
inline constexpr size_t kMaxUnixSocketPathLength = 107;

// The virtio-serial port name Debian's qemu-guest-agent opens
// (/dev/virtio-ports/org.qemu.guest_agent.0); every VM has it.
inline constexpr char kQemuGuestAgentChannelName[] = "org.qemu.guest_agent.0";

// A mount tag we accept: 1..kMaxMountTagLength bytes of [A-Za-z0-9._-].
bool IsValidMountTag(std::string_view tag);

// Disk target name for index i: vda..vdz, vdaa...
std::string DiskTargetName(size_t index);

}  // namespace kvcri::runtime
