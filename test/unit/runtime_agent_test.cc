// kvcri-agent: the wire codec, AgentClient against the real guest binary on a unix socket, and hostile fake guests.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <fstream>
#include <optional>

#include "config/base/unique_fd.h"
#include "runtime/agent/agent_client.h"
#include "runtime/agent/agent_protocol.h"
#include "test/fakes/scratch_dir.h"

namespace kvcri::runtime::agent {
namespace {

using base::UniqueFd;

// ---- codec ----------------------------------------------------------------

TEST(AgentProtocol, FramesSplitAtEveryByteDecodeInOrder) {
  std::string stream = EncodeFrame(FrameType::kStdout, 7, "hello") + EncodeFrame(FrameType::kStdout, 7, "") +
                       EncodeFrame(FrameType::kExit, 7, EncodeExit({true, 9}));
  FrameDecoder d(1024);
  std::vector<Frame> got;
  for (char c : stream) {
    d.Feed(std::string_view(&c, 1));
    Frame f;
    while (d.Next(&f)) got.push_back(f);
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].type, FrameType::kStdout);
  EXPECT_EQ(got[0].session, 7u);
  EXPECT_EQ(got[0].payload, "hello");
  EXPECT_TRUE(got[1].payload.empty());
  ExitMsg e;
  ASSERT_TRUE(DecodeExit(got[2].payload, &e));
  EXPECT_TRUE(e.signaled);
  EXPECT_EQ(e.value, 9u);
  EXPECT_FALSE(d.failed());
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(AgentProtocol, OversizeHeaderFailsBeforeThePayloadArrives) {
  FrameDecoder d(1024);
  std::string header = EncodeFrame(FrameType::kData, 1, std::string(1025, 'x')).substr(0, kFrameHeaderBytes);
  d.Feed(header);
  Frame f;
  EXPECT_FALSE(d.Next(&f));
  EXPECT_TRUE(d.failed());
  EXPECT_NE(d.error().find("1025"), std::string::npos) << d.error();
  // Never again: no resynchronisation on a later good frame.
  d.Feed(EncodeFrame(FrameType::kClose, 1, ""));
  EXPECT_FALSE(d.Next(&f));
}

TEST(AgentProtocol, UnknownTypeFails) {
  FrameDecoder d(1024);
  std::string frame = EncodeFrame(FrameType::kClose, 1, "");
  frame[4] = 99;
  d.Feed(frame);
  Frame f;
  EXPECT_FALSE(d.Next(&f));
  EXPECT_NE(d.error().find("unknown frame type 99"), std::string::npos) << d.error();
}

TEST(AgentProtocol, ExecRoundTripsAndRejectsMalformed) {
  ExecMsg m{{"sh", "-c", "echo hi"}, {"A=1"}, true, true, 100, 30};
  ExecMsg back;
  ASSERT_TRUE(DecodeExec(EncodeExec(m), &back));
  EXPECT_EQ(back.argv, m.argv);
  EXPECT_EQ(back.env, m.env);
  EXPECT_TRUE(back.tty);
  EXPECT_TRUE(back.stdin);
  EXPECT_EQ(back.width, 100);
  EXPECT_EQ(back.height, 30);
  std::string p = EncodeExec(m);
  EXPECT_FALSE(DecodeExec(p.substr(0, p.size() - 1), &back));  // truncated
  EXPECT_FALSE(DecodeExec(p + "x", &back));                      // trailing bytes
  EXPECT_FALSE(DecodeExec(EncodeExec({{}, {}, false, false, 0, 0}), &back));  // empty argv
  EXPECT_FALSE(DecodeExec(EncodeExec({{std::string("a\0b", 3)}, {}, false, false, 0, 0}), &back));
  // A count the payload cannot hold is rejected without reserving for it.
  std::string huge("\x00\x00\x00\x00\x00\xff\xff\xff\xff", 9);
  EXPECT_FALSE(DecodeExec(huge, &back));
}

TEST(AgentProtocol, SpawnRoundTripsAndRefusesUncleanPaths) {
  SpawnMsg m{{"crun", "run", "c1"}, {"A=b"}, "/run/kvcri/pod/c1", "/run/kvcri/pod/c1/stdout",
             "/run/kvcri/pod/c1/stderr", "/run/kvcri/pod/c1/exit"};
  SpawnMsg back;
  ASSERT_TRUE(DecodeSpawn(EncodeSpawn(m), &back));
  EXPECT_EQ(back.argv, m.argv);
  EXPECT_EQ(back.env, m.env);
  EXPECT_EQ(back.cwd, m.cwd);
  EXPECT_EQ(back.exit_path, m.exit_path);
  for (const char* bad : {"relative", "/a/../b", "/..", ""}) {
    SpawnMsg b = m;
    b.stderr_path = bad;
    EXPECT_FALSE(DecodeSpawn(EncodeSpawn(b), &back)) << bad;
  }
  SpawnMsg dots = m;
  dots.stdout_path = "/run/..x/ok";  // a name starting with dots is fine
  EXPECT_TRUE(DecodeSpawn(EncodeSpawn(dots), &back));
  SpawnMsg empty = m;
  empty.argv.clear();
  EXPECT_FALSE(DecodeSpawn(EncodeSpawn(empty), &back));
  std::string trailing = EncodeSpawn(m) + "x";
  EXPECT_FALSE(DecodeSpawn(trailing, &back));
}

TEST(AgentProtocol, ExitFilesParseStrictly) {
  ExitFile e;
  ASSERT_TRUE(ParseExitFile(ExitFileText(ExitFile{false, 3, 0}), &e));
  EXPECT_FALSE(e.signaled);
  EXPECT_EQ(e.value, 3u);
  EXPECT_EQ(e.code(), 3);
  ASSERT_TRUE(ParseExitFile(ExitFileText(ExitFile{true, 9, 2}), &e));
  EXPECT_TRUE(e.signaled);
  EXPECT_EQ(e.value, 9u);
  EXPECT_EQ(e.code(), 137);
  EXPECT_EQ(e.oom_kills, 2u);
  EXPECT_EQ(ExitFileText(ExitFile{true, 9, 2}), "exit_code=137\nsignal=9\noom_kill=2\n");
  for (const char* bad : {"", "exit_code=3\n", "exit_code=3\nsignal=0\n", "exit_code=3\nsignal=0\noom_kill=0",
                          "exit_code=999\nsignal=0\noom_kill=0\n", "exit_code=-1\nsignal=0\noom_kill=0\n",
                          "exit_code=3\nsignal=0\noom_kill=0\nextra", "signal=0\nexit_code=3\noom_kill=0\n",
                          "exit_code=1234\nsignal=0\noom_kill=0\n", "exit_code=3\nsignal=0\noom_kill=x\n",
                          "exit_code=03\nsignal=0\noom_kill=0\n", "exit_code=3\nsignal=9\noom_kill=0\n"}) {
    EXPECT_FALSE(ParseExitFile(bad, &e)) << bad;
  }
}

TEST(AgentProtocol, SmallMessagesRoundTrip) {
  HelloMsg h{kProtocolVersion, 4096, 2048, "kvcri-agent 2"}, h2;
  ASSERT_TRUE(DecodeHello(EncodeHello(h), &h2));
  EXPECT_EQ(h2.window, 4096u);
  EXPECT_EQ(h2.agent, "kvcri-agent 2");
  WindowMsg w{StreamId::kStderr, 77}, w2;
  ASSERT_TRUE(DecodeWindow(EncodeWindow(w), &w2));
  EXPECT_EQ(w2.stream, StreamId::kStderr);
  EXPECT_EQ(w2.bytes, 77u);
  EXPECT_FALSE(DecodeWindow(std::string("\x09\0\0\0\1", 5), &w2));  // no such stream
  ExitMsg e;
  EXPECT_FALSE(DecodeExit(EncodeExit({false, 256}), &e));  // exit codes end at 255
  EXPECT_EQ(SanitizeText("bad\n\x01text"), "bad??text");
  EXPECT_EQ(SanitizeText(std::string(5000, 'a')).size(), kMaxErrorText);
}

// ---- helpers --------------------------------------------------------------

std::string ReadAll(const std::function<absl::StatusOr<size_t>(char*, size_t)>& read) {
  std::string out;
  char buf[8192];
  for (;;) {
    absl::StatusOr<size_t> n = read(buf, sizeof(buf));
    EXPECT_TRUE(n.ok()) << n.status();
    if (!n.ok() || *n == 0) return out;
    out.append(buf, *n);
  }
}
std::string ReadOut(Process& p, Output which = Output::kStdout) {
  return ReadAll([&](char* b, size_t l) { return p.Read(which, b, l); });
}

absl::Time In(int seconds) { return absl::Now() + absl::Seconds(seconds); }

// Runs the real kvcri-agent on a unix socket in the scratch dir.
class RealAgentTest : public testing::ScratchDirTest {
 protected:
  void SetUp() override {
    ScratchDirTest::SetUp();
    socket_ = dir_ / "agent.sock";
    StartAgent();
    absl::StatusOr<std::unique_ptr<AgentClient>> c = ConnectAgent(socket_, limits_);
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = std::move(*c);
  }
  void TearDown() override {
    client_.reset();
    StopAgent();
    ScratchDirTest::TearDown();
  }
  void StartAgent() {
    std::filesystem::remove(socket_);
    pid_ = fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      execl(KVCRI_AGENT_PATH, "kvcri-agent", "--listen", socket_.c_str(), nullptr);
      _exit(127);
    }
    for (int i = 0; i < 200 && !std::filesystem::exists(socket_); ++i) usleep(10000);
    ASSERT_TRUE(std::filesystem::exists(socket_)) << KVCRI_AGENT_PATH << " did not listen on " << socket_;
  }
  void StopAgent() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  std::unique_ptr<Process> Run(ExecOptions o) {
    absl::StatusOr<std::unique_ptr<Process>> p = client_->Exec(o);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? std::move(*p) : nullptr;
  }
  std::unique_ptr<Process> Sh(const std::string& script, bool stdin = false, bool tty = false) {
    ExecOptions o;
    o.argv = {"sh", "-c", script};
    o.stdin = stdin;
    o.tty = tty;
    return Run(o);
  }

  AgentLimits limits_;
  std::filesystem::path socket_;
  pid_t pid_ = -1;
  std::unique_ptr<AgentClient> client_;
};

TEST_F(RealAgentTest, EchoAndExitCodes) {
  EXPECT_EQ(client_->AgentVersion(), "kvcri-agent 2");
  auto p = Sh("echo hello");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(ReadOut(*p), "hello\n");
  EXPECT_EQ(p->Wait(In(10)).value_or(-1), 0);
  auto fail = Sh("exit 1");
  ASSERT_NE(fail, nullptr);
  EXPECT_EQ(fail->Wait(In(10)).value_or(-1), 1);
  auto killed = Sh("kill -9 $$");
  ASSERT_NE(killed, nullptr);
  EXPECT_EQ(killed->Wait(In(10)).value_or(-1), 137);
}

TEST_F(RealAgentTest, StderrStaysApartAndEnvIsPassed) {
  ExecOptions o;
  o.argv = {"sh", "-c", "echo out $GREETING; echo err >&2"};
  o.env = {"GREETING=hi"};
  auto p = Run(o);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(ReadOut(*p, Output::kStdout), "out hi\n");
  EXPECT_EQ(ReadOut(*p, Output::kStderr), "err\n");
  EXPECT_EQ(p->Wait(In(10)).value_or(-1), 0);
}

TEST_F(RealAgentTest, MissingProgramIsNotFound) {
  ExecOptions o;
  o.argv = {"/no/such/program"};
  absl::StatusOr<std::unique_ptr<Process>> p = client_->Exec(o);
  ASSERT_FALSE(p.ok());
  EXPECT_TRUE(absl::IsNotFound(p.status())) << p.status();
  EXPECT_NE(p.status().message().find("/no/such/program"), std::string::npos) << p.status();
  EXPECT_TRUE(client_->Alive());
}

TEST_F(RealAgentTest, StdinEofEndsCat) {
  auto p = Sh("cat", /*stdin=*/true);
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(p->WriteStdin("abc").ok());
  ASSERT_TRUE(p->CloseStdin().ok());
  EXPECT_EQ(ReadOut(*p), "abc");
  EXPECT_EQ(p->Wait(In(10)).value_or(-1), 0);
}

TEST_F(RealAgentTest, StdinLargerThanTheWindowArrivesWhole) {
  auto p = Sh("wc -c", /*stdin=*/true);
  ASSERT_NE(p, nullptr);
  std::string data(3 * limits_.window_bytes + 123, 'z');
  ASSERT_TRUE(p->WriteStdin(data).ok());
  ASSERT_TRUE(p->CloseStdin().ok());
  EXPECT_EQ(std::stoul(ReadOut(*p)), data.size());
  EXPECT_EQ(p->Wait(In(10)).value_or(-1), 0);
}

// A process that exits without reading its stdin never gives the window
// back: a writer blocked on it gets an error once the exit arrives instead
// of waiting forever.
// Far more stdin than the window and the pipe hold, to a process that never
// reads it: once it exits the write must end, as a copy into an exited runc
// process does. Whether it ends with an error depends on whether the EXIT frame
// or the agent's credit for the dropped bytes arrives first, so both are fine;
// what may not happen is a write waiting forever for credit.
TEST_F(RealAgentTest, StdinWriteToAProcessThatExitedEndsInsteadOfBlocking) {
  auto p = Sh("sleep 0.3", /*stdin=*/true);
  ASSERT_NE(p, nullptr);
  std::string data(8 * limits_.window_bytes, 'z');
  std::promise<absl::Status> written;
  std::future<absl::Status> result = written.get_future();
  std::thread writer([&] { written.set_value(p->WriteStdin(data)); });
  bool ended = result.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
  if (!ended) client_.reset();  // fails the connection, so the writer returns and the test ends
  writer.join();
  ASSERT_TRUE(ended) << "WriteStdin blocked after the process exited";
  absl::Status s = result.get();
  if (!s.ok()) {
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  }
  EXPECT_EQ(p->Wait(In(10)).value_or(-1), 0);
}

TEST_F(RealAgentTest, PtyResizeIsSeenAndStdinEofEndsCat) {
  ExecOptions o;
  o.argv = {"sh", "-c", "stty size; read line; stty size"};
  o.tty = o.stdin = true;
  o.width = 80;
  o.height = 24;
  auto p = Run(o);
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[256];
  while (out.find("24 80") == std::string::npos) {
    absl::StatusOr<size_t> n = p->Read(Output::kStdout, buf, sizeof(buf));
    ASSERT_TRUE(n.ok() && *n > 0) << out;
    out.append(buf, *n);
  }
  ASSERT_TRUE(p->Resize(100, 30).ok());
  ASSERT_TRUE(p->WriteStdin("\n").ok());
  out = ReadOut(*p);
  EXPECT_NE(out.find("30 100"), std::string::npos) << out;
  EXPECT_EQ(p->Wait(In(10)).value_or(-1), 0);
  size_t n = 1;
  EXPECT_EQ(p->Read(Output::kStderr, buf, n).value_or(1), 0u);  // a tty has no stderr of its own

  auto cat = Sh("cat", /*stdin=*/true, /*tty=*/true);
  ASSERT_NE(cat, nullptr);
  ASSERT_TRUE(cat->WriteStdin("partial").ok());  // no newline: EOF must still end it
  ASSERT_TRUE(cat->CloseStdin().ok());
  EXPECT_NE(ReadOut(*cat).find("partial"), std::string::npos);
  EXPECT_EQ(cat->Wait(In(10)).value_or(-1), 0);
}

// A shell closes its command in canonical mode and reads the next one raw
// (its line editor): an EOF sent while it was canonical is queued as a mark
// that a raw read sees as NUL. The agent sends the EOF character again once
// the tty is raw, so the reader still gets its end of input.
TEST_F(RealAgentTest, TtyEofSentInCanonicalModeReachesAReaderThatWentRaw) {
  auto p = Sh("sleep 0.5; stty raw -echo; head -c 2 | od -An -tx1", /*stdin=*/true, /*tty=*/true);
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(p->CloseStdin().ok());  // while `sleep` runs: canonical
  // Before reading: without the second EOF `head` waits for ever.
  ASSERT_EQ(p->Wait(In(10)).value_or(-1), 0) << "the raw reader never got its end of input";
  const std::string out = ReadOut(*p);
  EXPECT_NE(out.find("00 04"), std::string::npos) << out;
}

TEST_F(RealAgentTest, SignalReachesTheProcessGroup) {
  auto p = Sh("sleep 1000 & wait");
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(absl::IsDeadlineExceeded(p->Wait(absl::Now() + absl::Milliseconds(200)).status()));
  ASSERT_TRUE(p->Signal(SIGTERM).ok());
  EXPECT_EQ(p->Wait(In(10)).value_or(-1), 128 + SIGTERM);
}

TEST_F(RealAgentTest, DroppingTheProcessKillsIt) {
  auto p = Sh("echo $$; exec sleep 1000");
  ASSERT_NE(p, nullptr);
  char buf[64];
  absl::StatusOr<size_t> n = p->Read(Output::kStdout, buf, sizeof(buf));
  ASSERT_TRUE(n.ok() && *n > 0);
  pid_t pid = std::stoi(std::string(buf, *n));
  p.reset();
  bool gone = false;
  for (int i = 0; i < 500 && !gone; ++i) {
    gone = kill(pid, 0) != 0;
    if (!gone) usleep(10000);
  }
  EXPECT_TRUE(gone) << "pid " << pid << " still runs";
}

TEST_F(RealAgentTest, HostDisconnectKillsItsSessionsAndTheAgentServesTheNextHost) {
  auto p = Sh("echo $$; exec sleep 1000");
  ASSERT_NE(p, nullptr);
  char buf[64];
  absl::StatusOr<size_t> n = p->Read(Output::kStdout, buf, sizeof(buf));
  ASSERT_TRUE(n.ok() && *n > 0);
  pid_t pid = std::stoi(std::string(buf, *n));
  // A second host cannot come in while one is connected (like QEMU's
  // channel); the first goes away with its process still running.
  p.reset();
  client_.reset();
  bool gone = false;
  for (int i = 0; i < 500 && !gone; ++i) {
    gone = kill(pid, 0) != 0;
    if (!gone) usleep(10000);
  }
  EXPECT_TRUE(gone);
  absl::StatusOr<std::unique_ptr<AgentClient>> again = ConnectAgent(socket_, limits_);
  ASSERT_TRUE(again.ok()) << again.status();
  client_ = std::move(*again);
  auto q = Sh("echo back");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(ReadOut(*q), "back\n");
}

// Waits for a SPAWNed process's exit file and parses it.
std::optional<ExitFile> WaitForExitFile(const std::filesystem::path& path, absl::Duration timeout = absl::Seconds(20)) {
  for (absl::Time deadline = absl::Now() + timeout; absl::Now() < deadline; absl::SleepFor(absl::Milliseconds(20))) {
    std::ifstream in(path);
    if (!in) continue;
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ExitFile m;
    if (ParseExitFile(text, &m)) return m;
    ADD_FAILURE() << "unparsable exit file: " << text;
    return std::nullopt;
  }
  return std::nullopt;
}

std::string Slurp(const std::filesystem::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST_F(RealAgentTest, SpawnedProcessAppendsItsOutputToFilesAndWritesItsExit) {
  SpawnOptions o;
  o.argv = {"sh", "-c", "pwd; echo err >&2; echo $KVCRI_T; exit 3"};
  o.env = {"KVCRI_T=spawned"};
  o.cwd = dir_.string();
  o.stdout_path = (dir_ / "out").string();
  o.stderr_path = (dir_ / "err").string();
  o.exit_path = (dir_ / "exit").string();
  absl::StatusOr<uint32_t> pid = client_->Spawn(o);
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_GT(*pid, 0u);
  std::optional<ExitFile> exit = WaitForExitFile(dir_ / "exit");
  ASSERT_TRUE(exit.has_value());
  EXPECT_FALSE(exit->signaled);
  EXPECT_EQ(exit->value, 3u);
  EXPECT_EQ(Slurp(dir_ / "out"), dir_.string() + "\nspawned\n");
  EXPECT_EQ(Slurp(dir_ / "err"), "err\n");
  EXPECT_FALSE(std::filesystem::exists(dir_ / "exit.tmp"));
  // Killed by a signal: 128 + N, and the signal.
  o.argv = {"sh", "-c", "kill -TERM $$"};
  o.exit_path = (dir_ / "exit2").string();
  ASSERT_TRUE(client_->Spawn(o).ok());
  exit = WaitForExitFile(dir_ / "exit2");
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->signaled);
  EXPECT_EQ(exit->value, static_cast<uint32_t>(SIGTERM));
  EXPECT_EQ(Slurp(dir_ / "exit2"), "exit_code=143\nsignal=15\noom_kill=0\n");
}

TEST_F(RealAgentTest, SpawnedProcessOutlivesTheHostConnection) {
  SpawnOptions o;
  o.argv = {"sh", "-c", "sleep 1; echo late"};
  o.stdout_path = (dir_ / "out").string();
  o.stderr_path = (dir_ / "err").string();
  o.exit_path = (dir_ / "exit").string();
  ASSERT_TRUE(client_->Spawn(o).ok());
  // The daemon restarts: its connection goes, a new one says HELLO (which
  // tears the old host's sessions down).
  client_.reset();
  absl::StatusOr<std::unique_ptr<AgentClient>> again = ConnectAgent(socket_, limits_);
  ASSERT_TRUE(again.ok()) << again.status();
  client_ = std::move(*again);
  std::optional<ExitFile> exit = WaitForExitFile(dir_ / "exit");
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->value, 0u);
  EXPECT_EQ(Slurp(dir_ / "out"), "late\n");
}

TEST_F(RealAgentTest, SpawnFailuresNameWhatFailed) {
  SpawnOptions o;
  o.argv = {"/no/such/program"};
  o.stdout_path = (dir_ / "out").string();
  o.stderr_path = (dir_ / "err").string();
  o.exit_path = (dir_ / "exit").string();
  absl::StatusOr<uint32_t> r = client_->Spawn(o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), ::testing::HasSubstr("exec \"/no/such/program\""));
  o.argv = {"true"};
  o.stdout_path = (dir_ / "missing-dir/out").string();
  r = client_->Spawn(o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), ::testing::HasSubstr("open stdout file"));
  o.stdout_path = "relative/out";
  r = client_->Spawn(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  o.stdout_path = (dir_ / "a/../out").string();
  EXPECT_EQ(client_->Spawn(o).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "exit")) << "nothing ran";
  // The connection still serves.
  auto p = Sh("echo fine");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(ReadOut(*p), "fine\n");
}

TEST_F(RealAgentTest, TwentyConcurrentSessions) {
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int i = 0; i < 20; ++i) {
    threads.emplace_back([&, i] {
      ExecOptions o;
      o.argv = {"sh", "-c", "seq 1 " + std::to_string(20000 + i)};
      absl::StatusOr<std::unique_ptr<Process>> p = client_->Exec(o);
      if (!p.ok()) return;
      std::string out = ReadOut(**p);
      size_t lines = std::count(out.begin(), out.end(), '\n');
      if (lines == static_cast<size_t>(20000 + i) && (*p)->Wait(In(30)).value_or(-1) == 0) ++good;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(good.load(), 20);
}

uint64_t Fnv(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string RandomBytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// A TCP listener on 127.0.0.1 (the agent's localhost is the host's here).
UniqueFd Listen(uint16_t* port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  EXPECT_EQ(listen(fd.get(), 4), 0);
  socklen_t len = sizeof(a);
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

TEST_F(RealAgentTest, PortConnectionCarriesAMebibyteEachWayWithHalfClose) {
  uint16_t port = 0;
  UniqueFd lfd = Listen(&port);
  const std::string up = RandomBytes(1 << 20, 1), down = RandomBytes(1 << 20, 2);
  uint64_t server_got = 0;
  size_t server_len = 0;
  std::thread server([&] {
    UniqueFd c(accept(lfd.get(), nullptr, nullptr));
    std::string got;
    char buf[65536];
    ssize_t n;
    while ((n = read(c.get(), buf, sizeof(buf))) > 0) got.append(buf, n);  // to the client's half-close
    server_got = Fnv(got);
    server_len = got.size();
    for (size_t off = 0; off < down.size();) off += write(c.get(), down.data() + off, down.size() - off);
  });
  absl::StatusOr<std::unique_ptr<PortConnection>> conn = client_->ConnectPort(port);
  ASSERT_TRUE(conn.ok()) << conn.status();
  std::thread writer([&] {
    EXPECT_TRUE((*conn)->Write(up).ok());
    EXPECT_TRUE((*conn)->CloseWrite().ok());
  });
  std::string got = ReadAll([&](char* b, size_t l) { return (*conn)->Read(b, l); });
  writer.join();
  server.join();
  EXPECT_EQ(server_len, up.size());
  EXPECT_EQ(server_got, Fnv(up));
  EXPECT_EQ(got.size(), down.size());
  EXPECT_EQ(Fnv(got), Fnv(down));
}

TEST_F(RealAgentTest, ConnectRefusedIsUnavailableWithTheReason) {
  uint16_t port = 0;
  { UniqueFd closed = Listen(&port); }
  absl::StatusOr<std::unique_ptr<PortConnection>> conn = client_->ConnectPort(port);
  ASSERT_FALSE(conn.ok());
  EXPECT_TRUE(absl::IsUnavailable(conn.status())) << conn.status();
  EXPECT_NE(conn.status().message().find("Connection refused"), std::string::npos) << conn.status();
  EXPECT_TRUE(client_->Alive());
}

TEST_F(RealAgentTest, PoolReusesTheClientAndReconnectsAfterTheAgentRestarts) {
  client_.reset();  // the agent serves one host at a time
  AgentPool pool(limits_);
  absl::StatusOr<std::shared_ptr<AgentClient>> a = pool.Get("vm1", socket_);
  ASSERT_TRUE(a.ok()) << a.status();
  absl::StatusOr<std::shared_ptr<AgentClient>> b = pool.Get("vm1", socket_);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->get(), b->get());
  StopAgent();
  for (int i = 0; i < 200 && (*a)->Alive(); ++i) usleep(10000);
  EXPECT_FALSE((*a)->Alive());
  StartAgent();
  absl::StatusOr<std::shared_ptr<AgentClient>> c = pool.Get("vm1", socket_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_NE(c->get(), a->get());
  absl::StatusOr<std::unique_ptr<Process>> p = (*c)->Exec({{"true"}});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)->Wait(In(10)).value_or(-1), 0);
}

// ---- hostile guests -------------------------------------------------------

// A fake guest: the test plays the agent on a unix socket.
class FakeGuestTest : public testing::ScratchDirTest {
 protected:
  void SetUp() override {
    ScratchDirTest::SetUp();
    socket_ = dir_ / "fake.sock";
    listen_.Reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, socket_.c_str(), sizeof(a.sun_path) - 1);
    ASSERT_EQ(bind(listen_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    ASSERT_EQ(listen(listen_.get(), 4), 0);
    limits_.window_bytes = 8192;
    limits_.max_frame_bytes = 4096;
    limits_.hello_timeout = absl::Milliseconds(500);
  }
  // Accepts the host, reads its HELLO and answers it; then the test speaks.
  void AcceptAndHello() {
    guest_.Reset(accept(listen_.get(), nullptr, nullptr));
    ASSERT_TRUE(guest_.valid());
    Frame f = ReadFrame();
    ASSERT_EQ(f.type, FrameType::kHello);
    HelloMsg h;
    ASSERT_TRUE(DecodeHello(f.payload, &h));
    EXPECT_EQ(h.window, limits_.window_bytes);
    HelloMsg reply;
    reply.agent = "fake";
    Send(EncodeFrame(FrameType::kHello, 0, EncodeHello(reply)));
  }
  std::unique_ptr<AgentClient> Connect() {
    std::thread guest([this] { AcceptAndHello(); });
    absl::StatusOr<std::unique_ptr<AgentClient>> c = ConnectAgent(socket_, limits_);
    guest.join();
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }
  Frame ReadFrame() {
    FrameDecoder d(1 << 20);
    Frame f;
    char c;
    while (!d.Next(&f)) {
      if (read(guest_.get(), &c, 1) != 1) {
        ADD_FAILURE() << "host closed the fake guest";
        return {};
      }
      d.Feed(std::string_view(&c, 1));
    }
    return f;
  }
  void Send(std::string_view bytes) {
    for (size_t off = 0; off < bytes.size();) {
      ssize_t n = ::send(guest_.get(), bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;  // the host may already have hung up
      off += n;
    }
  }
  // Waits for the host to drop the connection: read() sees EOF.
  bool HostHungUp() {
    char buf[4096];
    for (;;) {
      pollfd p{guest_.get(), POLLIN, 0};
      if (poll(&p, 1, 5000) <= 0) return false;
      ssize_t n = read(guest_.get(), buf, sizeof(buf));
      if (n <= 0) return true;
    }
  }
  // Exec as far as STARTED, answered by the fake guest.
  std::unique_ptr<Process> StartedProcess(AgentClient& c, uint32_t* id) {
    std::unique_ptr<Process> proc;
    std::thread host([&] {
      absl::StatusOr<std::unique_ptr<Process>> p = c.Exec({{"sh"}});
      EXPECT_TRUE(p.ok()) << p.status();
      if (p.ok()) proc = std::move(*p);
    });
    Frame exec = ReadFrame();
    EXPECT_EQ(exec.type, FrameType::kExec);
    *id = exec.session;
    Send(EncodeFrame(FrameType::kStarted, exec.session, EncodeU32(1)));
    host.join();
    return proc;
  }

  AgentLimits limits_;
  std::filesystem::path socket_, fs_path_holder_;
  UniqueFd listen_, guest_;
};

TEST_F(FakeGuestTest, SilentGuestIsUnavailableAfterTheHelloTimeout) {
  auto start = absl::Now();
  absl::StatusOr<std::unique_ptr<AgentClient>> c = ConnectAgent(socket_, limits_);  // nobody accepts or answers
  EXPECT_TRUE(absl::IsUnavailable(c.status())) << c.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST_F(FakeGuestTest, ChannelHeldByAnotherHostIsUnavailableNotAHang) {
  // QEMU accepts one host at a time; the rest wait in a full backlog.
  fs_path_holder_ = dir_ / "busy.sock";
  UniqueFd busy(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  strncpy(a.sun_path, fs_path_holder_.c_str(), sizeof(a.sun_path) - 1);
  ASSERT_EQ(bind(busy.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(listen(busy.get(), 0), 0);
  std::vector<UniqueFd> queued;
  for (int i = 0; i < 4; ++i) {
    UniqueFd q(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    connect(q.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a));
    queued.push_back(std::move(q));
  }
  auto start = absl::Now();
  absl::StatusOr<std::unique_ptr<AgentClient>> c = ConnectAgent(fs_path_holder_, limits_);
  EXPECT_TRUE(absl::IsUnavailable(c.status())) << c.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST_F(FakeGuestTest, GarbageClosesTheConnection) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  Send("this is not a frame at all");
  EXPECT_TRUE(HostHungUp());
  EXPECT_FALSE(c->Alive());
  absl::StatusOr<std::unique_ptr<Process>> p = c->Exec({{"true"}});
  EXPECT_TRUE(absl::IsUnavailable(p.status())) << p.status();
}

TEST_F(FakeGuestTest, OversizeFrameClosesTheConnectionWithoutBufferingIt) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  // Only the header of a 16 MiB frame: the host must not wait for the rest.
  Send(EncodeFrame(FrameType::kStdout, 1, std::string(limits_.max_frame_bytes + 1, 'x')).substr(0, kFrameHeaderBytes));
  EXPECT_TRUE(HostHungUp());
  EXPECT_FALSE(c->Alive());
}

// A connect attempt that gave up before its answer leaves its HELLO in the
// channel; the guest answers it too, after ours. A few such answers are
// harmless; a guest that keeps sending them is cut off.
TEST_F(FakeGuestTest, StaleHelloAnswersAreToleratedUpToABound) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  HelloMsg reply;
  reply.agent = "fake";
  Send(EncodeFrame(FrameType::kHello, 0, EncodeHello(reply)));
  uint32_t id = 0;
  std::unique_ptr<Process> p = StartedProcess(*c, &id);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(c->Alive());
  for (int i = 0; i < 8; ++i) Send(EncodeFrame(FrameType::kHello, 0, EncodeHello(reply)));
  EXPECT_TRUE(HostHungUp());
  EXPECT_FALSE(c->Alive());
}

TEST_F(FakeGuestTest, UnknownSessionClosesTheConnection) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  Send(EncodeFrame(FrameType::kStdout, 4242, "boo"));
  EXPECT_TRUE(HostHungUp());
  EXPECT_FALSE(c->Alive());
}

TEST_F(FakeGuestTest, CreditOverrunClosesTheConnectionAndFailsTheReader) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  uint32_t id = 0;
  auto p = StartedProcess(*c, &id);
  ASSERT_NE(p, nullptr);
  // The window is 8 KiB; nobody reads, so no credit comes back.
  std::string chunk(limits_.max_frame_bytes, 'o');
  for (uint32_t sent = 0; sent <= limits_.window_bytes; sent += chunk.size()) {
    Send(EncodeFrame(FrameType::kStdout, id, chunk));
  }
  EXPECT_TRUE(HostHungUp());
  EXPECT_FALSE(c->Alive());
  // What arrived within the window is still readable, then the loss shows.
  std::string got;
  char buf[4096];
  absl::StatusOr<size_t> n;
  while ((n = p->Read(Output::kStdout, buf, sizeof(buf))).ok() && *n > 0) got.append(buf, *n);
  EXPECT_LE(got.size(), limits_.window_bytes);
  EXPECT_TRUE(absl::IsUnavailable(n.status())) << n.status();
  EXPECT_TRUE(absl::IsUnavailable(p->Wait(In(5)).status()));
}

TEST_F(FakeGuestTest, CreditBeyondTheWindowClosesTheConnection) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  uint32_t id = 0;
  auto p = StartedProcess(*c, &id);
  ASSERT_NE(p, nullptr);
  Send(EncodeFrame(FrameType::kWindow, id, EncodeWindow({StreamId::kStdin, 1})));  // already holds the full window
  EXPECT_TRUE(HostHungUp());
  EXPECT_FALSE(c->Alive());
}

TEST_F(FakeGuestTest, ReaderGetsCreditBackAsItReads) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  uint32_t id = 0;
  auto p = StartedProcess(*c, &id);
  ASSERT_NE(p, nullptr);
  const std::string chunk(limits_.max_frame_bytes, 'a');
  for (uint32_t sent = 0; sent < limits_.window_bytes; sent += chunk.size()) Send(EncodeFrame(FrameType::kStdout, id, chunk));
  char buf[8192];
  size_t got = 0;
  while (got < limits_.window_bytes) {
    absl::StatusOr<size_t> n = p->Read(Output::kStdout, buf, sizeof(buf));
    ASSERT_TRUE(n.ok());
    got += *n;
  }
  uint32_t credit = 0;
  while (credit < limits_.window_bytes) {
    Frame f = ReadFrame();
    ASSERT_EQ(f.type, FrameType::kWindow);
    WindowMsg w;
    ASSERT_TRUE(DecodeWindow(f.payload, &w));
    EXPECT_EQ(w.stream, StreamId::kStdout);
    credit += w.bytes;
  }
  EXPECT_EQ(credit, limits_.window_bytes);
  // With the credit back, another full window is in bounds.
  for (uint32_t sent = 0; sent < limits_.window_bytes; sent += chunk.size()) Send(EncodeFrame(FrameType::kStdout, id, chunk));
  Send(EncodeFrame(FrameType::kExit, id, EncodeExit({false, 3})));
  EXPECT_EQ(p->Wait(In(5)).value_or(-1), 3);
  EXPECT_TRUE(c->Alive());
}

TEST_F(FakeGuestTest, ABrokenGuestLeavesOtherVmsAlone) {
  // The other VM: a real agent.
  std::filesystem::path good_sock = dir_ / "good.sock";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl(KVCRI_AGENT_PATH, "kvcri-agent", "--listen", good_sock.c_str(), nullptr);
    _exit(127);
  }
  for (int i = 0; i < 200 && !std::filesystem::exists(good_sock); ++i) usleep(10000);
  AgentPool pool(limits_);
  absl::StatusOr<std::shared_ptr<AgentClient>> good = pool.Get("good", good_sock);
  ASSERT_TRUE(good.ok()) << good.status();
  absl::StatusOr<std::unique_ptr<Process>> slow = (*good)->Exec({{"sh", "-c", "sleep 0.3; echo fine"}});
  ASSERT_TRUE(slow.ok()) << slow.status();

  std::thread guest([this] { AcceptAndHello(); });
  absl::StatusOr<std::shared_ptr<AgentClient>> bad = pool.Get("bad", socket_);
  guest.join();
  ASSERT_TRUE(bad.ok()) << bad.status();
  Send(std::string(100000, '\xff'));
  EXPECT_TRUE(HostHungUp());
  EXPECT_FALSE((*bad)->Alive());

  EXPECT_EQ(ReadOut(**slow), "fine\n");
  EXPECT_EQ((*slow)->Wait(In(10)).value_or(-1), 0);
  EXPECT_TRUE((*good)->Alive());
  slow->reset();
  pool.Forget("good");
  good->reset();
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

}  // namespace
}  // namespace kvcri::runtime::agent
