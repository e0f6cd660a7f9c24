// ReadLayer and NormalizeEntryName (layer_reader.h): libarchive over a verifying blob reader, bounded.
#include "runtime/image/layer_reader.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <vector>

#include "config/base/status_macros.h"
#include "config/base/str.h"

namespace kvcri::runtime::image {
namespace {

constexpr size_t kReadBufSize = 1 << 20;

struct ArchiveFree {
  void operator()(archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveFree>;

struct ReadContext {
  VerifyingReader* reader;
  std::vector<char> buf;
  absl::Status error;
};

la_ssize_t ReadCallback(archive* a, void* opaque, const void** out) {
  auto* ctx = static_cast<ReadContext*>(opaque);
  absl::StatusOr<size_t> n = ctx->reader->Read(ctx->buf.data(), ctx->buf.size());
  if (!n.ok()) {
    ctx->error = n.status();
    archive_set_error(a, EIO, "%s", std::string(n.status().message()).c_str());
    return -1;
  }
  *out = ctx->buf.data();
  return static_cast<la_ssize_t>(*n);
}

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

}  // namespace

absl::Status ForEachDataBlock(archive* a, archive_entry* e,
                              const std::function<absl::Status(const char* data, size_t len, int64_t off)>& write,
                              int64_t* end) {
  *end = 0;
  while (true) {
    const void* buf = nullptr;
    size_t len = 0;
    la_int64_t off = 0;
    int r = archive_read_data_block(a, &buf, &len, &off);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      const char* msg = archive_error_string(a);
      return absl::InvalidArgumentError(base::StrCat("reading \"", archive_entry_pathname(e),
                                                     "\": ", msg ? msg : "unknown libarchive error"));
    }
    // Never write past what the header declared (the budget checked it).
    if (archive_entry_size_is_set(e) && (off < 0 || off + static_cast<int64_t>(len) > archive_entry_size(e))) {
      return absl::InvalidArgumentError(base::StrCat("\"", archive_entry_pathname(e),
                                                     "\" has data past its declared size of ", archive_entry_size(e),
                                                     " bytes"));
    }
    RETURN_IF_ERROR(write(static_cast<const char*>(buf), len, off));
    *end = std::max<int64_t>(*end, off + static_cast<int64_t>(len));
  }
  if (archive_entry_size_is_set(e)) *end = std::max<int64_t>(*end, archive_entry_size(e));
  return absl::OkStatus();
}

absl::StatusOr<std::string> NormalizeEntryName(std::string_view name, std::string_view layer, std::string_view what) {
  auto refuse = [&](std::string_view why) {
    return absl::InvalidArgumentError(base::StrCat("layer ", layer, ": ", what, " \"", name, "\" ", why));
  };
  if (StartsWith(name, "/")) return refuse("is an absolute path");
  std::string out;
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = name.find('/', start);
    if (slash == std::string_view::npos) slash = name.size();
    std::string_view c = name.substr(start, slash - start);
    if (c == "..") return refuse("contains \"..\"");
    if (!c.empty() && c != ".") {
      if (!out.empty()) out.push_back('/');
      out.append(c);
    }
    start = slash + 1;
  }
  return out;
}

absl::Status ReadLayer(BlobSource& source, const Descriptor& layer, const ExtractLimits& limits, LayerBudget* budget,
                       const LayerEntryFn& on_entry) {
  ASSIGN_OR_RETURN(base::UniqueFd fd, source.Open(layer.digest));
  VerifyingReader reader(std::move(fd), layer);
  ReadContext ctx{&reader, std::vector<char>(kReadBufSize), absl::OkStatus()};
  ArchivePtr a(archive_read_new());
  if (!a) return absl::ResourceExhaustedError("archive_read_new failed");
  // Only what OCI layers use: tar, optionally gzip or zstd compressed.
  if (archive_read_support_filter_gzip(a.get()) != ARCHIVE_OK ||
      archive_read_support_filter_zstd(a.get()) != ARCHIVE_OK ||
      archive_read_support_format_tar(a.get()) != ARCHIVE_OK) {
    return absl::InternalError(base::StrCat("libarchive lacks gzip, zstd or tar support: ",
                                            archive_error_string(a.get())));
  }
  // On a libarchive error, a digest mismatch explains more than a
  // decompression error, so check the blob first.
  auto archive_error = [&](std::string_view what) -> absl::Status {
    if (!ctx.error.ok()) return ctx.error;
    if (absl::Status s = reader.Finish(); !s.ok()) return s;
    const char* msg = archive_error_string(a.get());
    return absl::InvalidArgumentError(base::StrCat("layer ", layer.digest, ": ", what, ": ",
                                                   msg ? msg : "unknown libarchive error"));
  };
  if (archive_read_open(a.get(), &ctx, nullptr, ReadCallback, nullptr) != ARCHIVE_OK) {
    return archive_error("not a tar archive");
  }
  archive_entry* e = nullptr;
  while (true) {
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) return archive_error("reading an entry header");
    // Bound the work before doing it: this entry's data is decompressed
    // (written or skipped) only if its declared size fits what is left.
    const int64_t consumed = budget->bytes + archive_filter_bytes(a.get(), 0);
    const int64_t declared = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
    if (declared < 0 || declared > limits.max_bytes - consumed) {
      const char* name = archive_entry_pathname(e);
      return absl::InvalidArgumentError(
          base::StrCat("layer ", layer.digest, ": entry \"", name ? name : "", "\" declares ", declared,
                       " bytes after ", consumed, " decompressed; the image's layers would expand past the limit of ",
                       limits.max_bytes, " bytes ([images] max_image_bytes)"));
    }
    if (++budget->entries > limits.max_entries) {
      return absl::InvalidArgumentError(base::StrCat("layer ", layer.digest, ": the image's layers hold more than ",
                                                     limits.max_entries, " entries ([images] max_image_entries)"));
    }
    if (absl::Status s = on_entry(a.get(), e); !s.ok()) {
      return ctx.error.ok() ? s : ctx.error;
    }
  }
  budget->bytes += archive_filter_bytes(a.get(), 0);
  if (budget->bytes > limits.max_bytes) {
    return absl::InvalidArgumentError(base::StrCat("layer ", layer.digest, ": the image's layers expand to ",
                                                   budget->bytes, " bytes, past the limit of ", limits.max_bytes,
                                                   " bytes ([images] max_image_bytes)"));
  }
  return reader.Finish();
}

}  // namespace kvcri::runtime::image
