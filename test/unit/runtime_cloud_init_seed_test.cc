// The cloud-init seed disk: a clean VFAT image labelled cidata, meta-data, network-config v2.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "runtime/cloud_init_seed.h"
#include "config/base/file_util.h"
#include "test/fakes/shell.h"

namespace kvcri::runtime {
namespace {

using kvcri::testing::Sh;
using kvcri::testing::ShResult;

namespace fs = std::filesystem;
using ::testing::HasSubstr;


class CloudInitImage : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* tool : {"mtype", "mdir", "fsck.vfat"}) {
      ASSERT_EQ(Sh(std::string("command -v ") + tool).exit_code, 0)
          << tool << " is missing: install mtools and dosfstools (scripts/install-deps.sh --test)";
    }
    char tmpl[] = "/tmp/kvcri-cidata-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { (void)base::RemoveAll(dir_); }

  std::string Read(const fs::path& img, const std::string& name) {
    ShResult r = Sh("MTOOLS_SKIP_CHECK=1 mtype -i " + img.string() + " ::" + name);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r.output;
  }

  fs::path dir_;
};

SeedNic TestNic() {
  SeedNic nic;
  nic.ifname = "eth0";
  nic.mac = "0a:58:0a:f4:01:05";
  nic.mtu = 1450;
  nic.addresses = {"10.244.1.5/24", "fd00:1::5/64"};
  nic.routes = {{"0.0.0.0/0", "10.244.1.1"}, {"10.96.0.0/12", "10.244.1.1"}, {"::/0", "fd00:1::1"}};
  return nic;
}

TEST_F(CloudInitImage, SeedIsCleanVfatLabelledCidataWithTheThreeFiles) {
  CloudInitSeed seed;
  seed.instance_id = "3fa4c1d2-uid";
  seed.hostname = "web-0";
  seed.user_data = "#cloud-config\npassword: \"x\"\n";
  seed.network_config = NetworkConfigV2({TestNic()}, {"10.96.0.10"}, {"default.svc.cluster.local", "cluster.local"});
  fs::path img = dir_ / "seed.img";
  ASSERT_TRUE(WriteSeedImage(img, seed).ok());
  EXPECT_EQ(fs::status(img).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);

  ShResult fsck = Sh("fsck.vfat -n " + img.string());
  EXPECT_EQ(fsck.exit_code, 0) << fsck.output;
  ShResult dir = Sh("MTOOLS_SKIP_CHECK=1 mdir -i " + img.string() + " ::");
  ASSERT_EQ(dir.exit_code, 0) << dir.output;
  EXPECT_THAT(dir.output, HasSubstr("CIDATA"));
  EXPECT_THAT(dir.output, HasSubstr("meta-data"));
  EXPECT_THAT(dir.output, HasSubstr("user-data"));
  EXPECT_THAT(dir.output, HasSubstr("network-config"));

  EXPECT_EQ(Read(img, "meta-data"), "instance-id: \"3fa4c1d2-uid\"\nlocal-hostname: \"web-0\"\n");
  EXPECT_EQ(Read(img, "user-data"), seed.user_data);
  EXPECT_EQ(Read(img, "network-config"), seed.network_config);
  ShResult blkid =
      Sh("command -v blkid >/dev/null && blkid -o value -s LABEL " + img.string() + " || echo CIDATA");
  EXPECT_THAT(blkid.output, HasSubstr("CIDATA"));
}

TEST_F(CloudInitImage, DefaultUserDataAndNoNetworkConfig) {
  CloudInitSeed seed;
  seed.instance_id = "sb-1";
  fs::path img = dir_ / "seed.img";
  ASSERT_TRUE(WriteSeedImage(img, seed).ok());
  EXPECT_EQ(Read(img, "user-data"), "#cloud-config\n{}\n");
  ShResult dir = Sh("MTOOLS_SKIP_CHECK=1 mdir -i " + img.string() + " ::");
  EXPECT_THAT(dir.output, ::testing::Not(HasSubstr("network-config")));
}

TEST_F(CloudInitImage, LargeUserDataAndExtraFilesSpanManyClusters) {
  CloudInitSeed seed;
  seed.instance_id = "sb-2";
  seed.user_data = "#!/bin/sh\n";
  for (int i = 0; i < 2500000; ++i)
    seed.user_data += static_cast<char>('a' + i % 26);  // > 4000 sectors: 2-sector clusters
  seed.extra_files = {
      {"vendor-data", "#cloud-config\n{}\n"}, {"a-rather-long-volume-hint-name.json", "{}"}, {"empty", ""}};
  fs::path img = dir_ / "seed.img";
  ASSERT_TRUE(WriteSeedImage(img, seed).ok());
  ShResult fsck = Sh("fsck.vfat -n " + img.string());
  EXPECT_EQ(fsck.exit_code, 0) << fsck.output;
  EXPECT_EQ(Read(img, "user-data"), seed.user_data);
  EXPECT_EQ(Read(img, "a-rather-long-volume-hint-name.json"), "{}");
  EXPECT_EQ(Read(img, "vendor-data"), "#cloud-config\n{}\n");
  EXPECT_EQ(Read(img, "empty"), "");
}

TEST(CloudInitSeed, RejectsMissingInstanceIdAndClashingNames) {
  EXPECT_TRUE(absl::IsInvalidArgument(SeedFiles(CloudInitSeed{}).status()));
  CloudInitSeed seed;
  seed.instance_id = "x";
  seed.extra_files = {{"META-DATA", ""}};
  auto files = SeedFiles(seed);
  ASSERT_TRUE(files.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(BuildVfatImage(kSeedLabel, *files).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(BuildVfatImage(kSeedLabel, {{"a/b", ""}}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(BuildVfatImage("twelve-chars", {}).status()));
}

TEST(CloudInitNetworkConfig, MatchesByMacWithStaticAddressesRoutesAndDns) {
  std::string nc = NetworkConfigV2({TestNic()}, {"10.96.0.10"}, {"default.svc.cluster.local"});
  EXPECT_EQ(nc,
            "version: 2\n"
            "ethernets:\n"
            "  eth0:\n"
            "    match:\n"
            "      macaddress: \"0a:58:0a:f4:01:05\"\n"
            "    set-name: \"eth0\"\n"
            "    dhcp4: false\n"
            "    dhcp6: false\n"
            "    accept-ra: true\n"
            "    addresses:\n"
            "      - \"10.244.1.5/24\"\n"
            "      - \"fd00:1::5/64\"\n"
            "    mtu: 1450\n"
            "    routes:\n"
            "      - to: \"0.0.0.0/0\"\n"
            "        via: \"10.244.1.1\"\n"
            "      - to: \"10.96.0.0/12\"\n"
            "        via: \"10.244.1.1\"\n"
            "      - to: \"::/0\"\n"
            "        via: \"fd00:1::1\"\n"
            "    nameservers:\n"
            "      addresses: [\"10.96.0.10\"]\n"
            "      search: [\"default.svc.cluster.local\"]\n");
}

TEST(CloudInitNetworkConfig, RefusesRouterAdvertsOnIpv4OnlyNics) {
  SeedNic nic = TestNic();
  nic.addresses = {"10.244.1.5/24"};
  std::string nc = NetworkConfigV2({nic}, {}, {});
  EXPECT_THAT(nc, HasSubstr("    dhcp6: false\n    accept-ra: false\n"));
  EXPECT_THAT(nc, ::testing::Not(HasSubstr("accept-ra: true")));
}

TEST(CloudInitMetaData, QuotesValues) {
  CloudInitSeed seed;
  seed.instance_id = "a\"b";
  seed.hostname = "h";
  EXPECT_EQ(MetaData(seed), "instance-id: \"a\\\"b\"\nlocal-hostname: \"h\"\n");
}

}  // namespace
}  // namespace kvcri::runtime

namespace kvcri::runtime {
namespace {

TEST_F(CloudInitImage, GuestAgentInjectionPutsTheBinaryAndVendorDataOnTheSeed) {
  fs::path bin = dir_ / "kvcri-agent";
  std::string binary(300000, '\0');
  for (size_t i = 0; i < binary.size(); ++i) binary[i] = static_cast<char>(i * 7);
  ASSERT_TRUE(base::WriteFileAtomic(bin, binary, 0755).ok());
  absl::StatusOr<std::vector<VfatFile>> files = GuestAgentSeedFiles(bin);
  ASSERT_TRUE(files.ok()) << files.status();
  CloudInitSeed seed;
  seed.instance_id = "uid-1";
  seed.user_data = "#cloud-config\nusers: []\n";
  seed.extra_files = *files;
  fs::path img = dir_ / "seed.img";
  ASSERT_TRUE(WriteSeedImage(img, seed).ok());
  ShResult fsck = Sh("fsck.vfat -n " + img.string());
  EXPECT_EQ(fsck.exit_code, 0) << fsck.output;
  // The user's user-data is untouched; the agent comes with vendor-data.
  EXPECT_EQ(Read(img, "user-data"), seed.user_data);
  ShResult cmp = Sh("MTOOLS_SKIP_CHECK=1 mtype -i " + img.string() + " ::kvcri-agent | cmp - " + bin.string());
  EXPECT_EQ(cmp.exit_code, 0) << cmp.output;
  std::string vendor = Read(img, "vendor-data");
  EXPECT_TRUE(vendor.starts_with("#cloud-config\n")) << vendor;
  EXPECT_THAT(vendor, HasSubstr("install -m 0755 \"$d/kvcri-agent\" /usr/local/bin/kvcri-agent"));
  EXPECT_THAT(vendor, HasSubstr("ExecStart=/usr/local/bin/kvcri-agent"));
}

TEST(GuestAgentSeedFiles, MissingBinaryNamesTheAnnotationAndThePath) {
  absl::StatusOr<std::vector<VfatFile>> files = GuestAgentSeedFiles("/no/such/kvcri-agent");
  ASSERT_FALSE(files.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(files.status())) << files.status();
  EXPECT_THAT(std::string(files.status().message()), HasSubstr("kubevirt-cri.io/guest-agent=inject"));
  EXPECT_THAT(std::string(files.status().message()), HasSubstr("/no/such/kvcri-agent"));
}

}  // namespace
}  // namespace kvcri::runtime
