// ExtractBootArtifacts in a sandboxed child process, because image layers are untrusted.
#pragma once

#include <filesystem>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/image/extract.h"
#include "runtime/image/oci.h"

namespace kvcri::runtime::image {

// ExtractBootArtifacts in a child process, because layers are untrusted:
//
//  - the child is a fresh exec of /proc/self/exe (no locks or threads
//    inherited from the daemon), recognized before main() by an environment
//    marker, so every binary linking this library can act as the child;
//  - it gets only the layer blobs (opened here, one fd each), a result pipe
//    and its request; every other descriptor is closed;
//  - as root it chroots into `out_dir`, so it can write nowhere else;
//  - it drops every capability (effective, permitted, inheritable, ambient
//    and the bounding set), sets no_new_privs, and then loads a seccomp
//    allowlist of the file and memory syscalls extraction needs: no exec,
//    no sockets, no mount, no ptrace, no chroot (denied calls fail EPERM).
//
// Errors keep their code (InvalidArgument for a refused layer, as in
// ExtractBootArtifacts); a child that dies is Internal naming the signal.
absl::StatusOr<BootArtifacts> ExtractBootArtifactsSandboxed(BlobSource& source,
                                                            const std::vector<Descriptor>& layers,
                                                            const std::filesystem::path& out_dir);

// The child's answer on its result pipe (at most 1 MiB), read by the parent:
// the artifacts, or the child's error with its code. Internal for anything
// else: a non-object, a field of the wrong type, an error code that is not
// one, a path outside the artifacts' names. The child may be compromised by
// the layers it read, so this is a parser of untrusted bytes (fuzzed).
absl::StatusOr<BootArtifacts> ParseExtractionResult(std::string_view text);

}  // namespace kvcri::runtime::image
