// The kvcri-agent wire format: frame encoding, the stream decoder and the payload codecs.
#include "runtime/agent/agent_protocol.h"

#include <algorithm>
#include <cstring>

namespace kvcri::runtime::agent {
namespace {

void PutU16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v));
}
void PutU32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}
void PutString(std::string* out, std::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out->append(s);
}

// Reads a payload front to back; any read past the end fails it for good.
class PayloadReader {
 public:
  explicit PayloadReader(std::string_view p) : rest_(p) {}
  bool U8(uint8_t* v) {
    if (rest_.empty()) return ok_ = false;
    *v = static_cast<uint8_t>(rest_[0]);
    rest_.remove_prefix(1);
    return ok_;
  }
  bool U16(uint16_t* v) {
    uint8_t a = 0, b = 0;
    if (!U8(&a) || !U8(&b)) return false;
    *v = static_cast<uint16_t>(a << 8 | b);
    return true;
  }
  bool U32(uint32_t* v) {
    uint16_t a = 0, b = 0;
    if (!U16(&a) || !U16(&b)) return false;
    *v = static_cast<uint32_t>(a) << 16 | b;
    return true;
  }
  bool String(std::string* s) {
    uint32_t n = 0;
    if (!U32(&n)) return false;
    if (n > rest_.size()) return ok_ = false;
    s->assign(rest_.substr(0, n));
    rest_.remove_prefix(n);
    return true;
  }
  // Everything read and nothing left over.
  bool Done() const { return ok_ && rest_.empty(); }
  size_t left() const { return rest_.size(); }

 private:
  std::string_view rest_;
  bool ok_ = true;
};

uint32_t GetU32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint32_t>(u[0]) << 24 | static_cast<uint32_t>(u[1]) << 16 | static_cast<uint32_t>(u[2]) << 8 | u[3];
}

bool DecodeStrings(PayloadReader* r, size_t max_count, std::vector<std::string>* out) {
  uint32_t n = 0;
  if (!r->U32(&n) || n > max_count) return false;
  // Each entry takes at least its 4-byte length: a count the payload cannot
  // hold is rejected before anything is reserved.
  if (n > r->left() / 4) return false;
  out->clear();
  out->reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    std::string s;
    if (!r->String(&s) || s.find('\0') != std::string::npos) return false;
    out->push_back(std::move(s));
  }
  return true;
}

}  // namespace

bool KnownFrameType(uint8_t t) {
  return t >= static_cast<uint8_t>(FrameType::kHello) && t <= static_cast<uint8_t>(FrameType::kSpawn);
}

const char* FrameTypeName(FrameType t) {
  switch (t) {
    case FrameType::kHello: return "HELLO";
    case FrameType::kExec: return "EXEC";
    case FrameType::kStarted: return "STARTED";
    case FrameType::kStdin: return "STDIN";
    case FrameType::kStdinClose: return "STDIN_CLOSE";
    case FrameType::kStdout: return "STDOUT";
    case FrameType::kStderr: return "STDERR";
    case FrameType::kResize: return "RESIZE";
    case FrameType::kSignal: return "SIGNAL";
    case FrameType::kExit: return "EXIT";
    case FrameType::kConnect: return "CONNECT";
    case FrameType::kConnected: return "CONNECTED";
    case FrameType::kConnectFailed: return "CONNECT_FAILED";
    case FrameType::kData: return "DATA";
    case FrameType::kShutWr: return "SHUT_WR";
    case FrameType::kClose: return "CLOSE";
    case FrameType::kWindow: return "WINDOW";
    case FrameType::kError: return "ERROR";
    case FrameType::kSpawn: return "SPAWN";
  }
  return "UNKNOWN";
}

void AppendFrame(std::string* out, FrameType type, uint32_t session, std::string_view payload) {
  PutU32(out, static_cast<uint32_t>(payload.size()));
  out->push_back(static_cast<char>(type));
  PutU32(out, session);
  out->append(payload);
}

std::string EncodeFrame(FrameType type, uint32_t session, std::string_view payload) {
  std::string out;
  out.reserve(kFrameHeaderBytes + payload.size());
  AppendFrame(&out, type, session, payload);
  return out;
}

FrameDecoder::FrameDecoder(uint32_t max_payload) : max_payload_(std::min(max_payload, kMaxPayloadCeiling)) {}

void FrameDecoder::Feed(std::string_view data) {
  if (failed()) return;
  // Drop what was consumed before growing: the buffer holds one partial
  // frame plus this chunk.
  if (pos_ > 0) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(data);
}

bool FrameDecoder::Next(Frame* out) {
  if (failed()) return false;
  size_t avail = buf_.size() - pos_;
  if (avail < kFrameHeaderBytes) return false;
  const char* h = buf_.data() + pos_;
  uint32_t len = GetU32(h);
  auto type = static_cast<uint8_t>(h[4]);
  // Checked as soon as the header is in: a bad length must not make us wait
  // for (and buffer) bytes that will never form a frame.
  if (!KnownFrameType(type)) {
    error_ = "unknown frame type " + std::to_string(type);
    return false;
  }
  if (len > max_payload_) {
    error_ = "frame payload of " + std::to_string(len) + " bytes exceeds the limit of " + std::to_string(max_payload_);
    return false;
  }
  if (avail < kFrameHeaderBytes + len) return false;
  out->type = static_cast<FrameType>(type);
  out->session = GetU32(h + 5);
  out->payload.assign(h + kFrameHeaderBytes, len);
  pos_ += kFrameHeaderBytes + len;
  return true;
}

std::string EncodeHello(const HelloMsg& m) {
  std::string p;
  PutU32(&p, m.version);
  PutU32(&p, m.window);
  PutU32(&p, m.max_payload);
  PutString(&p, m.agent);
  return p;
}

bool DecodeHello(std::string_view p, HelloMsg* m) {
  PayloadReader r(p);
  // agent is bounded by the frame's payload limit.
  return r.U32(&m->version) && r.U32(&m->window) && r.U32(&m->max_payload) && r.String(&m->agent) && r.Done();
}

std::string EncodeExec(const ExecMsg& m) {
  std::string p;
  p.push_back(static_cast<char>((m.tty ? 1 : 0) | (m.stdin ? 2 : 0)));
  PutU16(&p, m.width);
  PutU16(&p, m.height);
  PutU32(&p, static_cast<uint32_t>(m.argv.size()));
  for (const std::string& a : m.argv) PutString(&p, a);
  PutU32(&p, static_cast<uint32_t>(m.env.size()));
  for (const std::string& e : m.env) PutString(&p, e);
  return p;
}

bool DecodeExec(std::string_view p, ExecMsg* m) {
  PayloadReader r(p);
  uint8_t flags = 0;
  if (!r.U8(&flags) || (flags & ~3) != 0) return false;
  m->tty = flags & 1;
  m->stdin = flags & 2;
  if (!r.U16(&m->width) || !r.U16(&m->height)) return false;
  if (!DecodeStrings(&r, kMaxExecArgs, &m->argv) || m->argv.empty() || m->argv[0].empty()) return false;
  if (!DecodeStrings(&r, kMaxExecArgs, &m->env)) return false;
  return r.Done();
}

namespace {
bool CleanAbsolutePath(const std::string& p) {
  if (p.empty() || p[0] != '/' || p.size() > 4096) return false;
  for (size_t i = 0; i < p.size();) {
    size_t j = p.find('/', i + 1);
    if (j == std::string::npos) j = p.size();
    if (p.compare(i, j - i, "/..") == 0) return false;
    i = j;
  }
  return true;
}
}  // namespace

std::string EncodeSpawn(const SpawnMsg& m) {
  std::string p;
  PutU32(&p, static_cast<uint32_t>(m.argv.size()));
  for (const std::string& a : m.argv) PutString(&p, a);
  PutU32(&p, static_cast<uint32_t>(m.env.size()));
  for (const std::string& e : m.env) PutString(&p, e);
  for (const std::string* s : {&m.cwd, &m.stdout_path, &m.stderr_path, &m.exit_path, &m.oom_cgroup}) PutString(&p, *s);
  return p;
}

bool DecodeSpawn(std::string_view p, SpawnMsg* m) {
  PayloadReader r(p);
  if (!DecodeStrings(&r, kMaxExecArgs, &m->argv) || m->argv.empty() || m->argv[0].empty()) return false;
  if (!DecodeStrings(&r, kMaxExecArgs, &m->env)) return false;
  for (std::string* s : {&m->cwd, &m->stdout_path, &m->stderr_path, &m->exit_path, &m->oom_cgroup}) {
    if (!r.String(s) || s->find('\0') != std::string::npos) return false;
  }
  if (!m->cwd.empty() && !CleanAbsolutePath(m->cwd)) return false;
  if (!m->oom_cgroup.empty() && !CleanAbsolutePath(m->oom_cgroup)) return false;
  for (const std::string* s : {&m->stdout_path, &m->stderr_path, &m->exit_path}) {
    if (!CleanAbsolutePath(*s)) return false;
  }
  return r.Done();
}

std::string ExitFileText(const ExitFile& e) {
  return "exit_code=" + std::to_string(e.code()) + "\nsignal=" + std::to_string(e.signaled ? e.value : 0) +
         "\noom_kill=" + std::to_string(e.oom_kills) + "\n";
}

bool ParseExitFile(std::string_view text, ExitFile* e) {
  // Exactly the lines ExitFileText writes, small numbers only.
  if (text.size() > 96) return false;
  auto number = [&](std::string_view key, size_t max_digits, uint32_t* out) {
    if (text.substr(0, key.size()) != key) return false;
    text.remove_prefix(key.size());
    size_t end = text.find('\n');
    if (end == std::string_view::npos || end == 0 || end > max_digits) return false;
    if (end > 1 && text[0] == '0') return false;  // one spelling per number
    uint32_t v = 0;
    for (char c : text.substr(0, end)) {
      if (c < '0' || c > '9') return false;
      v = v * 10 + static_cast<uint32_t>(c - '0');
    }
    text.remove_prefix(end + 1);
    *out = v;
    return true;
  };
  uint32_t code = 0, sig = 0, oom = 0;
  if (!number("exit_code=", 3, &code) || !number("signal=", 2, &sig) || !number("oom_kill=", 9, &oom) ||
      !text.empty() || code > 255 || sig > 64 || (sig != 0 && code != 128 + sig)) {
    return false;
  }
  e->signaled = sig != 0;
  e->value = e->signaled ? sig : code;
  e->oom_kills = oom;
  return true;
}

std::string EncodeResize(const ResizeMsg& m) {
  std::string p;
  PutU16(&p, m.width);
  PutU16(&p, m.height);
  return p;
}

bool DecodeResize(std::string_view p, ResizeMsg* m) {
  PayloadReader r(p);
  return r.U16(&m->width) && r.U16(&m->height) && r.Done();
}

std::string EncodeU32(uint32_t v) {
  std::string p;
  PutU32(&p, v);
  return p;
}

bool DecodeU32(std::string_view p, uint32_t* v) {
  PayloadReader r(p);
  return r.U32(v) && r.Done();
}

std::string EncodeU16(uint16_t v) {
  std::string p;
  PutU16(&p, v);
  return p;
}

bool DecodeU16(std::string_view p, uint16_t* v) {
  PayloadReader r(p);
  return r.U16(v) && r.Done();
}

std::string EncodeExit(const ExitMsg& m) {
  std::string p;
  p.push_back(m.signaled ? 1 : 0);
  PutU32(&p, m.value);
  return p;
}

bool DecodeExit(std::string_view p, ExitMsg* m) {
  PayloadReader r(p);
  uint8_t kind = 0;
  if (!r.U8(&kind) || kind > 1 || !r.U32(&m->value) || !r.Done()) return false;
  m->signaled = kind == 1;
  // Signals are small; exit codes are 0..255.
  return m->value <= (m->signaled ? 127u : 255u);
}

std::string EncodeWindow(const WindowMsg& m) {
  std::string p;
  p.push_back(static_cast<char>(m.stream));
  PutU32(&p, m.bytes);
  return p;
}

bool DecodeWindow(std::string_view p, WindowMsg* m) {
  PayloadReader r(p);
  uint8_t s = 0;
  if (!r.U8(&s) || s > static_cast<uint8_t>(StreamId::kToHost) || !r.U32(&m->bytes) || !r.Done()) return false;
  m->stream = static_cast<StreamId>(s);
  return true;
}

std::string SanitizeText(std::string_view p) {
  std::string out(p.substr(0, kMaxErrorText));
  for (char& c : out) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  return out;
}

}  // namespace kvcri::runtime::agent
