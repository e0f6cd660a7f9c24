#include "shim/subcommands.h"

#include <iostream>

#include "shim/flags.h"

namespace kvcri::shim {

int RunSubcommand(const config::Config& config, const std::vector<std::string>& args) {
  std::cerr << "kubevirt-cri: unknown subcommand \"" << args[0] << "\"\n\n" << Usage();
  return 2;
}

}  // namespace kvcri::shim
