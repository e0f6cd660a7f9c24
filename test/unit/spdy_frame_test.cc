// Unit tests of the SPDY/3.1 frame codec and the header block compression: spec vectors, malformed frames, the zlib bomb.
#include <gtest/gtest.h>
#include <zlib.h>

#include <fstream>
#include <iterator>
#include <string>

#include "cri/streaming/spdy_frame.h"
#include "cri/streaming/spdy_headers.h"

namespace kvcri::streaming::spdy {
namespace {

using std::string_literals::operator""s;

Frame ParseOne(const std::string& wire, size_t max = 1 << 20) {
  FrameParser p(max);
  p.Feed(wire);
  absl::StatusOr<std::optional<Frame>> f = p.Next();
  EXPECT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f.ok() && f->has_value());
  return f.ok() && f->has_value() ? **f : Frame{};
}

absl::Status ParseError(const std::string& wire, size_t max = 1 << 20) {
  FrameParser p(max);
  p.Feed(wire);
  absl::StatusOr<std::optional<Frame>> f = p.Next();
  if (f.ok()) return absl::OkStatus();
  return f.status();
}

TEST(SpdyFrame, ControlFrameHeaderIsSpecLayout) {
  // PING id 7: 0x80 0x03 (control, version 3), type 6, flags 0, length 4.
  EXPECT_EQ(EncodePing(7), "\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x07"s);
  // RST_STREAM stream 1, CANCEL (5).
  EXPECT_EQ(EncodeRstStream(1, kRstCancel), "\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00\x05"s);
  // WINDOW_UPDATE stream 3, delta 0x10000.
  EXPECT_EQ(EncodeWindowUpdate(3, 0x10000), "\x80\x03\x00\x09\x00\x00\x00\x08\x00\x00\x00\x03\x00\x01\x00\x00"s);
  // GOAWAY last good 5, status PROTOCOL_ERROR.
  EXPECT_EQ(EncodeGoAway(5, kGoAwayProtocolError),
            "\x80\x03\x00\x07\x00\x00\x00\x08\x00\x00\x00\x05\x00\x00\x00\x01"s);
  // SETTINGS with INITIAL_WINDOW_SIZE (7) = 0x40000: count, then flags+id, value.
  EXPECT_EQ(EncodeSettings(0, {{0, kSettingInitialWindowSize, 0x40000}}),
            "\x80\x03\x00\x04\x00\x00\x00\x0c\x00\x00\x00\x01\x00\x00\x00\x07\x00\x04\x00\x00"s);
}

TEST(SpdyFrame, DataFrameHeaderIsSpecLayout) {
  EXPECT_EQ(EncodeData(0x12345, kFlagFin, "hi"), "\x00\x01\x23\x45\x01\x00\x00\x02hi"s);
  Frame f = ParseOne(EncodeData(0x12345, kFlagFin, "hi"));
  EXPECT_EQ(f.type, FrameType::kData);
  EXPECT_EQ(f.stream_id, 0x12345u);
  EXPECT_EQ(f.flags, kFlagFin);
  EXPECT_EQ(f.payload, "hi");
}

TEST(SpdyFrame, SynStreamRoundTrip) {
  Frame f = ParseOne(EncodeSynStream(5, 0, 3, kFlagFin, "block"));
  EXPECT_EQ(f.type, FrameType::kSynStream);
  EXPECT_EQ(f.stream_id, 5u);
  EXPECT_EQ(f.priority, 3);
  EXPECT_EQ(f.flags, kFlagFin);
  EXPECT_EQ(f.payload, "block");
  // The 10 fixed bytes: stream id, associated id, priority<<5, slot.
  EXPECT_EQ(EncodeSynStream(5, 0, 3, 0, "").substr(8), "\x00\x00\x00\x05\x00\x00\x00\x00\x60\x00"s);
}

TEST(SpdyFrame, ParsesFramesSplitAtEveryByte) {
  const std::string wire = EncodePing(1) + EncodeData(3, 0, "abc") + EncodeWindowUpdate(0, 9);
  FrameParser p(1 << 20);
  std::vector<Frame> got;
  for (char c : wire) {
    p.Feed(std::string_view(&c, 1));
    while (true) {
      absl::StatusOr<std::optional<Frame>> f = p.Next();
      ASSERT_TRUE(f.ok()) << f.status();
      if (!f->has_value()) break;
      got.push_back(**f);
    }
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].ping_id, 1u);
  EXPECT_EQ(got[1].payload, "abc");
  EXPECT_EQ(got[2].delta_window, 9u);
  EXPECT_EQ(p.buffered(), 0u);
}

TEST(SpdyFrame, RefusesBadVersion) {
  absl::Status s = ParseError(EncodeControl(2, 6, 0, "\x00\x00\x00\x01"s));
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_NE(s.message().find("version 2"), std::string::npos) << s;
}

TEST(SpdyFrame, RefusesFrameOverLimitFromItsHeaderAlone) {
  // Only the 8-byte header arrived: the length alone is refused.
  const std::string header = EncodeData(1, 0, std::string(2000, 'x')).substr(0, 8);
  absl::Status s = ParseError(header, 1000);
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_NE(s.message().find("exceeds the limit of 1000"), std::string::npos) << s;
}

TEST(SpdyFrame, RefusesBadLengthsAndZeroIds) {
  EXPECT_TRUE(absl::IsInvalidArgument(ParseError(EncodeControl(3, 6, 0, "\x00\x00\x01"s))));           // PING of 3
  EXPECT_TRUE(absl::IsInvalidArgument(ParseError(EncodeControl(3, 3, 0, "\x00\x00\x00\x01"s))));       // RST of 4
  EXPECT_TRUE(absl::IsInvalidArgument(ParseError(EncodeControl(3, 9, 0, std::string(9, '\0')))));     // W_U of 9
  EXPECT_TRUE(absl::IsInvalidArgument(ParseError(EncodeControl(3, 1, 0, std::string(9, '\1')))));     // SYN of 9
  EXPECT_TRUE(absl::IsInvalidArgument(ParseError(EncodeControl(3, 4, 0, "\x00\x00\x00\x02"s + std::string(8, 0)))));
  EXPECT_TRUE(absl::IsInvalidArgument(ParseError(EncodeData(0, 0, "x"))));               // data on stream 0
  EXPECT_TRUE(absl::IsInvalidArgument(ParseError(EncodeSynStream(0, 0, 0, 0, ""))));     // SYN_STREAM 0
  EXPECT_TRUE(absl::IsInvalidArgument(ParseError(EncodeWindowUpdate(1, 0))));            // delta 0
  EXPECT_TRUE(absl::IsInvalidArgument(ParseError(EncodeRstStream(1, 0))));               // status 0
}

TEST(SpdyFrame, SkipsUnknownControlTypes) {
  FrameParser p(1 << 20);
  p.Feed(EncodeControl(3, 10, 0, "credential") + EncodePing(3));
  absl::StatusOr<std::optional<Frame>> f = p.Next();
  ASSERT_TRUE(f.ok() && f->has_value());
  EXPECT_EQ((*f)->type, FrameType::kPing);
}

TEST(SpdyHeaders, DictionaryIsTheSpdy3One) {
  // The spec's dictionary: 1423 bytes; zlib names it by its Adler-32.
  std::string_view d = HeaderDictionary();
  EXPECT_EQ(d.size(), 1423u);
  EXPECT_EQ(adler32(1, reinterpret_cast<const Bytef*>(d.data()), d.size()), 0xE3C6A7C2u);
}

TEST(SpdyHeaders, RoundTripAcrossBlocksSharesTheZlibContext) {
  auto enc = HeaderEncoder::Create();
  auto dec = HeaderDecoder::Create(64 << 10);
  ASSERT_TRUE(enc.ok() && dec.ok());
  std::vector<HeaderList> blocks = {
      {{"streamtype", "error"}},
      {{"streamtype", "stdin"}},
      {{"streamtype", "data"}, {"port", "8080"}, {"requestid", "0"}},
      {},
  };
  std::vector<std::string> wire;
  for (const auto& h : blocks) {
    auto c = (*enc)->Encode(h);
    ASSERT_TRUE(c.ok());
    wire.push_back(*c);
  }
  // The later blocks refer back into the shared window: decoding one alone
  // in a fresh context fails, in order they all decode.
  auto fresh = HeaderDecoder::Create(64 << 10);
  EXPECT_FALSE((*fresh)->Decode(wire[1]).ok());
  for (size_t i = 0; i < blocks.size(); ++i) {
    auto h = (*dec)->Decode(wire[i]);
    ASSERT_TRUE(h.ok()) << i << ": " << h.status();
    EXPECT_EQ(*h, blocks[i]);
  }
  EXPECT_EQ(FindHeader(blocks[2], "port"), "8080");
}

TEST(SpdyHeaders, DecodesWhatAnIndependentZlibWithTheDictionaryWrites) {
  // zlib driven directly (as Go's compress/zlib with the dictionary does):
  // one stream, sync flush per block.
  z_stream z{};
  ASSERT_EQ(deflateInit(&z, Z_BEST_COMPRESSION), Z_OK);
  std::string_view d = HeaderDictionary();
  ASSERT_EQ(deflateSetDictionary(&z, reinterpret_cast<const Bytef*>(d.data()), d.size()), Z_OK);
  auto dec = HeaderDecoder::Create(64 << 10);
  for (const char* type : {"error", "stdout", "stderr"}) {
    std::string plain = EncodeHeaderBlock({{"streamtype", type}});
    std::string out(1024, '\0');
    z.next_in = reinterpret_cast<Bytef*>(plain.data());
    z.avail_in = plain.size();
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = out.size();
    ASSERT_EQ(deflate(&z, Z_SYNC_FLUSH), Z_OK);
    out.resize(out.size() - z.avail_out);
    auto h = (*dec)->Decode(out);
    ASSERT_TRUE(h.ok()) << h.status();
    EXPECT_EQ(FindHeader(*h, "streamtype"), type);
  }
  deflateEnd(&z);
}

TEST(SpdyHeaders, RefusesAZlibBombWithoutInflatingIt) {
  // 16 MiB of one value compresses to some KiB; the limit is 64 KiB.
  auto enc = HeaderEncoder::Create();
  auto c = (*enc)->Encode({{"x", std::string(16 << 20, 'a')}});
  ASSERT_TRUE(c.ok());
  EXPECT_LT(c->size(), 100u << 10);
  auto dec = HeaderDecoder::Create(64 << 10);
  auto h = (*dec)->Decode(*c);
  EXPECT_TRUE(absl::IsInvalidArgument(h.status()));
  EXPECT_NE(h.status().message().find("more than the limit of 65536"), std::string::npos) << h.status();
  // The context is spent: the connection has to end.
  EXPECT_FALSE((*dec)->Decode(*c).ok());
}

TEST(SpdyHeaders, RefusesBadBlocks) {
  auto pair = [](std::string name) { return EncodeHeaderBlock({{name, "v"}}); };
  EXPECT_TRUE(ParseHeaderBlock(pair("ok")).ok());
  EXPECT_FALSE(ParseHeaderBlock(pair("StreamType")).ok());       // uppercase
  EXPECT_FALSE(ParseHeaderBlock(pair("")).ok());                 // empty name
  EXPECT_FALSE(ParseHeaderBlock(pair("a\0b"s)).ok());            // NUL in a name
  EXPECT_FALSE(ParseHeaderBlock(EncodeHeaderBlock({{"a", "1"}, {"a", "2"}})).ok());  // repeated
  EXPECT_FALSE(ParseHeaderBlock(pair("ok") + "x").ok());         // trailing bytes
  EXPECT_FALSE(ParseHeaderBlock(pair("ok").substr(0, 9)).ok());  // truncated
  EXPECT_FALSE(ParseHeaderBlock("\x00\x00\x01\x00"s).ok());      // 256 pairs claimed
  EXPECT_FALSE(ParseHeaderBlock("\xff\xff\xff\xff"s).ok());      // a huge count, no bytes
}

}  // namespace
}  // namespace kvcri::streaming::spdy

namespace kvcri::streaming::spdy {
namespace {

TEST(SpdyHeaders, DecodesBlocksFromPythonZlibWithTheDictionary) {
  // The exec-v4 seed was written by Python's zlib (test/fuzz/tools/make-spdy-seeds.sh),
  // an implementation independent of ours, the way client-go opens an exec.
  std::ifstream in(std::string(KVCRI_SOURCE_DIR) + "/test/fuzz/corpus/spdy_frame/exec-v4", std::ios::binary);
  ASSERT_TRUE(in);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  FrameParser p(1 << 20);
  p.Feed(std::string_view(bytes).substr(1));  // the first byte steers the fuzz harness
  auto dec = HeaderDecoder::Create(64 << 10);
  std::vector<std::string> types;
  while (true) {
    auto f = p.Next();
    ASSERT_TRUE(f.ok()) << f.status();
    if (!f->has_value()) break;
    if ((*f)->type != FrameType::kSynStream) continue;
    auto h = (*dec)->Decode((*f)->payload);
    ASSERT_TRUE(h.ok()) << h.status();
    types.emplace_back(FindHeader(*h, "streamtype"));
  }
  EXPECT_EQ(types, (std::vector<std::string>{"error", "stdin", "stdout", "stderr"}));
}

}  // namespace
}  // namespace kvcri::streaming::spdy
