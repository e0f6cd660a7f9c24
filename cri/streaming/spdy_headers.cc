// SPDY/3 header block encoding and its zlib contexts with the SPDY/3 dictionary; decompression is bounded.
#include "cri/streaming/spdy_headers.h"

#include <zlib.h>

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "config/base/str.h"

namespace kvcri::streaming::spdy {
namespace {

// The dictionary of draft-mbelshe-httpbis-spdy-00 section 2.6.10.1: common
// header names and values, each after a 32-bit length.
constexpr char kDictionary[] =
    "\000\000\000\007options\000\000\000\004head\000\000\000\004post\000\000\000\003put\000\000\000\006delete"
    "\000\000\000\005trace\000\000\000\006accept\000\000\000\016accept-charset\000\000\000\017accept-encoding"
    "\000\000\000\017accept-language\000\000\000\015accept-ranges\000\000\000\003age\000\000\000\005allow\000"
    "\000\000\015authorization\000\000\000\015cache-control\000\000\000\012connection\000\000\000\014content-b"
    "ase\000\000\000\020content-encoding\000\000\000\020content-language\000\000\000\016content-length\000\000"
    "\000\020content-location\000\000\000\013content-md5\000\000\000\015content-range\000\000\000\014content-t"
    "ype\000\000\000\004date\000\000\000\004etag\000\000\000\006expect\000\000\000\007expires\000\000\000\004f"
    "rom\000\000\000\004host\000\000\000\010if-match\000\000\000\021if-modified-since\000\000\000\015if-none-m"
    "atch\000\000\000\010if-range\000\000\000\023if-unmodified-since\000\000\000\015last-modified\000\000\000"
    "\010location\000\000\000\014max-forwards\000\000\000\006pragma\000\000\000\022proxy-authenticate\000\000"
    "\000\023proxy-authorization\000\000\000\005range\000\000\000\007referer\000\000\000\013retry-after\000"
    "\000\000\006server\000\000\000\002te\000\000\000\007trailer\000\000\000\021transfer-encoding\000\000\000"
    "\007upgrade\000\000\000\012user-agent\000\000\000\004vary\000\000\000\003via\000\000\000\007warning\000"
    "\000\000\020www-authenticate\000\000\000\006method\000\000\000\003get\000\000\000\006status\000\000\000"
    "\006200 OK\000\000\000\007version\000\000\000\010HTTP/1.1\000\000\000\003url\000\000\000\006public\000"
    "\000\000\012set-cookie\000\000\000\012keep-alive\000\000\000\006origin10010120120220520630030230330430530"
    "6307402405406407408409410411412413414415416417502504505203 Non-Authoritative Information204 No Content301"
    " Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 N"
    "ot Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, "
    "Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,application/x"
    "html+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1"
    ",utf-,*,enq=0.";
static_assert(sizeof(kDictionary) - 1 == 1423, "the SPDY/3 dictionary is 1423 bytes");

void Put32(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>(v >> 24));
  out.push_back(static_cast<char>(v >> 16));
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}

// Reads a 32-bit length and that many bytes from `rest`.
bool TakeString(std::string_view& rest, std::string_view& out) {
  if (rest.size() < 4) return false;
  const uint32_t n = static_cast<uint32_t>(static_cast<uint8_t>(rest[0])) << 24 |
                     static_cast<uint32_t>(static_cast<uint8_t>(rest[1])) << 16 |
                     static_cast<uint32_t>(static_cast<uint8_t>(rest[2])) << 8 | static_cast<uint8_t>(rest[3]);
  rest.remove_prefix(4);
  if (n > rest.size()) return false;
  out = rest.substr(0, n);
  rest.remove_prefix(n);
  return true;
}

const Bytef* DictBytes() { return reinterpret_cast<const Bytef*>(kDictionary); }

}  // namespace

std::string_view HeaderDictionary() { return {kDictionary, sizeof(kDictionary) - 1}; }

std::string_view FindHeader(const HeaderList& headers, std::string_view name) {
  for (const auto& [n, v] : headers) {
    if (n == name) return std::string_view(v).substr(0, std::min(v.find('\0'), v.size()));
  }
  return {};
}

std::string EncodeHeaderBlock(const HeaderList& headers) {
  std::string out;
  Put32(out, static_cast<uint32_t>(headers.size()));
  for (const auto& [name, value] : headers) {
    Put32(out, static_cast<uint32_t>(name.size()));
    out.append(name);
    Put32(out, static_cast<uint32_t>(value.size()));
    out.append(value);
  }
  return out;
}

absl::StatusOr<HeaderList> ParseHeaderBlock(std::string_view block) {
  std::string_view rest = block;
  if (rest.size() < 4) return absl::InvalidArgumentError("SPDY header block: shorter than its pair count");
  const uint32_t count = static_cast<uint32_t>(static_cast<uint8_t>(rest[0])) << 24 |
                         static_cast<uint32_t>(static_cast<uint8_t>(rest[1])) << 16 |
                         static_cast<uint32_t>(static_cast<uint8_t>(rest[2])) << 8 | static_cast<uint8_t>(rest[3]);
  rest.remove_prefix(4);
  if (count > kMaxHeaderPairs) {
    return absl::InvalidArgumentError(
        base::StrCat("SPDY header block: ", count, " pairs exceed the limit of ", kMaxHeaderPairs));
  }
  HeaderList out;
  out.reserve(count);
  absl::flat_hash_set<std::string_view> seen;
  for (uint32_t i = 0; i < count; ++i) {
    std::string_view name, value;
    if (!TakeString(rest, name) || !TakeString(rest, value)) {
      return absl::InvalidArgumentError(base::StrCat("SPDY header block: pair ", i, " is truncated"));
    }
    if (name.empty()) return absl::InvalidArgumentError(base::StrCat("SPDY header block: pair ", i, " has an empty name"));
    if (std::any_of(name.begin(), name.end(), [](char c) { return c == '\0' || (c >= 'A' && c <= 'Z'); })) {
      return absl::InvalidArgumentError(
          base::StrCat("SPDY header block: name of pair ", i, " has an uppercase letter or a NUL"));
    }
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(base::StrCat("SPDY header block: name \"", name, "\" appears twice"));
    }
    out.emplace_back(std::string(name), std::string(value));
  }
  if (!rest.empty()) {
    return absl::InvalidArgumentError(base::StrCat("SPDY header block: ", rest.size(), " bytes after the last pair"));
  }
  return out;
}

struct HeaderEncoder::State {
  z_stream z{};
  ~State() { deflateEnd(&z); }
};

HeaderEncoder::HeaderEncoder(std::unique_ptr<State> state) : state_(std::move(state)) {}
HeaderEncoder::~HeaderEncoder() = default;

absl::StatusOr<std::unique_ptr<HeaderEncoder>> HeaderEncoder::Create() {
  auto state = std::make_unique<State>();
  if (deflateInit(&state->z, Z_DEFAULT_COMPRESSION) != Z_OK) {
    return absl::InternalError("SPDY header compression: deflateInit failed");
  }
  if (deflateSetDictionary(&state->z, DictBytes(), sizeof(kDictionary) - 1) != Z_OK) {
    return absl::InternalError("SPDY header compression: deflateSetDictionary failed");
  }
  return std::unique_ptr<HeaderEncoder>(new HeaderEncoder(std::move(state)));
}

absl::StatusOr<std::string> HeaderEncoder::Encode(const HeaderList& headers) {
  std::string plain = EncodeHeaderBlock(headers);
  z_stream& z = state_->z;
  std::string out(deflateBound(&z, plain.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(plain.data());
  z.avail_in = static_cast<uInt>(plain.size());
  size_t produced = 0;
  while (true) {
    z.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    z.avail_out = static_cast<uInt>(out.size() - produced);
    const int rc = deflate(&z, Z_SYNC_FLUSH);
    if (rc != Z_OK && rc != Z_BUF_ERROR) return absl::InternalError("SPDY header compression: deflate failed");
    produced = out.size() - z.avail_out;
    // Done once all input is in and deflate left output space unused.
    if (z.avail_in == 0 && z.avail_out > 0) break;
    out.resize(out.size() * 2);
  }
  out.resize(produced);
  return out;
}

struct HeaderDecoder::State {
  z_stream z{};
  size_t max_block_bytes = 0;
  bool broken = false;
  ~State() { inflateEnd(&z); }
};

HeaderDecoder::HeaderDecoder(std::unique_ptr<State> state) : state_(std::move(state)) {}
HeaderDecoder::~HeaderDecoder() = default;

absl::StatusOr<std::unique_ptr<HeaderDecoder>> HeaderDecoder::Create(size_t max_block_bytes) {
  auto state = std::make_unique<State>();
  state->max_block_bytes = max_block_bytes;
  if (inflateInit(&state->z) != Z_OK) return absl::InternalError("SPDY header decompression: inflateInit failed");
  return std::unique_ptr<HeaderDecoder>(new HeaderDecoder(std::move(state)));
}

absl::StatusOr<HeaderList> HeaderDecoder::Decode(std::string_view compressed) {
  State& st = *state_;
  if (st.broken) return absl::FailedPreconditionError("SPDY header decompression: the context failed earlier");
  st.broken = true;  // until this block decodes completely
  z_stream& z = st.z;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  z.avail_in = static_cast<uInt>(compressed.size());
  // One byte of slack: output reaching it proves the block is over the limit.
  std::string out(st.max_block_bytes + 1, '\0');
  size_t produced = 0;
  while (z.avail_in > 0) {
    z.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    z.avail_out = static_cast<uInt>(out.size() - produced);
    int rc = inflate(&z, Z_SYNC_FLUSH);
    if (rc == Z_NEED_DICT) {
      if (inflateSetDictionary(&z, DictBytes(), sizeof(kDictionary) - 1) != Z_OK) {
        return absl::InvalidArgumentError("SPDY header block: the stream asks for a dictionary other than SPDY/3's");
      }
      rc = inflate(&z, Z_SYNC_FLUSH);
    }
    produced = out.size() - z.avail_out;
    if (produced > st.max_block_bytes) {
      return absl::InvalidArgumentError(base::StrCat("SPDY header block: decompresses to more than the limit of ",
                                                     st.max_block_bytes, " bytes"));
    }
    if (rc == Z_STREAM_END) return absl::InvalidArgumentError("SPDY header block: the zlib stream ended");
    if (rc == Z_BUF_ERROR) break;  // no progress possible: input ends mid-symbol
    if (rc != Z_OK) {
      return absl::InvalidArgumentError(
          base::StrCat("SPDY header block: zlib error: ", z.msg != nullptr ? z.msg : "corrupt data"));
    }
  }
  if (z.avail_in != 0) return absl::InvalidArgumentError("SPDY header block: compressed bytes left over");
  out.resize(produced);
  absl::StatusOr<HeaderList> parsed = ParseHeaderBlock(out);
  if (parsed.ok()) st.broken = false;
  return parsed;
}

}  // namespace kvcri::streaming::spdy
