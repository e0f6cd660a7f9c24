// FifoStreams: an exec's containerd FIFOs as the dispatcher's streams (EOF, wake-up, writes, resize, gone).
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "config/base/unique_fd.h"
#include "shim/containerd/fifo_streams.h"
#include "test/fakes/scratch_dir.h"

namespace kvcri::shim::containerd {
namespace {

class FifoStreamsTest : public testing::ScratchDirTest {
 protected:
  std::string Fifo(const std::string& name) {
    const std::string p = (dir_ / name).string();
    EXPECT_EQ(::mkfifo(p.c_str(), 0600), 0);
    return p;
  }
};

TEST_F(FifoStreamsTest, StdinReadsUntilContainerdClosesItsEndAndOutputReachesTheReader) {
  const std::string in = Fifo("stdin"), out = Fifo("stdout");
  // containerd holds its ends open before the exec starts.
  base::UniqueFd out_reader(::open(out.c_str(), O_RDONLY | O_NONBLOCK));
  ASSERT_TRUE(out_reader.valid());
  absl::StatusOr<std::unique_ptr<FifoStreams>> s = FifoStreams::Open(in, out, "", /*tty=*/false);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->Stderr(), nullptr) << "not asked for";
  base::UniqueFd in_writer(::open(in.c_str(), O_WRONLY));
  ASSERT_TRUE(in_writer.valid());
  ASSERT_EQ(::write(in_writer.get(), "hi", 2), 2);
  char buf[16];
  absl::StatusOr<size_t> n = (*s)->Stdin()->Read(buf, sizeof buf);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(std::string(buf, *n), "hi");
  in_writer.Reset();  // CloseIO
  n = (*s)->Stdin()->Read(buf, sizeof buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u) << "EOF once containerd closed stdin";

  ASSERT_TRUE((*s)->Stdout()->Write("output").ok());
  ASSERT_TRUE((*s)->Stdout()->CloseWrite().ok());
  EXPECT_FALSE((*s)->Stdout()->Write("late").ok()) << "closed";
  char got[16];
  ssize_t r = ::read(out_reader.get(), got, sizeof got);
  EXPECT_EQ(std::string(got, r > 0 ? r : 0), "output");
  EXPECT_EQ(::read(out_reader.get(), got, sizeof got), 0) << "our close is containerd's EOF";
}

TEST_F(FifoStreamsTest, StopReadingWakesABlockedReadAndResizes) {
  const std::string in = Fifo("stdin");
  absl::StatusOr<std::unique_ptr<FifoStreams>> s = FifoStreams::Open(in, "", "", /*tty=*/true);
  ASSERT_TRUE(s.ok()) << s.status();
  base::UniqueFd in_writer(::open(in.c_str(), O_WRONLY));  // open, silent
  (*s)->Resize({80, 24});
  std::optional<streaming::TerminalSize> size = (*s)->NextResize();
  ASSERT_TRUE(size.has_value());
  EXPECT_EQ(size->width, 80);
  EXPECT_EQ(size->height, 24);
  std::atomic<bool> woke{false};
  absl::Status read_status;
  std::thread reader([&] {
    char buf[4];
    read_status = (*s)->Stdin()->Read(buf, sizeof buf).status();
    woke = true;
  });
  std::thread resizer([&] { EXPECT_FALSE((*s)->NextResize().has_value()) << "ended by StopReading"; });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(woke);
  (*s)->StopReading();
  reader.join();
  resizer.join();
  EXPECT_TRUE(absl::IsCancelled(read_status)) << read_status;
}

TEST_F(FifoStreamsTest, GoneRunsTheCallbacksOnceAndLateOnesAtOnce) {
  absl::StatusOr<std::unique_ptr<FifoStreams>> s = FifoStreams::Open("", "", "", false);
  ASSERT_TRUE(s.ok());
  int calls = 0;
  (*s)->OnClientGone([&] { ++calls; });
  (*s)->Gone();
  (*s)->Gone();
  EXPECT_EQ(calls, 1);
  (*s)->OnClientGone([&] { ++calls; });
  EXPECT_EQ(calls, 2);
}

TEST_F(FifoStreamsTest, APathThatIsNoFifoOrHasNoReaderIsRefused) {
  std::ofstream(dir_ / "plain") << "x";
  EXPECT_EQ(FifoStreams::Open((dir_ / "plain").string(), "", "", false).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::IsNotFound(FifoStreams::Open((dir_ / "missing").string(), "", "", false).status()));
  const std::string out = Fifo("noreader");
  EXPECT_FALSE(FifoStreams::Open("", out, "", false).ok()) << "containerd's reader never came (2 s of retries)";
}

}  // namespace
}  // namespace kvcri::shim::containerd
