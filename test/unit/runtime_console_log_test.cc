// ConsoleLogCopier: CRI log line format, the line splitter, bounds (backlog, budgets, disk), symlinks, lock scope.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
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
#include <random>
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

TEST_F(ConsoleLogTest, AStderrFileGoesIntoTheSameCriLogTaggedStderr) {
  // A micro-VM container: its stdout and stderr files, one CRI log.
  ConsoleLogCopier c(Options());
  const std::filesystem::path err = dir_ / "stderr";
  Append("out line\n");
  std::ofstream(err) << "err line\nerr tail";
  ASSERT_TRUE(c.Add("c1", console_, log_).ok());
  // One pass per target, so the lines' order does not hang on the order a
  // pass visits its targets in (a hash map's).
  c.PollOnce();
  ConsoleTarget t;
  t.console = err;
  t.log_dir = dir_;
  t.log_rel = "c.log";
  t.stream = "stderr";
  ASSERT_TRUE(c.Add("c1/stderr", t).ok());
  c.PollOnce();
  ASSERT_TRUE(c.Remove("c1/stderr").ok());  // the tail goes out as F
  EXPECT_THAT(LogLines(), ElementsAre(std::string(kTs) + " stdout F out line", std::string(kTs) + " stderr F err line",
                                      std::string(kTs) + " stderr F err tail"));
  EXPECT_EQ(FormatCriLogLine(absl::FromUnixSeconds(0), true, "x", "stderr"),
            "1970-01-01T00:00:00.000000000Z stderr P x\n");
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

// Every line of a CRI log: "<ts> stdout <F|P> <text>", the timestamp RFC 3339 with nanoseconds.
bool WellFormed(const std::string& line) {
  if (line.size() < 40 || line[4] != '-' || line[10] != 'T' || line[29] != 'Z') return false;
  return line.compare(30, 10, " stdout F ") == 0 || line.compare(30, 10, " stdout P ") == 0;
}

TEST(ConsoleLineSplitter, ChunkedInputGivesTheSameLinesAsOneFeed) {
  std::mt19937 rng(7);
  std::string input;
  for (int i = 0; i < 2000; ++i) {
    int kind = static_cast<int>(rng() % 4);
    input += kind == 0 ? "\n" : kind == 1 ? "\r\n" : kind == 2 ? "abc" : std::string(rng() % 40, 'x');
  }
  const absl::Time t = absl::FromUnixSeconds(1700000000);
  auto run = [&](size_t max_chunk, size_t out_limit) {
    ConsoleLineSplitter s(16);
    std::string all, out;
    std::string_view rest = input;
    while (!rest.empty()) {
      std::string_view chunk = rest.substr(0, 1 + rng() % max_chunk);
      size_t k = s.Feed(chunk, t, &out, out_limit);
      EXPECT_LE(s.held(), 16u);
      EXPECT_LE(out.size(), std::max<size_t>(out_limit, 16 + 64));
      rest.remove_prefix(k);
      all += out;
      out.clear();
    }
    s.FlushHeld(t, true, &all);
    return all;
  };
  const std::string whole = run(input.size(), 1 << 30);
  EXPECT_EQ(run(1, 1 << 30), whole);
  EXPECT_EQ(run(7, 100), whole);  // output limit: more Feed calls, same lines
  EXPECT_EQ(run(300, 1), whole);  // one line per Feed
  std::istringstream in(whole);
  for (std::string line; std::getline(in, line);) ASSERT_TRUE(WellFormed(line)) << line;
}

TEST(ConsoleLineSplitter, NewlineFloodStopsAtTheOutputLimit) {
  ConsoleLineSplitter s(16 * 1024);
  const std::string newlines(1 << 20, '\n');
  std::string out;
  size_t k = s.Feed(newlines, absl::FromUnixSeconds(0), &out, 64 * 1024);
  EXPECT_LT(k, newlines.size());
  EXPECT_LE(out.size(), 64u * 1024);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), static_cast<long>(k));
  EXPECT_EQ(s.held(), 0u);
}

TEST(ConsoleLineSplitter, PartialFlushKeepsTrailingCrBack) {
  ConsoleLineSplitter s(64);
  std::string out;
  const absl::Time t = absl::FromUnixSeconds(0);
  EXPECT_EQ(s.Feed("abc\r", t, &out, 1024), 4u);
  EXPECT_TRUE(out.empty());
  s.FlushHeld(t, false, &out);
  EXPECT_EQ(out, "1970-01-01T00:00:00.000000000Z stdout P abc\n");
  EXPECT_EQ(s.held(), 1u);
}

// A console far over the backlog bound, as after a daemon restart with a
// flooding guest: one pass reads and writes within its budgets, drops and
// counts the old part, and the console file's blocks are freed.
TEST_F(ConsoleLogTest, HugeBacklogIsDroppedCountedAndPunchedWithinOnePassBudget) {
  ConsoleLogOptions o = Options();
  o.max_backlog_bytes = 1 << 20;
  o.max_read_per_poll = 256 * 1024;
  o.max_write_per_poll = 512 * 1024;
  const uint64_t total = 64ull << 20;
  {
    base::UniqueFd fd(::open(console_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd.valid());
    std::string chunk(1 << 20, '\n');
    for (uint64_t i = 0; i < total; i += chunk.size())
      ASSERT_EQ(::write(fd.get(), chunk.data(), chunk.size()), 1 << 20);
  }
  ConsoleLogCopier c(o);
  ASSERT_TRUE(c.Add("c1", console_, log_).ok());
  EXPECT_EQ(std::filesystem::file_size(log_), 0u) << "Add read the backlog";
  c.PollOnce();
  const uint64_t dropped = total - o.max_backlog_bytes;
  EXPECT_EQ(*c.DroppedBytes("c1"), dropped);
  EXPECT_EQ(c.Counters().dropped_bytes, dropped);
  // The marker line and then empty lines, within the write budget (+ one buffer).
  std::vector<std::string> lines = LogLines();
  ASSERT_FALSE(lines.empty());
  EXPECT_THAT(lines[0], ::testing::HasSubstr("stdout F kubevirt-cri: " + std::to_string(dropped) +
                                             " bytes of console output dropped"));
  EXPECT_LE(std::filesystem::file_size(log_), o.max_write_per_poll + 64 * 1024 + 256);
  EXPECT_GT(lines.size(), 1000u);
  for (const std::string& l : lines) ASSERT_TRUE(WellFormed(l)) << l;
  struct stat st;
  ASSERT_EQ(::stat(console_.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), total);  // QEMU's append position is untouched
  EXPECT_LE(static_cast<uint64_t>(st.st_blocks) * 512, o.max_backlog_bytes + (1 << 20)) << "console blocks not freed";
  // Later passes copy the kept backlog in full, and nothing more is dropped.
  for (int i = 0; i < 200; ++i) c.PollOnce();
  const size_t newline_lines = LogLines().size() - 1;
  EXPECT_EQ(newline_lines, o.max_backlog_bytes);
  EXPECT_EQ(*c.DroppedBytes("c1"), dropped);
  EXPECT_EQ(c.Counters().copied_bytes, o.max_backlog_bytes);
  std::ifstream state(ConsoleOffsetPath(console_));
  std::string text((std::istreambuf_iterator<char>(state)), {});
  EXPECT_EQ(text, "v1 " + std::to_string(total) + "\n");
}

// The final copy (VM gone) is bounded too: the backlog bound, then the rest
// is counted as dropped.
TEST_F(ConsoleLogTest, RemoveOfAHugeBacklogIsBounded) {
  ConsoleLogOptions o = Options();
  o.max_backlog_bytes = 64 * 1024;
  ConsoleLogCopier c(o);
  ASSERT_TRUE(c.Add("c1", console_, log_).ok());
  Append(std::string(1 << 20, '\n') + "last words");
  ASSERT_TRUE(c.Remove("c1").ok());
  std::vector<std::string> lines = LogLines();
  ASSERT_FALSE(lines.empty());
  EXPECT_THAT(lines.front(), ::testing::HasSubstr("bytes of console output dropped"));
  EXPECT_THAT(lines.back(), ::testing::EndsWith(" stdout F last words"));
  EXPECT_LE(lines.size(), o.max_backlog_bytes + 2);
  EXPECT_EQ(c.Counters().dropped_bytes, (1u << 20) + 10 - o.max_backlog_bytes);
}

// A CRI log that cannot be written (its reader is gone: EPIPE) must not make
// the copier hold more and more: the offset stays, the console backlog is
// still bounded on disk, and once writing works the lines resume, untorn.
TEST_F(ConsoleLogTest, FailedWritesHoldNothingAndTheBacklogStaysBounded) {
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction old {};
  ASSERT_EQ(::sigaction(SIGPIPE, &ignore, &old), 0);
  const std::filesystem::path fifo = dir_ / "fifo.log";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  base::UniqueFd reader(::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_TRUE(reader.valid());
  ConsoleLogOptions o = Options();
  o.max_backlog_bytes = 256 * 1024;
  ConsoleLogCopier c(o);
  ASSERT_TRUE(c.Add("c1", console_, fifo).ok());
  reader.Reset();  // writes now fail with EPIPE
  std::string line = std::string(99, 'x') + "\n";
  std::string mib;
  for (int i = 0; i < (1 << 20) / 100; ++i) mib += line;
  for (int round = 0; round < 8; ++round) {
    Append(mib);
    c.PollOnce();
  }
  std::ifstream state(ConsoleOffsetPath(console_));
  std::string text((std::istreambuf_iterator<char>(state)), {});
  struct stat st;
  ASSERT_EQ(::stat(console_.c_str(), &st), 0);
  // Only the drops moved the offset: to within the backlog bound of the end.
  uint64_t offset = 0;
  ASSERT_EQ(text.rfind("v1 ", 0), 0u) << text;
  offset = std::stoull(text.substr(3));
  EXPECT_GE(offset + o.max_backlog_bytes, static_cast<uint64_t>(st.st_size));
  EXPECT_GT(c.Counters().dropped_bytes, 0u);
  EXPECT_LE(static_cast<uint64_t>(st.st_blocks) * 512, o.max_backlog_bytes + (1 << 20));
  EXPECT_EQ(c.Counters().copied_bytes, 0u);

  // A reader again: the kept backlog arrives as whole lines.
  reader.Reset(::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_TRUE(reader.valid());
  std::atomic<bool> polled{false};
  std::thread poller([&] {
    for (int i = 0; i < 100; ++i) c.PollOnce();  // blocks while the pipe is full
    polled = true;
  });
  std::string got;
  char buf[64 * 1024];
  for (;;) {
    bool done = polled.load();
    ssize_t n = ::read(reader.get(), buf, sizeof buf);
    if (n > 0) {
      got.append(buf, static_cast<size_t>(n));
    } else if (done) {
      break;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  poller.join();
  ::sigaction(SIGPIPE, &old, nullptr);
  std::istringstream in(got);
  int lines = 0;
  for (std::string l; std::getline(in, l); ++lines) {
    ASSERT_TRUE(WellFormed(l)) << l;
    if (l.find("kubevirt-cri:") == std::string::npos) {
      ASSERT_THAT(l, ::testing::EndsWith(" " + line.substr(0, 99)));
    }
  }
  EXPECT_GT(lines, 0);
}

TEST_F(ConsoleLogTest, QemuLogOverItsBoundIsTruncatedAndCounted) {
  ConsoleLogOptions o = Options();
  o.max_qemu_log_bytes = 1000;
  ConsoleLogCopier c(o);
  const std::filesystem::path qemu_log = dir_ / "kvcri-c1.log";
  std::ofstream(qemu_log) << std::string(999, 'q');
  ASSERT_TRUE(c.Add("c1", ConsoleTarget{console_, dir_, "c.log", qemu_log}).ok());
  c.PollOnce();
  EXPECT_EQ(std::filesystem::file_size(qemu_log), 999u);
  std::ofstream(qemu_log, std::ios::app) << "qq";
  c.PollOnce();
  std::ifstream in(qemu_log);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_THAT(text, ::testing::HasSubstr("kubevirt-cri: 1001 bytes of QEMU output truncated"));
  EXPECT_LT(text.size(), 200u);
  EXPECT_EQ(c.Counters().qemu_log_truncated_bytes, 1001u);
}

TEST_F(ConsoleLogTest, SymlinkPlantedAtTheCriLogIsNotFollowed) {
  const std::filesystem::path victim = dir_ / "victim";
  std::ofstream(victim) << "precious\n";
  std::filesystem::create_directory(dir_ / "pod");
  std::filesystem::create_directory(dir_ / "pod" / "vm");
  std::filesystem::create_symlink(victim, dir_ / "pod" / "vm" / "0.log");
  ConsoleLogCopier c(Options());
  absl::Status s = c.Add("c1", ConsoleTarget{console_, dir_ / "pod", "vm/0.log", {}});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("symlink"));
  Append("pwned\n");
  c.PollOnce();
  std::ifstream in(victim);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(text, "precious\n");
}

TEST(OpenCriLog, RefusesSymlinkedDirectoriesAndDotDotAndCreatesMissingDirectories) {
  char tmpl[] = "/tmp/kvcrilog-XXXXXX";
  std::filesystem::path dir = mkdtemp(tmpl);
  std::filesystem::create_directory(dir / "pod");
  std::filesystem::create_directory(dir / "elsewhere");
  std::filesystem::create_directory_symlink(dir / "elsewhere", dir / "pod" / "vm");
  absl::StatusOr<base::UniqueFd> fd = OpenCriLog(dir / "pod", "vm/0.log");
  EXPECT_EQ(fd.status().code(), absl::StatusCode::kFailedPrecondition) << fd.status();
  EXPECT_FALSE(std::filesystem::exists(dir / "elsewhere" / "0.log"));
  EXPECT_EQ(OpenCriLog(dir / "pod", "../escape.log").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenCriLog(dir / "pod", "/etc/passwd").status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_EQ(::mkfifo((dir / "pod" / "fifo").c_str(), 0600), 0);
  // A FIFO nobody reads: refused at once rather than hanging the caller.
  EXPECT_FALSE(OpenCriLog(dir / "pod", "fifo").ok());
  fd = OpenCriLog(dir / "pod", "ctr/sub/0.log");
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_TRUE(std::filesystem::is_regular_file(dir / "pod" / "ctr" / "sub" / "0.log"));
  std::filesystem::remove_all(dir);
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
  // True once the pipe is full to within a page, i.e. the writer is stuck:
  // the copier writes line-aligned chunks, and the kernel does not merge a
  // chunk's tail into a partly used page, so a "full" pipe may hold a few
  // hundred bytes less than its size. The output is over twice the pipe, so
  // the copy cannot finish before someone reads.
  bool WaitForFullPipe() {
    for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
         std::chrono::steady_clock::now() < deadline;) {
      int queued = 0;
      if (::ioctl(reader_.get(), FIONREAD, &queued) == 0 && queued >= pipe_size_ - 4096) return true;
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

// containerd-shim mode: the target is the task's stdout FIFO and containerd
// writes the CRI format, so the bytes go through as the guest wrote them.
TEST_F(ConsoleLogTest, RawModeCopiesTheBytesUnchangedAndAtOnce) {
  ConsoleLogOptions o = Options();
  o.raw = true;
  auto content = [&] {
    std::ifstream in(log_);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  };
  {
    ConsoleLogCopier c(o);
    ASSERT_TRUE(c.Add("c1", console_, log_).ok());
    Append("boot\r\nlogin: ");
    c.PollOnce();
    EXPECT_EQ(content(), "boot\r\nlogin: ") << "a prompt without newline goes out at once, \\r kept";
    Append(std::string(100, 'x'));
    c.PollOnce();
    EXPECT_EQ(content(), "boot\r\nlogin: " + std::string(100, 'x'));
  }
  // A restart resumes at the saved offset: nothing twice, nothing lost.
  Append("after");
  ConsoleLogCopier c(o);
  ASSERT_TRUE(c.Add("c1", console_, log_).ok());
  c.PollOnce();
  EXPECT_EQ(content(), "boot\r\nlogin: " + std::string(100, 'x') + "after");
  EXPECT_EQ(c.Counters().copied_bytes, 5u);
}

TEST_F(ConsoleLogTest, RawModeKeepsItsBoundsAndMarksADropOnALineOfItsOwn) {
  ConsoleLogOptions o = Options();
  o.raw = true;
  o.max_backlog_bytes = 64 * 1024;
  o.max_read_per_poll = 16 * 1024;
  o.max_write_per_poll = 16 * 1024;
  Append(std::string(256 * 1024, 'a'));
  ConsoleLogCopier c(o);
  ASSERT_TRUE(c.Add("c1", console_, log_).ok());
  c.PollOnce();
  std::ifstream in(log_);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  const std::string marker = "\r\nkubevirt-cri: " + std::to_string(192 * 1024) + " bytes of console output dropped";
  ASSERT_EQ(text.rfind(marker, 0), 0u) << text.substr(0, 120);
  EXPECT_LE(text.size(), 16 * 1024 + 64 * 1024 + 200u) << "one pass writes within its budget";
  for (int i = 0; i < 20; ++i) c.PollOnce();
  in = std::ifstream(log_);
  text.assign((std::istreambuf_iterator<char>(in)), {});
  const size_t body = text.find("\r\n", 2) + 2;  // after the marker line
  EXPECT_EQ(std::count(text.begin() + static_cast<long>(body), text.end(), 'a'), 64 * 1024)
      << "the kept backlog arrives in full, none of it lost to line resynchronisation";
}

TEST(ConsoleLineSplitter, RawFeedPassesBytesThroughWithinTheOutputLimit) {
  ConsoleLineSplitter raw(16, /*raw=*/true);
  std::string out;
  EXPECT_EQ(raw.Feed("abc\r\ndef", absl::Now(), &out, 1024), 8u);
  EXPECT_EQ(out, "abc\r\ndef");
  EXPECT_EQ(raw.held(), 0u);
  EXPECT_EQ(raw.Feed("0123456789", absl::Now(), &out, 12), 4u) << "up to the limit";
  std::string empty;
  EXPECT_EQ(raw.Feed(std::string(100, 'z'), absl::Now(), &empty, 0), 16u) << "an empty buffer always takes a line's worth";
  raw.FlushHeld(absl::Now(), true, &empty);
  EXPECT_EQ(empty.size(), 16u);
}

}  // namespace
}  // namespace kvcri::runtime
