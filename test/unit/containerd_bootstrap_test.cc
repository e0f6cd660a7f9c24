// Unit tests of shim/containerd/bootstrap: Go flags, the socket address vector, grouping, address file, delete reply.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "config/base/unique_fd.h"
#include "shim/containerd/bootstrap.h"
#include "shim/containerd/names.h"
#include "shim/containerd/proto/task.pb.h"

namespace kvcri::shim::containerd {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A scratch directory, removed with its contents.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (fs::temp_directory_path() / "kvcri-boot-XXXXXX").string();
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

absl::StatusOr<ShimArgs> Parse(std::vector<std::string> words) {
  std::vector<const char*> argv = {"containerd-shim-kubevirt-v1"};
  for (const std::string& w : words) argv.push_back(w.c_str());
  return ParseShimArgs(static_cast<int>(argv.size()), argv.data());
}

void ExpectInvalid(const absl::StatusOr<ShimArgs>& r, std::string_view mention) {
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(std::string(mention)));
}

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// --- ParseShimArgs ---

TEST(ContainerdShimArgs, ParsesContainerdsStartCommandLine) {
  // cd-1.6 runtime/v2/shim/util.go Command + binary.go Start, with -debug.
  auto args = Parse({"-namespace", "k8s.io", "-address", "/run/containerd/containerd.sock", "-publish-binary",
                     "/usr/bin/containerd", "-id", "abc", "-debug", "start"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->namespace_name, "k8s.io");
  EXPECT_EQ(args->address, "/run/containerd/containerd.sock");
  EXPECT_EQ(args->publish_binary, "/usr/bin/containerd");
  EXPECT_EQ(args->id, "abc");
  EXPECT_TRUE(args->debug);
  EXPECT_FALSE(args->version);
  EXPECT_EQ(args->subcommand, "start");
}

TEST(ContainerdShimArgs, ParsesContainerdsDeleteCommandLine) {
  auto args = Parse({"-namespace", "k8s.io", "-address", "/run/containerd/containerd.sock", "-publish-binary",
                     "/usr/bin/containerd", "-id", "abc", "-bundle", "/run/b", "delete"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->bundle, "/run/b");
  EXPECT_FALSE(args->debug);
  EXPECT_EQ(args->subcommand, "delete");
}

TEST(ContainerdShimArgs, NoSubcommandMeansServe) {
  auto args = Parse({"-namespace", "ns", "-id", "t", "-socket", "/run/s.sock"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->subcommand, "");
  EXPECT_EQ(args->socket, "/run/s.sock");
  EXPECT_EQ(args->publish_binary, "containerd");  // Go's default
}

TEST(ContainerdShimArgs, AcceptsDoubleDashAndEqualsForms) {
  auto args = Parse({"--namespace=k8s.io", "--id", "abc", "-address=/a.sock", "--debug=true", "start"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->namespace_name, "k8s.io");
  EXPECT_EQ(args->id, "abc");
  EXPECT_EQ(args->address, "/a.sock");
  EXPECT_TRUE(args->debug);
}

TEST(ContainerdShimArgs, EqualsFormMaySetAnEmptyValueOrOneWithEquals) {
  auto args = Parse({"-namespace", "n", "-socket=", "-bundle=/a=b"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->socket, "");
  EXPECT_EQ(args->bundle, "/a=b");  // split at the first '=' only
}

TEST(ContainerdShimArgs, BoolFlagsTakeGoBoolValuesOnlyAfterEquals) {
  auto off = Parse({"-namespace", "n", "-debug=false"});
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_FALSE(off->debug);
  for (const char* v : {"1", "t", "T", "TRUE", "true", "True"}) {
    auto on = Parse({"-namespace", "n", std::string("-debug=") + v});
    ASSERT_TRUE(on.ok()) << v;
    EXPECT_TRUE(on->debug) << v;
  }
  ExpectInvalid(Parse({"-namespace", "n", "-debug=yes"}), "-debug");
  // A bool flag never eats the next word: "start" stays the subcommand.
  auto start = Parse({"-namespace", "n", "-address", "/a", "-id", "x", "-debug", "start"});
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_EQ(start->subcommand, "start");
}

TEST(ContainerdShimArgs, StringFlagTakesTheNextWordWhateverItIs) {
  auto args = Parse({"-namespace", "n", "-id", "-debug"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->id, "-debug");
  EXPECT_FALSE(args->debug);
}

TEST(ContainerdShimArgs, VersionNeedsNothingElse) {
  auto args = Parse({"-v"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_TRUE(args->version);
}

TEST(ContainerdShimArgs, FlagsEndAtTheFirstNonFlagWordOrDoubleDash) {
  // After the subcommand a flag-looking word is an argument, not a flag.
  ExpectInvalid(Parse({"-namespace", "n", "-id", "x", "delete", "-debug"}), "\"-debug\"");
  auto dashes = Parse({"-namespace", "n", "-id", "x", "--", "delete"});
  ASSERT_TRUE(dashes.ok()) << dashes.status();
  EXPECT_EQ(dashes->subcommand, "delete");
}

TEST(ContainerdShimArgs, UnknownFlagIsNamed) {
  ExpectInvalid(Parse({"-namespace", "n", "-nope", "x"}), "-nope");
  ExpectInvalid(Parse({"-namespace", "n", "--nope=1"}), "-nope");
  ExpectInvalid(Parse({"-h"}), "-h");
}

TEST(ContainerdShimArgs, MissingValueIsNamed) {
  ExpectInvalid(Parse({"-namespace", "n", "-id"}), "-id needs a value");
  ExpectInvalid(Parse({"-namespace"}), "-namespace needs a value");
}

TEST(ContainerdShimArgs, BadFlagSyntaxIsRefused) {
  ExpectInvalid(Parse({"---namespace", "n"}), "bad flag syntax");
  ExpectInvalid(Parse({"-=x"}), "bad flag syntax");
}

TEST(ContainerdShimArgs, UnknownSubcommandAndExtraWordsAreRefused) {
  ExpectInvalid(Parse({"-namespace", "n", "-id", "x", "serve"}), "\"serve\"");
  ExpectInvalid(Parse({"-namespace", "n", "-id", "x", "start", "more"}), "\"more\"");
  ExpectInvalid(Parse({"-namespace", "n", "-id", "x", "-"}), "\"-\"");  // "-" is a word, as in Go
}

TEST(ContainerdShimArgs, RequiredFlagsAreNamed) {
  ExpectInvalid(Parse({"-id", "x", "-address", "/a", "start"}), "-namespace");
  ExpectInvalid(Parse({"-namespace", "n", "-address", "/a", "start"}), "-id");
  ExpectInvalid(Parse({"-namespace", "n", "-bundle", "/b", "delete"}), "-id");
  ExpectInvalid(Parse({"-namespace", "n", "-id", "x", "start"}), "-address");
  EXPECT_TRUE(Parse({"-namespace", "n", "-id", "x", "delete"}).ok());  // delete needs no address
}

// --- CleanPath, JoinPath, SocketAddress ---

TEST(ContainerdSocketAddress, MatchesTheDocsVector) {
  auto address = SocketAddress("/run/containerd/containerd.sock", "k8s.io", "abc");
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_EQ(*address, "unix:///run/containerd/s/a99a1752d3a0fadfb1f869026f16760475df03a572e20f4ccea9e6c1e5470b72");
}

TEST(ContainerdSocketAddress, HashesTheCleanedJoin) {
  // filepath.Join cleans: duplicate and trailing slashes change nothing.
  auto want = SocketAddress("/run/containerd/containerd.sock", "k8s.io", "abc");
  ASSERT_TRUE(want.ok());
  EXPECT_EQ(SocketAddress("/run/containerd/containerd.sock/", "k8s.io", "abc").value(), *want);
  EXPECT_EQ(SocketAddress("//run//containerd/./containerd.sock", "k8s.io", "abc").value(), *want);
  EXPECT_EQ(SocketAddress("/run/containerd/x/../containerd.sock", "k8s.io", "abc/").value(), *want);
  // A different group, namespace or containerd is a different socket.
  EXPECT_NE(SocketAddress("/run/containerd/containerd.sock", "k8s.io", "abd").value(), *want);
  EXPECT_NE(SocketAddress("/run/containerd/containerd.sock", "default", "abc").value(), *want);
  EXPECT_NE(SocketAddress("/tmp/containerd.sock", "k8s.io", "abc").value(), *want);
}

TEST(ContainerdSocketAddress, IsAShortFilesystemSocketUnderRunContainerdS) {
  auto address = SocketAddress("/run/containerd/containerd.sock", "k8s.io", std::string(500, 'g'));
  ASSERT_TRUE(address.ok()) << address.status();
  auto path = SocketPathOf(*address);  // a filesystem path, whatever the group's length
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(path->size(), std::string_view("/run/containerd/s/").size() + 64);
  EXPECT_LE(path->size(), kSocketPathLimit);
}

TEST(ContainerdSocketAddress, RefusesEmptyParts) {
  EXPECT_EQ(SocketAddress("", "k8s.io", "abc").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(SocketAddress("/a", "", "abc").status().message()), HasSubstr("-namespace"));
  EXPECT_THAT(std::string(SocketAddress("/a", "n", "").status().message()), HasSubstr("grouping id"));
}

TEST(ContainerdCleanPath, FollowsGoPathClean) {
  const std::pair<const char*, const char*> cases[] = {
      {"", "."},
      {".", "."},
      {"/", "/"},
      {"//", "/"},
      {"abc", "abc"},
      {"abc/", "abc"},
      {"a//b", "a/b"},
      {"/a/b/", "/a/b"},
      {"./a/./b/.", "a/b"},
      {"/a/b/../c", "/a/c"},
      {"/../a", "/a"},
      {"/..", "/"},
      {"a/..", "."},
      {"a/../..", ".."},
      {"../../a", "../../a"},
      {"abc/def/../../..", ".."},
      {"a/b/../../../../c", "../../c"},
      {"/run/containerd/containerd.sock//k8s.io/abc", "/run/containerd/containerd.sock/k8s.io/abc"},
      {"..a/.b", "..a/.b"},  // only whole "." and ".." elements are special
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(CleanPath(in), want) << "in: \"" << in << "\"";
}

TEST(ContainerdJoinPath, SkipsEmptyElements) {
  EXPECT_EQ(JoinPath("", "", ""), "");
  EXPECT_EQ(JoinPath("", "b", "c"), "b/c");
  EXPECT_EQ(JoinPath("/a", "", "c"), "/a/c");
  EXPECT_EQ(JoinPath("/a/", "/b/", "c/"), "/a/b/c");
}

// --- SocketPathOf ---

TEST(ContainerdSocketPathOf, StripsUnixScheme) {
  auto path = SocketPathOf("unix:///run/containerd/s/abc");
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, "/run/containerd/s/abc");
}

TEST(ContainerdSocketPathOf, RefusesAbstractSockets) {
  // containerd dials an address without unix:// as an abstract socket.
  auto r = SocketPathOf("/run/containerd/s/abc");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("abstract"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("CVE-2020-15257"));
  EXPECT_FALSE(SocketPathOf("unix:").ok());
  EXPECT_FALSE(SocketPathOf("").ok());
}

TEST(ContainerdSocketPathOf, RefusesRelativeEmptyNulAndLongPaths) {
  EXPECT_FALSE(SocketPathOf("unix://").ok());
  EXPECT_FALSE(SocketPathOf("unix://run/x.sock").ok());
  EXPECT_FALSE(SocketPathOf(std::string_view("unix:///run/x\0y", 15)).ok());
  std::string at_limit = "/" + std::string(kSocketPathLimit - 1, 'a');
  EXPECT_TRUE(SocketPathOf("unix://" + at_limit).ok());
  auto too_long = SocketPathOf("unix://" + at_limit + "a");
  ASSERT_FALSE(too_long.ok());
  EXPECT_THAT(std::string(too_long.status().message()), HasSubstr("107 bytes"));
}

// --- GroupingId, ReadBundleConfig ---

TEST(ContainerdGroupingId, RuncGroupWinsOverSandboxIdOverTaskId) {
  EXPECT_EQ(GroupingId(R"({"annotations":{"io.containerd.runc.v2.group":"g",
                                          "io.kubernetes.cri.sandbox-id":"s"}})",
                       "t")
                .value(),
            "g");
  EXPECT_EQ(GroupingId(R"({"annotations":{"io.kubernetes.cri.sandbox-id":"s",
                                          "io.kubernetes.cri.container-type":"container"}})",
                       "t")
                .value(),
            "s");
  EXPECT_EQ(GroupingId(R"({"annotations":{"other":"x"}})", "t").value(), "t");
  EXPECT_EQ(GroupingId(R"({"ociVersion":"1.0.2"})", "t").value(), "t");
  EXPECT_EQ(GroupingId(R"({"annotations":null})", "t").value(), "t");
}

TEST(ContainerdGroupingId, BadConfigIsInvalidArgumentNamingConfigJson) {
  for (std::string_view text :
       {"", "{", "not json", "[]", R"({"annotations":[]})", R"({"annotations":{"io.kubernetes.cri.sandbox-id":5}})",
        R"({"annotations":{"unrelated":true}})"}) {
    auto r = GroupingId(text, "t");
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("config.json")) << text;
  }
}

TEST(ContainerdGroupingId, EmptyChosenIdIsRefused) {
  // Present but empty still wins (runc's rule), and an empty group would
  // merge unrelated shims' sockets: refused, naming where it came from.
  auto r = GroupingId(R"({"annotations":{"io.kubernetes.cri.sandbox-id":""}})", "t");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("io.kubernetes.cri.sandbox-id"));
  EXPECT_THAT(std::string(GroupingId("{}", "").status().message()), HasSubstr("-id"));
}

TEST(ContainerdGroupingId, RefusesTextAboveTheBound) {
  std::string big = R"({"annotations":{"io.kubernetes.cri.sandbox-id":"s"},"pad":")";
  big += std::string(kMaxConfigJsonBytes, 'x');
  big += "\"}";
  auto r = GroupingId(big, "t");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("config.json"));
}

TEST(ContainerdReadBundleConfig, ReadsConfigJsonAndRefusesOversize) {
  ScratchDir dir;
  EXPECT_EQ(ReadBundleConfig(dir.path()).status().code(), absl::StatusCode::kNotFound);
  std::ofstream(dir.path() / "config.json") << R"({"annotations":{"io.kubernetes.cri.sandbox-id":"s"}})";
  auto text = ReadBundleConfig(dir.path());
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(GroupingId(*text, "t").value(), "s");

  // Exactly at the bound is read; one byte more is refused.
  ASSERT_EQ(::truncate((dir.path() / "config.json").c_str(), kMaxConfigJsonBytes), 0);
  auto at = ReadBundleConfig(dir.path());
  ASSERT_TRUE(at.ok()) << at.status();
  EXPECT_EQ(at->size(), kMaxConfigJsonBytes);
  ASSERT_EQ(::truncate((dir.path() / "config.json").c_str(), kMaxConfigJsonBytes + 1), 0);
  auto over = ReadBundleConfig(dir.path());
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(over.status().message()), HasSubstr("config.json"));
}

// --- WriteAddressFile ---

TEST(ContainerdAddressFile, HoldsExactlyTheAddressAndNothingElseIsLeft) {
  ScratchDir dir;
  const std::string address =
      "unix:///run/containerd/s/a99a1752d3a0fadfb1f869026f16760475df03a572e20f4ccea9e6c1e5470b72";
  ASSERT_TRUE(WriteAddressFile(dir.path(), address).ok());
  EXPECT_EQ(ReadAll(dir.path() / "address"), address);  // no newline: containerd reads it as is
  struct stat st {};
  ASSERT_EQ(::stat((dir.path() / "address").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  // Rewriting replaces it; no temp file stays in the bundle.
  ASSERT_TRUE(WriteAddressFile(dir.path(), "unix:///run/containerd/s/other").ok());
  EXPECT_EQ(ReadAll(dir.path() / "address"), "unix:///run/containerd/s/other");
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path())) names.push_back(e.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"address"});
}

TEST(ContainerdAddressFile, RefusesAnAbstractAddressAndWritesNothing) {
  ScratchDir dir;
  auto s = WriteAddressFile(dir.path(), "/run/containerd/s/abc");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(dir.path() / "address"));
}

TEST(ContainerdAddressFile, MissingBundleIsAnError) {
  ScratchDir dir;
  EXPECT_FALSE(WriteAddressFile(dir.path() / "gone", "unix:///run/x").ok());
}

// --- ToTimestamp, EncodeDeleteResponse ---

TEST(ContainerdDeleteResponse, RoundTripsThroughTheGeneratedProto) {
  absl::Time exited = absl::FromUnixSeconds(1700000000) + absl::Nanoseconds(123456789);
  std::string bytes = EncodeDeleteResponse(4242, kKilledExitStatus, exited);
  pb::DeleteResponse parsed;
  ASSERT_TRUE(parsed.ParseFromString(bytes));
  EXPECT_EQ(parsed.pid(), 4242u);
  EXPECT_EQ(parsed.exit_status(), 137u);
  ASSERT_TRUE(parsed.has_exited_at());
  EXPECT_EQ(parsed.exited_at().seconds(), 1700000000);
  EXPECT_EQ(parsed.exited_at().nanos(), 123456789);
}

TEST(ContainerdDeleteResponse, IsUnframedProtoBytes) {
  // pid 1, exit_status 0 (not encoded), exited_at {seconds 2}.
  EXPECT_EQ(EncodeDeleteResponse(1, 0, absl::FromUnixSeconds(2)), std::string("\x08\x01\x1a\x02\x08\x02"));
}

TEST(ContainerdTimestamp, NanosStayNonNegativeBefore1970) {
  google::protobuf::Timestamp ts;
  ToTimestamp(absl::FromUnixNanos(-1), &ts);
  EXPECT_EQ(ts.seconds(), -1);
  EXPECT_EQ(ts.nanos(), 999999999);
  ToTimestamp(absl::FromUnixSeconds(-1) + absl::Nanoseconds(500), &ts);
  EXPECT_EQ(ts.seconds(), -1);
  EXPECT_EQ(ts.nanos(), 500);
}

TEST(ContainerdTimestamp, ClampsToTheTimestampRange) {
  google::protobuf::Timestamp ts;
  ToTimestamp(absl::InfinitePast(), &ts);
  EXPECT_EQ(ts.seconds(), -62135596800);  // 0001-01-01T00:00:00Z
  EXPECT_EQ(ts.nanos(), 0);
  ToTimestamp(absl::InfiniteFuture(), &ts);
  EXPECT_EQ(ts.seconds(), 253402300799);  // 9999-12-31T23:59:59Z
  EXPECT_EQ(ts.nanos(), 999999999);
}

}  // namespace
}  // namespace kvcri::shim::containerd
