// The images subcommands (import, list) run against the image store.
#include "shim/subcommands.h"

#include <cstdio>
#include <iostream>

#include "absl/strings/str_join.h"
#include "runtime/image/image_store.h"
#include "shim/flags.h"

namespace kvcri::shim {
namespace {

absl::StatusOr<std::unique_ptr<runtime::image::LocalImageStore>> OpenStore(const config::Config& config) {
  // The daemon may be running and owns garbage collection; we only add.
  runtime::image::LocalImageStore::Options options =
      runtime::image::LocalImageStore::Options::FromConfig(config.images, /*collect_garbage=*/false);
  return runtime::image::LocalImageStore::Open(config.root / "images", options);
}

int Fail(const absl::Status& s) {
  std::cerr << "kubevirt-cri: " << s.message() << "\n";
  return 1;
}

int ImagesImport(const config::Config& config, const std::vector<std::string>& args) {
  if (args.size() != 4) {
    std::cerr << "kubevirt-cri: usage: images import [flags] DIR REF\n";
    return 2;
  }
  auto store = OpenStore(config);
  if (!store.ok()) return Fail(store.status());
  absl::StatusOr<runtime::image::ImageInfo> info = (*store)->Import(args[2], args[3], "");
  if (!info.ok()) return Fail(info.status());
  std::cout << info->id << " " << absl::StrJoin(info->repo_tags, ",") << " boot="
            << runtime::image::BootKindName(info->boot.kind) << "\n";
  return 0;
}

int ImagesList(const config::Config& config) {
  auto store = OpenStore(config);
  if (!store.ok()) return Fail(store.status());
  absl::StatusOr<std::vector<runtime::image::ImageInfo>> images = (*store)->List();
  if (!images.ok()) return Fail(images.status());
  std::printf("%-20s %-8s %12s  %s\n", "IMAGE ID", "BOOT", "SIZE", "TAGS");
  for (const runtime::image::ImageInfo& i : *images) {
    std::printf("%-20s %-8s %12lld  %s\n", i.id.substr(7, 13).c_str(),
                std::string(runtime::image::BootKindName(i.boot.kind)).c_str(), static_cast<long long>(i.size),
                absl::StrJoin(i.repo_tags, ",").c_str());
  }
  return 0;
}

}  // namespace

int RunSubcommand(const config::Config& config, const std::vector<std::string>& args) {
  if (args[0] == "images" && args.size() >= 2 && args[1] == "import") return ImagesImport(config, args);
  if (args[0] == "images" && args.size() == 2 && args[1] == "list") return ImagesList(config);
  std::cerr << "kubevirt-cri: unknown subcommand \"" << absl::StrJoin(args, " ") << "\"\n\n" << Usage();
  return 2;
}

}  // namespace kvcri::shim
