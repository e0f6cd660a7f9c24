// kvcri-frame: the test guest's packet crafter; sends one frame a well-behaved guest never would.
//
//   kvcri-frame IFACE KIND IPV4 TAG
//
// KIND: "udp" (control: UDP 5000 -> 5001 broadcast from IPV4), "dhcp-server"
// (UDP 67 -> 68 broadcast from IPV4, as a DHCP server's offer), "ra" (an
// ICMPv6 router advertisement from fe80::2 to ff02::1). The frame leaves
// IFACE with IFACE's MAC and carries TAG in its payload, so the host can
// look for it. Built static by build-guest.sh; busybox has no packet crafter.
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static size_t put16(unsigned char* p, unsigned v) {
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
  return 2;
}

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s IFACE udp|dhcp-server|ra IPV4 TAG\n", argv[0]);
    return 2;
  }
  const char *ifname = argv[1], *kind = argv[2], *tag = argv[4];
  struct in_addr src;
  if (inet_pton(AF_INET, argv[3], &src) != 1) {
    fprintf(stderr, "kvcri-frame: bad IPv4 address \"%s\"\n", argv[3]);
    return 2;
  }
  int fd = socket(AF_PACKET, SOCK_RAW, 0);
  if (fd < 0) {
    perror("kvcri-frame: socket");
    return 1;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
  if (ioctl(fd, SIOCGIFHWADDR, &ifr) != 0) {
    perror("kvcri-frame: SIOCGIFHWADDR");
    return 1;
  }
  unsigned char f[512];
  memset(f, 0, sizeof f);
  size_t taglen = strlen(tag), n = 0;
  if (taglen > 200) taglen = 200;
  int ra = strcmp(kind, "ra") == 0;
  if (ra) {
    const unsigned char dst[6] = {0x33, 0x33, 0, 0, 0, 1};
    memcpy(f, dst, 6);
  } else {
    memset(f, 0xff, 6);
  }
  memcpy(f + 6, ifr.ifr_hwaddr.sa_data, 6);
  n = 12;
  if (ra) {
    n += put16(f + n, 0x86dd);
    size_t icmp_len = 16 + taglen;
    f[n] = 0x60;
    n += 4;
    n += put16(f + n, (unsigned)icmp_len);
    f[n++] = 58;
    f[n++] = 255;
    f[n] = 0xfe;
    f[n + 1] = 0x80;
    f[n + 15] = 2;
    n += 16;
    f[n] = 0xff;
    f[n + 1] = 0x02;
    f[n + 15] = 1;
    n += 16;
    f[n] = 134;   // type: router advertisement; checksum left zero
    f[n + 4] = 64;
    put16(f + n + 6, 1800);
    n += 16;
  } else if (strcmp(kind, "udp") == 0 || strcmp(kind, "dhcp-server") == 0) {
    int dhcp = kind[0] == 'd';
    n += put16(f + n, 0x0800);
    size_t ip = n, udp_len = 8 + taglen;
    f[n] = 0x45;
    put16(f + n + 2, (unsigned)(20 + udp_len));
    f[n + 8] = 64;
    f[n + 9] = 17;
    memcpy(f + n + 12, &src, 4);
    memset(f + n + 16, 0xff, 4);
    unsigned sum = 0;
    for (size_t i = 0; i < 20; i += 2) sum += (unsigned)(f[ip + i] << 8 | f[ip + i + 1]);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    put16(f + ip + 10, ~sum & 0xffff);
    n += 20;
    n += put16(f + n, dhcp ? 67 : 5000);
    n += put16(f + n, dhcp ? 68 : 5001);
    n += put16(f + n, (unsigned)udp_len);
    n += 2;  // no UDP checksum
  } else {
    fprintf(stderr, "kvcri-frame: unknown kind \"%s\"\n", kind);
    return 2;
  }
  memcpy(f + n, tag, taglen);
  n += taglen;
  struct sockaddr_ll to;
  memset(&to, 0, sizeof to);
  to.sll_family = AF_PACKET;
  to.sll_ifindex = (int)if_nametoindex(ifname);
  to.sll_halen = 6;
  if (sendto(fd, f, n, 0, (struct sockaddr*)&to, sizeof to) != (ssize_t)n) {
    perror("kvcri-frame: sendto");
    return 1;
  }
  printf("SENT %s %zu\n", kind, n);
  return 0;
}
