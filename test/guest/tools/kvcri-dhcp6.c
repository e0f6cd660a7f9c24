// kvcri-dhcp6: the test guest's DHCPv6 client (busybox in Debian has no udhcpc6): gets one address per interface.
//
//   kvcri-dhcp6 IFACE
//
// SOLICIT with Rapid Commit, IA_NA and an option request for DNS servers;
// takes a REPLY at once, or the first ADVERTISE and then REQUESTs it
// (RFC 8415 18.2). The address goes on IFACE as a /128: the on-link prefix
// and the default route are the router advertisement's business, which the
// kernel takes itself. Announces "KUBEVIRT-CRI-GUEST-IP6 IFACE ADDR" on the
// console once, adds "nameserver" lines for the IPv6 DNS servers to
// /etc/resolv.conf, then asks again (rapid commit) every T1 to renew.
// Retries, backing off to every 16 s, until answered. Runs in the foreground.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { kSolicit = 1, kAdvertise = 2, kRequest = 3, kReply = 7 };
enum { kOptClientId = 1, kOptServerId = 2, kOptIaNa = 3, kOptIaAddr = 5, kOptOro = 6, kOptElapsed = 8,
       kOptStatus = 13, kOptRapidCommit = 14, kOptDns = 23 };

static unsigned char duid[10];  // DUID-LL: type 3, hardware type 1, MAC

static size_t PutOpt(unsigned char* p, unsigned code, const void* data, unsigned len) {
  p[0] = code >> 8;
  p[1] = code & 0xff;
  p[2] = len >> 8;
  p[3] = len & 0xff;
  if (len) memcpy(p + 4, data, len);
  return 4 + len;
}

static uint32_t Get32(const unsigned char* p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

// Finds option `code` in [p, end); returns its value and length, or NULL.
static const unsigned char* FindOpt(const unsigned char* p, const unsigned char* end, unsigned code,
                                    unsigned* len) {
  while (end - p >= 4) {
    unsigned c = (p[0] << 8) | p[1], l = (p[2] << 8) | p[3];
    if ((size_t)(end - p - 4) < l) return NULL;
    if (c == code) {
      *len = l;
      return p + 4;
    }
    p += 4 + l;
  }
  return NULL;
}

static size_t Build(unsigned char* m, int type, uint32_t xid, const unsigned char* server, unsigned server_len) {
  size_t n = 0;
  m[n++] = type;
  m[n++] = (xid >> 16) & 0xff;
  m[n++] = (xid >> 8) & 0xff;
  m[n++] = xid & 0xff;
  n += PutOpt(m + n, kOptClientId, duid, sizeof duid);
  if (server) n += PutOpt(m + n, kOptServerId, server, server_len);
  unsigned char ia[12] = {0, 0, 0, 1};  // IAID 1, T1 = T2 = 0: the server's choice
  n += PutOpt(m + n, kOptIaNa, ia, sizeof ia);
  unsigned char oro[2] = {0, kOptDns};
  n += PutOpt(m + n, kOptOro, oro, sizeof oro);
  unsigned char elapsed[2] = {0, 0};
  n += PutOpt(m + n, kOptElapsed, elapsed, sizeof elapsed);
  if (type == kSolicit) n += PutOpt(m + n, kOptRapidCommit, NULL, 0);
  return n;
}

static int Run(const char* cmd) {
  int rc = system(cmd);
  return rc == 0 ? 0 : -1;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s IFACE\n", argv[0]);
    return 2;
  }
  const char* ifname = argv[1];
  int fd = socket(AF_INET6, SOCK_DGRAM, 0);
  if (fd < 0) {
    perror("socket");
    return 1;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
  if (ioctl(fd, SIOCGIFHWADDR, &ifr) != 0) {
    perror("SIOCGIFHWADDR");
    return 1;
  }
  duid[1] = 3;
  duid[3] = 1;
  memcpy(duid + 4, ifr.ifr_hwaddr.sa_data, 6);
  if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, ifname, (socklen_t)strlen(ifname)) != 0) {
    perror("SO_BINDTODEVICE");
    return 1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in6 local = {.sin6_family = AF_INET6, .sin6_port = htons(546)};
  struct sockaddr_in6 servers = {.sin6_family = AF_INET6, .sin6_port = htons(547),
                                 .sin6_scope_id = if_nametoindex(ifname)};
  inet_pton(AF_INET6, "ff02::1:2", &servers.sin6_addr);
  // The link-local address may still be tentative (DAD): bind until it works.
  while (bind(fd, (struct sockaddr*)&local, sizeof local) != 0) {
    if (errno != EADDRNOTAVAIL) {
      perror("bind [::]:546");
      return 1;
    }
    sleep(1);
  }
  srand((unsigned)time(NULL) ^ (unsigned)getpid());
  char announced[INET6_ADDRSTRLEN] = "";
  for (;;) {
    uint32_t xid = (uint32_t)rand() & 0xffffff;
    unsigned char out[512], in[1500];
    size_t n = Build(out, kSolicit, xid, NULL, 0);
    unsigned char server[130];
    unsigned server_len = 0;
    int bound = 0;
    uint32_t t1 = 0;
    // Waits 1 s, 2 s, ... up to 16 s between tries (RFC 8415 backs off too): an
    // IPv4-only Pod's guest asks on, but rarely.
    int wait_ms = 1000;
    for (int tries = 0; !bound && tries < 1000000; ++tries) {
      if (sendto(fd, out, n, 0, (struct sockaddr*)&servers, sizeof servers) < 0) {
        sleep(1);
        continue;
      }
      struct pollfd p = {fd, POLLIN, 0};
      if (poll(&p, 1, wait_ms) <= 0) {
        if (wait_ms < 16000) wait_ms *= 2;
        continue;
      }
      ssize_t got = recv(fd, in, sizeof in, 0);
      if (got < 4 || (((uint32_t)in[1] << 16) | ((uint32_t)in[2] << 8) | in[3]) != xid) continue;
      const unsigned char* end = in + got;
      unsigned len = 0;
      const unsigned char* cid = FindOpt(in + 4, end, kOptClientId, &len);
      if (!cid || len != sizeof duid || memcmp(cid, duid, sizeof duid) != 0) continue;
      if (in[0] == kAdvertise) {
        const unsigned char* sid = FindOpt(in + 4, end, kOptServerId, &len);
        if (!sid || len > sizeof server) continue;
        memcpy(server, sid, len);
        server_len = len;
        xid = (uint32_t)rand() & 0xffffff;
        n = Build(out, kRequest, xid, server, server_len);
        continue;
      }
      if (in[0] != kReply) continue;
      const unsigned char* ia = FindOpt(in + 4, end, kOptIaNa, &len);
      if (!ia || len < 12) continue;
      const unsigned char* ia_end = ia + len;
      t1 = Get32(ia + 4);
      unsigned alen = 0;
      const unsigned char* addr = FindOpt(ia + 12, ia_end, kOptIaAddr, &alen);
      if (!addr || alen < 24) continue;
      char text[INET6_ADDRSTRLEN];
      inet_ntop(AF_INET6, addr, text, sizeof text);
      char cmd[256];
      snprintf(cmd, sizeof cmd, "ip -6 addr replace %s/128 dev %s", text, ifname);
      if (Run(cmd) != 0) {
        sleep(1);
        continue;
      }
      if (strcmp(text, announced) != 0) {
        unsigned dlen = 0;
        const unsigned char* dns = FindOpt(in + 4, end, kOptDns, &dlen);
        FILE* rc = dns ? fopen("/etc/resolv.conf", "a") : NULL;
        for (unsigned i = 0; rc && i + 16 <= dlen; i += 16) {
          char d[INET6_ADDRSTRLEN];
          inet_ntop(AF_INET6, dns + i, d, sizeof d);
          fprintf(rc, "nameserver %s\n", d);
        }
        if (rc) fclose(rc);
        FILE* console = fopen("/dev/console", "w");
        if (console) {
          fprintf(console, "KUBEVIRT-CRI-GUEST-IP6 %s %s\n", ifname, text);
          fclose(console);
        }
        snprintf(announced, sizeof announced, "%s", text);
      }
      bound = 1;
    }
    sleep(t1 >= 10 && t1 < 86400 ? t1 : 600);
  }
}
