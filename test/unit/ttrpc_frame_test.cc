// Unit tests of shim/ttrpc: frame header vectors, the 4 MiB bound, the bounded reader over sockets, the envelope bytes.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "config/base/unique_fd.h"
#include "shim/ttrpc/envelope.h"
#include "shim/ttrpc/frame.h"
#include "shim/ttrpc/frame_io.h"

namespace kvcri::shim::ttrpc {
namespace {

using base::UniqueFd;
using std::string_literals::operator""s;

struct SocketPair {
  UniqueFd reader;  // FrameReader's end
  UniqueFd writer;  // the test plays the peer here
};

SocketPair MakeSocketPair(bool nonblocking_reader = false) {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  SocketPair p{UniqueFd(fds[0]), UniqueFd(fds[1])};
  if (nonblocking_reader) {
    EXPECT_EQ(::fcntl(p.reader.get(), F_SETFL, O_NONBLOCK), 0);
  }
  return p;
}

void WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    ASSERT_GT(n, 0) << "send: " << errno;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

std::string Header(uint32_t length, uint32_t stream_id, uint8_t type, uint8_t flags = 0) {
  return EncodeHeader({length, stream_id, type, flags});
}

TEST(TtrpcFrameHeader, EncodesTheSpecLayoutBigEndian) {
  // Length 0x1a2b3c, stream 5, Request, no flags: length then stream id, both
  // big-endian, then the type byte, then the flags byte.
  EXPECT_EQ(EncodeHeader({0x1a2b3c, 5, kTypeRequest, 0}), "\x00\x1a\x2b\x3c\x00\x00\x00\x05\x01\x00"s);
  // Empty Data frame closing stream 0x80000001: remote closed | no data.
  EXPECT_EQ(EncodeHeader({0, 0x80000001, kTypeData, kFlagRemoteClosed | kFlagNoData}),
            "\x00\x00\x00\x00\x80\x00\x00\x01\x03\x05"s);
  // The largest allowed data length, 4 MiB = 0x400000, in a Response on stream 2.
  EXPECT_EQ(EncodeHeader({kMaxDataLength, 2, kTypeResponse, 0}), "\x00\x40\x00\x00\x00\x00\x00\x02\x02\x00"s);
}

TEST(TtrpcFrameHeader, DecodesTheSameBytes) {
  absl::StatusOr<FrameHeader> h = DecodeHeader("\x00\x1a\x2b\x3c\x00\x00\x00\x05\x01\x00"s);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(*h, (FrameHeader{0x1a2b3c, 5, kTypeRequest, 0}));
  // All four fields at their extremes.
  h = DecodeHeader("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"s);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(*h, (FrameHeader{0xffffffff, 0xffffffff, 0xff, 0xff}));
}

TEST(TtrpcFrameHeader, RoundTrips) {
  for (const FrameHeader& in :
       {FrameHeader{0, 1, kTypeRequest, 0}, FrameHeader{7, 3, kTypeResponse, 0},
        FrameHeader{kMaxDataLength, 0x7ffffffd, kTypeData, kFlagRemoteOpen}, FrameHeader{123456, 42, 0x09, 0x80}}) {
    std::string wire = EncodeHeader(in);
    ASSERT_EQ(wire.size(), kHeaderBytes);
    absl::StatusOr<FrameHeader> out = DecodeHeader(wire);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(*out, in);
  }
}

TEST(TtrpcFrameHeader, TruncatedHeaderIsInvalidArgument) {
  absl::StatusOr<FrameHeader> h = DecodeHeader("\x00\x00\x00\x07\x00\x00\x00\x01\x02"s);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(h.status().message().find("needs 10 bytes, got 9"), std::string_view::npos) << h.status();
  EXPECT_FALSE(DecodeHeader("").ok());
}

TEST(TtrpcFrameBound, FourMebibytesIsTheLimit) {
  EXPECT_TRUE(CheckDataLength(kMaxDataLength, 1).ok());
  absl::Status s = CheckDataLength(kMaxDataLength + 1, 7);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("stream 7 has 4194305 data bytes, over the maximum of 4194304"), std::string_view::npos)
      << s;
}

TEST(TtrpcFrameBound, EncodeFrameRefusesOversizeData) {
  absl::StatusOr<std::string> ok = EncodeFrame(1, kTypeRequest, 0, "hi");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, "\x00\x00\x00\x02\x00\x00\x00\x01\x01\x00hi"s);

  std::string big(kMaxDataLength + 1, 'x');
  absl::StatusOr<std::string> refused = EncodeFrame(3, kTypeResponse, 0, big);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("4194305 data bytes on stream 3"), std::string_view::npos)
      << refused.status();
  EXPECT_TRUE(EncodeFrame(3, kTypeResponse, 0, std::string(kMaxDataLength, 'x')).ok());
}

// Next() on a blocking reader; fails the test on an error.
ReadResult NextOk(FrameReader& r) {
  absl::StatusOr<ReadResult> res = r.Next();
  EXPECT_TRUE(res.ok()) << res.status();
  return res.ok() ? *std::move(res) : ReadResult{};
}

TEST(TtrpcFrameReader, ReadsBackToBackFramesThenTheEnd) {
  SocketPair p = MakeSocketPair();
  WriteAll(p.writer.get(), Header(3, 1, kTypeRequest) + "abc" + Header(0, 3, kTypeRequest) + Header(2, 5, 0x07) + "zz");
  p.writer.Reset();

  FrameReader r(p.reader.get());
  ReadResult a = NextOk(r);
  ASSERT_EQ(a.outcome, ReadOutcome::kFrame);
  EXPECT_EQ(a.frame.header, (FrameHeader{3, 1, kTypeRequest, 0}));
  EXPECT_EQ(a.frame.data, "abc");
  EXPECT_EQ(r.buffered(), 0u);

  ReadResult empty = NextOk(r);  // a zero-length frame is a frame (an empty message)
  ASSERT_EQ(empty.outcome, ReadOutcome::kFrame);
  EXPECT_EQ(empty.frame.header.stream_id, 3u);
  EXPECT_EQ(empty.frame.data, "");

  ReadResult unknown = NextOk(r);  // the type is the server's to judge: passed through
  ASSERT_EQ(unknown.outcome, ReadOutcome::kFrame);
  EXPECT_EQ(unknown.frame.header.type, 0x07);
  EXPECT_EQ(unknown.frame.data, "zz");

  EXPECT_EQ(NextOk(r).outcome, ReadOutcome::kEnd);
}

TEST(TtrpcFrameReader, NonBlockingKeepsThePartialFrameAcrossCalls) {
  SocketPair p = MakeSocketPair(/*nonblocking_reader=*/true);
  FrameReader r(p.reader.get());
  EXPECT_EQ(NextOk(r).outcome, ReadOutcome::kWouldBlock);

  std::string wire = Header(5, 9, kTypeResponse) + "hello";
  for (size_t i = 0; i + 1 < wire.size(); ++i) {
    WriteAll(p.writer.get(), wire.substr(i, 1));
    ASSERT_EQ(NextOk(r).outcome, ReadOutcome::kWouldBlock) << "after byte " << i;
    EXPECT_EQ(r.buffered(), i + 1);
  }
  WriteAll(p.writer.get(), wire.substr(wire.size() - 1));
  ReadResult f = NextOk(r);
  ASSERT_EQ(f.outcome, ReadOutcome::kFrame);
  EXPECT_EQ(f.frame.header, (FrameHeader{5, 9, kTypeResponse, 0}));
  EXPECT_EQ(f.frame.data, "hello");
  EXPECT_EQ(NextOk(r).outcome, ReadOutcome::kWouldBlock);
}

TEST(TtrpcFrameReader, PeerClosingInsideTheHeaderIsDataLoss) {
  SocketPair p = MakeSocketPair();
  WriteAll(p.writer.get(), Header(3, 1, kTypeRequest).substr(0, 4));
  p.writer.Reset();
  FrameReader r(p.reader.get());
  absl::StatusOr<ReadResult> res = r.Next();
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(res.status().message().find("closed 4 bytes into a 10-byte ttrpc frame header"), std::string_view::npos)
      << res.status();
}

TEST(TtrpcFrameReader, PeerClosingInsideTheDataIsDataLoss) {
  SocketPair p = MakeSocketPair();
  WriteAll(p.writer.get(), Header(100, 11, kTypeRequest) + std::string(10, 'd'));
  p.writer.Reset();
  FrameReader r(p.reader.get());
  absl::StatusOr<ReadResult> res = r.Next();
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(res.status().message().find("after 10 of the 100 data bytes of a ttrpc frame on stream 11"),
            std::string_view::npos)
      << res.status();
}

TEST(TtrpcFrameReader, RefusesAnOversizeFrameWithoutBufferingItAndStaysInSync) {
  SocketPair p = MakeSocketPair();
  // A 4 MiB + 1 frame does not fit the socket buffer: the peer writes it
  // from a thread while the reader skips it.
  std::thread peer([fd = p.writer.get()] {
    WriteAll(fd, Header(kMaxDataLength + 1, 13, kTypeRequest));
    WriteAll(fd, std::string(kMaxDataLength + 1, 'o'));
    WriteAll(fd, Header(2, 15, kTypeRequest) + "ok");
  });
  FrameReader r(p.reader.get());
  ReadResult refused = NextOk(r);
  peer.join();
  ASSERT_EQ(refused.outcome, ReadOutcome::kRefused);
  EXPECT_EQ(refused.frame.header.stream_id, 13u);
  EXPECT_EQ(refused.frame.header.length, kMaxDataLength + 1);
  EXPECT_EQ(refused.frame.data, "");
  EXPECT_EQ(refused.refusal.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.refusal.message().find("stream 13 has 4194305 data bytes"), std::string_view::npos)
      << refused.refusal;
  EXPECT_EQ(r.reserved(), 0u) << "the refused data went through the scratch buffer";

  ReadResult next = NextOk(r);
  ASSERT_EQ(next.outcome, ReadOutcome::kFrame);
  EXPECT_EQ(next.frame.header.stream_id, 15u);
  EXPECT_EQ(next.frame.data, "ok");
}

TEST(TtrpcFrameReader, HonoursASmallerBound) {
  SocketPair p = MakeSocketPair();
  WriteAll(p.writer.get(),
           Header(17, 1, kTypeRequest) + std::string(17, 'x') + Header(16, 3, kTypeRequest) + std::string(16, 'y'));
  FrameReader r(p.reader.get(), /*max_data_length=*/16);
  ReadResult a = NextOk(r);
  ASSERT_EQ(a.outcome, ReadOutcome::kRefused);
  EXPECT_NE(a.refusal.message().find("over the maximum of 16"), std::string_view::npos) << a.refusal;
  ReadResult b = NextOk(r);
  ASSERT_EQ(b.outcome, ReadOutcome::kFrame);
  EXPECT_EQ(b.frame.data, std::string(16, 'y'));
}

TEST(TtrpcFrameReader, ReservesInStepsAndNeverMoreThanTheFrame) {
  SocketPair p = MakeSocketPair(/*nonblocking_reader=*/true);
  FrameReader r(p.reader.get());
  // A peer that announces the largest frame and sends 100 bytes of it costs
  // the first 64 KiB step, not 4 MiB.
  WriteAll(p.writer.get(), Header(kMaxDataLength, 1, kTypeRequest) + std::string(100, 'a'));
  ASSERT_EQ(NextOk(r).outcome, ReadOutcome::kWouldBlock);
  EXPECT_EQ(r.buffered(), kHeaderBytes + 100);
  EXPECT_LE(r.reserved(), size_t{64} << 10);

  std::string rest(kMaxDataLength - 100, 'b');
  std::thread peer([fd = p.writer.get(), &rest] { WriteAll(fd, rest); });
  ReadResult f;
  size_t most_reserved = 0;
  for (;;) {
    absl::StatusOr<ReadResult> res = r.Next();
    ASSERT_TRUE(res.ok()) << res.status();
    most_reserved = std::max(most_reserved, r.reserved());
    if (res->outcome == ReadOutcome::kFrame) {
      f = *std::move(res);
      break;
    }
    ASSERT_EQ(res->outcome, ReadOutcome::kWouldBlock);
    pollfd pfd{p.reader.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&pfd, 1, 10000), 1) << "the rest of the frame did not arrive";
  }
  peer.join();
  ASSERT_EQ(f.frame.data.size(), kMaxDataLength);
  EXPECT_EQ(f.frame.data.substr(0, 100), std::string(100, 'a'));
  EXPECT_EQ(f.frame.data.back(), 'b');
  EXPECT_LE(most_reserved, kMaxDataLength);
  EXPECT_LE(f.frame.data.capacity(), kMaxDataLength);
  EXPECT_EQ(r.reserved(), 0u);
}

TEST(TtrpcWriteFrame, WritesWhatTheReaderReads) {
  SocketPair p = MakeSocketPair();
  ASSERT_TRUE(WriteFrame(p.writer.get(), 21, kTypeResponse, 0, "payload").ok());
  ASSERT_TRUE(WriteFrame(p.writer.get(), 23, kTypeResponse, 0, "").ok());
  FrameReader r(p.reader.get());
  ReadResult a = NextOk(r);
  ASSERT_EQ(a.outcome, ReadOutcome::kFrame);
  EXPECT_EQ(a.frame.header, (FrameHeader{7, 21, kTypeResponse, 0}));
  EXPECT_EQ(a.frame.data, "payload");
  ReadResult b = NextOk(r);
  ASSERT_EQ(b.outcome, ReadOutcome::kFrame);
  EXPECT_EQ(b.frame.header, (FrameHeader{0, 23, kTypeResponse, 0}));
}

TEST(TtrpcWriteFrame, RefusesOversizeDataAndReportsAGonePeer) {
  SocketPair p = MakeSocketPair();
  absl::Status big = WriteFrame(p.writer.get(), 1, kTypeResponse, 0, std::string(kMaxDataLength + 1, 'x'));
  EXPECT_EQ(big.code(), absl::StatusCode::kResourceExhausted) << big;

  p.reader.Reset();
  absl::Status gone = WriteFrame(p.writer.get(), 1, kTypeResponse, 0, "late");
  EXPECT_FALSE(gone.ok());  // EPIPE, and the test process is still here: no SIGPIPE
  EXPECT_NE(gone.message().find("stream 1"), std::string_view::npos) << gone;
}

// The Request containerd sends to check a shim (Connect on task "abc"), with a
// 5 s deadline and its namespace header. Hand-encoded: tag bytes are
// (field << 3) | wire type; 5 000 000 000 = 0x12a05f200 is the varint
// 80 e4 97 d0 12 (7-bit groups 0x00 0x64 0x17 0x50 0x12, low first).
// One field a line.
// clang-format off
const std::string kConnectRequestWire =
    "\x0a\x17"s "containerd.task.v2.Task"
    "\x12\x07"s "Connect"
    "\x1a\x05\x0a\x03"s "abc"
    "\x20\x80\xe4\x97\xd0\x12"s
    "\x2a\x24\x0a\x1a"s "containerd-namespace-ttrpc" "\x12\x06"s "k8s.io";
// clang-format on
// ConnectRequest{id: "abc"} (split: "abc" would extend the \x03 escape).
const std::string kConnectRequestPayload = "\x0a\x03"s + "abc";

TEST(TtrpcEnvelope, RequestMatchesTheHandEncodedBytes) {
  pb::Request req;
  req.set_service("containerd.task.v2.Task");
  req.set_method("Connect");
  req.set_payload(kConnectRequestPayload);
  req.set_timeout_nano(5'000'000'000);
  pb::KeyValue* kv = req.add_metadata();
  kv->set_key("containerd-namespace-ttrpc");
  kv->set_value("k8s.io");
  EXPECT_EQ(req.SerializeAsString(), kConnectRequestWire);

  absl::StatusOr<pb::Request> back = ParseRequest(kConnectRequestWire);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->service(), "containerd.task.v2.Task");
  EXPECT_EQ(back->method(), "Connect");
  EXPECT_EQ(back->payload(), kConnectRequestPayload);
  EXPECT_EQ(back->timeout_nano(), 5'000'000'000);
  ASSERT_EQ(back->metadata_size(), 1);
  EXPECT_EQ(back->metadata(0).key(), "containerd-namespace-ttrpc");
  EXPECT_EQ(back->metadata(0).value(), "k8s.io");
}

TEST(TtrpcEnvelope, UnparsableRequestIsInvalidArgument) {
  // Field 1 announces 5 bytes, 2 follow.
  absl::StatusOr<pb::Request> req = ParseRequest(
      "\x0a\x05"s
      "ab");
  ASSERT_FALSE(req.ok());
  EXPECT_EQ(req.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(req.status().message().find("unmarshal request error"), std::string_view::npos) << req.status();
}

TEST(TtrpcEnvelope, OkResponseIsWhatGoSends) {
  // ConnectResponse{shim_pid: 1234}: 1234 = 0x4d2, varint d2 09. containerd's
  // ttrpc server leaves the status out of an OK Response: payload only.
  pb::Response resp = OkResponse("\x08\xd2\x09"s);
  EXPECT_EQ(resp.SerializeAsString(), "\x12\x03\x08\xd2\x09"s);
  EXPECT_TRUE(StatusOf(resp).ok());

  // A whole Response frame on stream 1.
  absl::StatusOr<std::string> frame = EncodeFrame(1, kTypeResponse, 0, resp.SerializeAsString());
  ASSERT_TRUE(frame.ok()) << frame.status();
  EXPECT_EQ(*frame, "\x00\x00\x00\x05\x00\x00\x00\x01\x02\x00\x12\x03\x08\xd2\x09"s);

  // An OK reply of google.protobuf.Empty is a frame with no data at all (what
  // containerd answers Events.Forward with).
  EXPECT_EQ(OkResponse("").SerializeAsString(), "");
  EXPECT_TRUE(StatusOf(pb::Response()).ok());
  // A status that is present with code 0 is OK too.
  pb::Response explicit_ok;
  ASSERT_TRUE(explicit_ok.ParseFromString("\x0a\x00"s));
  EXPECT_TRUE(explicit_ok.has_status());
  EXPECT_TRUE(StatusOf(explicit_ok).ok());
}

TEST(TtrpcEnvelope, ErrorResponseCarriesTheGrpcCode) {
  pb::Response resp = ErrorResponse(absl::NotFoundError("not found"));
  // status{code: 5, message: "not found"}: 08 05, 12 09 "not found" = 13 bytes.
  EXPECT_EQ(resp.SerializeAsString(),
            "\x0a\x0d\x08\x05\x12\x09"s
            "not found");

  pb::Response parsed;
  ASSERT_TRUE(
      parsed.ParseFromString("\x0a\x0d\x08\x05\x12\x09"s
                             "not found"));
  absl::Status s = StatusOf(parsed);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "not found");

  EXPECT_EQ(StatusOf(ErrorResponse(absl::UnimplementedError("method Checkpoint"))).code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(ErrorResponse(absl::UnimplementedError("x")).status().code(), 12);
  EXPECT_EQ(ErrorResponse(absl::ResourceExhaustedError("x")).status().code(), 8);
}

TEST(TtrpcEnvelope, MissingStatusIsOkAndAnUnknownCodeIsUnknown) {
  pb::Response no_status;
  no_status.set_payload("x");
  EXPECT_TRUE(StatusOf(no_status).ok());

  pb::Response odd;
  odd.mutable_status()->set_code(99);
  odd.mutable_status()->set_message("from the future");
  absl::Status s = StatusOf(odd);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnknown);
  EXPECT_EQ(s.message(), "from the future");
}

TEST(TtrpcEnvelope, ErrorMessagesAreMadeValidUtf8) {
  EXPECT_EQ(ValidUtf8("plain"), "plain");
  EXPECT_EQ(ValidUtf8("caf\xc3\xa9 \xf0\x9f\x98\x80"), "caf\xc3\xa9 \xf0\x9f\x98\x80");  // é and U+1F600 stay
  EXPECT_EQ(ValidUtf8("bad \xff byte"), "bad ? byte");
  EXPECT_EQ(ValidUtf8("\xc0\xaf"), "??");            // overlong '/'
  EXPECT_EQ(ValidUtf8("\xed\xa0\x80"), "???");       // UTF-16 surrogate U+D800
  EXPECT_EQ(ValidUtf8("\xf4\x90\x80\x80"), "????");  // past U+10FFFF
  EXPECT_EQ(ValidUtf8("cut \xe2\x82"), "cut ??");    // truncated sequence at the end

  pb::Response resp = ErrorResponse(absl::NotFoundError("open \"/run/\xff\" failed"));
  EXPECT_EQ(resp.status().message(), "open \"/run/?\" failed");
}

}  // namespace
}  // namespace kvcri::shim::ttrpc
