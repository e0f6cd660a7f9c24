// ExtractBootArtifacts: applies image layers (whiteouts included) and keeps the boot files.
#include "runtime/image/extract.h"
#include "runtime/image/layer_reader.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>

#include "config/base/file_util.h"
#include "config/base/log.h"
#include "config/base/status_macros.h"
#include "config/base/str.h"
#include "config/base/unique_fd.h"

namespace kvcri::runtime::image {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kKernel = "boot/vmlinuz";
constexpr std::string_view kInitrd = "boot/initrd.img";
// Zero runs of this size become holes: raw disks are mostly empty.
constexpr size_t kHoleGranularity = 4096;

enum class NodeType { kFile, kDir, kSymlink, kOther };

// One path of the image's filesystem that matters for booting.
struct Node {
  NodeType type = NodeType::kFile;
  size_t layer = 0;
  fs::path content;  // extracted data, for regular boot artifacts only
  std::string what;  // how to describe a non-regular node in a reason
};

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// Paths whose existence or type decides how the image boots.
bool Relevant(std::string_view p) {
  return p == "disk" || StartsWith(p, "disk/") || p == "boot" || p == kKernel || p == kInitrd;
}

// Paths whose content is extracted.
bool NeedsContent(std::string_view p) {
  if (p == kKernel || p == kInitrd) return true;
  return StartsWith(p, "disk/") && p.find('/', 5) == std::string_view::npos;
}

class Extractor {
 public:
  Extractor(fs::path out_dir, const ExtractLimits& limits)
      : out_dir_(std::move(out_dir)), work_dir_(out_dir_ / ".layers"), limits_(limits) {}

  absl::Status ApplyLayer(BlobSource& source, const Descriptor& layer, size_t index);
  absl::StatusOr<BootArtifacts> Finish();

 private:
  absl::Status ApplyEntry(archive* a, archive_entry* e, std::string_view digest, size_t index);
  absl::Status WriteContent(archive* a, archive_entry* e, const fs::path& path);
  // Deletes `path` (when `self`) and what is under it (when `children`),
  // if it came from a layer below `below_layer`.
  void Remove(const std::string& path, bool self, bool children, size_t below_layer);
  const Node* Find(std::string_view path) const;
  absl::StatusOr<fs::path> NextContentPath(std::string_view digest) {
    if (next_content_ >= static_cast<uint64_t>(kMaxExtractedFiles)) {
      return absl::InvalidArgumentError(base::StrCat("layer ", digest, ": the image has more than ", kMaxExtractedFiles,
                                                     " files under /disk/ and /boot/ (one disk, or a kernel and "
                                                     "an initrd, boot a VM)"));
    }
    return work_dir_ / base::StrCat(next_content_++);
  }
  LayerBudget budget_;

  fs::path out_dir_;
  fs::path work_dir_;
  ExtractLimits limits_;
  std::map<std::string, Node, std::less<>> nodes_;
  uint64_t next_content_ = 0;
};

absl::Status Extractor::ApplyLayer(BlobSource& source, const Descriptor& layer, size_t index) {
  return ReadLayer(source, layer, limits_, &budget_,
                   [&](archive* a, archive_entry* e) { return ApplyEntry(a, e, layer.digest, index); });
}

absl::Status Extractor::ApplyEntry(archive* a, archive_entry* e, std::string_view digest,
                                   size_t index) {
  const char* raw = archive_entry_pathname(e);
  if (raw == nullptr) {
    return absl::InvalidArgumentError(base::StrCat("layer ", digest, ": an entry has no name"));
  }
  ASSIGN_OR_RETURN(std::string path, NormalizeEntryName(raw, digest, "entry"));
  const char* link_target = archive_entry_hardlink(e);
  std::string hardlink;
  if (link_target != nullptr) {
    ASSIGN_OR_RETURN(hardlink,
                     NormalizeEntryName(link_target, digest, base::StrCat("hardlink \"", raw, "\" to")));
    if (hardlink.empty()) {
      return absl::InvalidArgumentError(
          base::StrCat("layer ", digest, ": hardlink \"", raw, "\" points at the root"));
    }
  }
  if (path.empty()) return absl::OkStatus();  // "./": the root directory

  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "" : path.substr(0, slash);
  std::string_view name = std::string_view(path).substr(slash == std::string::npos ? 0 : slash + 1);
  if (StartsWith(name, kWhiteoutPrefix)) {
    if (name == kOpaqueWhiteout) {
      Remove(dir, /*self=*/false, /*children=*/true, index);
    } else {
      std::string target = dir.empty() ? "" : dir + "/";
      target.append(name.substr(kWhiteoutPrefix.size()));
      Remove(target, /*self=*/true, /*children=*/true, index);
    }
    return absl::OkStatus();
  }
  if (!Relevant(path)) return absl::OkStatus();

  const mode_t type = archive_entry_filetype(e);
  Node node;
  node.layer = index;
  if (link_target != nullptr) {
    const Node* target = Find(hardlink);
    if (NeedsContent(path)) {
      if (target != nullptr && target->type == NodeType::kFile && !target->content.empty()) {
        ASSIGN_OR_RETURN(node.content, NextContentPath(digest));
        if (::link(target->content.c_str(), node.content.c_str()) != 0) {
          return absl::ErrnoToStatus(errno, base::StrCat("link \"", node.content.string(), "\""));
        }
      } else {
        node.type = NodeType::kOther;
        node.what = base::StrCat("a hardlink to /", hardlink, ", which is not a boot artifact");
      }
    }
    // Elsewhere (deeper under /disk/) a hardlink only needs to exist.
  } else if (type == AE_IFDIR) {
    node.type = NodeType::kDir;
    if (const Node* old = Find(path); old != nullptr && old->type == NodeType::kDir) {
      return absl::OkStatus();  // directories merge across layers
    }
  } else if (type == AE_IFLNK) {
    const char* target = archive_entry_symlink(e);
    std::string_view t = target ? target : "";
    if (StartsWith(t, "/")) {
      return absl::InvalidArgumentError(base::StrCat(
          "layer ", digest, ": /", path, " is a symlink to the absolute path \"", t, "\""));
    }
    node.type = NodeType::kSymlink;
    node.what = base::StrCat("a symlink to \"", t, "\"");
  } else if (type == AE_IFCHR || type == AE_IFBLK) {
    return absl::InvalidArgumentError(
        base::StrCat("layer ", digest, ": /", path, " is a device node"));
  } else if (type == AE_IFREG) {
    if (NeedsContent(path)) {
      ASSIGN_OR_RETURN(node.content, NextContentPath(digest));
    }
  } else {
    node.type = NodeType::kOther;
    node.what = type == AE_IFIFO ? "a FIFO" : "a socket";
  }
  // An entry replaces whatever was at its path; a non-directory also
  // replaces a directory's contents.
  Remove(path, /*self=*/true, /*children=*/node.type != NodeType::kDir, index + 1);
  if (node.type == NodeType::kFile && link_target == nullptr && !node.content.empty()) {
    RETURN_IF_ERROR(WriteContent(a, e, node.content));
  }
  nodes_[path] = std::move(node);
  return absl::OkStatus();
}

absl::Status Extractor::WriteContent(archive* a, archive_entry* e, const fs::path& path) {
  RETURN_IF_ERROR(base::MakeDirs(work_dir_));
  base::UniqueFd fd(
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid())
    return absl::ErrnoToStatus(errno, base::StrCat("create \"", path.string(), "\""));
  int64_t end = 0;
  RETURN_IF_ERROR(ForEachDataBlock(
      a, e,
      [&](const char* p, size_t len, int64_t off) -> absl::Status {
        // Zero runs become holes: raw disks are mostly empty.
        for (size_t done = 0; done < len;) {
          size_t n = std::min(kHoleGranularity, len - done);
          const char* chunk = p + done;
          bool zero = chunk[0] == 0 && std::memcmp(chunk, chunk + 1, n - 1) == 0;
          if (!zero) {
            for (size_t w = 0; w < n;) {
              ssize_t k = ::pwrite(fd.get(), chunk + w, n - w, static_cast<off_t>(off + done + w));
              if (k < 0 && errno == EINTR) continue;
              if (k < 0) return absl::ErrnoToStatus(errno, base::StrCat("write \"", path.string(), "\""));
              w += static_cast<size_t>(k);
            }
          }
          done += n;
        }
        return absl::OkStatus();
      },
      &end));
  if (::ftruncate(fd.get(), end) != 0 || ::fsync(fd.get()) != 0) {
    return absl::ErrnoToStatus(errno, base::StrCat("sync \"", path.string(), "\""));
  }
  return absl::OkStatus();
}

void Extractor::Remove(const std::string& path, bool self, bool children, size_t below_layer) {
  auto drop = [](const Node& n) {
    if (!n.content.empty())
      base::LogIfError(base::RemoveFile(n.content), "remove superseded layer file");
  };
  if (self) {
    if (auto it = nodes_.find(path); it != nodes_.end() && it->second.layer < below_layer) {
      drop(it->second);
      nodes_.erase(it);
    }
  }
  if (!children) return;
  std::string prefix = path.empty() ? "" : path + "/";
  for (auto it = nodes_.lower_bound(prefix); it != nodes_.end() && StartsWith(it->first, prefix);) {
    if (it->second.layer < below_layer) {
      drop(it->second);
      it = nodes_.erase(it);
    } else {
      ++it;
    }
  }
}

const Node* Extractor::Find(std::string_view path) const {
  auto it = nodes_.find(path);
  return it == nodes_.end() ? nullptr : &it->second;
}

std::string Describe(const Node& n) {
  switch (n.type) {
    case NodeType::kFile:
      return "a regular file";
    case NodeType::kDir:
      return "a directory";
    default:
      return n.what;
  }
}

absl::StatusOr<BootArtifacts> Extractor::Finish() {
  BootArtifacts out;
  std::vector<std::string> reasons;
  auto regular = [](const Node* n) {
    return n != nullptr && n->type == NodeType::kFile && !n->content.empty();
  };

  const Node* boot = Find("boot");
  const Node* kernel = Find(kKernel);
  const Node* initrd = Find(kInitrd);
  if (boot != nullptr && boot->type != NodeType::kDir) {
    reasons.push_back(base::StrCat("/boot is ", Describe(*boot), ", not a directory"));
  } else if (kernel != nullptr && !regular(kernel)) {
    reasons.push_back(
        base::StrCat("/boot/vmlinuz is ", Describe(*kernel), "; only regular files are accepted"));
  } else if (regular(kernel)) {
    out.kernel = std::string(kKernel);
    if (initrd != nullptr && !regular(initrd)) {
      reasons.push_back(base::StrCat("/boot/initrd.img is ", Describe(*initrd),
                                     "; only regular files are accepted"));
    } else if (initrd != nullptr) {
      out.initrd = std::string(kInitrd);
    }
  }

  // Direct children of /disk/, explicit or implied by deeper entries.
  std::map<std::string, const Node*> disks;
  const Node* disk_dir = Find("disk");
  if (disk_dir != nullptr && disk_dir->type != NodeType::kDir) {
    reasons.push_back(base::StrCat("/disk is ", Describe(*disk_dir), ", not a directory"));
  } else {
    for (auto it = nodes_.lower_bound("disk/");
         it != nodes_.end() && StartsWith(it->first, "disk/"); ++it) {
      std::string_view rest = std::string_view(it->first).substr(5);
      size_t slash = rest.find('/');
      std::string child(rest.substr(0, slash));
      if (slash == std::string_view::npos) {
        disks[child] = &it->second;
      } else {
        disks.emplace(child, nullptr);  // a directory implied by a nested entry
      }
    }
  }
  if (disks.size() == 1 && regular(disks.begin()->second)) {
    out.disk = "disk/" + disks.begin()->first;
  } else if (disks.size() == 1) {
    const Node* n = disks.begin()->second;
    reasons.push_back(base::StrCat("/disk/", disks.begin()->first, " is ",
                                   n ? Describe(*n) : std::string("a directory"),
                                   "; only regular files are accepted"));
  } else if (disks.size() > 1) {
    std::string names;
    for (const auto& [name, n] : disks) names += (names.empty() ? "" : ", ") + name;
    reasons.push_back(base::StrCat("/disk/ holds ", disks.size(), " entries (", names,
                                   "); exactly one disk file is needed"));
  }
  if (reasons.empty() && out.kernel.empty() && out.disk.empty()) {
    reasons.push_back("the image has neither /boot/vmlinuz nor a disk file under /disk/");
  }
  if (!reasons.empty()) {
    out = BootArtifacts{};
    for (const std::string& r : reasons)
      out.unbootable_reason += (out.unbootable_reason.empty() ? "" : "; ") + r;
  }

  // Move the chosen artifacts to their final names; drop everything else.
  for (const std::string* rel : {&out.disk, &out.kernel, &out.initrd}) {
    if (rel->empty()) continue;
    fs::path dst = out_dir_ / *rel;
    RETURN_IF_ERROR(base::MakeDirs(dst.parent_path(), 0755));
    const fs::path& src = Find(*rel)->content;
    if (::rename(src.c_str(), dst.c_str()) != 0) {
      return absl::ErrnoToStatus(
          errno, base::StrCat("rename \"", src.string(), "\" to \"", dst.string(), "\""));
    }
  }
  RETURN_IF_ERROR(base::RemoveAll(work_dir_));
  nodes_.clear();
  return out;
}

}  // namespace

absl::StatusOr<BootArtifacts> ExtractBootArtifacts(BlobSource& source, const std::vector<Descriptor>& layers,
                                                   const fs::path& out_dir, const ExtractLimits& limits) {
  Extractor x(out_dir, limits);
  for (size_t i = 0; i < layers.size(); ++i) RETURN_IF_ERROR(x.ApplyLayer(source, layers[i], i));
  return x.Finish();
}

}  // namespace kvcri::runtime::image
