// Sh(): runs a shell command for a test, capturing its output.
#pragma once

// Runs a shell command for a test, capturing stdout and stderr together.

#include <stdio.h>
#include <sys/wait.h>

#include <string>

namespace kvcri::testing {

struct ShResult {
  int exit_code;  // -1 when the command could not run or was killed
  std::string output;
};

inline ShResult Sh(const std::string& cmd) {
  ShResult r{-1, ""};
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int st = ::pclose(p);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

}  // namespace kvcri::testing
