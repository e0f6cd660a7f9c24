// The [upstream] section: defaults, VM-only, and refusals that name the key.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "config/config.h"

namespace kvcri::config {
namespace {

using ::testing::HasSubstr;

TEST(UpstreamConfig, DefaultsToTheNodesContainerdSocket) {
  absl::StatusOr<Config> c = ParseConfig("", "test");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->upstream.endpoint, "unix:///run/containerd/containerd.sock");
  EXPECT_EQ(c->upstream.list_timeout_seconds, 10);
  EXPECT_EQ(c->upstream.tombstone_ttl_seconds, 600);
}

TEST(UpstreamConfig, EmptyEndpointMeansVmOnly) {
  absl::StatusOr<Config> c = ParseConfig("[upstream]\nendpoint = \"\"\nlist_timeout_seconds = 3\n", "test");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->upstream.endpoint.empty());
  EXPECT_EQ(c->upstream.list_timeout_seconds, 3);
}

TEST(UpstreamConfig, TombstoneTtlIsSetInSecondsAndMustBePositive) {
  absl::StatusOr<Config> c = ParseConfig("[upstream]\ntombstone_ttl_seconds = 30\n", "test");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->upstream.tombstone_ttl_seconds, 30);
  c = ParseConfig("[upstream]\ntombstone_ttl_seconds = 0\n", "test");
  EXPECT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("upstream.tombstone_ttl_seconds"));
}

TEST(UpstreamConfig, RefusesNonUnixTargetsZeroTimeoutAndUnknownKeysNamingThem) {
  absl::StatusOr<Config> c = ParseConfig("[upstream]\nendpoint = \"localhost:1234\"\n", "test");
  EXPECT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("upstream.endpoint"));
  c = ParseConfig("[upstream]\nlist_timeout_seconds = 0\n", "test");
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("upstream.list_timeout_seconds"));
  c = ParseConfig("[upstream]\nendpiont = \"unix:///x\"\n", "test");
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("upstream.endpiont"));
}

}  // namespace
}  // namespace kvcri::config
