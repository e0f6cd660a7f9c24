// Fuzz target console_log: guest console bytes, in bursts and pauses, through ConsoleLogCopier into CRI log lines.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include "config/base/clock.h"
#include "config/base/file_util.h"
#include "config/base/unique_fd.h"
#include "runtime/console_log.h"
#include "test/fuzz/fuzz_targets.h"
#include "test/fuzz/scratch_file.h"

namespace kvcri::fuzz {

constexpr std::string_view kTarget = "console_log";
// Small enough that the fuzzer reaches the long-line split with short inputs.
constexpr size_t kMaxLineBytes = 64;

namespace {

// Checks one CRI log line: "<RFC3339Nano> stdout <P|F> <text>" and the text
// bound; returns the text, and whether the line is complete (F).
std::string_view CheckLine(std::string_view line, bool* full) {
  size_t sp1 = line.find(' ');
  KVCRI_FUZZ_CHECK(kTarget, sp1 != std::string_view::npos);
  KVCRI_FUZZ_CHECK(kTarget, line.substr(sp1, 10) == " stdout P " || line.substr(sp1, 10) == " stdout F ");
  *full = line[sp1 + 8] == 'F';
  std::string_view text = line.substr(sp1 + 10);
  KVCRI_FUZZ_CHECK(kTarget, text.size() <= kMaxLineBytes);
  KVCRI_FUZZ_CHECK(kTarget, text.find('\n') == std::string_view::npos);
  return text;
}

}  // namespace

// Input: a sequence of bursts, each [pause in 100 ms steps][length][bytes];
// the copier polls after each burst, and Remove() flushes the end. Each
// input runs twice: into CRI log lines, and raw (containerd-shim mode),
// where the output must be the guest's bytes exactly.
void RunConsoleLog(FuzzInput in, bool raw) {
  const std::filesystem::path console = ScratchPath("console.log");
  const std::filesystem::path cri_log = ScratchPath("0.log");
  std::error_code ec;
  std::filesystem::remove(console, ec);
  std::filesystem::remove(runtime::ConsoleOffsetPath(console), ec);
  std::filesystem::remove(cri_log, ec);

  base::ManualClock clock;
  runtime::ConsoleLogOptions options;
  options.start_thread = false;
  options.clock = &clock;
  options.max_line_bytes = kMaxLineBytes;
  options.max_read_per_poll = 256;
  options.raw = raw;
  std::string written;  // everything the guest wrote
  {
    runtime::ConsoleLogCopier copier(options);
    if (absl::Status s = copier.Add("fuzz", console, cri_log); !s.ok()) FuzzFail(kTarget, std::string(s.message()));
    base::UniqueFd out(::open(console.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    if (!out.valid()) FuzzFail(kTarget, "open console");
    InputReader r(in);
    while (!r.empty()) {
      clock.Advance(absl::Milliseconds(100) * (r.Byte() & 0x1f));
      std::string_view burst = r.Bytes(r.U16() & 0x3fff);
      if (::write(out.get(), burst.data(), burst.size()) != static_cast<ssize_t>(burst.size())) {
        FuzzFail(kTarget, "write console");
      }
      written.append(burst);
      copier.PollOnce();
    }
    if (absl::Status s = copier.Remove("fuzz"); !s.ok()) FuzzFail(kTarget, std::string(s.message()));
  }

  // Every line is well-formed and bounded; together, after \r stripping, they
  // hold the guest's bytes in order.
  absl::StatusOr<std::string> log = base::ReadFile(cri_log);
  KVCRI_FUZZ_CHECK(kTarget, log.ok());
  if (raw) {
    // Bursts stay far below the backlog bound: nothing is dropped or marked.
    KVCRI_FUZZ_CHECK(kTarget, *log == written);
    return;
  }
  std::string_view rest = *log;
  std::string copied;
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    KVCRI_FUZZ_CHECK(kTarget, nl != std::string_view::npos);
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl + 1);
    bool full = false;
    copied.append(CheckLine(line, &full));
    if (full) copied.push_back('\n');
  }
  std::string expected;
  for (char c : written) {
    if (c != '\r') expected.push_back(c);
  }
  std::string got;
  for (char c : copied) {
    if (c != '\r') got.push_back(c);
  }
  // Only a final line without its newline gains one; a trailing empty line is dropped.
  while (!expected.empty() && expected.back() == '\n') expected.pop_back();
  while (!got.empty() && got.back() == '\n') got.pop_back();
  KVCRI_FUZZ_CHECK(kTarget, got == expected);
}

void FuzzConsoleLog(FuzzInput in) {
  RunConsoleLog(in, /*raw=*/false);
  RunConsoleLog(in, /*raw=*/true);
}

}  // namespace kvcri::fuzz

KVCRI_FUZZ_ENTRY(kvcri::fuzz::FuzzConsoleLog)
