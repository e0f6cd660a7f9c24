// Fuzz target agent_frame: the kvcri-agent frame decoder and payload codecs the host reads an untrusted guest with.
#include "runtime/agent/agent_protocol.h"
#include "test/fuzz/fuzz_targets.h"

namespace kvcri::fuzz {

namespace agent = runtime::agent;
constexpr std::string_view kTarget = "agent_frame";
constexpr uint32_t kMaxPayload = 64 << 10;  // AgentLimits::max_frame_bytes

// Decodes `f` with the codec its type uses and checks a payload that decodes
// encodes back to the same bytes (one encoding per message: nothing to smuggle).
void CheckPayload(const agent::Frame& f) {
  std::string_view p = f.payload;
  switch (f.type) {
    case agent::FrameType::kHello: {
      agent::HelloMsg m;
      if (agent::DecodeHello(p, &m)) KVCRI_FUZZ_CHECK(kTarget, agent::EncodeHello(m) == p);
      break;
    }
    case agent::FrameType::kExec: {
      agent::ExecMsg m;
      if (agent::DecodeExec(p, &m)) {
        KVCRI_FUZZ_CHECK(kTarget, !m.argv.empty() && m.argv.size() <= agent::kMaxExecArgs);
        KVCRI_FUZZ_CHECK(kTarget, agent::EncodeExec(m) == p);
      }
      break;
    }
    case agent::FrameType::kExit: {
      agent::ExitMsg m;
      if (agent::DecodeExit(p, &m)) KVCRI_FUZZ_CHECK(kTarget, agent::EncodeExit(m) == p);
      break;
    }
    case agent::FrameType::kSpawn: {
      // What the guest accepts from the host; and the exit file the host
      // reads back from the guest (the same bytes, parsed as one).
      agent::SpawnMsg m;
      if (agent::DecodeSpawn(p, &m)) {
        KVCRI_FUZZ_CHECK(kTarget, !m.argv.empty() && !m.stdout_path.empty() && m.stdout_path[0] == '/');
        for (const std::string* path : {&m.stdout_path, &m.stderr_path, &m.exit_path}) {
          const bool ends_dotdot = path->size() >= 3 && path->compare(path->size() - 3, 3, "/..") == 0;
          KVCRI_FUZZ_CHECK(kTarget, path->find("/../") == std::string::npos && !ends_dotdot);
        }
        KVCRI_FUZZ_CHECK(kTarget, agent::EncodeSpawn(m) == p);
      }
      agent::ExitFile e;
      if (agent::ParseExitFile(p, &e)) KVCRI_FUZZ_CHECK(kTarget, agent::ExitFileText(e) == p);
      break;
    }
    case agent::FrameType::kWindow: {
      agent::WindowMsg m;
      if (agent::DecodeWindow(p, &m)) KVCRI_FUZZ_CHECK(kTarget, agent::EncodeWindow(m) == p);
      break;
    }
    case agent::FrameType::kResize: {
      agent::ResizeMsg m;
      if (agent::DecodeResize(p, &m)) KVCRI_FUZZ_CHECK(kTarget, agent::EncodeResize(m) == p);
      break;
    }
    case agent::FrameType::kStarted:
    case agent::FrameType::kSignal: {
      uint32_t v = 0;
      if (agent::DecodeU32(p, &v)) KVCRI_FUZZ_CHECK(kTarget, agent::EncodeU32(v) == p);
      break;
    }
    case agent::FrameType::kConnect: {
      uint16_t v = 0;
      if (agent::DecodeU16(p, &v)) KVCRI_FUZZ_CHECK(kTarget, agent::EncodeU16(v) == p);
      break;
    }
    default: {
      std::string text = agent::SanitizeText(p);
      KVCRI_FUZZ_CHECK(kTarget, text.size() <= agent::kMaxErrorText);
      for (char c : text) KVCRI_FUZZ_CHECK(kTarget, c >= 0x20 && c <= 0x7e);
    }
  }
}

// Input: one byte choosing the read size the stream arrives in, then the
// stream the guest sends.
void FuzzAgentFrame(FuzzInput in) {
  InputReader r(in);
  size_t chunk = 1 + r.Byte() * 97 % 8192;
  std::string_view stream = r.Rest();
  agent::FrameDecoder decoder(kMaxPayload);
  size_t fed = 0, consumed = 0;
  agent::Frame f;
  while (fed < stream.size() && !decoder.failed()) {
    std::string_view piece = stream.substr(fed, chunk);
    decoder.Feed(piece);
    fed += piece.size();
    while (decoder.Next(&f)) {
      // Frames are exactly the bytes they came from, in order, none lost.
      KVCRI_FUZZ_CHECK(kTarget, f.payload.size() <= kMaxPayload);
      std::string again = agent::EncodeFrame(f.type, f.session, f.payload);
      KVCRI_FUZZ_CHECK(kTarget, stream.substr(consumed, again.size()) == again);
      consumed += again.size();
      CheckPayload(f);
    }
    // Bounded memory: at most one partial frame plus the last chunk.
    KVCRI_FUZZ_CHECK(kTarget, decoder.buffered() <= agent::kFrameHeaderBytes + kMaxPayload + chunk);
    KVCRI_FUZZ_CHECK(kTarget, decoder.failed() || decoder.buffered() == fed - consumed);
  }
  // A failed decoder stays failed: no resynchronisation.
  if (decoder.failed()) {
    decoder.Feed(agent::EncodeFrame(agent::FrameType::kClose, 1, {}));
    KVCRI_FUZZ_CHECK(kTarget, !decoder.Next(&f) && decoder.failed());
  }
}

}  // namespace kvcri::fuzz

KVCRI_FUZZ_ENTRY(kvcri::fuzz::FuzzAgentFrame)
