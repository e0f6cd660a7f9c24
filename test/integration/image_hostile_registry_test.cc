// PullImage against a hostile registry (test/client/hostile_registry.h): bombs, lying sizes, malformed JSON,
// untrusted token realms, credentials; each pull fails cleanly, leaves nothing, and a good pull works after.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>

#include "test/client/hostile_registry.h"
#include "test/client/test_daemon.h"

namespace kvcri::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr std::chrono::seconds kPullTimeout(300);
constexpr uint64_t kMaxImageBytes = 64 << 20;

grpc::Status Pull(TestDaemon& d, const std::string& ref, const pb::AuthConfig* auth = nullptr) {
  pb::PullImageRequest req;
  req.mutable_image()->set_image(ref);
  if (auth != nullptr) *req.mutable_auth() = *auth;
  pb::PullImageResponse resp;
  return d.images().PullImage(Ctx(kPullTimeout).get(), req, &resp);
}

std::vector<pb::Image> List(TestDaemon& d) {
  pb::ListImagesResponse resp;
  grpc::Status s = d.images().ListImages(Ctx().get(), pb::ListImagesRequest(), &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return {resp.images().begin(), resp.images().end()};
}

void RemoveAllImages(TestDaemon& d) {
  for (const pb::Image& img : List(d)) {
    pb::RemoveImageRequest req;
    req.mutable_image()->set_image(img.id());
    pb::RemoveImageResponse resp;
    grpc::Status s = d.images().RemoveImage(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
}

std::vector<std::string> Entries(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) out.push_back(e.path().filename());
  return out;
}

// Nothing of a failed pull in the store: no image, no image directory, no
// work left in tmp/, no blob.
void ExpectStoreEmpty(TestDaemon& d) {
  EXPECT_THAT(List(d), IsEmpty());
  for (const char* sub : {"store", "tmp", "blobs/sha256"}) {
    EXPECT_THAT(Entries(d.root() / "images" / sub), IsEmpty()) << "left in images/" << sub;
  }
}

class HostileRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RequireIntegrationEnvironment(/*need_guest_images=*/false);
    good_.Finish({good_.AddBlob("application/vnd.oci.image.layer.v1.tar+gzip", GzipTarOf("boot/vmlinuz", "KERNEL"))});
    TestDaemon::Options o;
    o.pod_network = false;
    o.extra_config = "[images]\nmax_image_bytes = " + std::to_string(kMaxImageBytes) + "\n";
    daemon_ = std::make_unique<TestDaemon>(o);
    daemon_->Start();
  }

  // Serves `bad` for the reference, pulls it (must fail with `want` in the
  // message), checks the store, then serves the good image under the same
  // reference and pulls it.
  void ExpectRefusedThenGoodPull(const std::string& name, const HostileRegistry::Handler& bad, const std::string& want,
                                 const std::string& repo = "hostile/vm") {
    SCOPED_TRACE(name);
    const std::string image = reg_.Host() + "/" + repo + ":1";
    reg_.Serve(bad);
    grpc::Status s = Pull(*daemon_, image);
    EXPECT_FALSE(s.ok()) << name << " was pulled";
    EXPECT_THAT(s.error_message(), HasSubstr(want));
    RecordProperty(name, s.error_message());
    ExpectStoreEmpty(*daemon_);
    reg_.Serve([this](const HostileRegistry::Request& r) { return good_.Answer(r); });
    s = Pull(*daemon_, image);
    EXPECT_TRUE(s.ok()) << "good pull after " << name << ": " << s.error_message() << "\n" << daemon_->DaemonLog();
    EXPECT_EQ(List(*daemon_).size(), 1u);
    RemoveAllImages(*daemon_);
  }

  HostileRegistry reg_;
  CraftedImage good_;
  std::unique_ptr<TestDaemon> daemon_;
};

// A 2 MiB zstd layer expanding to 1 GiB (past max_image_bytes = 64 MiB).
TEST_F(HostileRegistryTest, DecompressionBombFailsCleanly) {
  for (const std::string path : {"disk/bomb.raw", "usr/share/skipped.bin"}) {
    CraftedImage bomb;
    const std::string layer = ZstdBombOf(path, uint64_t{1} << 30);
    ASSERT_LT(layer.size(), 2u << 20);
    bomb.Finish({bomb.AddBlob("application/vnd.oci.image.layer.v1.tar+zstd", layer)});
    ExpectRefusedThenGoodPull(
        "bomb " + path, [&](const HostileRegistry::Request& r) { return bomb.Answer(r); }, "max_image_bytes");
  }
}

// A manifest declaring a 1 TiB layer: refused before any blob is asked for.
TEST_F(HostileRegistryTest, HugeDeclaredLayerIsRefusedBeforeDownload) {
  CraftedImage huge;
  huge.Finish({R"({"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:)" +
               std::string(64, 'e') + R"(","size":1099511627776})"});
  ExpectRefusedThenGoodPull(
      "huge layer", [&](const HostileRegistry::Request& r) { return huge.Answer(r); }, "max_image_bytes");
  EXPECT_EQ(reg_.Count("sha256:" + std::string(64, 'e')), 0);
}

// Each malformed JSON answer: manifest, index, config, registry error body, token.
TEST_F(HostileRegistryTest, MalformedJsonAnswersFailCleanly) {
  auto manifest = [](std::string content_type, std::string body) {
    return [content_type, body](const HostileRegistry::Request& r) {
      if (r.target.find("/manifests/") != std::string::npos) return HostileRegistry::Json(200, content_type, body);
      return HostileRegistry::NotFound();
    };
  };
  ExpectRefusedThenGoodPull("manifest mediaType number",
                            manifest("application/json", R"({"mediaType": 5, "config": 1, "layers": 2})"),
                            "config is not an object");
  ExpectRefusedThenGoodPull("manifest of no known shape", manifest("application/json", R"({"mediaType": 5})"),
                            "unsupported media type");
  ExpectRefusedThenGoodPull("manifest wrong field types",
                            manifest("application/vnd.oci.image.manifest.v1+json",
                                     R"({"config": {"mediaType": [], "digest": 7, "size": "9"}, "layers": {}})"),
                            "config");
  ExpectRefusedThenGoodPull("manifest truncated", manifest("application/vnd.oci.image.manifest.v1+json", "{\"con"),
                            "not a JSON object");
  ExpectRefusedThenGoodPull("index entries wrong",
                            manifest("application/vnd.oci.image.index.v1+json", R"({"manifests": [5, {"digest": 1}]})"),
                            "manifests[0]");
  // A config with the right digest but the wrong shape.
  CraftedImage bad_config;
  bad_config.Finish(
      {bad_config.AddBlob("application/vnd.oci.image.layer.v1.tar+gzip", GzipTarOf("boot/vmlinuz", "KERNEL"))},
      R"({"config": "not an object", "os": 5})");
  ExpectRefusedThenGoodPull(
      "config wrong shape", [&](const HostileRegistry::Request& r) { return bad_config.Answer(r); }, "config");
  ExpectRefusedThenGoodPull(
      "error body wrong types",
      [](const HostileRegistry::Request&) {
        return HostileRegistry::Json(404, "application/json", R"({"errors": [{"code": 5, "message": {"a": 1}}, 3]})");
      },
      "not found");
  // The token endpoint (on the registry's own host: accepted) answers junk.
  const std::string realm = "http://" + reg_.Host() + "/token";
  ExpectRefusedThenGoodPull(
      "token not a string",
      [realm](const HostileRegistry::Request& r) {
        if (r.target.rfind("/token", 0) == 0) return HostileRegistry::Json(200, "application/json", R"({"token": 5})");
        HostileRegistry::Response c = HostileRegistry::Json(401, "application/json", "{}");
        c.headers["WWW-Authenticate"] = "Bearer realm=\"" + realm + "\",service=\"s\"";
        return c;
      },
      "without a token");
}

// A Bearer realm over plain http on another host never gets a request (it
// would carry the credentials).
TEST_F(HostileRegistryTest, PlainHttpRealmOnAnotherHostIsRefused) {
  HostileRegistry other("127.0.0.2");
  other.Serve([](const HostileRegistry::Request&) {
    return HostileRegistry::Json(200, "application/json", R"({"token": "stolen"})");
  });
  const std::string realm = "http://" + other.Host() + "/token";
  reg_.Serve([realm](const HostileRegistry::Request&) {
    HostileRegistry::Response c = HostileRegistry::Json(401, "application/json", "{}");
    c.headers["WWW-Authenticate"] = "Bearer realm=\"" + realm + "\",service=\"s\"";
    return c;
  });
  pb::AuthConfig auth;
  auth.set_username("kvuser");
  auth.set_password("secret");
  grpc::Status s = Pull(*daemon_, reg_.Host() + "/hostile/vm:1", &auth);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.error_message(), HasSubstr(realm));
  EXPECT_THAT(s.error_message(), HasSubstr("plain http"));
  EXPECT_THAT(other.Requests(), IsEmpty());
  ExpectStoreEmpty(*daemon_);
  reg_.Serve([this](const HostileRegistry::Request& r) { return good_.Answer(r); });
  s = Pull(*daemon_, reg_.Host() + "/hostile/vm:1");
  EXPECT_TRUE(s.ok()) << s.error_message();
}

// An image pulled with credentials is not handed out by digest to a caller
// without them: the daemon asks the registry (HEAD) first.
TEST_F(HostileRegistryTest, DigestPullOfAPrivateImageNeedsTheCredentials) {
  const std::string basic = "Basic a3Z1c2VyOnNlY3JldA==";  // kvuser:secret
  reg_.Serve([&](const HostileRegistry::Request& r) {
    auto it = r.headers.find("authorization");
    if (it == r.headers.end() || it->second != basic) {
      HostileRegistry::Response c = HostileRegistry::Json(401, "application/json", "{}");
      c.headers["WWW-Authenticate"] = "Basic realm=\"private\"";
      return c;
    }
    return good_.Answer(r);
  });
  pb::AuthConfig auth;
  auth.set_username("kvuser");
  auth.set_password("secret");
  const std::string tag = reg_.Host() + "/private/vm:1";
  const std::string digest = reg_.Host() + "/private/vm@" + good_.manifest_digest;
  grpc::Status s = Pull(*daemon_, tag, &auth);
  ASSERT_TRUE(s.ok()) << s.error_message();
  s = Pull(*daemon_, digest);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  EXPECT_GE(reg_.Count("/manifests/" + good_.manifest_digest), 1);
  s = Pull(*daemon_, digest, &auth);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

// The daemon's state directories are the daemon's alone.
TEST_F(HostileRegistryTest, StateDirectoriesAreOwnerOnly) {
  for (const fs::path& d : {daemon_->root(), daemon_->root() / "images", daemon_->root() / "images" / "store",
                            daemon_->root() / "images" / "tmp", daemon_->root() / "images" / "blobs"}) {
    struct stat st;
    ASSERT_EQ(::stat(d.c_str(), &st), 0) << d;
    EXPECT_EQ(st.st_mode & 07777, 0700u) << d;
  }
}

}  // namespace
}  // namespace kvcri::testing
