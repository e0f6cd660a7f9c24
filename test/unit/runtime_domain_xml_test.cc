// BuildDomainXml: TCG and KVM, kernel and disk boot, devices, and refused specs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "runtime/domain_xml.h"
#include "runtime/xml_writer.h"

namespace kvcri::runtime {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

VmSpec KernelSpec() {
  VmSpec s;
  s.name = "kvcri-abc";
  s.pod_id = "pod1";
  s.container_id = "abc";
  s.pod_namespace = "default";
  s.pod_name = "web";
  s.vcpus = 2;
  s.memory_mib = 256;
  s.accel = config::Accelerator::kTcg;
  s.kernel = "/var/lib/kvcri/k/vmlinuz";
  s.initrd = "/var/lib/kvcri/k/initrd.img";
  s.cmdline = "console=ttyS0 quiet";
  s.console_log = "/var/lib/kvcri/containers/abc/console.log";
  return s;
}

VmSpec DiskSpecVm() {
  VmSpec s = KernelSpec();
  s.kernel.clear();
  s.initrd.clear();
  s.cmdline.clear();
  s.disks.push_back(DiskSpec{"/var/lib/kvcri/containers/abc/overlay.qcow2", "qcow2", false, "root", true, false});
  s.disks.push_back(DiskSpec{"/dev/vg/data", "raw", true, "data", false, true});
  return s;
}

TEST(BuildDomainXml, TcgUsesQemuDomainTypeAndEmulatedCpu) {
  auto xml = BuildDomainXml(KernelSpec());
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("<domain type='qemu'>"));
  EXPECT_THAT(*xml, HasSubstr("<model fallback='forbid'>qemu64</model>"));
  EXPECT_THAT(*xml, Not(HasSubstr("host-passthrough")));
}

TEST(BuildDomainXml, KvmUsesHostPassthrough) {
  VmSpec s = KernelSpec();
  s.accel = config::Accelerator::kKvm;
  auto xml = BuildDomainXml(s);
  ASSERT_TRUE(xml.ok());
  EXPECT_THAT(*xml, HasSubstr("<domain type='kvm'>"));
  EXPECT_THAT(*xml, HasSubstr("<cpu mode='host-passthrough'"));
}

TEST(BuildDomainXml, KernelBoot) {
  auto xml = BuildDomainXml(KernelSpec());
  ASSERT_TRUE(xml.ok());
  EXPECT_THAT(*xml, HasSubstr("<kernel>/var/lib/kvcri/k/vmlinuz</kernel>"));
  EXPECT_THAT(*xml, HasSubstr("<initrd>/var/lib/kvcri/k/initrd.img</initrd>"));
  EXPECT_THAT(*xml, HasSubstr("<cmdline>console=ttyS0 quiet</cmdline>"));
  EXPECT_THAT(*xml, Not(HasSubstr("<boot order")));
  EXPECT_THAT(*xml, HasSubstr("<memory unit='MiB'>256</memory>"));
  EXPECT_THAT(*xml, HasSubstr(">2</vcpu>"));
}

TEST(BuildDomainXml, VcpuSlotsAboveTheBootCountCanBeHotPlugged) {
  VmSpec s = KernelSpec();
  s.vcpus = 1;
  s.max_vcpus = 4;
  auto xml = BuildDomainXml(s);
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("<vcpu placement='static' current='1'>4</vcpu>"));
  // No room above the boot count: no current attribute.
  s.max_vcpus = 1;
  xml = BuildDomainXml(s);
  ASSERT_TRUE(xml.ok());
  EXPECT_THAT(*xml, HasSubstr("<vcpu placement='static'>1</vcpu>"));
  s.max_vcpus = 241;
  EXPECT_FALSE(BuildDomainXml(s).ok());
}

TEST(BuildDomainXml, DiskBootWithExplicitFormats) {
  auto xml = BuildDomainXml(DiskSpecVm());
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, Not(HasSubstr("<kernel>")));
  EXPECT_THAT(*xml, HasSubstr("<driver name='qemu' type='qcow2'"));
  EXPECT_THAT(*xml, HasSubstr("<source file='/var/lib/kvcri/containers/abc/overlay.qcow2'/>"));
  EXPECT_THAT(*xml, HasSubstr("<target dev='vda' bus='virtio'/>"));
  EXPECT_THAT(*xml, HasSubstr("<boot order='1'/>"));
  EXPECT_THAT(*xml, HasSubstr("<serial>root</serial>"));
  EXPECT_THAT(*xml, HasSubstr("<disk type='block' device='disk'>"));
  EXPECT_THAT(*xml, HasSubstr("<driver name='qemu' type='raw'"));
  EXPECT_THAT(*xml, HasSubstr("<source dev='/dev/vg/data'/>"));
  EXPECT_THAT(*xml, HasSubstr("<target dev='vdb' bus='virtio'/>"));
  EXPECT_THAT(*xml, HasSubstr("<readonly/>"));
}

TEST(BuildDomainXml, FixedDevicesAndLifecycle) {
  auto xml = BuildDomainXml(KernelSpec(), DomainXmlOptions{"/usr/bin/qemu-system-x86_64"});
  ASSERT_TRUE(xml.ok());
  EXPECT_THAT(*xml, HasSubstr("<emulator>/usr/bin/qemu-system-x86_64</emulator>"));
  EXPECT_THAT(*xml, HasSubstr("<controller type='usb' model='none'/>"));
  EXPECT_THAT(*xml, HasSubstr("<memballoon model='virtio'>"));
  EXPECT_THAT(*xml, HasSubstr("<acpi/>"));
  EXPECT_THAT(*xml, HasSubstr("<on_poweroff>destroy</on_poweroff>"));
  EXPECT_THAT(*xml, HasSubstr("<on_crash>destroy</on_crash>"));
  EXPECT_THAT(*xml, HasSubstr("<panic model='isa'/>"));
  EXPECT_THAT(*xml, Not(HasSubstr("<graphics")));
  EXPECT_THAT(*xml, HasSubstr("<serial type='file'>"));
  EXPECT_THAT(*xml, HasSubstr("<source path='/var/lib/kvcri/containers/abc/console.log' append='on'/>"));
  EXPECT_THAT(*xml, HasSubstr("<console type='file'>"));
}

TEST(BuildDomainXml, NoEmulatorElementByDefault) {
  auto xml = BuildDomainXml(KernelSpec());
  ASSERT_TRUE(xml.ok());
  EXPECT_THAT(*xml, Not(HasSubstr("<emulator>")));
}

TEST(BuildDomainXml, Nics) {
  VmSpec s = KernelSpec();
  s.nics.push_back(NicSpec{"tap0", "52:54:00:12:34:56", 1400});
  auto xml = BuildDomainXml(s);
  ASSERT_TRUE(xml.ok());
  EXPECT_THAT(*xml, HasSubstr("<interface type='ethernet'>"));
  EXPECT_THAT(*xml, HasSubstr("<target dev='tap0' managed='no'/>"));
  EXPECT_THAT(*xml, HasSubstr("<mac address='52:54:00:12:34:56'/>"));
  EXPECT_THAT(*xml, HasSubstr("<mtu size='1400'/>"));
  EXPECT_THAT(*xml, HasSubstr("<model type='virtio'/>"));
}

TEST(BuildDomainXml, SeveralNicsInOrderAtFixedPciSlotsWhateverTheDisks) {
  VmSpec s = KernelSpec();
  s.nics.push_back(NicSpec{"tap0", "0a:58:0a:00:00:02", 1450});
  s.nics.push_back(NicSpec{"tap1", "0a:58:0a:01:00:05", 1400});
  s.nics.push_back(NicSpec{"tap2", "0a:58:0a:02:00:07", 0});
  auto xml = BuildDomainXml(s);
  ASSERT_TRUE(xml.ok()) << xml.status();
  const std::string nic0 =
      "<interface type='ethernet'>\n"
      "      <mac address='0a:58:0a:00:00:02'/>\n"
      "      <target dev='tap0' managed='no'/>\n"
      "      <model type='virtio'/>\n"
      "      <mtu size='1450'/>\n"
      "      <address type='pci' domain='0x0000' bus='0x00' slot='0x10' function='0x0'/>\n"
      "    </interface>";
  EXPECT_THAT(*xml, HasSubstr(nic0));
  size_t p0 = xml->find("dev='tap0'"), p1 = xml->find("dev='tap1'"), p2 = xml->find("dev='tap2'");
  ASSERT_NE(p2, std::string::npos);
  EXPECT_LT(p0, p1);
  EXPECT_LT(p1, p2);
  EXPECT_THAT(xml->substr(p1, 300), HasSubstr("<mtu size='1400'/>"));
  EXPECT_THAT(xml->substr(p1, 300), HasSubstr("slot='0x11'"));
  EXPECT_THAT(xml->substr(p2, 300), HasSubstr("slot='0x12'"));
  EXPECT_THAT(xml->substr(p2, 300), Not(HasSubstr("<mtu")));

  // A disk more moves no NIC.
  VmSpec more = s;
  more.disks.push_back(DiskSpec{"/var/lib/kvcri/containers/abc/seed.img", "raw", true, "cidata"});
  auto xml2 = BuildDomainXml(more);
  ASSERT_TRUE(xml2.ok()) << xml2.status();
  EXPECT_THAT(*xml2, HasSubstr(nic0));
  EXPECT_THAT(xml2->substr(xml2->find("dev='tap2'"), 300), HasSubstr("slot='0x12'"));
}

TEST(BuildDomainXml, MoreNicsThanPciSlotsIsInvalidArgument) {
  VmSpec s = KernelSpec();
  for (size_t i = 0; i <= kMaxNics; ++i) s.nics.push_back(NicSpec{"tap" + std::to_string(i), "", 0});
  auto xml = BuildDomainXml(s);
  EXPECT_EQ(xml.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(xml.status().message()), HasSubstr("17 nics"));
}

TEST(BuildDomainXml, EscapesNamesCmdlineAndMetadata) {
  VmSpec s = KernelSpec();
  s.name = "kvcri-<a&b>'\"";
  s.cmdline = "console=ttyS0 x=\"a<b>&c\" y='1'";
  s.pod_name = "we<b>&'\"";
  auto xml = BuildDomainXml(s);
  ASSERT_TRUE(xml.ok());
  EXPECT_THAT(*xml, HasSubstr("<name>kvcri-&lt;a&amp;b&gt;&apos;&quot;</name>"));
  EXPECT_THAT(*xml, HasSubstr("<cmdline>console=ttyS0 x=&quot;a&lt;b&gt;&amp;c&quot; y=&apos;1&apos;</cmdline>"));
  EXPECT_THAT(*xml, HasSubstr("pod-name='we&lt;b&gt;&amp;&apos;&quot;'"));
}

TEST(BuildDomainXml, MetadataRecordsIdsInOwnNamespace) {
  auto xml = BuildDomainXml(KernelSpec());
  ASSERT_TRUE(xml.ok());
  EXPECT_THAT(*xml, HasSubstr("<kvcri:container xmlns:kvcri='https://kubevirt-cri.io/xmlns/v1' version='1' "
                              "id='abc' pod-id='pod1' pod-namespace='default' pod-name='web'/>"));
}

TEST(BuildDomainXml, RejectsBadSpecs) {
  auto code = [](VmSpec s) { return BuildDomainXml(s).status().code(); };
  VmSpec s = KernelSpec();
  s.name = "";
  EXPECT_EQ(code(s), absl::StatusCode::kInvalidArgument);
  s = KernelSpec();
  s.name = "a/b";
  EXPECT_EQ(code(s), absl::StatusCode::kInvalidArgument);
  s = KernelSpec();
  s.cmdline = std::string("x\x01y");
  EXPECT_EQ(code(s), absl::StatusCode::kInvalidArgument);
  s = DiskSpecVm();
  s.disks[0].format = "vmdk";
  EXPECT_EQ(code(s), absl::StatusCode::kInvalidArgument);
  s = DiskSpecVm();
  s.disks[0].format = "";  // never let QEMU probe
  EXPECT_EQ(code(s), absl::StatusCode::kInvalidArgument);
  s = DiskSpecVm();
  s.disks[0].boot = false;  // nothing to boot
  EXPECT_EQ(code(s), absl::StatusCode::kInvalidArgument);
  s = KernelSpec();
  s.accel = config::Accelerator::kAuto;
  EXPECT_EQ(code(s), absl::StatusCode::kInvalidArgument);
  s = KernelSpec();
  s.vcpus = 0;
  EXPECT_EQ(code(s), absl::StatusCode::kInvalidArgument);
}

TEST(ParseMetadataXml, ReadsWhatLibvirtReturns) {
  // virDomainGetMetadata returns the element with its namespace stripped.
  auto m = ParseMetadataXml(
      "<container version=\"1\" id=\"abc\" pod-id=\"pod1\" pod-namespace=\"default\" "
      "pod-name=\"we&lt;b&gt;\"/>");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->container_id, "abc");
  EXPECT_EQ(m->pod_id, "pod1");
  EXPECT_EQ(m->pod_namespace, "default");
  EXPECT_EQ(m->pod_name, "we<b>");
}

TEST(ParseMetadataXml, RejectsForeignOrUnknownVersion) {
  EXPECT_FALSE(ParseMetadataXml("<container xmlns='urn:other' version='1' id='x'/>").ok());
  EXPECT_FALSE(ParseMetadataXml("<k:container xmlns:k='https://kubevirt-cri.io/xmlns/v1' version='2'/>").ok());
  EXPECT_FALSE(ParseMetadataXml("not xml").ok());
  EXPECT_FALSE(ParseMetadataXml("<other version='1'/>").ok());
  EXPECT_TRUE(ParseMetadataXml("<k:container xmlns:k='https://kubevirt-cri.io/xmlns/v1' version='1'/>").ok());
}

TEST(DiskTargetName, SpreadsheetColumns) {
  EXPECT_EQ(DiskTargetName(0), "vda");
  EXPECT_EQ(DiskTargetName(25), "vdz");
  EXPECT_EQ(DiskTargetName(26), "vdaa");
  EXPECT_EQ(DiskTargetName(27), "vdab");
}

TEST(XmlEscape, EscapesAllSpecialCharacters) {
  EXPECT_EQ(XmlEscape("<a&'\">"), "&lt;a&amp;&apos;&quot;&gt;");
  EXPECT_TRUE(IsXmlSafe("tab\tnew\nline"));
  EXPECT_FALSE(IsXmlSafe(std::string("nul\0x", 5)));
}

TEST(BuildDomainXml, EveryVmHasQemuGuestAgentChannelWithoutSourcePath) {
  auto xml = BuildDomainXml(KernelSpec());
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("<controller type='virtio-serial' index='0'/>"));
  // No <source>: libvirt binds it in its own channel directory.
  EXPECT_THAT(*xml, HasSubstr("<channel type='unix'>\n      <target type='virtio' name='org.qemu.guest_agent.0'/>\n"
                              "    </channel>"));
  EXPECT_THAT(*xml, Not(HasSubstr("io.kubevirt-cri.agent.0")));
}

TEST(BuildDomainXml, QgaSocketPinsTheQemuGuestAgentChannelPath) {
  VmSpec spec = KernelSpec();
  spec.qga_socket = "/run/kvcri/vm/qga.sock";
  auto xml = BuildDomainXml(spec);
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("<channel type='unix'>\n      <source mode='bind' path='/run/kvcri/vm/qga.sock'/>\n"
                              "      <target type='virtio' name='org.qemu.guest_agent.0'/>"));
  spec.qga_socket = "/" + std::string(120, 'q');
  auto too_long = BuildDomainXml(spec);
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(too_long.status().message()), HasSubstr("qga_socket"));
  spec.qga_socket = "relative/qga.sock";
  EXPECT_EQ(BuildDomainXml(spec).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(BuildDomainXml, AgentSocketBecomesBoundVirtioChannel) {
  VmSpec s = KernelSpec();
  s.agent_socket = "/var/lib/kvcri/vm/0123456789abcdef/agent.sock";
  auto xml = BuildDomainXml(s);
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("<source mode='bind' path='/var/lib/kvcri/vm/0123456789abcdef/agent.sock'/>\n"
                              "      <target type='virtio' name='io.kubevirt-cri.agent.0'/>"));
}

TEST(BuildDomainXml, ConsoleSocketListensAndStillLogs) {
  VmSpec s = KernelSpec();
  s.console_socket = "/var/lib/kvcri/vm/0123456789abcdef/console.sock";
  auto xml = BuildDomainXml(s);
  ASSERT_TRUE(xml.ok()) << xml.status();
  const std::string source =
      "<source mode='bind' path='/var/lib/kvcri/vm/0123456789abcdef/console.sock'/>\n"
      "      <log file='/var/lib/kvcri/containers/abc/console.log' append='on'/>\n";
  EXPECT_THAT(*xml, HasSubstr("<serial type='unix'>\n      " + source + "      <target port='0'/>"));
  EXPECT_THAT(*xml, HasSubstr("<console type='unix'>\n      " + source + "      <target type='serial' port='0'/>"));
  EXPECT_THAT(*xml, Not(HasSubstr("type='file'")));
}

TEST(BuildDomainXml, RefusesRelativeOrOverlongSocketPaths) {
  VmSpec s = KernelSpec();
  s.console_socket = "vm/console.sock";
  auto xml = BuildDomainXml(s);
  EXPECT_EQ(xml.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(xml.status().message(), HasSubstr("console_socket \"vm/console.sock\" is not absolute"));

  s = KernelSpec();
  s.agent_socket = "/" + std::string(kMaxUnixSocketPathLength, 'a');  // one byte too many
  xml = BuildDomainXml(s);
  EXPECT_EQ(xml.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(xml.status().message(), HasSubstr("agent_socket"));
  EXPECT_THAT(xml.status().message(), HasSubstr("longer than a unix socket path may be (107)"));

  s.agent_socket = "/" + std::string(kMaxUnixSocketPathLength - 1, 'a');  // exactly 107
  EXPECT_TRUE(BuildDomainXml(s).ok());

  s.console_socket = s.agent_socket;
  EXPECT_THAT(BuildDomainXml(s).status().message(), HasSubstr("are the same path"));
}

TEST(ParseChannelConnected, ReadsTheStateOfTheNamedVirtioChannel) {
  const std::string xml = R"(<domain type='qemu'><name>kvcri-abc</name><devices>
    <serial type='unix'><target port='0'/></serial>
    <channel type='unix'><source mode='bind' path='/x/a.sock'/>
      <target type='virtio' name='io.kubevirt-cri.agent.0' state='disconnected'/></channel>
    <channel type='unix'><source mode='bind' path='/lv/ch/org.qemu.guest_agent.0'/>
      <target type='virtio' name='org.qemu.guest_agent.0' state='connected'/></channel>
    <channel type='unix'><target type='virtio' name='no.state.0'/></channel>
  </devices></domain>)";
  EXPECT_EQ(ParseChannelConnected(xml, "org.qemu.guest_agent.0").value(), true);
  EXPECT_EQ(ParseChannelConnected(xml, "io.kubevirt-cri.agent.0").value(), false);
  EXPECT_EQ(ParseChannelConnected(xml, "no.state.0").value(), false);
  EXPECT_EQ(ParseChannelConnected(xml, "missing.0").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ParseChannelConnected("<domain", "x").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvcri::runtime
