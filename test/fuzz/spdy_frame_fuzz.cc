// Fuzz target spdy_frame: the SPDY/3.1 frame parser and header block decompression, fed as a client's bytes reach the session.
#include "cri/streaming/spdy_frame.h"
#include "cri/streaming/spdy_headers.h"
#include "test/fuzz/fuzz_targets.h"

namespace kvcri::fuzz {

namespace spdy = streaming::spdy;
constexpr std::string_view kTarget = "spdy_frame";
constexpr size_t kMaxFrame = 16 << 10;
constexpr size_t kMaxHeaderBlock = 8 << 10;

// A parsed frame encodes back to the bytes it came from, up to what the
// parser normalizes (reserved bits, unused slot byte), so it parses again
// to the same fields.
void CheckRoundTrip(const spdy::Frame& f) {
  std::string wire;
  switch (f.type) {
    case spdy::FrameType::kData: wire = spdy::EncodeData(f.stream_id, f.flags, f.payload); break;
    case spdy::FrameType::kSynStream:
      wire = spdy::EncodeSynStream(f.stream_id, f.associated_stream_id, f.priority, f.flags, f.payload);
      break;
    case spdy::FrameType::kSynReply: wire = spdy::EncodeSynReply(f.stream_id, f.flags, f.payload); break;
    case spdy::FrameType::kHeaders: wire = spdy::EncodeHeaders(f.stream_id, f.flags, f.payload); break;
    case spdy::FrameType::kRstStream: wire = spdy::EncodeRstStream(f.stream_id, f.status); break;
    case spdy::FrameType::kSettings: wire = spdy::EncodeSettings(f.flags, f.settings); break;
    case spdy::FrameType::kPing: wire = spdy::EncodePing(f.ping_id); break;
    case spdy::FrameType::kGoAway: wire = spdy::EncodeGoAway(f.stream_id, f.status); break;
    case spdy::FrameType::kWindowUpdate: wire = spdy::EncodeWindowUpdate(f.stream_id, f.delta_window); break;
  }
  spdy::FrameParser again(kMaxFrame);
  again.Feed(wire);
  absl::StatusOr<std::optional<spdy::Frame>> g = again.Next();
  KVCRI_FUZZ_CHECK(kTarget, g.ok() && g->has_value());
  const spdy::Frame& h = **g;
  KVCRI_FUZZ_CHECK(kTarget, h.type == f.type && h.stream_id == f.stream_id && h.payload == f.payload &&
                                h.status == f.status && h.ping_id == f.ping_id && h.delta_window == f.delta_window &&
                                h.settings.size() == f.settings.size());
}

void FuzzSpdyFrame(FuzzInput in) {
  InputReader r(in);
  const size_t chunk = 1 + r.Byte() % 64;  // how the bytes trickle in
  spdy::FrameParser parser(kMaxFrame);
  absl::StatusOr<std::unique_ptr<spdy::HeaderDecoder>> decoder = spdy::HeaderDecoder::Create(kMaxHeaderBlock);
  KVCRI_FUZZ_CHECK(kTarget, decoder.ok());
  while (!r.empty()) {
    parser.Feed(r.Bytes(chunk));
    while (true) {
      absl::StatusOr<std::optional<spdy::Frame>> f = parser.Next();
      if (!f.ok()) {
        KVCRI_FUZZ_CHECK(kTarget, absl::IsInvalidArgument(f.status()));
        return;  // the session ends the connection here
      }
      if (!f->has_value()) break;
      const spdy::Frame& frame = **f;
      KVCRI_FUZZ_CHECK(kTarget, frame.payload.size() <= kMaxFrame);
      CheckRoundTrip(frame);
      if (frame.type == spdy::FrameType::kSynStream || frame.type == spdy::FrameType::kSynReply ||
          frame.type == spdy::FrameType::kHeaders) {
        absl::StatusOr<spdy::HeaderList> h = (*decoder)->Decode(frame.payload);
        if (!h.ok()) return;  // the session ends the connection here
        size_t total = 0;
        for (const auto& [name, value] : *h) total += name.size() + value.size() + 8;
        KVCRI_FUZZ_CHECK(kTarget, total + 4 <= kMaxHeaderBlock && h->size() <= spdy::kMaxHeaderPairs);
        // What decoded encodes and parses back to itself.
        absl::StatusOr<spdy::HeaderList> back = spdy::ParseHeaderBlock(spdy::EncodeHeaderBlock(*h));
        KVCRI_FUZZ_CHECK(kTarget, back.ok() && *back == *h);
      }
    }
  }
}

}  // namespace kvcri::fuzz

KVCRI_FUZZ_ENTRY(kvcri::fuzz::FuzzSpdyFrame)
