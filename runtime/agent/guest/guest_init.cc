// PID 1 duties of kvcri-agent in a Pod micro-VM (guest_init.h).
#include "runtime/agent/guest/guest_init.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace kvcri::runtime::agent {
namespace {

void Warn(const std::string& what, int err) {
  fprintf(stderr, "kvcri-agent init: %s: %s\n", what.c_str(), strerror(err));
}

void MountOne(const char* source, const char* target, const char* type, unsigned long flags, const char* data) {
  mkdir(target, 0755);  // exists in the initramfs or not: mount says what matters
  if (mount(source, target, type, flags, data) != 0 && errno != EBUSY) {
    Warn(std::string("mount ") + type + " on " + target, errno);
  }
}

// Loads each module in the list; an already loaded (or built-in) one is fine.
void LoadModules() {
  FILE* f = fopen(kModuleList, "re");
  if (f == nullptr) {
    if (errno != ENOENT) Warn(std::string("open ") + kModuleList, errno);
    return;
  }
  char line[512];
  while (fgets(line, sizeof line, f) != nullptr) {
    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] != '/') continue;
    int fd = open(line, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      Warn(std::string("open module ") + line, errno);
      continue;
    }
    // ENODEV: a driver for hardware this VM lacks (crc32c-intel under TCG,
    // which has no SSE4.2), pulled in as a dependency; the generic one serves.
    if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST && errno != ENODEV) {
      Warn(std::string("load ") + line, errno);
    }
    close(fd);
  }
  fclose(f);
}

// The NIC's driver was just loaded: its probe may still be registering it.
// Waits up to 2 s for `ifname` to exist.
void WaitForInterface(int s, const std::string& ifname) {
  ifreq ifr{};
  strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  for (int i = 0; i < 100 && ioctl(s, SIOCGIFFLAGS, &ifr) != 0; ++i) usleep(20000);
}

// Sets IFF_UP on `ifname` (s: an AF_INET datagram socket).
void BringUp(int s, const std::string& ifname) {
  ifreq ifr{};
  strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) return Warn("flags of " + ifname, errno);
  if (ifr.ifr_flags & IFF_UP) return;
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) Warn("bring up " + ifname, errno);
}

void LoopbackUp() {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return Warn("socket for lo", errno);
  BringUp(s, "lo");
  close(s);
}

// Writes `text` to an existing control file (cgroupfs, sysctl).
bool WriteControl(const char* path, const std::string& text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  int err = errno;
  close(fd);
  if (!ok) Warn(std::string("write \"") + text + "\" to " + path, err);
  return ok;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) return out;
    start = end + 1;
  }
}

// The kernel command line's words.
std::vector<std::string> CmdlineWords() {
  FILE* f = fopen("/proc/cmdline", "re");
  if (f == nullptr) return {};
  char buf[4096] = {};
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  std::vector<std::string> words;
  for (const std::string& w : Split(std::string(buf, n), ' ')) {
    std::string t = w;
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
    if (!t.empty()) words.push_back(t);
  }
  return words;
}

bool SetInet(int s, const char* ifname, unsigned long req, in_addr addr) {
  ifreq ifr{};
  strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
  auto* sin = reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr);
  sin->sin_family = AF_INET;
  sin->sin_addr = addr;
  return ioctl(s, req, &ifr) == 0;
}

// One rtnetlink request with its attributes, acknowledged; the kernel's
// errno (0 when it applied). For IPv6, which the classic ioctls cannot set.
int NetlinkRequest(uint16_t type, const void* body, size_t body_len,
                   const std::vector<std::pair<uint16_t, std::string>>& attrs) {
  char buf[512] = {};
  auto* nh = reinterpret_cast<nlmsghdr*>(buf);
  nh->nlmsg_type = type;
  nh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
  nh->nlmsg_seq = 1;
  nh->nlmsg_len = NLMSG_LENGTH(body_len);
  memcpy(NLMSG_DATA(nh), body, body_len);
  for (const auto& [atype, value] : attrs) {
    auto* rta = reinterpret_cast<rtattr*>(buf + NLMSG_ALIGN(nh->nlmsg_len));
    rta->rta_type = atype;
    rta->rta_len = static_cast<unsigned short>(RTA_LENGTH(value.size()));
    memcpy(RTA_DATA(rta), value.data(), value.size());
    nh->nlmsg_len = NLMSG_ALIGN(nh->nlmsg_len) + RTA_ALIGN(rta->rta_len);
  }
  int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (s < 0) return errno;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  int err = 0;
  if (sendto(s, buf, nh->nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
    err = errno;
  } else {
    char reply[1024];
    ssize_t n = recv(s, reply, sizeof reply, 0);
    auto* rh = reinterpret_cast<nlmsghdr*>(reply);
    if (n < 0) {
      err = errno;
    } else if (n >= static_cast<ssize_t>(NLMSG_LENGTH(sizeof(nlmsgerr))) && rh->nlmsg_type == NLMSG_ERROR) {
      err = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(rh))->error;
    }
  }
  close(s);
  return err;
}

// The IPv6 half of kvcri.ip: the address without duplicate detection (the
// CNI's IPAM made it unique; DAD would only delay the Pod by a second),
// and the default route through the gateway.
void ConfigureInterface6(const std::string& ifname, const in6_addr& addr, int prefix, const in6_addr* gw) {
  const unsigned index = if_nametoindex(ifname.c_str());
  if (index == 0) return Warn("IPv6 on " + ifname, errno);
  ifaddrmsg ifa{};
  ifa.ifa_family = AF_INET6;
  ifa.ifa_prefixlen = static_cast<unsigned char>(prefix);
  ifa.ifa_flags = IFA_F_NODAD;
  ifa.ifa_index = index;
  const std::string a(reinterpret_cast<const char*>(&addr), sizeof addr);
  if (int err = NetlinkRequest(RTM_NEWADDR, &ifa, sizeof ifa, {{IFA_LOCAL, a}, {IFA_ADDRESS, a}}); err != 0 && err != EEXIST) {
    Warn("IPv6 address of " + ifname, err);
  }
  if (gw == nullptr) return;
  rtmsg rt{};
  rt.rtm_family = AF_INET6;
  rt.rtm_table = RT_TABLE_MAIN;
  rt.rtm_protocol = RTPROT_BOOT;
  rt.rtm_scope = RT_SCOPE_UNIVERSE;
  rt.rtm_type = RTN_UNICAST;
  const uint32_t oif = index;
  if (int err = NetlinkRequest(RTM_NEWROUTE, &rt, sizeof rt,
                               {{RTA_GATEWAY, std::string(reinterpret_cast<const char*>(gw), sizeof *gw)},
                                {RTA_OIF, std::string(reinterpret_cast<const char*>(&oif), sizeof oif)}});
      err != 0 && err != EEXIST) {
    Warn("IPv6 default route of " + ifname, err);
  }
}

// kvcri.ip=<ifname>,<address>/<prefix>[,<gateway>[,<mtu>]]: the Pod's
// address on that NIC, as the host's CNI result gave it (the micro-VM has
// no DHCP client; the host knows the address before the VM boots).
void ConfigureInterface(const std::string& spec) {
  std::vector<std::string> f = Split(spec, ',');
  if (f.size() < 2 || f[0].empty() || f[0].size() >= IFNAMSIZ) {
    fprintf(stderr, "kvcri-agent init: kvcri.ip=%s: want <ifname>,<address>/<prefix>[,<gateway>[,<mtu>]]\n",
            spec.c_str());
    return;
  }
  const std::string& ifname = f[0];
  const size_t slash = f[1].find('/');
  in_addr addr{}, gw{};
  int prefix = slash == std::string::npos ? -1 : atoi(f[1].c_str() + slash + 1);
  if (f[1].find(':') != std::string::npos) {
    in6_addr a6{}, gw6{};
    const bool has_gw = f.size() > 2 && !f[2].empty();
    if (slash == std::string::npos || prefix < 1 || prefix > 128 ||
        inet_pton(AF_INET6, f[1].substr(0, slash).c_str(), &a6) != 1 ||
        (has_gw && inet_pton(AF_INET6, f[2].c_str(), &gw6) != 1)) {
      fprintf(stderr, "kvcri-agent init: kvcri.ip=%s: not an IPv6 address/prefix and gateway\n", spec.c_str());
      return;
    }
    // The interface is brought up (and its MTU set) by its IPv4 entry or here.
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s >= 0) {
      WaitForInterface(s, ifname);
      BringUp(s, ifname);
      close(s);
    }
    ConfigureInterface6(ifname, a6, prefix, has_gw ? &gw6 : nullptr);
    return;
  }
  if (slash == std::string::npos || prefix < 0 || prefix > 32 ||
      inet_pton(AF_INET, f[1].substr(0, slash).c_str(), &addr) != 1 ||
      (f.size() > 2 && !f[2].empty() && inet_pton(AF_INET, f[2].c_str(), &gw) != 1)) {
    fprintf(stderr, "kvcri-agent init: kvcri.ip=%s: not an IPv4 address/prefix and gateway\n", spec.c_str());
    return;
  }
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return Warn("socket for " + ifname, errno);
  WaitForInterface(s, ifname);
  if (f.size() > 3 && !f[3].empty()) {
    ifreq m{};
    strncpy(m.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
    m.ifr_mtu = atoi(f[3].c_str());
    if (ioctl(s, SIOCSIFMTU, &m) != 0) Warn("MTU of " + ifname, errno);
  }
  in_addr mask{};
  mask.s_addr = prefix == 0 ? 0 : htonl(~uint32_t{0} << (32 - prefix));
  if (!SetInet(s, ifname.c_str(), SIOCSIFADDR, addr) || !SetInet(s, ifname.c_str(), SIOCSIFNETMASK, mask)) {
    Warn("address of " + ifname, errno);
  }
  BringUp(s, ifname);
  if (gw.s_addr != 0) {
    rtentry rt{};
    auto* dst = reinterpret_cast<sockaddr_in*>(&rt.rt_dst);
    auto* gwa = reinterpret_cast<sockaddr_in*>(&rt.rt_gateway);
    auto* gm = reinterpret_cast<sockaddr_in*>(&rt.rt_genmask);
    dst->sin_family = gwa->sin_family = gm->sin_family = AF_INET;
    gwa->sin_addr = gw;
    rt.rt_flags = RTF_UP | RTF_GATEWAY;
    std::string dev = ifname;
    rt.rt_dev = dev.data();
    if (ioctl(s, SIOCADDRT, &rt) != 0 && errno != EEXIST) Warn("default route via " + f[2], errno);
  }
  close(s);
}

// kvcri.hostname= and every kvcri.ip= of the command line.
void ConfigureFromCmdline() {
  for (const std::string& w : CmdlineWords()) {
    if (w.rfind("kvcri.hostname=", 0) == 0) {
      const std::string name = w.substr(strlen("kvcri.hostname="));
      if (sethostname(name.data(), name.size()) != 0) Warn("hostname " + name, errno);
    } else if (w.rfind("kvcri.ip=", 0) == 0) {
      ConfigureInterface(w.substr(strlen("kvcri.ip=")));
    }
  }
}

// The controllers the root offers, all enabled for children, so a
// container's cgroup (crun's) can carry the CRI resources.
void EnableControllers() {
  FILE* f = fopen("/sys/fs/cgroup/cgroup.controllers", "re");
  if (f == nullptr) {
    Warn("cgroup.controllers", errno);
    return;
  }
  char buf[512] = {};
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  std::string all;
  for (char* tok = strtok(buf, " \n"); tok != nullptr; tok = strtok(nullptr, " \n")) {
    all += (all.empty() ? "+" : " +") + std::string(tok);
  }
  if (!all.empty()) WriteControl("/sys/fs/cgroup/cgroup.subtree_control", all);
}

// The initramfs is the kernel's rootfs mount, which has no parent: nothing
// started on it may pivot_root (crun does, for every container: EINVAL).
// A bind mount of it, moved over /, is an ordinary mount, and chrooting
// into it leaves rootfs below us, as switch_root would without copying.
void LeaveRootfs() {
  mkdir("/newroot", 0755);
  if (mount("/", "/newroot", nullptr, MS_BIND, nullptr) != 0) {
    Warn("bind the initramfs on /newroot", errno);
    return;
  }
  if (chdir("/newroot") != 0 || mount("/newroot", "/", nullptr, MS_MOVE, nullptr) != 0 || chroot(".") != 0 ||
      chdir("/") != 0) {
    Warn("move the initramfs bind over /", errno);
  }
}

}  // namespace

// What udev would make: /dev/disk/by-id/virtio-<serial> for each virtio
// disk, so the host names a Pod's block volume by the serial it gave it
// (cri/volumes.h DiskSerialFor), whatever vdX the kernel probed it as.
void LinkDisksBySerial() {
  DIR* d = opendir("/sys/block");
  if (d == nullptr) return;
  bool made = false;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.rfind("vd", 0) != 0) continue;
    std::string serial;
    if (FILE* f = fopen(("/sys/block/" + name + "/serial").c_str(), "re")) {
      char buf[64] = {};
      if (fgets(buf, sizeof buf, f) != nullptr) serial = buf;
      fclose(f);
    }
    while (!serial.empty() && (serial.back() == '\n' || serial.back() == ' ')) serial.pop_back();
    bool ok = !serial.empty() && serial.size() <= 20;
    for (char ch : serial) ok = ok && (isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.');
    if (!ok) continue;
    if (!made) {
      mkdir("/dev/disk", 0755);
      mkdir("/dev/disk/by-id", 0755);
      made = true;
    }
    const std::string link = "/dev/disk/by-id/virtio-" + serial;
    if (symlink(("../../" + name).c_str(), link.c_str()) != 0 && errno != EEXIST) Warn("link " + link, errno);
  }
  closedir(d);
}

// The Pod's sysctls (CRI linux.sysctls), one "name=value" per line in
// `file` on the share, as the host wrote them before the boot (names with
// dots or slashes: /proc/sys/<name>). Each failure is printed; the rest
// still apply.
void ApplySysctls(const std::string& file) {
  FILE* f = fopen(file.c_str(), "re");
  if (f == nullptr) return;  // no sysctls
  char line[512];
  while (fgets(line, sizeof line, f) != nullptr) {
    std::string l = line;
    while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
    const size_t eq = l.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    std::string name = l.substr(0, eq);
    const std::string value = l.substr(eq + 1);
    if (name.find("..") != std::string::npos || name[0] == '/') {
      Warn("sysctl " + name + ": not a sysctl name", EINVAL);
      continue;
    }
    // Kubernetes' two spellings: with a '/' the name is the path (a '.'
    // in it is literal, as in an interface name), else dots separate.
    if (name.find('/') == std::string::npos) {
      for (char& ch : name) {
        if (ch == '.') ch = '/';
      }
    }
    const std::string path = "/proc/sys/" + name;
    int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 || write(fd, value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
      Warn("sysctl " + l.substr(0, eq), errno);
    }
    if (fd >= 0) close(fd);
  }
  fclose(f);
}

bool IsGuestInit() { return getpid() == 1; }

void InitGuest() {
  LeaveRootfs();
  constexpr unsigned long kNoDevExec = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  MountOne("proc", "/proc", "proc", kNoDevExec, nullptr);
  MountOne("sysfs", "/sys", "sysfs", kNoDevExec, nullptr);
  MountOne("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
  MountOne("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666");
  MountOne("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  MountOne("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
  MountOne("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  MountOne("cgroup2", "/sys/fs/cgroup", "cgroup2", kNoDevExec, nullptr);
  EnableControllers();
  LoadModules();
  LinkDisksBySerial();
  LoopbackUp();
  ConfigureFromCmdline();
  // The Pod share exists once virtiofs is loaded; without one (EINVAL: no
  // such tag) containers cannot run, which the host learns when it tries.
  mkdir("/run/kvcri", 0700);
  mkdir(kPodShareDir, 0755);
  if (mount(kPodShareTag, kPodShareDir, "virtiofs", MS_NOSUID | MS_NODEV, nullptr) != 0) {
    Warn(std::string("mount the Pod share (virtio-fs tag ") + kPodShareTag + ") on " + kPodShareDir, errno);
  }
  ApplySysctls(std::string(kPodShareDir) + "/.kvcri-sysctls");
  fprintf(stderr, "kvcri-agent init: guest ready\n");
}

void PowerOff() {
  sync();
  reboot(RB_POWER_OFF);
  for (;;) pause();
}

}  // namespace kvcri::runtime::agent
