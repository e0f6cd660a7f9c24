// UidClaims: exclusive node-wide VM uid claims, stale takeover, and PodLifecycle honouring claims of other processes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "sandbox/uid_claims.h"
#include "test/fakes/cri_harness.h"
#include "test/fakes/scratch_dir.h"

namespace kvcri {
namespace {

namespace fs = std::filesystem;

class UidClaimsTest : public testing::ScratchDirTest {};

TEST_F(UidClaimsTest, AUidIsHeldByOneOwnerUntilReleased) {
  sandbox::UidClaims claims(dir_ / "uids");
  const fs::path a = dir_ / "a", b = dir_ / "b";
  fs::create_directories(a);
  fs::create_directories(b);
  ASSERT_EQ(claims.TryClaim(7, a).value(), true);
  EXPECT_EQ(claims.TryClaim(7, a).value(), true) << "the owner's own claim";
  EXPECT_EQ(claims.TryClaim(7, b).value(), false) << "held by a live owner";
  EXPECT_TRUE(claims.Release(7, b).ok());
  EXPECT_EQ(claims.TryClaim(7, b).value(), false) << "only the owner releases";
  EXPECT_TRUE(claims.Release(7, a).ok());
  EXPECT_EQ(claims.TryClaim(7, b).value(), true);
  EXPECT_TRUE(claims.Release(8, a).ok()) << "no claim: nothing to do";
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "uids").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(UidClaimsTest, AClaimWhoseOwnerIsGoneIsTakenOverOnceStale) {
  sandbox::UidClaims claims(dir_ / "uids");
  const fs::path gone = dir_ / "gone", b = dir_ / "b";
  fs::create_directories(b);
  ASSERT_EQ(claims.TryClaim(9, gone).value(), true);  // a crash before the owner's dir was made
  EXPECT_EQ(claims.TryClaim(9, b).value(), false) << "young: its owner may still be making its dir";
  const absl::Time later = absl::Now() + sandbox::UidClaims::kStaleAfter + absl::Seconds(5);
  EXPECT_EQ(claims.TryClaim(9, b, later).value(), true);
  std::ifstream in(dir_ / "uids" / "9");
  std::string owner((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(owner, b.string());
  fs::create_directories(gone);
  EXPECT_EQ(claims.TryClaim(9, gone, later).value(), false) << "b's owner dir exists: not stale";
}

// Two Pods' shims share one vm_uid_range: a uid another process claimed is
// skipped, and the VM's removal releases its own claim.
class UidClaimsLifecycleTest : public cri::CriHarness {
 protected:
  void SetUp() override {
    add_deps_ = [this](cri::RuntimeDeps& deps) {
      if (claims_ == nullptr) claims_ = std::make_unique<sandbox::UidClaims>(dir_ / "uids");  // dir_ is SetUp's
      deps.uid_claims = claims_.get();
    };
    cri::CriHarness::SetUp();
  }
  std::unique_ptr<sandbox::UidClaims> claims_;
};

TEST_F(UidClaimsLifecycleTest, AUidClaimedByAnotherPodsShimIsSkippedAndRemovalReleasesOurs) {
  const uint32_t first = config_.security.vm_uid_first;
  fs::create_directories(dir_ / "other-shim-container");
  ASSERT_EQ(claims_->TryClaim(first, dir_ / "other-shim-container").value(), true);
  std::string pod;
  const std::string ctr = RunningPodVm("web", &pod);
  struct stat st {};
  ASSERT_EQ(::stat((config_.root / "containers" / ctr).c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, first + 1);
  EXPECT_TRUE(fs::exists(dir_ / "uids" / std::to_string(first + 1)));
  ASSERT_TRUE(StopPod(pod).ok());
  ASSERT_TRUE(RemovePod(pod).ok());
  EXPECT_FALSE(fs::exists(dir_ / "uids" / std::to_string(first + 1))) << "the removed VM's claim stays";
  EXPECT_TRUE(fs::exists(dir_ / "uids" / std::to_string(first))) << "another's claim went";
}

}  // namespace
}  // namespace kvcri
