// LibvirtConnection: a libvirt connection plus the event loop thread the embedded driver needs.
#pragma once

// Internal to runtime/: included by runtime/*.cc only.

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/statusor.h"
#include "runtime/libvirt_handles.h"

namespace kvcri::runtime {

// The <root> of "qemu:///embed?root=<root>", or empty for other URIs.
std::filesystem::path EmbedRootOf(std::string_view uri);

// qemu.conf for the embedded driver, written to <root>/etc/qemu.conf:
//  - stdio_handler "file": there is no virtlogd next to an embedded driver;
//  - user/group "root": only the default for a domain without a <seclabel>;
//    ours carry a per-VM DAC label (+uid:+gid, domain_xml.cc), which libvirt
//    applies to QEMU and to its own per-domain files (domain-N dir, monitor);
//  - dynamic_ownership 0: libvirt chowns none of our files. It would chown an
//    image-store disk shared by many VMs to whichever VM started last, and
//    restore it under the others; we give each VM exactly its files instead
//    (runtime/vm_confinement.h), and the label says relabel='no';
//  - security_driver "none": no SELinux/AppArmor driver (hosts with AppArmor
//    would need virt-aa-helper and its profiles; Status says what the host
//    has). libvirt stacks its DAC driver in any case;
//  - seccomp_sandbox 1: QEMU runs with -sandbox on,obsolete=deny,
//    elevateprivileges=deny,spawn=deny,resourcecontrol=deny.
std::string EmbedQemuConf();

// Creates <root>/etc/qemu.conf when absent, or rewrites it when it is ours (an
// older version); a qemu.conf the operator wrote is left alone.
absl::Status PrepareEmbedRoot(const std::filesystem::path& root);

class LibvirtConnection {
 public:
  // Opens `uri` with an event loop thread running (the embedded driver
  // needs one; remote drivers use it for keepalive). For embed URIs the root
  // is prepared first.
  static absl::StatusOr<std::unique_ptr<LibvirtConnection>> Open(const std::string& uri);
  ~LibvirtConnection();
  LibvirtConnection(const LibvirtConnection&) = delete;
  LibvirtConnection& operator=(const LibvirtConnection&) = delete;

  // Borrowed; valid as long as this object. libvirt connections are thread-safe.
  virConnectPtr get() const { return conn_.get(); }
  const std::string& uri() const { return uri_; }

 private:
  LibvirtConnection() = default;
  absl::Status StartEventLoop();
  void StopEventLoop();

  std::string uri_;
  std::thread loop_;
  std::atomic<bool> stop_{false};
  int wake_timer_ = -1;
  // Declared last: closed first, while the event loop still runs.
  ConnectPtr conn_;
};

}  // namespace kvcri::runtime
