// The wiring record in the tap's IFLA_IFALIAS: round trips and refused aliases.
#include <gtest/gtest.h>

#include "cni/tap.h"

namespace kvcri::cni {
namespace {

TEST(WiringAlias, RoundTripsAddressesAndRoutes) {
  WiredNic nic;
  nic.tap_name = "tap0";
  nic.addresses = {{"10.244.1.5", 24}, {"fd00:1::5", 64}};
  nic.routes = {{"0.0.0.0/0", "10.244.1.1"}, {"::/0", "fd00:1::1"}, {"192.168.7.0/24", ""}};
  auto alias = EncodeWiringAlias(nic);
  ASSERT_TRUE(alias.ok()) << alias.status();
  WiredNic back;
  ASSERT_TRUE(DecodeWiringAlias(*alias, &back).ok());
  EXPECT_EQ(back.addresses, nic.addresses);
  EXPECT_EQ(back.routes, nic.routes);
  EXPECT_EQ(back.gateway4, "10.244.1.1");
  EXPECT_EQ(back.gateway6, "fd00:1::1");
}

TEST(WiringAlias, EmptyNicRoundTrips) {
  WiredNic nic, back;
  auto alias = EncodeWiringAlias(nic);
  ASSERT_TRUE(alias.ok());
  ASSERT_TRUE(DecodeWiringAlias(*alias, &back).ok());
  EXPECT_TRUE(back.addresses.empty());
  EXPECT_TRUE(back.routes.empty());
}

TEST(WiringAlias, TooManyRoutesIsResourceExhausted) {
  WiredNic nic;
  for (int i = 0; i < 20; ++i) nic.routes.push_back({"172.16." + std::to_string(i) + ".0/24", "10.244.1.1"});
  EXPECT_TRUE(absl::IsResourceExhausted(EncodeWiringAlias(nic).status()));
}

TEST(WiringAlias, ForeignAliasIsInvalidArgument) {
  WiredNic nic;
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeWiringAlias("uplink to rack 3", &nic)));
  EXPECT_TRUE(absl::IsInvalidArgument(DecodeWiringAlias("kvcri1 a=10.0.0.1 r=", &nic)));
}

}  // namespace
}  // namespace kvcri::cni
