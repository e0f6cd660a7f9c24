// Opens the guest's end of a tap and packet sockets inside a netns for the wiring tests.
#include "test/client/tap_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/if.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "absl/status/status.h"
#include "config/base/netns_exec.h"
#include "test/fakes/shell.h"

namespace kvcri::testing {

base::UniqueFd OpenGuestTap(const std::string& netns_path, const std::string& netns_name, const std::string& tap) {
  base::UniqueFd fd;
  absl::Status s = base::RunInNetns(netns_path, [&]() -> absl::Status {
    fd = base::UniqueFd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK));
    if (!fd.valid()) return absl::ErrnoToStatus(errno, "open /dev/net/tun");
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, tap.c_str(), IFNAMSIZ - 1);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) return absl::ErrnoToStatus(errno, "TUNSETIFF " + tap);
    return absl::OkStatus();
  });
  EXPECT_TRUE(s.ok()) << s;
  // Carrier-on activates the tap's qdisc asynchronously (linkwatch); until
  // then frames sent to the guest are dropped, as they are before QEMU opens
  // the tap.
  for (int i = 0; i < 100; ++i) {
    if (Sh("ip -n " + netns_name + " -o link show " + tap).output.find("state UP") != std::string::npos) return fd;
    ::usleep(50000);
  }
  ADD_FAILURE() << tap << " did not become operationally UP within 5s of opening it";
  return fd;
}

base::UniqueFd OpenPacketSocket(const std::string& netns_path, const std::string& ifname) {
  base::UniqueFd fd;
  absl::Status s = base::RunInNetns(netns_path, [&]() -> absl::Status {
    fd = base::UniqueFd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL)));
    if (!fd.valid()) return absl::ErrnoToStatus(errno, "socket");
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
    if (::ioctl(fd.get(), SIOCGIFINDEX, &ifr) != 0) return absl::ErrnoToStatus(errno, "SIOCGIFINDEX " + ifname);
    sockaddr_ll a{};
    a.sll_family = AF_PACKET;
    a.sll_protocol = htons(ETH_P_ALL);
    a.sll_ifindex = ifr.ifr_ifindex;
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return absl::ErrnoToStatus(errno, "bind");
    return absl::OkStatus();
  });
  EXPECT_TRUE(s.ok()) << s;
  return fd;
}

}  // namespace kvcri::testing
