// FileSandboxStore: record files, names, updates, removal, Load of damaged state, concurrency.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "config/base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sandbox/file_sandbox_store.h"
#include "test/fakes/shell.h"

namespace kvcri::sandbox {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// A fresh directory under $TMPDIR, removed with its contents at the end.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "kvcri-store-XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr) << "mkdtemp failed";
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string Id(char c) { return std::string(kIdLength, c); }
std::string Msg(const absl::Status& s) { return std::string(s.message()); }

std::string ReadAll(const fs::path& p) {
  absl::StatusOr<std::string> s = base::ReadFile(p);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : "";
}

void WriteRaw(const fs::path& p, std::string_view content) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << content;
}

SandboxRecord Sandbox(std::string id, std::string name = "web", uint32_t attempt = 0) {
  SandboxRecord r;
  r.id = std::move(id);
  r.metadata = {std::move(name), "default", "uid-" + r.id.substr(0, 4), attempt};
  r.state = SandboxState::kReady;
  r.phase = Phase::kReady;
  r.labels = {{"app", r.metadata.name}};
  r.created_at = 42;
  return r;
}

ContainerRecord Container(std::string id, std::string sandbox_id, std::string name = "app") {
  ContainerRecord c;
  c.id = std::move(id);
  c.sandbox_id = std::move(sandbox_id);
  c.metadata = {std::move(name), 0};
  c.image = "vm:1";
  c.phase = Phase::kReady;
  return c;
}

class SandboxStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::make_unique<FileSandboxStore>(dir_.path());
    absl::StatusOr<LoadReport> r = store_->Load();
    ASSERT_TRUE(r.ok()) << r.status();
  }
  // A second store on the same directory, as after a daemon restart.
  LoadReport Reload() {
    store_ = std::make_unique<FileSandboxStore>(dir_.path());
    absl::StatusOr<LoadReport> r = store_->Load();
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : LoadReport{};
  }
  fs::path SandboxesDir() const { return dir_.path() / "sandboxes"; }

  TempDir dir_;
  std::unique_ptr<FileSandboxStore> store_;
};

TEST_F(SandboxStoreTest, PutWritesTheFileAndGetReturnsTheRecord) {
  SandboxRecord r = Sandbox(Id('a'));
  ASSERT_TRUE(store_->PutSandbox(r).ok());
  EXPECT_EQ(store_->SandboxFile(r.id), SandboxesDir() / r.id / "sandbox.json");
  EXPECT_EQ(ReadAll(store_->SandboxFile(r.id)), r.ToJson());
  absl::StatusOr<SandboxRecord> got = store_->GetSandbox(r.id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, r);
  EXPECT_EQ(store_->GetSandbox(Id('b')).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(fs::status(store_->SandboxFile(r.id)).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
}

TEST_F(SandboxStoreTest, RecordsSurviveANewStoreInstance) {
  SandboxRecord a = Sandbox(Id('a'), "a");
  SandboxRecord b = Sandbox(Id('b'), "b");
  ContainerRecord c1 = Container(Id('1'), a.id, "one");
  ContainerRecord c2 = Container(Id('2'), a.id, "two");
  ContainerRecord c3 = Container(Id('3'), b.id, "one");
  for (const auto& s : {a, b}) ASSERT_TRUE(store_->PutSandbox(s).ok());
  for (const auto& c : {c1, c2, c3}) ASSERT_TRUE(store_->PutContainer(c).ok());

  LoadReport report = Reload();
  EXPECT_EQ(report.sandboxes, 2u);
  EXPECT_EQ(report.containers, 3u);
  EXPECT_THAT(report.corrupt, IsEmpty());
  EXPECT_THAT(report.temp_files, IsEmpty());
  EXPECT_THAT(store_->ListSandboxes(), ElementsAre(a, b));
  EXPECT_THAT(store_->ListContainers(), ElementsAre(c1, c2, c3));
  // The name index is rebuilt too.
  SandboxRecord same_name = Sandbox(Id('c'));
  same_name.metadata = a.metadata;
  absl::Status dup = store_->PutSandbox(same_name);
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists);
  dup = store_->PutContainer(Container(Id('4'), a.id, "one"));
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(SandboxStoreTest, SecondSandboxWithTheSameNameIsAlreadyExistsNamingTheFirst) {
  ASSERT_TRUE(store_->PutSandbox(Sandbox(Id('a'), "web")).ok());
  SandboxRecord other = Sandbox(Id('b'), "web");
  other.metadata.uid = "uid-aaaa";  // same name/namespace/uid/attempt as the first
  absl::Status s = store_->PutSandbox(other);
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(Msg(s), HasSubstr("\"web_default_uid-aaaa_0\" is reserved for sandbox \"" + Id('a') + "\""));
  EXPECT_EQ(store_->GetSandbox(Id('b')).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(fs::exists(SandboxesDir() / Id('b')));
  // A new attempt is a different name.
  other.metadata.attempt = 1;
  EXPECT_TRUE(store_->PutSandbox(other).ok());
}

TEST_F(SandboxStoreTest, SameIdTwiceIsAlreadyExists) {
  ASSERT_TRUE(store_->PutSandbox(Sandbox(Id('a'))).ok());
  EXPECT_EQ(store_->PutSandbox(Sandbox(Id('a'))).code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(SandboxStoreTest, ReservedNameBlocksOthersUntilReleased) {
  SandboxRecord r = Sandbox(Id('a'));
  std::string name = SandboxName(r.metadata);
  ASSERT_TRUE(store_->ReserveSandboxName(name, Id('z')).ok());
  EXPECT_TRUE(store_->ReserveSandboxName(name, Id('z')).ok());  // same holder: idempotent
  absl::Status s = store_->ReserveSandboxName(name, Id('y'));
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(Msg(s), HasSubstr(Id('z')));
  EXPECT_EQ(store_->PutSandbox(r).code(), absl::StatusCode::kAlreadyExists);
  store_->ReleaseSandboxName(name, Id('y'));  // not the holder: no-op
  EXPECT_EQ(store_->PutSandbox(r).code(), absl::StatusCode::kAlreadyExists);
  store_->ReleaseSandboxName(name, Id('z'));
  EXPECT_TRUE(store_->PutSandbox(r).ok());
  // Releasing the name of an existing record does nothing.
  store_->ReleaseSandboxName(name, r.id);
  EXPECT_EQ(store_->ReserveSandboxName(name, Id('z')).code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(SandboxStoreTest, PutByTheReservingIdTakesItsReservation) {
  SandboxRecord r = Sandbox(Id('a'));
  ASSERT_TRUE(store_->ReserveSandboxName(SandboxName(r.metadata), r.id).ok());
  EXPECT_TRUE(store_->PutSandbox(r).ok());
}

TEST_F(SandboxStoreTest, ContainerNamesAreUniquePerSandbox) {
  ASSERT_TRUE(store_->PutSandbox(Sandbox(Id('a'), "a")).ok());
  ASSERT_TRUE(store_->PutSandbox(Sandbox(Id('b'), "b")).ok());
  ASSERT_TRUE(store_->PutContainer(Container(Id('1'), Id('a'), "app")).ok());
  absl::Status s = store_->PutContainer(Container(Id('2'), Id('a'), "app"));
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(Msg(s), HasSubstr("\"app_0\""));
  EXPECT_THAT(Msg(s), HasSubstr(Id('1')));
  EXPECT_TRUE(store_->PutContainer(Container(Id('2'), Id('b'), "app")).ok());
  // Reservation API mirrors the sandbox one.
  EXPECT_EQ(store_->ReserveContainerName(Id('a'), "app_0", Id('3')).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(store_->ReserveContainerName(Id('a'), "app_1", Id('3')).ok());
  EXPECT_EQ(store_->ReserveContainerName(Id('c'), "app_1", Id('3')).code(), absl::StatusCode::kNotFound);
  store_->ReleaseContainerName(Id('a'), "app_1", Id('3'));
  EXPECT_TRUE(store_->ReserveContainerName(Id('a'), "app_1", Id('4')).ok());
}

TEST_F(SandboxStoreTest, ContainerNeedsAnExistingSandbox) {
  absl::Status s = store_->PutContainer(Container(Id('1'), Id('a')));
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(fs::exists(SandboxesDir() / Id('a')));
}

TEST_F(SandboxStoreTest, RejectsMalformedIds) {
  EXPECT_EQ(store_->PutSandbox(Sandbox("../x")).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(store_->PutSandbox(Sandbox(Id('a'))).ok());
  EXPECT_EQ(store_->PutContainer(Container("ABC", Id('a'))).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SandboxStoreTest, UpdateWritesBeforeMemoryAndFileMatchesMemory) {
  ASSERT_TRUE(store_->PutSandbox(Sandbox(Id('a'))).ok());
  absl::StatusOr<SandboxRecord> updated = store_->UpdateSandbox(Id('a'), [](SandboxRecord& r) {
    r.state = SandboxState::kNotReady;
    r.network.ip = "10.0.0.7";
    return absl::OkStatus();
  });
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->network.ip, "10.0.0.7");
  absl::StatusOr<SandboxRecord> mem = store_->GetSandbox(Id('a'));
  ASSERT_TRUE(mem.ok());
  EXPECT_EQ(*mem, *updated);
  EXPECT_EQ(ReadAll(store_->SandboxFile(Id('a'))), mem->ToJson());
  Reload();
  EXPECT_EQ(*store_->GetSandbox(Id('a')), *updated);
}

TEST_F(SandboxStoreTest, FailedUpdateFunctionChangesNothing) {
  ASSERT_TRUE(store_->PutSandbox(Sandbox(Id('a'))).ok());
  std::string before = ReadAll(store_->SandboxFile(Id('a')));
  absl::StatusOr<SandboxRecord> r = store_->UpdateSandbox(Id('a'), [](SandboxRecord& r) {
    r.hostname = "changed";
    return absl::FailedPreconditionError("no");
  });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->GetSandbox(Id('a'))->hostname, "");
  EXPECT_EQ(ReadAll(store_->SandboxFile(Id('a'))), before);
}

TEST_F(SandboxStoreTest, UpdateMayNotChangeIdentity) {
  ASSERT_TRUE(store_->PutSandbox(Sandbox(Id('a'))).ok());
  absl::StatusOr<SandboxRecord> r = store_->UpdateSandbox(Id('a'), [](SandboxRecord& r) {
    r.metadata.attempt = 9;
    return absl::OkStatus();
  });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->GetSandbox(Id('a'))->metadata.attempt, 0u);
  EXPECT_EQ(store_->UpdateSandbox(Id('b'), [](SandboxRecord&) { return absl::OkStatus(); }).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SandboxStoreTest, UpdateContainerWritesItsFile) {
  ASSERT_TRUE(store_->PutSandbox(Sandbox(Id('a'))).ok());
  ASSERT_TRUE(store_->PutContainer(Container(Id('1'), Id('a'))).ok());
  absl::StatusOr<ContainerRecord> c = store_->UpdateContainer(Id('1'), [](ContainerRecord& c) {
    c.state = ContainerState::kExited;
    c.exit_code = 3;
    c.finished_at = 99;
    return absl::OkStatus();
  });
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(ReadAll(store_->ContainerFile(Id('a'), Id('1'))), c->ToJson());
  EXPECT_EQ(*store_->GetContainer(Id('1')), *c);
  c = store_->UpdateContainer(Id('1'), [](ContainerRecord& c) {
    c.sandbox_id = Id('b');
    return absl::OkStatus();
  });
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SandboxStoreTest, RemoveDeletesFilesAndNamesAndSurvivesReload) {
  SandboxRecord a = Sandbox(Id('a'));
  ASSERT_TRUE(store_->PutSandbox(a).ok());
  ASSERT_TRUE(store_->PutContainer(Container(Id('1'), a.id)).ok());
  ASSERT_TRUE(store_->PutSandbox(Sandbox(Id('b'), "keep")).ok());
  ASSERT_TRUE(store_->RemoveSandbox(a.id).ok());
  EXPECT_FALSE(fs::exists(SandboxesDir() / a.id));
  EXPECT_EQ(store_->GetContainer(Id('1')).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->RemoveSandbox(a.id).code(), absl::StatusCode::kNotFound);
  // Only the kept sandbox remains on disk: no trash directory either.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(SandboxesDir())) names.push_back(e.path().filename());
  EXPECT_THAT(names, ElementsAre(Id('b')));

  LoadReport report = Reload();
  EXPECT_EQ(report.sandboxes, 1u);
  EXPECT_THAT(report.trash_dirs, IsEmpty());
  EXPECT_EQ(store_->GetSandbox(a.id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->PutSandbox(a).ok()) << "name must be free again";
}

TEST_F(SandboxStoreTest, RemoveContainerDeletesItsFileAndFreesItsName) {
  ASSERT_TRUE(store_->PutSandbox(Sandbox(Id('a'))).ok());
  ASSERT_TRUE(store_->PutContainer(Container(Id('1'), Id('a'))).ok());
  ASSERT_TRUE(store_->RemoveContainer(Id('1')).ok());
  EXPECT_FALSE(fs::exists(store_->ContainerFile(Id('a'), Id('1'))));
  EXPECT_EQ(store_->RemoveContainer(Id('1')).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->PutContainer(Container(Id('2'), Id('a'))).ok());
  Reload();
  EXPECT_THAT(store_->ListContainers(), ElementsAre(Container(Id('2'), Id('a'))));
}

TEST_F(SandboxStoreTest, FailedWriteLeavesNoRecordNoDirectoryAndNoName) {
  // A regular file where the sandbox directory should be makes the write fail.
  SandboxRecord r = Sandbox(Id('a'));
  WriteRaw(SandboxesDir() / r.id, "not a directory");
  absl::Status s = store_->PutSandbox(r);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(store_->GetSandbox(r.id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(fs::exists(SandboxesDir() / r.id));
  EXPECT_TRUE(store_->ReserveSandboxName(SandboxName(r.metadata), Id('b')).ok()) << "name was not released";
}

TEST_F(SandboxStoreTest, ListFiltersInMemoryAndResolvesPrefixes) {
  std::string a = "ab" + std::string(62, '0');
  std::string b = "ac" + std::string(62, '0');
  ASSERT_TRUE(store_->PutSandbox(Sandbox(a, "one")).ok());
  ASSERT_TRUE(store_->PutSandbox(Sandbox(b, "two")).ok());
  std::vector<SandboxRecord> two =
      store_->ListSandboxes([](const SandboxRecord& r) { return r.labels.at("app") == "two"; });
  ASSERT_EQ(two.size(), 1u);
  EXPECT_EQ(two[0].id, b);

  EXPECT_EQ(*store_->ResolveSandboxId("ab"), a);
  EXPECT_EQ(*store_->ResolveSandboxId(b), b);
  absl::StatusOr<std::string> amb = store_->ResolveSandboxId("a");
  EXPECT_EQ(amb.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(amb.status()), HasSubstr("ambiguous"));
  EXPECT_EQ(store_->ResolveSandboxId("ad").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ResolveSandboxId("").status().code(), absl::StatusCode::kInvalidArgument);

  ASSERT_TRUE(store_->PutContainer(Container(Id('1'), a)).ok());
  EXPECT_EQ(*store_->ResolveContainerId("111"), Id('1'));
  EXPECT_EQ(store_->ResolveContainerId("2").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SandboxStoreTest, NewIdIsFreshHex) {
  absl::StatusOr<std::string> id = store_->NewId();
  ASSERT_TRUE(id.ok());
  EXPECT_TRUE(IsValidId(*id));
  EXPECT_NE(*id, *store_->NewId());
}

TEST_F(SandboxStoreTest, CorruptRecordsBecomePlaceholdersAndAreReported) {
  ASSERT_TRUE(store_->PutSandbox(Sandbox(Id('a'), "a")).ok());
  ASSERT_TRUE(store_->PutContainer(Container(Id('1'), Id('a'), "ok")).ok());
  ASSERT_TRUE(store_->PutContainer(Container(Id('2'), Id('a'), "bad")).ok());
  ASSERT_TRUE(store_->PutSandbox(Sandbox(Id('b'), "b")).ok());
  ASSERT_TRUE(store_->PutSandbox(Sandbox(Id('c'), "c")).ok());
  WriteRaw(store_->SandboxFile(Id('a')), "{\"version\": 1, \"id\": tru");  // truncated
  WriteRaw(store_->ContainerFile(Id('a'), Id('2')), "");                   // empty
  WriteRaw(store_->SandboxFile(Id('b')), "{\"version\": 7}");              // future version
  WriteRaw(store_->SandboxFile(Id('c')), Sandbox(Id('d'), "c").ToJson());  // wrong directory
  // Stray things are ignored, not reported.
  WriteRaw(SandboxesDir() / "README", "hello");
  fs::create_directories(SandboxesDir() / "not-an-id");
  WriteRaw(SandboxesDir() / Id('b') / "notes.txt", "x");
  WriteRaw(SandboxesDir() / Id('b') / "containers" / "junk.json", "{}");
  fs::create_symlink("/etc", SandboxesDir() / Id('e'));

  LoadReport report = Reload();
  EXPECT_EQ(report.sandboxes, 3u);
  EXPECT_EQ(report.containers, 2u);
  std::vector<std::string> corrupt;
  for (const CorruptRecord& c : report.corrupt) corrupt.push_back(c.sandbox_id + "/" + c.container_id);
  EXPECT_THAT(corrupt,
              UnorderedElementsAre(Id('a') + "/", Id('a') + "/" + Id('2'), Id('b') + "/", Id('c') + "/"));

  absl::StatusOr<SandboxRecord> a = store_->GetSandbox(Id('a'));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->state, SandboxState::kNotReady);
  EXPECT_THAT(a->load_error, HasSubstr("not valid JSON"));
  EXPECT_THAT(store_->GetSandbox(Id('b'))->load_error, HasSubstr("unsupported version 7"));
  EXPECT_THAT(store_->GetSandbox(Id('c'))->load_error, HasSubstr("lives in directory"));
  absl::StatusOr<ContainerRecord> bad = store_->GetContainer(Id('2'));
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->state, ContainerState::kUnknown);
  EXPECT_FALSE(bad->load_error.empty());
  EXPECT_TRUE(store_->GetContainer(Id('1'))->load_error.empty()) << "good containers of a bad sandbox load";

  // Placeholders cannot be updated or receive containers, but can be removed.
  EXPECT_EQ(store_->UpdateSandbox(Id('a'), [](SandboxRecord&) { return absl::OkStatus(); }).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      store_->UpdateContainer(Id('2'), [](ContainerRecord&) { return absl::OkStatus(); }).status().code(),
      absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->PutContainer(Container(Id('3'), Id('a'), "new")).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store_->RemoveContainer(Id('2')).ok());
  ASSERT_TRUE(store_->RemoveSandbox(Id('a')).ok());
  ASSERT_TRUE(store_->RemoveSandbox(Id('b')).ok());
  EXPECT_FALSE(fs::exists(SandboxesDir() / Id('a')));
  report = Reload();
  EXPECT_EQ(report.sandboxes, 1u);
  EXPECT_TRUE(fs::exists(SandboxesDir() / "README")) << "stray files are left alone";
}

TEST_F(SandboxStoreTest, CrashLeftoversAreReportedForRecovery) {
  // A sandbox whose creation was cut short after its first write, with a
  // temp file from an interrupted later write.
  SandboxRecord creating = Sandbox(Id('a'));
  creating.phase = Phase::kCreating;
  creating.state = SandboxState::kNotReady;
  ASSERT_TRUE(store_->PutSandbox(creating).ok());
  ContainerRecord removing = Container(Id('1'), Id('a'));
  removing.phase = Phase::kRemoving;
  ASSERT_TRUE(store_->PutContainer(removing).ok());
  fs::path tmp = SandboxesDir() / Id('a') / ".sandbox.json.tmpAb12Cd";
  WriteRaw(tmp, "{\"version\": 1, \"id\": \"half");
  fs::path ctmp = SandboxesDir() / Id('a') / "containers" / ("." + Id('1') + ".json.tmpZZZZZZ");
  WriteRaw(ctmp, "");
  // A crash inside the very first write: a directory with only a temp file.
  fs::path incomplete = SandboxesDir() / Id('b');
  WriteRaw(incomplete / ".sandbox.json.tmp000000", "{");
  // An interrupted RemoveSandbox.
  fs::path trash = SandboxesDir() / (".removing-" + Id('c'));
  WriteRaw(trash / "sandbox.json", Sandbox(Id('c')).ToJson());

  LoadReport report = Reload();
  EXPECT_THAT(report.unfinished_sandboxes, ElementsAre(Id('a')));
  EXPECT_THAT(report.unfinished_containers, ElementsAre(Id('1')));
  EXPECT_THAT(report.temp_files, UnorderedElementsAre(tmp, ctmp, incomplete / ".sandbox.json.tmp000000"));
  EXPECT_THAT(report.incomplete_dirs, ElementsAre(incomplete));
  EXPECT_THAT(report.trash_dirs, ElementsAre(trash));
  EXPECT_THAT(report.corrupt, IsEmpty());
  EXPECT_EQ(report.sandboxes, 1u);
  absl::StatusOr<SandboxRecord> a = store_->GetSandbox(Id('a'));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->phase, Phase::kCreating);
  EXPECT_EQ(*a, creating) << "the last complete write wins over the temp file";
  EXPECT_EQ(store_->GetSandbox(Id('b')).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetSandbox(Id('c')).status().code(), absl::StatusCode::kNotFound);

  ASSERT_TRUE(store_->CleanUp(report).ok());
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_FALSE(fs::exists(ctmp));
  EXPECT_FALSE(fs::exists(incomplete));
  EXPECT_FALSE(fs::exists(trash));
  EXPECT_TRUE(fs::exists(store_->SandboxFile(Id('a')))) << "records are never garbage";
  report = Reload();
  EXPECT_THAT(report.temp_files, IsEmpty());
  EXPECT_THAT(report.unfinished_sandboxes, ElementsAre(Id('a')));
}

TEST_F(SandboxStoreTest, ConcurrentUpdatesAndListsStayConsistent) {
  constexpr int kSandboxes = 8, kUpdates = 40;
  for (int i = 0; i < kSandboxes; ++i) {
    ASSERT_TRUE(store_->PutSandbox(Sandbox(Id("0123456789abcdef"[i]), "p" + std::to_string(i))).ok());
  }
  std::atomic<bool> done{false};
  std::thread lister([&] {
    while (!done) {
      for (const SandboxRecord& r : store_->ListSandboxes()) {
        ASSERT_EQ(r.labels.size(), 1u);
      }
    }
  });
  std::vector<std::thread> writers;
  for (int i = 0; i < kSandboxes; ++i) {
    writers.emplace_back([&, i] {
      for (int n = 0; n < kUpdates; ++n) {
        ASSERT_TRUE(store_
                        ->UpdateSandbox(Id("0123456789abcdef"[i]),
                                        [](SandboxRecord& r) {
                                          r.created_at += 1;
                                          return absl::OkStatus();
                                        })
                        .ok());
      }
    });
  }
  for (auto& t : writers) t.join();
  done = true;
  lister.join();
  Reload();
  for (const SandboxRecord& r : store_->ListSandboxes()) EXPECT_EQ(r.created_at, 42 + kUpdates);
}

// Run by NewRecordDirectoriesAreFsyncedInTheirParent under strace: writes one
// sandbox and one container record into $KVCRI_DURABILITY_ROOT.
TEST(SandboxStoreDurability, DISABLED_WriteRecordsForStrace) {
  const char* root = ::getenv("KVCRI_DURABILITY_ROOT");
  ASSERT_NE(root, nullptr) << "KVCRI_DURABILITY_ROOT is not set";
  FileSandboxStore store{fs::path(root)};
  ASSERT_TRUE(store.Load().ok());
  ASSERT_TRUE(store.PutSandbox(Sandbox(Id('a'))).ok());
  ASSERT_TRUE(store.PutContainer(Container(Id('b'), Id('a'))).ok());
}

// Every directory mkdir(2) created for a record is followed by an fsync of an
// fd opened on its parent: a crash cannot lose the directory of a record that
// was reported written.
TEST(SandboxStoreDurability, NewRecordDirectoriesAreFsyncedInTheirParent) {
  TempDir tmp;
  const fs::path trace = tmp.path() / "strace.out";
  const fs::path root = tmp.path() / "root";
  ASSERT_EQ(::access("/usr/bin/strace", X_OK), 0) << "strace is missing (scripts/install-deps.sh --test)";
  testing::ShResult r = testing::Sh(
      // LeakSanitizer cannot run under ptrace; the sanitizer build's leak
      // check of this child is off (its parent is checked).
      "ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0\" KVCRI_DURABILITY_ROOT='" + root.string() +
      "' /usr/bin/strace -qq -e trace=mkdir,mkdirat,open,openat,fsync -o '" + trace.string() + "' /proc/" +
      std::to_string(::getpid()) +
      "/exe --gtest_also_run_disabled_tests --gtest_filter=SandboxStoreDurability.DISABLED_WriteRecordsForStrace");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(trace);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  const std::regex mkdir_re(R"re(^mkdir(?:at)?\((?:AT_FDCWD, )?"([^"]+)".*\)\s*= 0$)re");
  const std::regex open_re(R"re(^open(?:at)?\((?:AT_FDCWD, )?"([^"]+)", [^)]*O_DIRECTORY[^)]*\)\s*= (\d+)$)re");
  const std::regex fsync_re(R"re(^fsync\((\d+)\)\s*= 0$)re");
  std::vector<std::string> created;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::smatch m;
    if (!std::regex_match(lines[i], m, mkdir_re)) continue;
    const std::string dir = m[1];
    created.push_back(dir);
    const std::string parent = fs::path(dir).parent_path().string();
    bool synced = false;
    std::string fd;
    for (size_t j = i + 1; j < lines.size() && !synced; ++j) {
      std::smatch o;
      if (std::regex_match(lines[j], o, open_re) && o[1] == parent) fd = o[2];
      if (!fd.empty() && std::regex_match(lines[j], o, fsync_re) && o[1] == fd) synced = true;
    }
    EXPECT_TRUE(synced) << "mkdir \"" << dir << "\" is not followed by an fsync of \"" << parent << "\"";
  }
  // The sandbox directory and its containers directory were among them.
  EXPECT_THAT(created, ::testing::IsSupersetOf({(root / "sandboxes" / Id('a')).string(),
                                                (root / "sandboxes" / Id('a') / "containers").string()}));
}

}  // namespace
}  // namespace kvcri::sandbox
