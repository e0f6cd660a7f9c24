#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/console_log.h"

namespace kvcri::runtime {
namespace {

using ::testing::ElementsAre;

class ConsoleLogTest : public ::testing::Test {
 protected:
  ConsoleLogTest() {
    char tmpl[] = "/tmp/kvcon-XXXXXX";
    dir_ = mkdtemp(tmpl);
    console_ = dir_ / "console.log";
    log_ = dir_ / "c.log";
  }
  ~ConsoleLogTest() override { std::filesystem::remove_all(dir_); }

  ConsoleLogOptions Options() {
    ConsoleLogOptions o;
    o.start_thread = false;
    o.now = [this] { return now_; };
    return o;
  }
  void Append(const std::string& s) { std::ofstream(console_, std::ios::app) << s; }
  std::vector<std::string> LogLines(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::vector<std::string> out;
    std::string line;
    while (std::getline(in, line)) out.push_back(line);
    return out;
  }
  std::vector<std::string> LogLines() { return LogLines(log_); }

  std::filesystem::path dir_, console_, log_;
  absl::Time now_ = absl::FromUnixSeconds(1700000000) + absl::Nanoseconds(5);
};

constexpr char kTs[] = "2023-11-14T22:13:20.000000005Z";

TEST(FormatCriLogLine, Rfc3339NanoUtc) {
  EXPECT_EQ(FormatCriLogLine(absl::FromUnixSeconds(1700000000) + absl::Nanoseconds(5), false, "hi"),
            std::string(kTs) + " stdout F hi\n");
  EXPECT_EQ(FormatCriLogLine(absl::FromUnixSeconds(0), true, ""), "1970-01-01T00:00:00.000000000Z stdout P \n");
}

TEST_F(ConsoleLogTest, CopiesCompleteLinesAndStripsCr) {
  ConsoleLogCopier c(Options());
  Append("hello\r\nworld\r\n");
  ASSERT_TRUE(c.Add("c1", console_, log_).ok());
  c.PollOnce();
  EXPECT_THAT(LogLines(), ElementsAre(std::string(kTs) + " stdout F hello", std::string(kTs) + " stdout F world"));
}

TEST_F(ConsoleLogTest, PartialLineWaitsThenGoesOutAsP) {
  ConsoleLogCopier c(Options());
  ASSERT_TRUE(c.Add("c1", console_, log_).ok());
  Append("abc");
  c.PollOnce();
  EXPECT_TRUE(LogLines().empty());
  now_ += absl::Milliseconds(500);
  c.PollOnce();
  EXPECT_TRUE(LogLines().empty());
  now_ += absl::Milliseconds(600);
  c.PollOnce();
  ASSERT_EQ(LogLines().size(), 1u);
  EXPECT_THAT(LogLines()[0], ::testing::EndsWith(" stdout P abc"));
  Append("def\r\n");
  c.PollOnce();
  ASSERT_EQ(LogLines().size(), 2u);
  EXPECT_THAT(LogLines()[1], ::testing::EndsWith(" stdout F def"));
}

TEST_F(ConsoleLogTest, LongLineIsSplitIntoPChunks) {
  ConsoleLogOptions o = Options();
  o.max_line_bytes = 4;
  ConsoleLogCopier c(o);
  ASSERT_TRUE(c.Add("c1", console_, log_).ok());
  Append("0123456789\nxy");
  c.PollOnce();
  auto lines = LogLines();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_THAT(lines[0], ::testing::EndsWith(" stdout P 0123"));
  EXPECT_THAT(lines[1], ::testing::EndsWith(" stdout P 4567"));
  EXPECT_THAT(lines[2], ::testing::EndsWith(" stdout F 89"));
}

TEST_F(ConsoleLogTest, RemoveFlushesTailAsF) {
  ConsoleLogCopier c(Options());
  ASSERT_TRUE(c.Add("c1", console_, log_).ok());
  Append("line\nreboot: Power down");
  ASSERT_TRUE(c.Remove("c1").ok());
  auto lines = LogLines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[1], ::testing::EndsWith(" stdout F reboot: Power down"));
  EXPECT_TRUE(c.Remove("c1").ok());  // unknown: fine
}

TEST_F(ConsoleLogTest, ResumesAfterRestartWithoutDuplicatesOrLoss) {
  {
    ConsoleLogCopier c(Options());
    Append("one\ntw");
    ASSERT_TRUE(c.Add("c1", console_, log_).ok());
    c.PollOnce();
  }  // daemon goes away with "tw" pending
  Append("o\nthree\n");  // the guest kept writing meanwhile
  ConsoleLogCopier c(Options());
  ASSERT_TRUE(c.Add("c1", console_, log_).ok());
  c.PollOnce();
  auto lines = LogLines();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_THAT(lines[0], ::testing::EndsWith("F one"));
  EXPECT_THAT(lines[1], ::testing::EndsWith("F two"));
  EXPECT_THAT(lines[2], ::testing::EndsWith("F three"));
  std::ifstream state(ConsoleOffsetPath(console_));
  std::string text((std::istreambuf_iterator<char>(state)), {});
  EXPECT_EQ(text, "v1 14\n");
}

TEST_F(ConsoleLogTest, ReopenFollowsRotation) {
  ConsoleLogCopier c(Options());
  ASSERT_TRUE(c.Add("c1", console_, log_).ok());
  Append("before\n");
  c.PollOnce();
  std::filesystem::rename(log_, dir_ / "c.log.1");
  ASSERT_TRUE(c.Reopen("c1").ok());
  Append("after\n");
  c.PollOnce();
  EXPECT_THAT(LogLines(dir_ / "c.log.1"), ElementsAre(::testing::EndsWith("F before")));
  EXPECT_THAT(LogLines(), ElementsAre(::testing::EndsWith("F after")));
  EXPECT_EQ(c.Reopen("nope").code(), absl::StatusCode::kNotFound);
}

TEST_F(ConsoleLogTest, WaitsForConsoleFileToAppear) {
  ConsoleLogCopier c(Options());
  ASSERT_TRUE(c.Add("c1", console_, log_).ok());
  c.PollOnce();
  Append("late\n");
  c.PollOnce();
  EXPECT_THAT(LogLines(), ElementsAre(::testing::EndsWith("F late")));
}

TEST_F(ConsoleLogTest, AddIsIdempotentButRejectsOtherPaths) {
  ConsoleLogCopier c(Options());
  ASSERT_TRUE(c.Add("c1", console_, log_).ok());
  EXPECT_TRUE(c.Add("c1", console_, log_).ok());
  EXPECT_EQ(c.Add("c1", console_, dir_ / "other.log").code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(ConsoleLogTest, BackgroundThreadCopies) {
  ConsoleLogOptions o;
  o.poll_interval = absl::Milliseconds(10);
  ConsoleLogCopier c(o);
  ASSERT_TRUE(c.Add("c1", console_, log_).ok());
  Append("threaded\n");
  for (int i = 0; i < 500 && LogLines().empty(); ++i) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_THAT(LogLines(), ElementsAre(::testing::EndsWith("F threaded")));
}

}  // namespace
}  // namespace kvcri::runtime
