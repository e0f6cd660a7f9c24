// Talks to the daemon without our generated code: requests and answers are
// raw protobuf wire bytes checked against upstream's field numbers for
// runtime.v1 (k8s.io/cri-api api.proto), so a renumbered field in our proto
// fails here even though our own client would not notice.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <google/protobuf/unknown_field_set.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test/client/test_daemon.h"

namespace kvcri::testing {
namespace {

using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

// Sends `request` bytes to `method` and returns the raw answer bytes.
grpc::Status RawCall(const std::filesystem::path& socket, const std::string& method,
                     const std::string& request, std::string* answer) {
  auto channel = grpc::CreateChannel("unix:" + socket.string(), grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::Slice slice(request);
  grpc::ByteBuffer in(&slice, 1), out;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status result;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &in, &out, [&](grpc::Status s) {
    std::lock_guard<std::mutex> l(mu);
    result = s;
    done = true;
    cv.notify_one();
  });
  std::unique_lock<std::mutex> l(mu);
  cv.wait(l, [&] { return done; });
  if (result.ok()) {
    std::vector<grpc::Slice> slices;
    (void)out.Dump(&slices);
    for (const auto& s : slices) answer->append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return result;
}

std::string LengthDelimited(int field, const std::string& payload) {
  std::string out;
  out.push_back(static_cast<char>((field << 3) | 2));
  size_t n = payload.size();
  while (n >= 0x80) {
    out.push_back(static_cast<char>((n & 0x7f) | 0x80));
    n >>= 7;
  }
  out.push_back(static_cast<char>(n));
  return out + payload;
}

std::string StringField(const UnknownFieldSet& set, int number) {
  for (int i = 0; i < set.field_count(); ++i) {
    if (set.field(i).number() == number && set.field(i).type() == UnknownField::TYPE_LENGTH_DELIMITED)
      return set.field(i).length_delimited();
  }
  return "";
}

TEST(WireCompat, VersionFieldsHaveUpstreamNumbers) {
  RequireIntegrationEnvironment(false);
  TestDaemon d;
  d.Start();
  // VersionRequest { string version = 1; }
  std::string answer;
  grpc::Status s = RawCall(d.socket(), "/runtime.v1.RuntimeService/Version",
                           LengthDelimited(1, "0.1.0"), &answer);
  ASSERT_TRUE(s.ok()) << s.error_message();
  UnknownFieldSet fields;
  ASSERT_TRUE(fields.ParseFromArray(answer.data(), static_cast<int>(answer.size())));
  // VersionResponse { version = 1; runtime_name = 2; runtime_version = 3; runtime_api_version = 4; }
  EXPECT_EQ(StringField(fields, 1), "0.1.0");
  EXPECT_EQ(StringField(fields, 2), "kubevirt-cri");
  EXPECT_FALSE(StringField(fields, 3).empty());
  EXPECT_EQ(StringField(fields, 4), "v1");
}

TEST(WireCompat, StatusConditionsHaveUpstreamNumbers) {
  RequireIntegrationEnvironment(false);
  TestDaemon d;
  d.Start();
  // StatusRequest { bool verbose = 1; } -> tag 0x08, value 1.
  std::string answer;
  grpc::Status s = RawCall(d.socket(), "/runtime.v1.RuntimeService/Status", std::string("\x08\x01", 2), &answer);
  ASSERT_TRUE(s.ok()) << s.error_message();
  UnknownFieldSet resp;
  ASSERT_TRUE(resp.ParseFromArray(answer.data(), static_cast<int>(answer.size())));
  // StatusResponse { RuntimeStatus status = 1; map<string,string> info = 2; }
  UnknownFieldSet status;
  ASSERT_TRUE(status.ParseFromString(StringField(resp, 1)));
  // RuntimeStatus { repeated RuntimeCondition conditions = 1; }
  // RuntimeCondition { string type = 1; bool status = 2; string reason = 3; string message = 4; }
  std::map<std::string, bool> seen;
  for (int i = 0; i < status.field_count(); ++i) {
    ASSERT_EQ(status.field(i).number(), 1);
    UnknownFieldSet cond;
    ASSERT_TRUE(cond.ParseFromString(status.field(i).length_delimited()));
    bool ok = false;
    for (int j = 0; j < cond.field_count(); ++j) {
      if (cond.field(j).number() == 2) ok = cond.field(j).varint() != 0;
    }
    seen[StringField(cond, 1)] = ok;
  }
  ASSERT_TRUE(seen.count("RuntimeReady"));
  ASSERT_TRUE(seen.count("NetworkReady"));
  EXPECT_TRUE(seen["RuntimeReady"]);
  // info map entries: field 2, each an entry { key = 1; value = 2; }
  bool has_info = false;
  for (int i = 0; i < resp.field_count(); ++i) {
    if (resp.field(i).number() != 2) continue;
    UnknownFieldSet entry;
    ASSERT_TRUE(entry.ParseFromString(resp.field(i).length_delimited()));
    if (StringField(entry, 1) == "kubevirt-cri") has_info = !StringField(entry, 2).empty();
  }
  EXPECT_TRUE(has_info);
}

}  // namespace
}  // namespace kvcri::testing
