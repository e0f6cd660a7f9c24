// Test-side ends of a Pod's wiring: the guest's end of a tap and a packet socket on a link, opened inside a netns.
#pragma once

#include <string>

#include "config/base/unique_fd.h"

namespace kvcri::testing {

// Opens `tap` (IFF_TAP | IFF_NO_PI, non-blocking) inside the netns at
// `netns_path` as QEMU would, then waits up to 5 s for linkwatch to mark it
// operationally UP (until then the kernel drops frames sent towards it).
// `netns_name` is the same netns for `ip -n`. Records a test failure and
// returns what it has on error.
base::UniqueFd OpenGuestTap(const std::string& netns_path, const std::string& netns_name, const std::string& tap);

// A raw packet socket (ETH_P_ALL, non-blocking) bound to `ifname` inside the
// netns at `netns_path`: sees every frame the link receives and can send as
// another host on it. Records a test failure on error.
base::UniqueFd OpenPacketSocket(const std::string& netns_path, const std::string& ifname);

}  // namespace kvcri::testing
