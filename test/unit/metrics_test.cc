// config/base/metrics: the registry's exposition text, checked by a strict format parser (test/client/prom_text.h).
#include "config/base/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <thread>
#include <vector>

#include "test/client/prom_text.h"

namespace kvcri::base {
namespace {

using ::testing::HasSubstr;
using testing::ParsePromText;
using testing::PromValue;

TEST(Metrics, CountersGaugesAndHistogramsAreValidExpositionText) {
  MetricsRegistry r;
  absl::StatusOr<MetricFamily*> rpcs = r.Counter("kvcri_grpc_requests_total", "CRI calls by method and code.",
                                                 {"method", "code"});
  ASSERT_TRUE(rpcs.ok()) << rpcs.status();
  absl::StatusOr<MetricFamily*> pods = r.Gauge("kvcri_pods", "Pods by state.", {"state"});
  ASSERT_TRUE(pods.ok());
  absl::StatusOr<MetricFamily*> lat =
      r.Histogram("kvcri_grpc_request_duration_seconds", "CRI call latency.", {"method"}, {0.01, 0.1, 1});
  ASSERT_TRUE(lat.ok());
  (*rpcs)->Add({"RunPodSandbox", "OK"});
  (*rpcs)->Add({"RunPodSandbox", "OK"}, 2);
  (*rpcs)->Add({"ListPodSandbox", "OK"});
  (*rpcs)->Add({"ListPodSandbox", "OK"}, -5);  // counters never go down
  (*pods)->Set({"ready"}, 3);
  (*pods)->Set({"a \"quoted\" \\ back\nslash"}, 1);
  for (double v : {0.005, 0.05, 0.5, 5.0}) (*lat)->Observe({"StartContainer"}, v);

  const std::string text = r.Expose();
  absl::StatusOr<std::map<std::string, testing::PromFamily>> fams = ParsePromText(text);
  ASSERT_TRUE(fams.ok()) << fams.status() << "\n" << text;
  EXPECT_EQ(fams->at("kvcri_grpc_requests_total").type, "counter");
  EXPECT_EQ(*PromValue(*fams, "kvcri_grpc_requests_total", {{"method", "RunPodSandbox"}, {"code", "OK"}}), 3);
  EXPECT_EQ(*PromValue(*fams, "kvcri_grpc_requests_total", {{"method", "ListPodSandbox"}}), 1);
  EXPECT_EQ(*PromValue(*fams, "kvcri_pods", {{"state", "a \"quoted\" \\ back\nslash"}}), 1) << text;
  EXPECT_EQ(*PromValue(*fams, "kvcri_grpc_request_duration_seconds_bucket", {{"le", "0.01"}}), 1);
  EXPECT_EQ(*PromValue(*fams, "kvcri_grpc_request_duration_seconds_bucket", {{"le", "1"}}), 3);
  EXPECT_EQ(*PromValue(*fams, "kvcri_grpc_request_duration_seconds_bucket", {{"le", "+Inf"}}), 4);
  EXPECT_EQ(*PromValue(*fams, "kvcri_grpc_request_duration_seconds_count"), 4);
  EXPECT_DOUBLE_EQ(*PromValue(*fams, "kvcri_grpc_request_duration_seconds_sum"), 5.555);
  EXPECT_THAT(text, HasSubstr("# TYPE kvcri_grpc_request_duration_seconds histogram\n"));

  (*pods)->Clear();
  fams = ParsePromText(r.Expose());
  ASSERT_TRUE(fams.ok());
  EXPECT_TRUE(absl::IsNotFound(PromValue(*fams, "kvcri_pods").status()));
}

TEST(Metrics, NamesOutsideTheFormatsRulesAreRefused) {
  MetricsRegistry r;
  EXPECT_TRUE(absl::IsInvalidArgument(r.Counter("1abc", "x").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(r.Counter("a-b", "x").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(r.Gauge("ok", "x", {"__reserved"}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(r.Gauge("ok2", "x", {"a:b"}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(r.Histogram("h", "x", {}, {1, 1}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(r.Histogram("h2", "x", {"le"}, {1}).status()));
  ASSERT_TRUE(r.Counter("ns:sub_total", "colons are allowed in metric names").ok());
  EXPECT_TRUE(absl::IsAlreadyExists(r.Gauge("ns:sub_total", "again").status()));
}

TEST(Metrics, ValuesAreWrittenAsTheFormatReadsThem) {
  EXPECT_EQ(FormatMetricValue(INFINITY), "+Inf");
  EXPECT_EQ(FormatMetricValue(-INFINITY), "-Inf");
  EXPECT_EQ(FormatMetricValue(NAN), "NaN");
  EXPECT_EQ(FormatMetricValue(0.1), "0.1");
  EXPECT_EQ(FormatMetricValue(1e21), "1e+21");
  EXPECT_EQ(FormatMetricValue(12345678901234), "12345678901234");
}

TEST(Metrics, UpdatesFromManyThreadsAreAllCounted) {
  MetricsRegistry r;
  MetricFamily* c = *r.Counter("c_total", "x", {"t"});
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([c, t] {
      for (int i = 0; i < 1000; ++i) c->Add({std::to_string(t % 2)});
    });
  }
  for (auto& t : ts) t.join();
  auto fams = ParsePromText(r.Expose());
  ASSERT_TRUE(fams.ok());
  EXPECT_EQ(*PromValue(*fams, "c_total", {{"t", "0"}}) + *PromValue(*fams, "c_total", {{"t", "1"}}), 4000);
}

TEST(PromText, TheParserRejectsWhatTheFormatForbids) {
  for (const char* bad : {
           "x 1",                                          // no final newline
           "x{a=\"1\"} 1\nx{a=\"1\"} 2\n",                 // a series twice
           "x{a=1} 1\n",                                   // unquoted label value
           "x{a=\"\\t\"} 1\n",                             // unknown escape
           "x one\n",                                      // not a float
           "# TYPE x counter\n# TYPE x gauge\n",           // a second TYPE
           "x 1\n# TYPE x counter\n",                      // TYPE after samples
           "x 1\ny 1\nx{a=\"b\"} 1\n",                     // not contiguous
           "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",  // not cumulative
           "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",  // no +Inf
       }) {
    EXPECT_FALSE(ParsePromText(bad).ok()) << bad;
  }
  EXPECT_TRUE(ParsePromText("# HELP x a\n# TYPE x counter\nx{a=\"q\\\"\"} 1 1700000000000\n").ok());
}

}  // namespace
}  // namespace kvcri::base
