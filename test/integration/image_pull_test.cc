// PullImage against a real registry: Debian's docker-registry on 127.0.0.1,
// started per test, holding the test guest's OCI layouts (pushed with skopeo)
// and images crafted here to be refused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>

#include "test/client/pod_helpers.h"
#include "test/client/registry_fixture.h"

namespace kvcri::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

constexpr std::chrono::seconds kPullTimeout(300);

grpc::Status Pull(TestDaemon& d, const std::string& ref, std::string* image_ref,
                  const pb::AuthConfig* auth = nullptr) {
  pb::PullImageRequest req;
  req.mutable_image()->set_image(ref);
  if (auth != nullptr) *req.mutable_auth() = *auth;
  pb::PullImageResponse resp;
  grpc::Status s = d.images().PullImage(Ctx(kPullTimeout).get(), req, &resp);
  if (image_ref != nullptr) *image_ref = resp.image_ref();
  return s;
}

pb::ImageStatusResponse Status(TestDaemon& d, const std::string& ref) {
  pb::ImageStatusRequest req;
  req.mutable_image()->set_image(ref);
  pb::ImageStatusResponse resp;
  grpc::Status s = d.images().ImageStatus(Ctx().get(), req, &resp);
  EXPECT_TRUE(s.ok()) << "ImageStatus " << ref << ": " << s.error_message();
  return resp;
}

std::vector<pb::Image> List(TestDaemon& d) {
  pb::ListImagesResponse resp;
  grpc::Status s = d.images().ListImages(Ctx().get(), pb::ListImagesRequest(), &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return {resp.images().begin(), resp.images().end()};
}

void Remove(TestDaemon& d, const std::string& ref) {
  pb::RemoveImageRequest req;
  req.mutable_image()->set_image(ref);
  pb::RemoveImageResponse resp;
  grpc::Status s = d.images().RemoveImage(Ctx().get(), req, &resp);
  EXPECT_TRUE(s.ok()) << "RemoveImage " << ref << ": " << s.error_message();
}

std::vector<std::string> Entries(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) out.push_back(e.path().filename());
  return out;
}

// A pull's scratch space is gone whether it succeeded or not.
void ExpectNoPullLeftovers(TestDaemon& d) {
  EXPECT_THAT(Entries(d.root() / "images" / "tmp"), ::testing::IsEmpty()) << "pull scratch left in images/tmp";
}

class ImagePullTest : public ::testing::Test {
 protected:
  void SetUp() override { RequireIntegrationEnvironment(/*need_guest_images=*/true); }
};

TEST_F(ImagePullTest, PullsByTagDigestAndLatestAndAnswersEveryReference) {
  RegistryFixture reg;
  reg.Start();
  ASSERT_FALSE(HasFatalFailure());
  reg.Push(GuestImageDir("oci-disk"), "vm/disk:v1");
  reg.Push(GuestImageDir("oci-disk"), "vm/disk:latest");
  ASSERT_FALSE(HasFatalFailure());
  const std::string digest = reg.ManifestDigest("vm/disk:v1");
  ASSERT_FALSE(digest.empty());
  const std::string repo = reg.Host() + "/vm/disk";

  TestDaemon d;
  d.Start();

  // By tag.
  std::string id;
  grpc::Status s = Pull(d, repo + ":v1", &id);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\ndaemon:\n" << d.DaemonLog();
  ASSERT_THAT(id, HasSubstr("sha256:"));
  pb::ImageStatusResponse st = Status(d, repo + ":v1");
  ASSERT_TRUE(st.has_image());
  EXPECT_EQ(st.image().id(), id);
  EXPECT_THAT(st.image().repo_tags(), Contains(repo + ":v1"));
  EXPECT_THAT(st.image().repo_digests(), Contains(repo + "@" + digest));
  EXPECT_GT(st.image().size(), 0u);

  // By digest: the same image, not fetched again.
  std::string id2;
  s = Pull(d, repo + "@" + digest, &id2);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(id2, id);

  // Without a tag: ":latest".
  std::string id3;
  s = Pull(d, repo, &id3);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(id3, id);

  // ImageStatus answers for every kind of reference.
  for (const std::string& ref : {repo + ":v1", repo + ":latest", repo, repo + "@" + digest, id}) {
    st = Status(d, ref);
    ASSERT_TRUE(st.has_image()) << ref;
    EXPECT_EQ(st.image().id(), id) << ref;
  }

  // ListImages: once, with all its tags.
  std::vector<pb::Image> images = List(d);
  ASSERT_EQ(images.size(), 1u);
  EXPECT_EQ(images[0].id(), id);
  EXPECT_THAT(images[0].repo_tags(), UnorderedElementsAre(repo + ":v1", repo + ":latest"));
  EXPECT_THAT(images[0].repo_digests(), Contains(repo + "@" + digest));
  ExpectNoPullLeftovers(d);

  // RemoveImage; then ImageStatus is an empty answer, not an error.
  Remove(d, id);
  for (const std::string& ref : {repo + ":v1", repo, id}) {
    st = Status(d, ref);
    EXPECT_FALSE(st.has_image()) << ref;
  }
  EXPECT_TRUE(List(d).empty());
  // Removing it again succeeds (CRI).
  Remove(d, repo + ":v1");
}

TEST_F(ImagePullTest, BootsAPulledContainerDisk) {
  RegistryFixture reg;
  reg.Start();
  ASSERT_FALSE(HasFatalFailure());
  reg.Push(GuestImageDir("oci-disk"), "vm/boot:1");
  ASSERT_FALSE(HasFatalFailure());
  const std::string image = reg.Host() + "/vm/boot:1";

  TestDaemon d;
  d.Start();
  std::string id;
  grpc::Status s = Pull(d, image, &id);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\ndaemon:\n" << d.DaemonLog();

  std::string pod_id, ctr_id;
  ASSERT_TRUE(StartPod(d, "pulled", image, &pod_id, &ctr_id)) << d.DaemonLog();
  pb::ContainerStatusResponse cs = GetContainerStatus(d, ctr_id);
  const std::string log = cs.status().log_path();
  EXPECT_TRUE(WaitForFileContains(log, "KUBEVIRT-CRI-GUEST-READY", std::chrono::seconds(300)))
      << "log:\n" << ReadFileOrEmpty(log) << "\ndaemon:\n" << d.DaemonLog();
  EXPECT_EQ(cs.status().image_ref(), id);

  RemovePod(d, pod_id);
  ExpectNoLeftovers(d);
  Remove(d, image);
  EXPECT_TRUE(List(d).empty());
}

TEST_F(ImagePullTest, HtpasswdRegistryNeedsTheAuthConfigCredentials) {
  RegistryFixture reg(RegistryFixture::Options{.username = "kvuser", .password = "s3cret-pw"});
  reg.Start();
  ASSERT_FALSE(HasFatalFailure());
  reg.Push(GuestImageDir("oci-kernel"), "private/kernel:1");
  ASSERT_FALSE(HasFatalFailure());
  const std::string image = reg.Host() + "/private/kernel:1";

  TestDaemon d;
  d.Start();

  // No credentials: refused, naming the registry.
  grpc::Status s = Pull(d, image, nullptr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr(reg.Host()));
  // Wrong password: refused too.
  pb::AuthConfig wrong;
  wrong.set_username("kvuser");
  wrong.set_password("not-it");
  s = Pull(d, image, nullptr, &wrong);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr(reg.Host()));
  EXPECT_THAT(s.error_message(), ::testing::Not(HasSubstr("not-it")));
  EXPECT_TRUE(List(d).empty());

  pb::AuthConfig auth;
  auth.set_username("kvuser");
  auth.set_password("s3cret-pw");
  std::string id;
  s = Pull(d, image, &id, &auth);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\ndaemon:\n" << d.DaemonLog();
  pb::ImageStatusResponse st = Status(d, image);
  ASSERT_TRUE(st.has_image());
  EXPECT_EQ(st.image().id(), id);
  EXPECT_THAT(d.DaemonLog(), ::testing::Not(HasSubstr("s3cret-pw")));
  ExpectNoPullLeftovers(d);
}

TEST_F(ImagePullTest, PullsZstdLayers) {
  RegistryFixture reg;
  reg.Start();
  ASSERT_FALSE(HasFatalFailure());
  reg.Push(GuestImageDir("oci-disk"), "vm/zstd:1", {"--dest-compress-format", "zstd"});
  ASSERT_FALSE(HasFatalFailure());
  // The registry really holds zstd layers.
  std::string raw;
  ASSERT_EQ(RunShell("skopeo inspect --raw --tls-verify=false docker://" + reg.Host() + "/vm/zstd:1", &raw), 0) << raw;
  ASSERT_THAT(raw, HasSubstr("tar+zstd"));
  ASSERT_THAT(raw, ::testing::Not(HasSubstr("tar+gzip")));

  TestDaemon d;
  d.Start();
  const std::string image = reg.Host() + "/vm/zstd:1";
  std::string id;
  grpc::Status s = Pull(d, image, &id);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\ndaemon:\n" << d.DaemonLog();
  pb::ImageStatusResponse st = Status(d, image);
  ASSERT_TRUE(st.has_image());
  EXPECT_EQ(st.image().id(), id);
  EXPECT_GT(st.image().size(), 0u);
  ASSERT_EQ(List(d).size(), 1u);
  ExpectNoPullLeftovers(d);
}

// Writes an OCI layout with one gzip layer to DIR; prints the layer digest.
//   argv: DIR traversal | DIR disk QCOW2 | DIR plain [USER]
constexpr char kMakeImage[] = R"PY(
import gzip, hashlib, io, json, os, sys, tarfile
out, kind = sys.argv[1], sys.argv[2]
os.makedirs(out + "/blobs/sha256", exist_ok=True)
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    with open(out + "/blobs/sha256/" + d, "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + d, "size": len(data)}
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
    def add(name, data):
        ti = tarfile.TarInfo(name); ti.size = len(data); ti.mode = 0o644
        t.addfile(ti, io.BytesIO(data))
    def adddir(name):
        ti = tarfile.TarInfo(name); ti.type = tarfile.DIRTYPE; ti.mode = 0o755
        t.addfile(ti)
    add("hello.txt", b"hello from a crafted image\n" * 100)
    if kind == "traversal":
        add("../evil", b"escaped\n")
    elif kind == "disk":
        adddir("disk")
        add("disk/disk.qcow2", open(sys.argv[3], "rb").read())
raw = buf.getvalue()
layer = blob(gzip.compress(raw, mtime=0))
layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
user = sys.argv[3] if kind == "plain" and len(sys.argv) > 3 else None
config = blob(json.dumps({"architecture": "amd64", "os": "linux", "config": {"User": user} if user else {},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]}}).encode())
config["mediaType"] = "application/vnd.oci.image.config.v1+json"
manifest = blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": config, "layers": [layer]}).encode())
manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
manifest["annotations"] = {"org.opencontainers.image.ref.name": "latest"}
with open(out + "/index.json", "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [manifest]}, f)
with open(out + "/oci-layout", "w") as f:
    f.write('{"imageLayoutVersion": "1.0.0"}')
print(layer["digest"])
)PY";

// Builds a crafted image in `work`/<name> and pushes it as <name>:1; returns
// its layer digest.
std::string MakeAndPush(RegistryFixture& reg, const fs::path& work, const std::string& name,
                        const std::string& args) {
  const fs::path script = work / "make_image.py";
  if (!fs::exists(script)) std::ofstream(script) << kMakeImage;
  std::string out;
  int rc = RunShell("python3 " + ShellQuote(script.string()) + " " + ShellQuote((work / name).string()) + " " + args,
                    &out);
  EXPECT_EQ(rc, 0) << out;
  if (rc != 0) return "";
  reg.Push((work / name).string(), "crafted/" + name + ":1");
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

TEST_F(ImagePullTest, UidOrUsernameComesFromTheConfigUser) {
  RegistryFixture reg;
  reg.Start();
  ASSERT_FALSE(HasFatalFailure());
  TempDir work;
  MakeAndPush(reg, work.path(), "numeric", "plain 4321:0");
  MakeAndPush(reg, work.path(), "named", "plain www-data");
  ASSERT_FALSE(HasFailure());

  TestDaemon d;
  d.Start();
  // A plain (non-VM) image pulls too; only CreateContainer needs a disk or kernel.
  for (const char* name : {"numeric", "named"}) {
    grpc::Status s = Pull(d, reg.Host() + "/crafted/" + name + ":1", nullptr);
    ASSERT_TRUE(s.ok()) << name << ": " << s.error_message();
  }
  pb::ImageStatusResponse st = Status(d, reg.Host() + "/crafted/numeric:1");
  ASSERT_TRUE(st.has_image());
  ASSERT_TRUE(st.image().has_uid());
  EXPECT_EQ(st.image().uid().value(), 4321);
  EXPECT_EQ(st.image().username(), "");
  st = Status(d, reg.Host() + "/crafted/named:1");
  ASSERT_TRUE(st.has_image());
  EXPECT_FALSE(st.image().has_uid());
  EXPECT_EQ(st.image().username(), "www-data");
  EXPECT_EQ(List(d).size(), 2u);
  ExpectNoPullLeftovers(d);
}

bool AnyFileNamed(const fs::path& root, const std::string& name) {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (it->path().filename() == name) return true;
  }
  return false;
}

TEST_F(ImagePullTest, RefusedImagesLeaveNothingInTheStore) {
  RegistryFixture reg;
  reg.Start();
  ASSERT_FALSE(HasFatalFailure());
  TempDir work;
  std::string out;
  const fs::path qcow2 = work.path() / "backed.qcow2";
  ASSERT_EQ(RunShell("qemu-img create -q -f qcow2 -b /etc/passwd -F raw " + ShellQuote(qcow2.string()) + " 1M",
                     &out),
            0)
      << out;
  MakeAndPush(reg, work.path(), "traversal", "traversal");
  MakeAndPush(reg, work.path(), "backing", "disk " + ShellQuote(qcow2.string()));
  const std::string plain_layer = MakeAndPush(reg, work.path(), "mismatch", "plain");
  ASSERT_FALSE(HasFailure());
  // Corrupt the stored layer blob (same size): the registry serves it as is.
  const fs::path blob =
      reg.storage() / "docker/registry/v2/blobs/sha256" / plain_layer.substr(7, 2) / plain_layer.substr(7) / "data";
  ASSERT_TRUE(fs::exists(blob)) << blob;
  {
    std::fstream f(blob, std::ios::in | std::ios::out | std::ios::binary);
    for (std::streamoff at : {20, 21}) {
      f.seekg(at);
      const char c = static_cast<char>(f.get());
      f.seekp(at);
      f.put(static_cast<char>(c ^ 0x5a));
    }
    ASSERT_TRUE(f.good()) << "corrupting " << blob;
  }

  TestDaemon d;
  d.Start();
  struct Case {
    std::string name;
    std::string want;  // in the error message
  };
  for (const Case& c : {Case{"traversal", "\"..\""}, Case{"backing", "backing file"},
                        Case{"mismatch", "digest mismatch"}}) {
    SCOPED_TRACE(c.name);
    const std::string image = reg.Host() + "/crafted/" + c.name + ":1";
    grpc::Status s = Pull(d, image, nullptr);
    EXPECT_FALSE(s.ok());
    RecordProperty(c.name, s.error_message());
    EXPECT_THAT(s.error_message(), HasSubstr(c.want));
    EXPECT_THAT(s.error_message(), HasSubstr(image));
    EXPECT_FALSE(Status(d, image).has_image());
    EXPECT_TRUE(List(d).empty());
    ExpectNoPullLeftovers(d);
  }
  // "../evil" landed nowhere.
  EXPECT_FALSE(AnyFileNamed(d.dir(), "evil"));
  EXPECT_FALSE(fs::exists("/evil"));
  EXPECT_FALSE(fs::exists(d.root() / "evil"));
}

std::string Base64Url(const std::string& data) {
  static const char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    uint32_t v = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8) | uint8_t(data[i + 2]);
    for (int k = 3; k >= 0; --k) out += kChars[(v >> (6 * k)) & 63];
  }
  if (i + 1 == data.size()) {
    uint32_t v = uint8_t(data[i]) << 16;
    out += kChars[(v >> 18) & 63];
    out += kChars[(v >> 12) & 63];
  } else if (i + 2 == data.size()) {
    uint32_t v = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8);
    out += kChars[(v >> 18) & 63];
    out += kChars[(v >> 12) & 63];
    out += kChars[(v >> 6) & 63];
  }
  return out;
}

// A Docker token endpoint on 127.0.0.1 served from a thread: answers
// GET /token with `token` when the request carries `basic` as its
// Authorization (or always while `anonymous_ok`), 401 otherwise; records
// each request line.
class TokenServer {
 public:
  TokenServer(std::string token, std::string basic) : token_(std::move(token)), basic_(std::move(basic)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::listen(fd_, 16) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      port_ = ntohs(a.sin_port);
    }
    thread_ = std::thread([this] { Serve(); });
  }
  ~TokenServer() {
    stop_ = true;
    thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  int port() const { return port_; }
  std::atomic<bool> anonymous_ok{true};
  std::vector<std::string> Requests() {
    std::lock_guard<std::mutex> l(mu_);
    return requests_;
  }

 private:
  void Serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      timeval tv{5, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      std::string req;
      char buf[4096];
      ssize_t n;
      while (req.find("\r\n\r\n") == std::string::npos && (n = ::read(c, buf, sizeof buf)) > 0) req.append(buf, n);
      const std::string line = req.substr(0, req.find("\r\n"));
      const bool authorized = req.find("Authorization: " + basic_ + "\r\n") != std::string::npos ||
                              req.find("authorization: " + basic_ + "\r\n") != std::string::npos;
      const bool ok = authorized || anonymous_ok;
      {
        std::lock_guard<std::mutex> l(mu_);
        requests_.push_back(line + (authorized ? " [basic]" : ""));
      }
      const std::string body = ok ? "{\"token\": \"" + token_ + "\", \"expires_in\": 3600}" : "{\"errors\": []}";
      const std::string resp = std::string(ok ? "HTTP/1.1 200 OK" : "HTTP/1.1 401 Unauthorized") +
                               "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\n\r\n" + body;
      ssize_t ignored = ::write(c, resp.data(), resp.size());
      (void)ignored;
      ::close(c);
    }
  }

  std::string token_, basic_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> requests_;
};

// A registry JWT (RS256, x5c naming the self-signed cert the registry's
// rootcertbundle holds) granting pull and push on `repo`, signed with the
// openssl CLI.
std::string MakeRegistryToken(const fs::path& dir, const std::string& repo, const std::string& service,
                              const std::string& issuer) {
  std::string out;
  const fs::path key = dir / "token.key", cert = dir / "token.crt";
  int rc = RunShell("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=kvcri-test-token -keyout " +
                        ShellQuote(key.string()) + " -out " + ShellQuote(cert.string()),
                    &out);
  EXPECT_EQ(rc, 0) << out;
  std::string der_b64;
  rc = RunShell("openssl x509 -in " + ShellQuote(cert.string()) + " -outform DER | base64 -w0", &der_b64);
  EXPECT_EQ(rc, 0) << der_b64;
  const long now = static_cast<long>(std::time(nullptr));
  const std::string header = R"({"typ":"JWT","alg":"RS256","x5c":[")" + der_b64 + R"("]})";
  const std::string claims = R"({"iss":")" + issuer + R"(","sub":"kvuser","aud":")" + service +
                             R"(","exp":)" + std::to_string(now + 3600) + R"(,"nbf":)" + std::to_string(now - 300) +
                             R"(,"iat":)" + std::to_string(now - 300) + R"(,"jti":"kvcri-test-)" +
                             std::to_string(now) + R"(","access":[{"type":"repository","name":")" + repo +
                             R"(","actions":["pull","push"]}]})";
  const std::string signing_input = Base64Url(header) + "." + Base64Url(claims);
  std::ofstream(dir / "signing-input") << signing_input;
  std::string sig;
  rc = RunShell("openssl dgst -sha256 -sign " + ShellQuote(key.string()) + " " +
                    ShellQuote((dir / "signing-input").string()) + " > " + ShellQuote((dir / "sig").string()),
                &out);
  EXPECT_EQ(rc, 0) << out;
  std::ifstream in(dir / "sig", std::ios::binary);
  sig.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return signing_input + "." + Base64Url(sig);
}

TEST_F(ImagePullTest, BearerTokenFlowAgainstATokenEndpoint) {
  TempDir work;
  const std::string service = "kvcri-test-registry", issuer = "kvcri-test-issuer";
  const std::string token = MakeRegistryToken(work.path(), "private/kernel", service, issuer);
  ASSERT_FALSE(HasFailure());
  // "Basic base64(kvuser:tok-pw)".
  std::string b64;
  ASSERT_EQ(RunShell("printf %s kvuser:tok-pw | base64 -w0", &b64), 0);
  TokenServer tokens(token, "Basic " + b64);
  ASSERT_GT(tokens.port(), 0);

  RegistryFixture::Options opts;
  opts.extra_config = "auth:\n  token:\n    realm: http://127.0.0.1:" + std::to_string(tokens.port()) +
                      "/token\n    service: " + service + "\n    issuer: " + issuer +
                      "\n    rootcertbundle: " + (work.path() / "token.crt").string() + "\n";
  RegistryFixture reg(opts);
  reg.Start();
  ASSERT_FALSE(HasFatalFailure());
  reg.Push(GuestImageDir("oci-kernel"), "private/kernel:1");
  ASSERT_FALSE(HasFatalFailure()) << "token requests: " << ::testing::PrintToString(tokens.Requests());
  tokens.anonymous_ok = false;
  const std::string image = reg.Host() + "/private/kernel:1";

  TestDaemon d;
  d.Start();
  // The token endpoint refuses an anonymous request.
  grpc::Status s = Pull(d, image, nullptr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr(reg.Host()));
  EXPECT_TRUE(List(d).empty());

  pb::AuthConfig auth;
  auth.set_username("kvuser");
  auth.set_password("tok-pw");
  std::string id;
  s = Pull(d, image, &id, &auth);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\ndaemon:\n" << d.DaemonLog() << "\nregistry:\n" << reg.Log();
  EXPECT_TRUE(Status(d, image).has_image());
  // The daemon asked the realm for the registry's service and a pull scope, with the credentials.
  EXPECT_THAT(tokens.Requests(),
              Contains(::testing::AllOf(HasSubstr("GET /token?"), HasSubstr("service=" + service),
                                        HasSubstr("scope=repository%3Aprivate%2Fkernel%3Apull"), HasSubstr("[basic]"))))
      << ::testing::PrintToString(tokens.Requests());
  EXPECT_THAT(d.DaemonLog(), ::testing::Not(HasSubstr(token.substr(token.size() - 40))));
  ExpectNoPullLeftovers(d);
}

}  // namespace
}  // namespace kvcri::testing
