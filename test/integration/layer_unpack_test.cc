// UnpackLayer against hand-made layers: types, owners, modes, times, whiteouts in overlayfs's format, refusals; an overlay mount of two unpacked layers (root: chown, mknod, trusted xattrs, mount).
#include <archive.h>
#include <archive_entry.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "config/base/file_util.h"
#include "runtime/image/digest.h"
#include "runtime/image/image_store.h"
#include "runtime/image/layer_unpack.h"
#include "runtime/image/sandboxed_extract.h"
#include "test/client/host_util.h"
#include "test/client/oci_layout.h"

namespace kvcri::runtime::image {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::Entry;
using testing::Tar;
using testing::WriteLayout;

class LayerUnpack : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "needs root (chown, mknod, trusted.* xattrs, mount)";
    char tmpl[] = "/tmp/kvlayer-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    ASSERT_TRUE(base::MakeDirs(dir_ / "blobs/sha256").ok());
  }
  void TearDown() override {
    ::umount2((dir_ / "merged").c_str(), MNT_DETACH);
    (void)base::RemoveAll(dir_);
  }

  Descriptor Blob(const std::string& tar) {
    Descriptor d;
    d.media_type = "application/vnd.oci.image.layer.v1.tar";
    d.digest = Sha256Digest(tar);
    d.size = static_cast<int64_t>(tar.size());
    EXPECT_TRUE(base::WriteFileAtomic(dir_ / "blobs/sha256" / std::string(DigestHex(d.digest)), tar).ok());
    return d;
  }
  // In this process, or (`sandboxed_`) in the store's sandboxed child.
  absl::StatusOr<UnpackStats> Unpack(const std::vector<Entry>& entries, const std::string& out,
                                     ExtractLimits limits = {}) {
    Descriptor d = Blob(Tar(entries));
    fs::create_directories(dir_ / out);
    DirBlobSource source(dir_);
    LayerBudget budget;
    if (sandboxed_) {
      SandboxOptions o;
      o.limits = limits;
      return UnpackLayerSandboxed(source, d, dir_ / out, o, &budget);
    }
    absl::StatusOr<UnpackStats> st = UnpackLayer(source, d, dir_ / out, limits, &budget);
    if (st.ok()) {
      absl::Status marked = ApplyOverlayMarks(dir_ / out, *st);
      if (!marked.ok()) return marked;
    }
    return st;
  }
  static struct stat Lstat(const fs::path& p) {
    struct stat st {};
    EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
    return st;
  }

  fs::path dir_;
  bool sandboxed_ = false;
};

// The same cases through the sandboxed child the store uses.
class SandboxedLayerUnpack : public LayerUnpack {
 protected:
  SandboxedLayerUnpack() { sandboxed_ = true; }
};

TEST_F(LayerUnpack, EntriesKeepTheirTypeOwnerModeAndTime) {
  const std::string cap("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20);
  absl::StatusOr<UnpackStats> st = Unpack(
      {
          {.name = "etc", .type = AE_IFDIR, .perm = 0755, .mtime = 1600000000},
          {.name = "etc/passwd", .data = "root:x:0:0::/root:/bin/sh\n"},
          {.name = "bin/su", .perm = 04755, .data = "#!su"},  // bin/ is implied
          {.name = "bin/su2", .link = "bin/su", .hardlink = true},
          {.name = "bin/ping", .perm = 0755, .data = "ping", .capability = cap},
          {.name = "home/app/secret", .perm = 0600, .data = "s", .uid = 1000, .gid = 1001, .mtime = 1000000},
          {.name = "lib", .type = AE_IFLNK, .link = "/usr/lib"},
          {.name = "run/fifo", .type = AE_IFIFO, .perm = 0620},
          {.name = "dev/sda", .type = AE_IFCHR, .perm = 0660},
          {.name = "tmp", .type = AE_IFDIR, .perm = 01777},
      },
      "l1");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->skipped_devices, 1);
  const fs::path l = dir_ / "l1";
  EXPECT_EQ(testing::ReadFileOrEmpty(l / "etc/passwd"), "root:x:0:0::/root:/bin/sh\n");
  EXPECT_EQ(Lstat(l / "etc").st_mtime, 1600000000) << "a directory's time survives the entries below it";
  EXPECT_EQ(Lstat(l / "bin/su").st_mode & 07777, 04755u) << "setuid kept";
  EXPECT_EQ(Lstat(l / "bin/su").st_ino, Lstat(l / "bin/su2").st_ino) << "a hardlink";
  struct stat secret = Lstat(l / "home/app/secret");
  EXPECT_EQ(secret.st_uid, 1000u);
  EXPECT_EQ(secret.st_gid, 1001u);
  EXPECT_EQ(secret.st_mode & 07777, 0600u);
  EXPECT_EQ(secret.st_mtime, 1000000);
  EXPECT_TRUE(S_ISLNK(Lstat(l / "lib").st_mode));
  EXPECT_EQ(fs::read_symlink(l / "lib"), "/usr/lib") << "a symlink's target is the guest's to resolve";
  EXPECT_TRUE(S_ISFIFO(Lstat(l / "run/fifo").st_mode));
  EXPECT_EQ(Lstat(l / "run/fifo").st_mode & 07777, 0620u);
  EXPECT_FALSE(fs::exists(fs::symlink_status(l / "dev/sda"))) << "no device node of the host on the share";
  EXPECT_EQ(Lstat(l / "tmp").st_mode & 07777, 01777u);
  char got[64];
  ssize_t n = ::getxattr((l / "bin/ping").c_str(), "security.capability", got, sizeof got);
  ASSERT_EQ(n, 20) << "file capabilities kept";
  EXPECT_EQ(std::string(got, 20), cap);
}

TEST_F(LayerUnpack, WhiteoutsAreOverlayfsWhiteoutsAndAnOverlayMountHonoursThem) {
  ASSERT_TRUE(Unpack({{.name = "a/gone", .data = "old"},
                      {.name = "a/kept", .data = "kept"},
                      {.name = "b/hidden", .data = "hidden"}},
                     "lower")
                  .ok());
  absl::StatusOr<UnpackStats> st =
      Unpack({{.name = "a/.wh.gone"}, {.name = "b/.wh..wh..opq"}, {.name = "b/new", .data = "new"}}, "upper-layer");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->whiteouts, std::vector<std::string>{"a/gone"});
  EXPECT_EQ(st->opaque_dirs, std::vector<std::string>{"b"});
  struct stat wh = Lstat(dir_ / "upper-layer/a/gone");
  EXPECT_TRUE(S_ISCHR(wh.st_mode));
  EXPECT_EQ(wh.st_rdev, makedev(0, 0));
  char v[4] = {};
  EXPECT_EQ(::getxattr((dir_ / "upper-layer/b").c_str(), "trusted.overlay.opaque", v, sizeof v), 1);
  EXPECT_EQ(v[0], 'y');
  for (const char* d : {"merged", "upper", "work"}) fs::create_directories(dir_ / d);
  const std::string opts = "lowerdir=" + (dir_ / "upper-layer").string() + ":" + (dir_ / "lower").string() +
                           ",upperdir=" + (dir_ / "upper").string() + ",workdir=" + (dir_ / "work").string();
  ASSERT_EQ(::mount("overlay", (dir_ / "merged").c_str(), "overlay", MS_NODEV | MS_NOSUID, opts.c_str()), 0)
      << strerror(errno);
  EXPECT_FALSE(fs::exists(dir_ / "merged/a/gone"));
  EXPECT_EQ(testing::ReadFileOrEmpty(dir_ / "merged/a/kept"), "kept");
  EXPECT_FALSE(fs::exists(dir_ / "merged/b/hidden")) << "the opaque directory hides the lower one";
  EXPECT_EQ(testing::ReadFileOrEmpty(dir_ / "merged/b/new"), "new");
}

TEST_F(LayerUnpack, WhatWouldEscapeOrMisleadIsRefused) {
  struct Case {
    std::vector<Entry> entries;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{{.name = "/etc/passwd", .data = "x"}}, "is an absolute path"},
      {{{.name = "a/../../x", .data = "x"}}, "contains \"..\""},
      {{{.name = "lib", .type = AE_IFLNK, .link = "/"}, {.name = "lib/evil", .data = "x"}},
       "has /lib on its way, which is not a directory"},
      {{{.name = "x", .link = "../outside", .hardlink = true}}, "contains \"..\""},
      {{{.name = "x", .link = "missing", .hardlink = true}}, "which is not a file made earlier in this layer"},
      {{{.name = "d", .type = AE_IFDIR}, {.name = "x", .link = "d", .hardlink = true}},
       "which is not a file made earlier in this layer"},
      {{{.name = "d", .type = AE_IFDIR}, {.name = "d", .data = "file now"}}, "replaces a directory of the same layer"},
      {{{.name = "a/.wh.", .data = ""}}, "is a whiteout of no name"},
  };
  int i = 0;
  for (const Case& c : cases) {
    absl::StatusOr<UnpackStats> st = Unpack(c.entries, "refused" + std::to_string(i++));
    ASSERT_FALSE(st.ok()) << c.message;
    EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument) << st.status();
    EXPECT_THAT(std::string(st.status().message()), HasSubstr(c.message));
  }
  // Nothing was written outside the layer's directory.
  EXPECT_FALSE(fs::exists(dir_ / "outside"));
  EXPECT_FALSE(fs::exists(dir_ / "x"));
}

TEST_F(LayerUnpack, MarksFromTheChildAreCheckedAndNeverFollowASymlink) {
  ASSERT_TRUE(Unpack({{.name = "link", .type = AE_IFLNK, .link = "/"}, {.name = "d", .type = AE_IFDIR}}, "m").ok());
  for (const char* bad : {"../x", "/etc/x", "a//b", "./a", ""}) {
    UnpackStats marks;
    marks.whiteouts = {bad};
    EXPECT_EQ(ApplyOverlayMarks(dir_ / "m", marks).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  UnpackStats through;
  through.whiteouts = {"link/etc"};
  EXPECT_FALSE(ApplyOverlayMarks(dir_ / "m", through).ok()) << "a whiteout through a symlink";
  EXPECT_FALSE(fs::exists(fs::symlink_status("/etc/etc")));
  UnpackStats opaque;
  opaque.opaque_dirs = {"link"};
  EXPECT_FALSE(ApplyOverlayMarks(dir_ / "m", opaque).ok()) << "an opaque mark on a symlink";
  UnpackStats fine;
  fine.whiteouts = {"d/x"};
  fine.opaque_dirs = {"d", ""};
  EXPECT_TRUE(ApplyOverlayMarks(dir_ / "m", fine).ok());
  EXPECT_TRUE(S_ISCHR(Lstat(dir_ / "m/d/x").st_mode));
}

TEST_F(LayerUnpack, TheImageBudgetBoundsTheLayer) {
  ExtractLimits limits;
  limits.max_entries = 2;
  absl::StatusOr<UnpackStats> st =
      Unpack({{.name = "a", .data = "1"}, {.name = "b", .data = "2"}, {.name = "c", .data = "3"}}, "big", limits);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("max_image_entries"));
  limits = {};
  limits.max_bytes = 4096;
  st = Unpack({{.name = "a", .data = std::string(10000, 'x')}}, "big2", limits);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("max_image_bytes"));
}

TEST_F(SandboxedLayerUnpack, TheChildMakesTheSameFilesAndTheParentTheWhiteouts) {
  absl::StatusOr<UnpackStats> st = Unpack({{.name = "bin/su", .perm = 04755, .data = "#!su"},
                                           {.name = "home/app/f", .perm = 0600, .data = "f", .uid = 1000, .gid = 1001},
                                           {.name = "lib", .type = AE_IFLNK, .link = "/usr/lib"},
                                           {.name = "run/fifo", .type = AE_IFIFO, .perm = 0620},
                                           {.name = "dev/sda", .type = AE_IFCHR},
                                           {.name = "a/.wh.gone"},
                                           {.name = "b/.wh..wh..opq"}},
                                          "s");
  ASSERT_TRUE(st.ok()) << st.status();
  const fs::path l = dir_ / "s";
  EXPECT_EQ(Lstat(l / "bin/su").st_mode & 07777, 04755u);
  EXPECT_EQ(Lstat(l / "home/app/f").st_uid, 1000u);
  EXPECT_EQ(Lstat(l / "home/app/f").st_gid, 1001u);
  EXPECT_TRUE(S_ISLNK(Lstat(l / "lib").st_mode));
  EXPECT_TRUE(S_ISFIFO(Lstat(l / "run/fifo").st_mode));
  EXPECT_FALSE(fs::exists(fs::symlink_status(l / "dev/sda")));
  EXPECT_EQ(st->skipped_devices, 1);
  EXPECT_TRUE(S_ISCHR(Lstat(l / "a/gone").st_mode));
  char v[4] = {};
  EXPECT_EQ(::getxattr((l / "b").c_str(), "trusted.overlay.opaque", v, sizeof v), 1);
  EXPECT_FALSE(fs::exists(l / "s.child")) << "nothing of the child's own left";
}

TEST_F(SandboxedLayerUnpack, RefusalsComeBackWithTheirCodeAndMessage) {
  absl::StatusOr<UnpackStats> st =
      Unpack({{.name = "lib", .type = AE_IFLNK, .link = "/"}, {.name = "lib/evil", .data = "x"}}, "r");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("has /lib on its way"));
  ExtractLimits limits;
  limits.max_bytes = 4096;
  st = Unpack({{.name = "big", .data = std::string(100000, 'x')}}, "r2", limits);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("max_image_bytes"));
}

TEST_F(LayerUnpack, TheStoreUnpacksAPlainImagesLayersOnceAndFreesThemWithTheLastImageUsingThem) {
  const std::string base = Tar({{.name = "etc/passwd", .data = "root:x:0:0::/root:/bin/sh\n"},
                                {.name = "etc/motd", .data = "hello"}});
  const std::string top1 = Tar({{.name = "etc/.wh.motd"}, {.name = "app1", .data = "1"}});
  const std::string top2 = Tar({{.name = "app2", .data = "2"}});
  WriteLayout(dir_ / "layout1", {base, top1});
  WriteLayout(dir_ / "layout2", {base, top2});
  absl::StatusOr<std::unique_ptr<LocalImageStore>> store = LocalImageStore::Open(dir_ / "store", {});
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<ImageInfo> one = (*store)->Import(dir_ / "layout1", "plain/one:1", "");
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_EQ(one->layers.size(), 2u);
  ASSERT_EQ(one->layer_dirs.size(), 2u);
  EXPECT_EQ(one->layers[0], Sha256Digest(base));
  EXPECT_EQ(testing::ReadFileOrEmpty(one->layer_dirs[0] / "etc/motd"), "hello");
  EXPECT_TRUE(S_ISCHR(Lstat(one->layer_dirs[1] / "etc/motd").st_mode)) << "the upper layer's whiteout";
  const ino_t base_ino = Lstat(one->layer_dirs[0]).st_ino;
  absl::StatusOr<ImageInfo> two = (*store)->Import(dir_ / "layout2", "plain/two:1", "");
  ASSERT_TRUE(two.ok()) << two.status();
  ASSERT_EQ(two->layer_dirs.size(), 2u);
  EXPECT_EQ(two->layer_dirs[0], one->layer_dirs[0]) << "one directory for the shared layer";
  EXPECT_EQ(Lstat(two->layer_dirs[0]).st_ino, base_ino) << "not unpacked again";
  // Resolve gives the same paths.
  absl::StatusOr<ImageInfo> resolved = (*store)->Resolve("plain/two:1");
  ASSERT_TRUE(resolved.ok());
  EXPECT_EQ(resolved->layer_dirs, two->layer_dirs);

  ASSERT_TRUE((*store)->Remove("plain/one:1", nullptr).ok());
  EXPECT_FALSE(fs::exists(one->layer_dirs[1])) << "a layer only the removed image used goes";
  EXPECT_TRUE(fs::exists(one->layer_dirs[0])) << "a layer another image uses stays";
  ASSERT_TRUE((*store)->Remove("plain/two:1", nullptr).ok());
  EXPECT_FALSE(fs::exists(two->layer_dirs[0]));
  EXPECT_FALSE(fs::exists(two->layer_dirs[1]));
  // A staging leftover (a crash mid-unpack) goes at the next open.
  fs::create_directories(dir_ / "store/layers/sha256/.tmp-abc-123/etc");
  store->reset();
  store = LocalImageStore::Open(dir_ / "store", {});
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_FALSE(fs::exists(dir_ / "store/layers/sha256/.tmp-abc-123"));
}

}  // namespace
}  // namespace kvcri::runtime::image
