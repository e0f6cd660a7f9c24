// Config parsing (shipped defaults, explicit values, refused keys, types and paths) and the log line format.
#include "config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "config/base/file_util.h"
#include "config/base/log.h"

namespace kvcri::config {
namespace {

using ::testing::HasSubstr;

TEST(Config, ShippedFileEqualsBuiltInDefaults) {
  absl::StatusOr<Config> shipped =
      LoadConfig(std::string(KVCRI_SOURCE_DIR) + "/config/kubevirt-cri.toml", false);
  ASSERT_TRUE(shipped.ok()) << shipped.status();
  Config defaults;
  EXPECT_EQ(shipped->listen, defaults.listen);
  EXPECT_EQ(shipped->root, defaults.root);
  EXPECT_EQ(shipped->state_dir, defaults.state_dir);
  EXPECT_EQ(shipped->log_level, defaults.log_level);
  EXPECT_EQ(shipped->libvirt.uri, defaults.libvirt.uri);
  EXPECT_EQ(shipped->libvirt.accelerator, defaults.libvirt.accelerator);
  EXPECT_EQ(shipped->vm.default_memory_mib, defaults.vm.default_memory_mib);
  EXPECT_EQ(shipped->vm.default_vcpus, defaults.vm.default_vcpus);
  EXPECT_EQ(shipped->vm.max_vcpus, defaults.vm.max_vcpus);
  EXPECT_EQ(shipped->cni.conf_dir, defaults.cni.conf_dir);
  EXPECT_EQ(shipped->cni.bin_dirs, defaults.cni.bin_dirs);
  EXPECT_EQ(shipped->runtime.vm_handlers, defaults.runtime.vm_handlers);
  EXPECT_EQ(shipped->runtime.default_handler, defaults.runtime.default_handler);
  EXPECT_EQ(shipped->streaming.address, defaults.streaming.address);
  EXPECT_EQ(shipped->streaming.tls_cert_file, defaults.streaming.tls_cert_file);
  EXPECT_EQ(shipped->streaming.tls_key_file, defaults.streaming.tls_key_file);
  EXPECT_EQ(shipped->streaming.token_ttl_seconds, defaults.streaming.token_ttl_seconds);
  EXPECT_EQ(shipped->streaming.max_connections, defaults.streaming.max_connections);
}

TEST(Config, StreamingSectionIsParsedAndValidated) {
  absl::StatusOr<Config> c = ParseConfig(
      "[streaming]\naddress = \"[::1]:10010\"\ntls_cert_file = \"/etc/k/cert.pem\"\n"
      "tls_key_file = \"/etc/k/key.pem\"\ntoken_ttl_seconds = 30\nmax_connections = 8\n",
      "t");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->streaming.address, "[::1]:10010");
  EXPECT_EQ(c->streaming.tls_cert_file, "/etc/k/cert.pem");
  EXPECT_EQ(c->streaming.token_ttl_seconds, 30);
  EXPECT_EQ(c->streaming.max_connections, 8);
  absl::StatusOr<HostPort> hp = ParseHostPort(c->streaming.address);
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "::1");
  EXPECT_EQ(hp->port, 10010);

  const std::pair<const char*, const char*> bad[] = {
      {"[streaming]\naddress = \"localhost:0\"\n", "streaming.address"},
      {"[streaming]\naddress = \"127.0.0.1\"\n", "streaming.address"},
      {"[streaming]\naddress = \"127.0.0.1:65536\"\n", "streaming.address"},
      {"[streaming]\naddress = \"[::1]\"\n", "streaming.address"},
      {"[streaming]\ntls_cert_file = \"/c.pem\"\n", "must be set together"},
      {"[streaming]\ntls_key_file = \"/k.pem\"\n", "must be set together"},
      {"[streaming]\ntoken_ttl_seconds = 0\n", "streaming.token_ttl_seconds"},
      {"[streaming]\nmax_connections = 0\n", "streaming.max_connections"},
      {"[streaming]\nport = 10010\n", "unknown config key \"streaming.port\""},
      {"[streaming]\naddress = 10010\n", "\"streaming.address\" must be a string"},
  };
  for (const auto& [text, want] : bad) {
    c = ParseConfig(text, "t");
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(want)) << text;
  }
}

TEST(Config, CgroupDriverIsParsedValidatedAndDetectedWhenLeftOut) {
  absl::StatusOr<Config> c = ParseConfig("[runtime]\ncgroup_driver = \"systemd\"\n", "t");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->runtime.cgroup_driver, "systemd");
  c = ParseConfig("[runtime]\ncgroup_driver = \"cgroup\"\n", "t");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("runtime.cgroup_driver"));
  c = ParseConfig("", "t");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->runtime.cgroup_driver, "");  // detected by the daemon, not the parser

  // Detection: systemd as init (its /run/systemd/system directory) or not.
  std::string tmpl = "/tmp/kvcri-cgdriver-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const std::filesystem::path marker = std::filesystem::path(tmpl) / "systemd" / "system";
  EXPECT_EQ(ResolveCgroupDriver("", marker), "cgroupfs");
  std::filesystem::create_directories(marker);
  EXPECT_EQ(ResolveCgroupDriver("", marker), "systemd");
  EXPECT_EQ(ResolveCgroupDriver("cgroupfs", marker), "cgroupfs");  // configured wins
  std::filesystem::remove_all(tmpl);
}

TEST(Config, MetricsAddressIsOffByDefaultAndValidated) {
  absl::StatusOr<Config> c = ParseConfig("", "t");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->metrics.address, "");
  c = ParseConfig("[metrics]\naddress = \"127.0.0.1:9190\"\n", "t");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->metrics.address, "127.0.0.1:9190");
  for (const char* bad : {"[metrics]\naddress = \"localhost:9190\"\n", "[metrics]\naddress = \"9190\"\n",
                          "[metrics]\nport = 1\n"}) {
    c = ParseConfig(bad, "t");
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(c.status().message()), HasSubstr("metrics.")) << bad;
  }
}

TEST(Config, EmptyDocumentGivesDefaults) {
  absl::StatusOr<Config> c = ParseConfig("", "empty");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->LibvirtUri(), "qemu:///embed?root=/var/lib/kubevirt-cri/libvirt");
  EXPECT_EQ(c->CniCacheDir(), "/var/lib/kubevirt-cri/cni-cache");
}

// Found by fuzz_config_toml: toml++ reached __builtin_unreachable() on U+FEFB.
TEST(Config, ALeadingByteOrderMarkIsDroppedAndOtherNonAsciiRefused) {
  absl::StatusOr<Config> c = ParseConfig("\xEF\xBB\xBF", "bom");
  ASSERT_TRUE(c.ok()) << c.status();
  c = ParseConfig("\xEF\xBB\xBFlog_level = \"debug\"\n", "bom");
  ASSERT_TRUE(c.ok()) << c.status();
  for (const char* text : {"log_level = \"debug\"\n\xEF\xBB\xBF\n", "\xEF\xBB\xBB", "\xC2\xA1"}) {
    c = ParseConfig(text, "non-ascii");
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(std::string(c.status().message()), ::testing::HasSubstr("must be ASCII"));
  }
}

TEST(Config, ExplicitUriAndAcceleratorAreUsed) {
  absl::StatusOr<Config> c = ParseConfig(
      "[libvirt]\nuri = \"qemu:///system\"\naccelerator = \"tcg\"\n", "t");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->LibvirtUri(), "qemu:///system");
  EXPECT_EQ(c->libvirt.accelerator, Accelerator::kTcg);
}

TEST(Config, UnknownKeyIsNamed) {
  absl::StatusOr<Config> c = ParseConfig("[vm]\ndefault_memroy_mib = 3\n", "t");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("vm.default_memroy_mib"));
}

TEST(Config, BadAcceleratorIsRefused) {
  absl::StatusOr<Config> c = ParseConfig("[libvirt]\naccelerator = \"hvf\"\n", "t");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("\"hvf\""));
}

TEST(Config, WrongTypeIsNamed) {
  absl::StatusOr<Config> c = ParseConfig("[vm]\ndefault_vcpus = \"two\"\n", "t");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("vm.default_vcpus"));
}

TEST(Config, MaxVcpusIsParsedAndABadValueIsRefusedNamingTheKey) {
  absl::StatusOr<Config> c = ParseConfig("[vm]\nmax_vcpus = 8\n", "t");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vm.max_vcpus, 8);
  for (const char* bad : {"[vm]\nmax_vcpus = 0\n", "[vm]\ndefault_vcpus = 2\nmax_vcpus = 1\n", "[vm]\nmax_vcpus = 241\n"}) {
    c = ParseConfig(bad, "t");
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_THAT(c.status().message(), HasSubstr("vm.max_vcpus")) << bad;
  }
}

TEST(Config, SyntaxErrorNamesLine) {
  absl::StatusOr<Config> c = ParseConfig("listen = \"/x\"\n[vm\n", "my.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("my.toml"));
  EXPECT_THAT(c.status().message(), HasSubstr("line 2"));
}

TEST(Config, RelativePathsAreRefused) {
  absl::StatusOr<Config> c = ParseConfig("root = \"var/lib\"\n", "t");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("root"));
}

TEST(Config, MissingOptionalFileGivesDefaults) {
  absl::StatusOr<Config> c = LoadConfig("/nonexistent/kvcri.toml", true);
  ASSERT_TRUE(c.ok());
  absl::StatusOr<Config> required = LoadConfig("/nonexistent/kvcri.toml", false);
  ASSERT_FALSE(required.ok());
  EXPECT_EQ(required.status().code(), absl::StatusCode::kNotFound);
}

TEST(Log, FieldsAreKeyValueAndQuotedWhenNeeded) {
  std::string line = base::FormatLogLine(base::LogLevel::kInfo, "sandbox ready",
                                         {{"pod", "default/web"}, {"note", "a \"b\" c"}});
  EXPECT_THAT(line, HasSubstr("level=info msg=\"sandbox ready\" pod=default/web note=\"a \\\"b\\\" c\"\n"));
}

TEST(Log, EveryControlCharacterDelAndBadUtf8IsEscaped) {
  // A value from a guest or a CRI caller: a fake second log line, a terminal
  // escape (ESC [2J), a backspace, NUL, DEL, a C1 control (U+009B, the CSI of
  // 8-bit terminals), a stray continuation byte and a truncated sequence.
  const std::string hostile =
      std::string("x\nlevel=error msg=forged\r\x1b[2J\b") + std::string(1, '\0') + "\x7f\xc2\x9b\x80\xe2\x82";
  std::string line = base::FormatLogLine(base::LogLevel::kInfo, "m", {{"v", hostile}});
  EXPECT_THAT(line, HasSubstr("v=\"x\\nlevel=error msg=forged\\r\\x1b[2J\\x08\\x00\\x7f\\xc2\\x9b\\x80\\xe2\\x82\"\n"));
  // One line, and no raw byte below 0x20 or DEL anywhere but its end.
  ASSERT_FALSE(line.empty());
  for (size_t i = 0; i + 1 < line.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(line[i]);
    EXPECT_TRUE(c >= 0x20 && c != 0x7f) << "raw byte " << int(c) << " at " << i;
  }
  // Well-formed UTF-8 stays readable, quoted.
  EXPECT_THAT(base::FormatLogLine(base::LogLevel::kInfo, "m", {{"v", "caf\xc3\xa9 \xe2\x82\xac"}}),
              HasSubstr("v=\"caf\xc3\xa9 \xe2\x82\xac\"\n"));
  // The message is escaped the same way.
  EXPECT_THAT(base::FormatLogLine(base::LogLevel::kInfo, "a\x1b]0;t\x07", {}), HasSubstr("msg=\"a\\x1b]0;t\\x07\"\n"));
}

}  // namespace
}  // namespace kvcri::config
