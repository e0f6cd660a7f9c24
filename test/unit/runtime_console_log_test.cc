// ConsoleLogCopier: CRI log line format, partial lines, offsets across restarts, rotation, lock scope.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "config/base/clock.h"
#include "config/base/unique_fd.h"
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
    o.clock = &clock_;
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
  base::ManualClock clock_{absl::FromUnixSeconds(1700000000) + absl::Nanoseconds(5)};
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
  clock_.Advance(absl::Milliseconds(500));
  c.PollOnce();
  EXPECT_TRUE(LogLines().empty());
  clock_.Advance(absl::Milliseconds(600));
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

// A CRI log that is a FIFO nobody reads yet: once its pipe is full, a copy
// into it blocks in write() while holding its entry.
class BlockedLogTest : public ConsoleLogTest {
 protected:
  void SetUp() override {
    ASSERT_EQ(::mkfifo(fifo_.c_str(), 0600), 0) << std::strerror(errno);
    reader_.Reset(::open(fifo_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));  // so the copier's open does not wait
    ASSERT_TRUE(reader_.valid()) << std::strerror(errno);
    pipe_size_ = ::fcntl(reader_.get(), F_GETPIPE_SZ);
    ASSERT_GT(pipe_size_, 0);
    // Twice the pipe: the copy cannot finish before someone reads.
    std::ofstream out(chatty_console_);
    for (int i = 0; static_cast<long>(i) * 100 < 2L * pipe_size_; ++i) {
      std::string line = "line-" + std::to_string(100000 + i);
      out << line << std::string(99 - line.size(), '.') << "\n";
      ++chatty_lines_;
    }
  }
  ConsoleLogOptions Options() {
    ConsoleLogOptions o = ConsoleLogTest::Options();
    o.max_read_per_poll = 4 * static_cast<size_t>(pipe_size_);  // one pass reads it all
    return o;
  }
  // True once the pipe holds `pipe_size_` bytes, i.e. the writer is stuck.
  bool WaitForFullPipe() {
    for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
         std::chrono::steady_clock::now() < deadline;) {
      int queued = 0;
      if (::ioctl(reader_.get(), FIONREAD, &queued) == 0 && queued >= pipe_size_) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
  }
  // Reads the FIFO until `done` holds and nothing is left; returns what came.
  std::string Drain(const std::function<bool()>& done) {
    std::string got;
    char buf[64 * 1024];
    for (;;) {
      bool finished = done();  // before the read: what it wrote is in the pipe by then
      ssize_t n = ::read(reader_.get(), buf, sizeof buf);
      if (n > 0) {
        got.append(buf, static_cast<size_t>(n));
      } else if (finished) {
        return got;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
  }

  std::filesystem::path fifo_ = dir_ / "chatty.log";
  std::filesystem::path chatty_console_ = dir_ / "chatty.console";
  base::UniqueFd reader_;
  int pipe_size_ = 0;
  int chatty_lines_ = 0;
};

TEST_F(BlockedLogTest, RemoveOfOneVmDoesNotWaitForAnotherVmsBlockedCopy) {
  ConsoleLogCopier c(Options());
  ASSERT_TRUE(c.Add("chatty", chatty_console_, fifo_).ok());
  ASSERT_TRUE(c.Add("quiet", console_, log_).ok());
  Append("bye\n");
  std::atomic<bool> polled{false};
  std::thread poller([&] {
    c.PollOnce();
    polled = true;
  });
  bool stuck = WaitForFullPipe();
  std::future<absl::Status> removed = std::async(std::launch::async, [&] { return c.Remove("quiet"); });
  bool in_time = removed.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  // Unblock the poller whatever happened, so a failure cannot hang the test.
  std::string chatty = Drain([&] { return polled.load(); });
  poller.join();
  EXPECT_TRUE(stuck) << "the copy into the FIFO never filled the pipe";
  EXPECT_TRUE(in_time) << "Remove(quiet) waited behind the copy into chatty's blocked CRI log";
  EXPECT_TRUE(removed.get().ok());
  EXPECT_THAT(LogLines(), ElementsAre(::testing::EndsWith("F bye")));
  EXPECT_EQ(std::count(chatty.begin(), chatty.end(), '\n'), chatty_lines_);
}

TEST_F(BlockedLogTest, RemoveDuringACopyOfTheSameVmFlushesEverythingOnceInOrder) {
  std::ofstream(chatty_console_, std::ios::app) << "power off";  // a tail without newline
  ConsoleLogCopier c(Options());
  ASSERT_TRUE(c.Add("chatty", chatty_console_, fifo_).ok());
  std::atomic<bool> polled{false};
  std::thread poller([&] {
    c.PollOnce();
    polled = true;
  });
  if (!WaitForFullPipe()) {
    Drain([&] { return polled.load(); });
    poller.join();
    FAIL() << "the copy into the FIFO never filled the pipe";
  }
  std::future<absl::Status> removed = std::async(std::launch::async, [&] { return c.Remove("chatty"); });
  // It waits for the copy in progress (the pipe is still full).
  EXPECT_EQ(removed.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);
  auto both_done = [&] {
    return polled.load() && removed.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  };
  std::string got = Drain(both_done);
  poller.join();
  EXPECT_TRUE(removed.get().ok());
  std::vector<std::string> lines;
  std::istringstream in(got);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), static_cast<size_t>(chatty_lines_) + 1);
  for (int i = 0; i < chatty_lines_; ++i) {
    ASSERT_THAT(lines[i], ::testing::HasSubstr(" stdout F line-" + std::to_string(100000 + i) + ".")) << i;
  }
  EXPECT_THAT(lines.back(), ::testing::EndsWith(" stdout F power off"));
  EXPECT_EQ(c.Reopen("chatty").code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace kvcri::runtime
