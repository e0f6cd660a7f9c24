// kvcri-echo: the test guest's TCP echo service for port-forward tests (many connections, megabytes each way, half-close).
//
//   kvcri-echo ADDR PORT
//
// busybox `nc -ll -e cat` forks a shell pipeline per connection and copies
// through 4 KiB pipes, too slow under TCG for 50 connections of 10 MiB each
// way; this forks once per connection and echoes with 64 KiB reads. When the
// client half-closes, the child writes what is left, then half-closes too, so
// the client sees every byte and then the end of the stream.
#define _GNU_SOURCE  // accept4
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

// More children than any test opens at once; a flood of connections waits in
// the listen backlog instead of forking without bound.
#define MAX_CHILDREN 256

static int WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void Echo(int fd) {
  static char buf[64 << 10];
  for (;;) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    if (WriteAll(fd, buf, (size_t)r) < 0) break;
  }
  shutdown(fd, SHUT_WR);
  close(fd);
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: kvcri-echo ADDR PORT\n");
    return 2;
  }
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)atoi(argv[2]));
  if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
    fprintf(stderr, "kvcri-echo: bad address \"%s\"\n", argv[1]);
    return 2;
  }
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ls < 0 || bind(ls, (struct sockaddr*)&addr, sizeof addr) < 0 || listen(ls, 128) < 0) {
    fprintf(stderr, "kvcri-echo: listen %s:%s: %s\n", argv[1], argv[2], strerror(errno));
    return 1;
  }
  // A client that goes away mid-write must end only its own child.
  signal(SIGPIPE, SIG_IGN);
  int children = 0;
  for (;;) {
    while (children > 0 && waitpid(-1, NULL, children >= MAX_CHILDREN ? 0 : WNOHANG) > 0) children--;
    int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) continue;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pid_t pid = fork();
    if (pid == 0) {
      close(ls);
      Echo(fd);
      _exit(0);
    }
    if (pid > 0) children++;
    close(fd);
  }
}
