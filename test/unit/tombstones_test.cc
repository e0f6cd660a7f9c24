// Tombstones: removed IDs are remembered exactly, for the TTL, and at most max_entries of them, oldest out first.
#include "cri/tombstones.h"

#include <gtest/gtest.h>

#include <string>

#include "config/base/clock.h"

namespace kvcri::cri {
namespace {

TEST(Tombstones, RemembersExactIdsUntilTheTtlHasPassed) {
  base::ManualClock clock;
  Tombstones t(&clock, absl::Minutes(10));
  t.Add("abc");
  EXPECT_TRUE(t.Contains("abc"));
  EXPECT_FALSE(t.Contains("ab"));
  EXPECT_FALSE(t.Contains("abcd"));
  clock.Advance(absl::Minutes(10) - absl::Nanoseconds(1));
  EXPECT_TRUE(t.Contains("abc"));
  EXPECT_EQ(t.size(), 1u);
  clock.Advance(absl::Nanoseconds(1));
  EXPECT_FALSE(t.Contains("abc"));
  EXPECT_EQ(t.size(), 0u);
}

TEST(Tombstones, AddingAnIdAgainStartsANewTtl) {
  base::ManualClock clock;
  Tombstones t(&clock, absl::Minutes(10));
  t.Add("abc");
  clock.Advance(absl::Minutes(6));
  t.Add("abc");
  clock.Advance(absl::Minutes(6));
  EXPECT_TRUE(t.Contains("abc"));
  EXPECT_EQ(t.size(), 1u);
}

TEST(Tombstones, EvictsTheOldestBeyondTheSizeBound) {
  base::ManualClock clock;
  Tombstones t(&clock, absl::Minutes(10), /*max_entries=*/3);
  for (const char* id : {"a", "b", "c", "d"}) {
    t.Add(id);
    clock.Advance(absl::Seconds(1));
  }
  EXPECT_EQ(t.size(), 3u);
  EXPECT_FALSE(t.Contains("a"));
  EXPECT_TRUE(t.Contains("b"));
  EXPECT_TRUE(t.Contains("d"));
  // Re-adding moves an ID to the young end: "b" outlives "c" now.
  t.Add("b");
  t.Add("e");
  EXPECT_FALSE(t.Contains("c"));
  EXPECT_TRUE(t.Contains("b"));
  EXPECT_TRUE(t.Contains("d"));
  EXPECT_TRUE(t.Contains("e"));
}

TEST(Tombstones, DefaultBoundKeepsTheNewest4096) {
  base::ManualClock clock;
  Tombstones t(&clock);
  for (int i = 0; i < 5000; ++i) t.Add(std::to_string(i));
  EXPECT_EQ(t.size(), Tombstones::kDefaultMaxEntries);
  EXPECT_FALSE(t.Contains("903"));
  EXPECT_TRUE(t.Contains("904"));
  EXPECT_TRUE(t.Contains("4999"));
}

}  // namespace
}  // namespace kvcri::cri
