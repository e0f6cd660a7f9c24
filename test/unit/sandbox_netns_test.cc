// Network namespace tests. Those in suites named *AsRoot create and mount
// namespaces and need root (CAP_SYS_ADMIN); without it they FAIL saying so.
#include <linux/sockios.h>
#include <net/if.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "config/base/file_util.h"
#include "config/base/netns_exec.h"
#include "config/base/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sandbox/pinned_netns.h"
#include "sandbox/records.h"

namespace kvcri::sandbox {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

constexpr char kNeedsRoot[] =
    "this test needs root (CAP_SYS_ADMIN) to create and mount network namespaces; run unit_tests as root";

std::string Id(char c) { return std::string(kIdLength, c); }

ino_t Inode(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << "stat " << p;
  return st.st_ino;
}

ino_t ThreadNetns() { return Inode("/proc/thread-self/ns/net"); }

std::vector<std::string> InterfaceNames() {
  std::vector<std::string> out;
  struct if_nameindex* list = ::if_nameindex();
  if (list == nullptr) return out;
  for (auto* i = list; i->if_index != 0; ++i) out.push_back(i->if_name);
  ::if_freenameindex(list);
  return out;
}

class NetnsFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << kNeedsRoot;
    std::string tmpl = (fs::temp_directory_path() / "kvcri-netns-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    state_dir_ = tmpl;
    netns_ = std::make_unique<PinnedNetnsManager>(state_dir_, PinnedNetnsOptions{.make_dir_shared = false});
  }
  void TearDown() override {
    if (state_dir_.empty()) return;
    if (netns_) {
      absl::StatusOr<std::vector<PinnedNetns>> pinned = netns_->ListPinned();
      if (pinned.ok()) {
        for (const PinnedNetns& p : *pinned) EXPECT_TRUE(netns_->Remove(p.id).ok());
      }
    }
    // A shared-dir test leaves the directory bind-mounted onto itself.
    ::umount2((state_dir_ / "netns").c_str(), MNT_DETACH);
    std::error_code ec;
    fs::remove_all(state_dir_, ec);
  }

  fs::path state_dir_;
  std::unique_ptr<PinnedNetnsManager> netns_;
};

using NetnsManagerAsRoot = NetnsFixture;
using RunInNetnsAsRoot = NetnsFixture;

TEST_F(NetnsManagerAsRoot, CreatePinsAFreshNamespaceWithOnlyLoopback) {
  ino_t before = ThreadNetns();
  absl::StatusOr<fs::path> path = netns_->Create(Id('a'));
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, state_dir_ / "netns" / Id('a'));
  EXPECT_EQ(*path, netns_->Path(Id('a')));
  EXPECT_TRUE(*netns_->Exists(Id('a')));
  EXPECT_NE(Inode(*path), before) << "pinned namespace is the daemon's own";
  EXPECT_EQ(ThreadNetns(), before) << "the calling thread must stay in its namespace";

  ino_t inside = 0;
  std::vector<std::string> ifaces;
  absl::Status s = base::RunInNetns(*path, [&] {
    inside = ThreadNetns();
    ifaces = InterfaceNames();
    return absl::OkStatus();
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(inside, Inode(*path));
  EXPECT_THAT(ifaces, ElementsAre("lo"));
  EXPECT_EQ(ThreadNetns(), before);
}

TEST_F(NetnsManagerAsRoot, EachSandboxGetsItsOwnNamespace) {
  absl::StatusOr<fs::path> a = netns_->Create(Id('a'));
  absl::StatusOr<fs::path> b = netns_->Create(Id('b'));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(Inode(*a), Inode(*b));
}

TEST_F(NetnsManagerAsRoot, CreateTwiceIsAlreadyExists) {
  ASSERT_TRUE(netns_->Create(Id('a')).ok());
  ino_t first = Inode(netns_->Path(Id('a')));
  absl::StatusOr<fs::path> again = netns_->Create(Id('a'));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Inode(netns_->Path(Id('a'))), first) << "the existing namespace is untouched";
}

TEST_F(NetnsManagerAsRoot, RemoveUnpinsAndIsIdempotent) {
  absl::StatusOr<fs::path> path = netns_->Create(Id('a'));
  ASSERT_TRUE(path.ok());
  ASSERT_TRUE(netns_->Remove(Id('a')).ok());
  EXPECT_FALSE(fs::exists(*path));
  EXPECT_FALSE(*netns_->Exists(Id('a')));
  EXPECT_TRUE(netns_->Remove(Id('a')).ok()) << "second remove";
  EXPECT_TRUE(netns_->Remove(Id('b')).ok()) << "never created";
  // The ID can be used again.
  EXPECT_TRUE(netns_->Create(Id('a')).ok());
}

TEST_F(NetnsManagerAsRoot, ListPinnedFindsNamespacesAndCrashLeftovers) {
  ASSERT_TRUE(netns_->Create(Id('a')).ok());
  ASSERT_TRUE(netns_->Create(Id('b')).ok());
  // An empty file from a crash between creating the mount point and mounting.
  std::ofstream(netns_->Path(Id('c'))).put('\0');
  std::ofstream(netns_->dir() / "not-ours");  // ignored: not an ID

  absl::StatusOr<std::vector<PinnedNetns>> pinned = netns_->ListPinned();
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  std::vector<std::string> found;
  for (const PinnedNetns& p : *pinned) {
    found.push_back(p.id + (p.mounted ? ":mounted" : ":stale"));
    EXPECT_EQ(p.path, netns_->Path(p.id));
  }
  EXPECT_THAT(found, UnorderedElementsAre(Id('a') + ":mounted", Id('b') + ":mounted", Id('c') + ":stale"));
  EXPECT_FALSE(*netns_->Exists(Id('c')));

  // Create reuses a stale mount point; Remove deletes one.
  ASSERT_TRUE(netns_->Create(Id('c')).ok());
  EXPECT_TRUE(*netns_->Exists(Id('c')));
  std::ofstream(netns_->Path(Id('d'))).put('\0');
  EXPECT_TRUE(netns_->Remove(Id('d')).ok());
  EXPECT_FALSE(fs::exists(netns_->Path(Id('d'))));
}

TEST_F(NetnsManagerAsRoot, SharedDirectoryModeMakesTheDirectoryASharedMount) {
  netns_ = std::make_unique<PinnedNetnsManager>(state_dir_);  // default: shared
  ASSERT_TRUE(netns_->Create(Id('a')).ok());
  ASSERT_TRUE(netns_->Create(Id('b')).ok()) << "second create must not stack another bind mount";
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  int dir_mounts = 0;
  bool shared = false;
  while (std::getline(mountinfo, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, mount_point;
    fields >> id >> parent >> devno >> root >> mount_point;
    if (mount_point == netns_->dir().string()) {
      ++dir_mounts;
      shared = line.find(" shared:") != std::string::npos;
    }
  }
  EXPECT_EQ(dir_mounts, 1);
  EXPECT_TRUE(shared);
  EXPECT_TRUE(netns_->Remove(Id('a')).ok());
  EXPECT_FALSE(fs::exists(netns_->Path(Id('a'))));
}

TEST(NetnsManager, ListPinnedOfAMissingDirectoryIsEmpty) {
  PinnedNetnsManager netns("/nonexistent/kvcri-test");
  absl::StatusOr<std::vector<PinnedNetns>> pinned = netns.ListPinned();
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  EXPECT_TRUE(pinned->empty());
}

TEST(NetnsManager, RejectsMalformedIds) {
  PinnedNetnsManager netns("/nonexistent/kvcri-test");
  for (std::string bad : {std::string(""), std::string("../../etc/passwd"), std::string(64, 'A')}) {
    EXPECT_EQ(netns.Create(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(netns.Remove(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(netns.Exists(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST_F(RunInNetnsAsRoot, ReturnsTheFunctionsStatus) {
  absl::StatusOr<fs::path> path = netns_->Create(Id('a'));
  ASSERT_TRUE(path.ok());
  absl::Status s = base::RunInNetns(*path, [] { return absl::UnavailableError("plugin said no"); });
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "plugin said no");
}

TEST_F(RunInNetnsAsRoot, FailsWithoutRunningForAMissingOrNonNamespacePath) {
  bool ran = false;
  auto fn = [&] {
    ran = true;
    return absl::OkStatus();
  };
  absl::Status s = base::RunInNetns(state_dir_ / "missing", fn);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("missing\""));

  fs::path plain = state_dir_ / "plain";
  std::ofstream(plain).put('x');
  s = base::RunInNetns(plain, fn);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("setns"));
  EXPECT_FALSE(ran);
}

TEST_F(RunInNetnsAsRoot, SocketsOpenedInsideBelongToTheNamespace) {
  absl::StatusOr<fs::path> path = netns_->Create(Id('a'));
  ASSERT_TRUE(path.ok());
  int fd = -1;
  absl::Status s = base::RunInNetns(*path, [&] {
    fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    return fd >= 0 ? absl::OkStatus() : absl::ErrnoToStatus(errno, "socket");
  });
  ASSERT_TRUE(s.ok()) << s;
  base::UniqueFd sock(fd);
  // Used from this thread, the socket still reports the pinned namespace.
  base::UniqueFd ns(::ioctl(sock.get(), SIOCGSKNS));
  ASSERT_TRUE(ns.valid()) << "ioctl(SIOCGSKNS): " << ::strerror(errno);
  struct stat st {};
  ASSERT_EQ(::fstat(ns.get(), &st), 0);
  EXPECT_EQ(st.st_ino, Inode(*path));
  EXPECT_NE(st.st_ino, ThreadNetns());
}

}  // namespace
}  // namespace kvcri::sandbox
