// ParseReference: normalization like Docker's, fields, digests, refused references.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "runtime/image/reference.h"

namespace kvcri::runtime::image {
namespace {

using ::testing::HasSubstr;

const std::string kHex(64, 'a');

std::string Normalize(const std::string& ref) {
  absl::StatusOr<Reference> r = ParseReference(ref);
  if (!r.ok()) return "error: " + std::string(r.status().message());
  return r->String();
}

TEST(ParseReference, NormalizesLikeDocker) {
  EXPECT_EQ(Normalize("busybox"), "docker.io/library/busybox:latest");
  EXPECT_EQ(Normalize("busybox:1.36"), "docker.io/library/busybox:1.36");
  EXPECT_EQ(Normalize("foo/bar"), "docker.io/foo/bar:latest");
  EXPECT_EQ(Normalize("docker.io/busybox"), "docker.io/library/busybox:latest");
  EXPECT_EQ(Normalize("index.docker.io/library/busybox:1"), "docker.io/library/busybox:1");
  EXPECT_EQ(Normalize("docker.io/library/busybox:latest"), "docker.io/library/busybox:latest");
  EXPECT_EQ(Normalize("quay.io/containerdisks/fedora:39"), "quay.io/containerdisks/fedora:39");
  EXPECT_EQ(Normalize("a/b/c/d"), "docker.io/a/b/c/d:latest");
  EXPECT_EQ(Normalize("my_repo/a-b__c.d"), "docker.io/my_repo/a-b__c.d:latest");
}

TEST(ParseReference, KeepsRegistryWithPortOrLocalhost) {
  EXPECT_EQ(Normalize("localhost:5000/x"), "localhost:5000/x:latest");
  EXPECT_EQ(Normalize("localhost:5000/x:v2"), "localhost:5000/x:v2");
  EXPECT_EQ(Normalize("localhost/x"), "localhost/x:latest");
  EXPECT_EQ(Normalize("127.0.0.1:5000/a/b"), "127.0.0.1:5000/a/b:latest");
  EXPECT_EQ(Normalize("[::1]:5000/x"), "[::1]:5000/x:latest");
  EXPECT_EQ(Normalize("Registry.Example/x"), "Registry.Example/x:latest");
}

TEST(ParseReference, SplitsFields) {
  absl::StatusOr<Reference> r = ParseReference("localhost:5000/team/vm:v1@sha256:" + kHex);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->domain, "localhost:5000");
  EXPECT_EQ(r->path, "team/vm");
  EXPECT_EQ(r->tag, "v1");
  EXPECT_EQ(r->digest, "sha256:" + kHex);
  EXPECT_EQ(r->Name(), "localhost:5000/team/vm");
  EXPECT_EQ(r->TagRef(), "localhost:5000/team/vm:v1");
  EXPECT_EQ(r->DigestRef(), "localhost:5000/team/vm@sha256:" + kHex);
}

TEST(ParseReference, DigestWithoutTagGetsNoLatest) {
  absl::StatusOr<Reference> r = ParseReference("busybox@sha256:" + kHex);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tag, "");
  EXPECT_EQ(r->String(), "docker.io/library/busybox@sha256:" + kHex);
  EXPECT_EQ(r->TagRef(), "");
  EXPECT_EQ(Normalize("busybox:1@sha256:" + kHex), "docker.io/library/busybox:1@sha256:" + kHex);
}

TEST(ParseReference, RejectsInvalidNamingTheReference) {
  for (const std::string& bad :
       {std::string("Busybox"), std::string("foo/Bar"), std::string("busybox:"),
        std::string(":tag"), std::string("a//b"), std::string("-foo"), std::string("foo-"),
        std::string("foo..bar"), std::string("busybox@sha256:abc"),
        std::string("busybox@md5:") + std::string(32, 'a'),
        std::string("busybox@sha256:") + std::string(64, 'A'),
        std::string("busybox:") + std::string(129, 't'), std::string("localhost:abc/x"),
        std::string("bad_host.io:5000/x"), std::string("x/"), kHex, std::string("busybox:.tag"),
        std::string("a b")}) {
    absl::StatusOr<Reference> r = ParseReference(bad);
    ASSERT_FALSE(r.ok()) << bad << " parsed as " << r->String();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("\"" + bad + "\"")) << bad;
  }
  EXPECT_EQ(ParseReference("").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseReference, RejectsUpperCasePathWithReason) {
  EXPECT_THAT(Normalize("docker.io/Foo/bar"), HasSubstr("must be lowercase"));
}

TEST(ParseReference, RejectsOverlongName) {
  std::string name = "quay.io/" + std::string(250, 'a');
  EXPECT_THAT(Normalize(name), HasSubstr("longer than 255"));
}

}  // namespace
}  // namespace kvcri::runtime::image
