// Unit tests of shim/containerd/proto: wire bytes computed by hand from the field numbers of docs/containerd-shim.md.
#include <gtest/gtest.h>

#include <string>

#include "google/protobuf/descriptor.h"
#include "shim/containerd/names.h"
#include "shim/containerd/proto/cgroups_v1.pb.h"
#include "shim/containerd/proto/cgroups_v2.pb.h"
#include "shim/containerd/proto/events.pb.h"
#include "shim/containerd/proto/task.pb.h"
#include "shim/containerd/proto/types.pb.h"

namespace kvcri::shim::containerd {
namespace {

using std::string_literals::operator""s;

// A tag byte is (field number << 3) | wire type: 0 varint, 2 length-delimited.
// Each expectation below spells the tags out so a wrong field number in our
// protos shows as a wrong byte, independently of the .proto text.

TEST(ContainerdProtoWire, TaskExitEncodesFieldsOneToFive) {
  pb::TaskExit exit;
  exit.set_container_id("c1");
  exit.set_id("e1");
  exit.set_pid(42);
  exit.set_exit_status(137);
  exit.mutable_exited_at()->set_seconds(1);
  exit.mutable_exited_at()->set_nanos(2);
  EXPECT_EQ(exit.SerializeAsString(),
            "\x0a\x02"
            "c1"  // 1 container_id, string
            "\x12\x02"
            "e1"                         // 2 id, string
            "\x18\x2a"                   // 3 pid = 42
            "\x20\x89\x01"               // 4 exit_status = 137 (varint: 0x89 0x01)
            "\x2a\x04\x08\x01\x10\x02"s  // 5 exited_at {seconds 1 (1), nanos 2 (2)}
  );
}

TEST(ContainerdProtoWire, TaskDeleteCarriesIdAsFieldFive) {
  pb::TaskDelete del;
  del.set_container_id("c");
  del.set_pid(7);
  del.set_exit_status(1);
  del.mutable_exited_at()->set_seconds(3);
  del.set_id("c");
  EXPECT_EQ(del.SerializeAsString(),
            "\x0a\x01"
            "c"
            "\x10\x07"
            "\x18\x01"
            "\x22\x02\x08\x03"
            "\x2a\x01"
            "c"s);
}

TEST(ContainerdProtoWire, TaskCreateNestsMountAndTaskIO) {
  pb::TaskCreate create;
  create.set_container_id("c");
  pb::Mount* m = create.add_rootfs();
  m->set_type("overlay");
  m->add_options("ro");
  create.mutable_io()->set_stdout("o");
  create.mutable_io()->set_terminal(true);
  create.set_pid(9);
  EXPECT_EQ(create.SerializeAsString(),
            "\x0a\x01"
            "c"
            "\x1a\x0d"
            "\x0a\x07"
            "overlay"
            "\x22\x02"
            "ro"  // 3 rootfs: Mount {1 type, 4 options}
            "\x22\x05"
            "\x12\x01"
            "o"
            "\x20\x01"     // 4 io: TaskIO {2 stdout, 4 terminal}
            "\x30\x09"s);  // 6 pid
}

TEST(ContainerdProtoWire, ForwardRequestWrapsAnEnvelopeWithATypedEvent) {
  pb::TaskOOM oom;
  oom.set_container_id("x");
  pb::ForwardRequest forward;
  pb::Envelope* env = forward.mutable_envelope();
  env->mutable_timestamp()->set_seconds(1);
  env->set_namespace_("k8s.io");
  env->set_topic(std::string(kTopicTaskOOM));
  env->mutable_event()->set_type_url(std::string(kTypeUrlTaskOOM));
  env->mutable_event()->set_value(oom.SerializeAsString());
  const std::string any =
      "\x0a\x19"
      "containerd.events.TaskOOM"
      "\x12\x03"
      "\x0a\x01"
      "x"s;  // 32 bytes
  ASSERT_EQ(any.size(), 0x20u);
  const std::string envelope =
      "\x0a\x02\x08\x01"s  // 1 timestamp {seconds 1}
      "\x12\x06"
      "k8s.io"  // 2 namespace
      "\x1a\x0a"
      "/tasks/oom"  // 3 topic
      "\x22\x20"s +
      any;  // 4 event (Any)
  ASSERT_EQ(envelope.size(), 0x3au);
  EXPECT_EQ(forward.SerializeAsString(), "\x0a\x3a"s + envelope);
}

TEST(ContainerdProtoWire, MetricsV2MemoryUsageIsFieldThirtyTwo) {
  namespace v2 = pb::cgroups::v2;
  v2::Metrics metrics;
  metrics.mutable_memory()->set_usage(5);
  // MemoryStat field 32, varint: the tag 32 << 3 = 256 is the two-byte varint 0x80 0x02.
  EXPECT_EQ(metrics.memory().SerializeAsString(), "\x80\x02\x05"s);
  EXPECT_EQ(metrics.SerializeAsString(), "\x22\x03\x80\x02\x05"s);  // Metrics.memory = 4
}

TEST(ContainerdProtoWire, MetricsV2FieldsContainerdReads) {
  namespace v2 = pb::cgroups::v2;
  v2::Metrics metrics;
  metrics.mutable_pids()->set_current(3);          // Metrics.pids = 1, PidsStat.current = 1
  metrics.mutable_cpu()->set_usage_usec(1);        // Metrics.cpu = 2, CPUStat.usage_usec = 1
  metrics.mutable_cpu()->set_user_usec(2);         // 2
  metrics.mutable_cpu()->set_system_usec(3);       // 3
  v2::MemoryStat* mem = metrics.mutable_memory();  // Metrics.memory = 4
  mem->set_anon(1);                                // 1 -> tag 0x08
  mem->set_inactive_file(2);                       // 13 -> tag 0x68
  mem->set_pgfault(3);                             // 18 -> tag 144: 0x90 0x01
  mem->set_pgmajfault(4);                          // 19 -> tag 152: 0x98 0x01
  mem->set_usage(5);                               // 32 -> tag 256: 0x80 0x02
  mem->set_usage_limit(6);                         // 33 -> tag 264: 0x88 0x02
  EXPECT_EQ(metrics.SerializeAsString(),
            "\x0a\x02\x08\x03"
            "\x12\x06\x08\x01\x10\x02\x18\x03"
            "\x22\x10\x08\x01\x68\x02\x90\x01\x03\x98\x01\x04\x80\x02\x05\x88\x02\x06"s);
}

TEST(ContainerdProtoWire, MetricsV1MemoryUsageIsAnEntryAtThirtyThree) {
  namespace v1 = pb::cgroups::v1;
  v1::Metrics metrics;
  metrics.mutable_cpu()->mutable_usage()->set_total(9);  // Metrics.cpu = 3 -> CPUStat.usage = 1 -> total = 1
  v1::MemoryStat* mem = metrics.mutable_memory();        // Metrics.memory = 4
  mem->set_total_rss(1);                                 // 19 -> tag 152: 0x98 0x01
  mem->set_total_pg_fault(2);                            // 26 -> tag 208: 0xd0 0x01
  mem->set_total_pg_maj_fault(3);                        // 27 -> tag 216: 0xd8 0x01
  mem->set_total_inactive_file(4);                       // 30 -> tag 240: 0xf0 0x01
  mem->mutable_usage()->set_usage(7);                    // 33, length-delimited -> tag 266: 0x8a 0x02
  mem->mutable_usage()->set_limit(8);                    // MemoryEntry.limit = 1, usage = 2
  EXPECT_EQ(metrics.SerializeAsString(),
            "\x1a\x04\x0a\x02\x08\x09"
            "\x22\x13\x98\x01\x01\xd0\x01\x02\xd8\x01\x03\xf0\x01\x04\x8a\x02\x04\x08\x08\x10\x07"s);
}

TEST(ContainerdProtoWire, DeleteResponseIsPidStatusTime) {
  pb::DeleteResponse response;
  response.set_pid(100);
  response.set_exit_status(137);
  response.mutable_exited_at()->set_seconds(1700000000);  // varint 0x80 0xe2 0xcf 0xaa 0x06
  EXPECT_EQ(response.SerializeAsString(), "\x08\x64\x10\x89\x01\x1a\x06\x08\x80\xe2\xcf\xaa\x06"s);
}

TEST(ContainerdProtoWire, StateResponseStatusAndLateFields) {
  pb::StateResponse state;
  state.set_status(pb::STOPPED);            // 4, enum varint 3
  state.set_exit_status(1);                 // 9
  state.mutable_exited_at()->set_nanos(1);  // 10, length-delimited: tag 0x52
  state.set_exec_id("e");                   // 11: tag 0x5a
  EXPECT_EQ(state.SerializeAsString(),
            "\x20\x03\x48\x01\x52\x02\x10\x01\x5a\x01"
            "e"s);
  EXPECT_EQ(pb::Status_Name(pb::PAUSING), "PAUSING");
  EXPECT_EQ(static_cast<int>(pb::PAUSING), 5);
}

TEST(ContainerdProtoWire, CreateTaskRequestOptionsIsFieldTen) {
  pb::CreateTaskRequest create;
  create.set_terminal(true);                    // 4
  create.set_stderr("/e");                      // 7
  create.set_parent_checkpoint("p");            // 9
  create.mutable_options()->set_type_url("t");  // 10: tag 0x52
  EXPECT_EQ(create.SerializeAsString(), "\x20\x01\x3a\x02/e\x4a\x01p\x52\x03\x0a\x01t"s);
}

TEST(ContainerdProtoWire, UpdateTaskRequestAnnotationsAreMapEntries) {
  pb::UpdateTaskRequest update;
  (*update.mutable_annotations())["k"] = "v";  // 3: entry {1 key, 2 value}
  EXPECT_EQ(update.SerializeAsString(), "\x1a\x06\x0a\x01k\x12\x01v"s);
}

TEST(ContainerdProtoWire, ConnectKillAndPidsFields) {
  pb::ConnectResponse connect;
  connect.set_shim_pid(1);
  connect.set_task_pid(2);
  connect.set_version("v");
  EXPECT_EQ(connect.SerializeAsString(), "\x08\x01\x10\x02\x1a\x01v"s);
  pb::KillRequest kill;
  kill.set_signal(9);
  kill.set_all(true);
  EXPECT_EQ(kill.SerializeAsString(), "\x18\x09\x20\x01"s);
  pb::PidsResponse pids;
  pids.add_processes()->set_pid(4);
  EXPECT_EQ(pids.SerializeAsString(), "\x0a\x02\x08\x04"s);
}

// Every field of section 3 of docs/containerd-shim.md: message, field, number,
// type. Written again from the doc, apart from the .proto, so a slip in either
// one fails here.
struct FieldFact {
  const char* message;  // in package kvcri.shim.containerd.pb
  const char* field;
  int number;
  google::protobuf::FieldDescriptor::Type type;
};

TEST(ContainerdProtoFields, MatchTheFactSheet) {
  using FD = google::protobuf::FieldDescriptor;
  constexpr auto S = FD::TYPE_STRING;
  constexpr auto U = FD::TYPE_UINT32;
  constexpr auto B = FD::TYPE_BOOL;
  constexpr auto M = FD::TYPE_MESSAGE;
  constexpr auto E = FD::TYPE_ENUM;
  const FieldFact facts[] = {
      {"CreateTaskRequest", "id", 1, S},
      {"CreateTaskRequest", "bundle", 2, S},
      {"CreateTaskRequest", "rootfs", 3, M},
      {"CreateTaskRequest", "terminal", 4, B},
      {"CreateTaskRequest", "stdin", 5, S},
      {"CreateTaskRequest", "stdout", 6, S},
      {"CreateTaskRequest", "stderr", 7, S},
      {"CreateTaskRequest", "checkpoint", 8, S},
      {"CreateTaskRequest", "parent_checkpoint", 9, S},
      {"CreateTaskRequest", "options", 10, M},
      {"CreateTaskResponse", "pid", 1, U},
      {"StartRequest", "id", 1, S},
      {"StartRequest", "exec_id", 2, S},
      {"StartResponse", "pid", 1, U},
      {"DeleteRequest", "id", 1, S},
      {"DeleteRequest", "exec_id", 2, S},
      {"DeleteResponse", "pid", 1, U},
      {"DeleteResponse", "exit_status", 2, U},
      {"DeleteResponse", "exited_at", 3, M},
      {"StateRequest", "id", 1, S},
      {"StateRequest", "exec_id", 2, S},
      {"StateResponse", "id", 1, S},
      {"StateResponse", "bundle", 2, S},
      {"StateResponse", "pid", 3, U},
      {"StateResponse", "status", 4, E},
      {"StateResponse", "stdin", 5, S},
      {"StateResponse", "stdout", 6, S},
      {"StateResponse", "stderr", 7, S},
      {"StateResponse", "terminal", 8, B},
      {"StateResponse", "exit_status", 9, U},
      {"StateResponse", "exited_at", 10, M},
      {"StateResponse", "exec_id", 11, S},
      {"WaitRequest", "id", 1, S},
      {"WaitRequest", "exec_id", 2, S},
      {"WaitResponse", "exit_status", 1, U},
      {"WaitResponse", "exited_at", 2, M},
      {"KillRequest", "id", 1, S},
      {"KillRequest", "exec_id", 2, S},
      {"KillRequest", "signal", 3, U},
      {"KillRequest", "all", 4, B},
      {"PidsRequest", "id", 1, S},
      {"PidsResponse", "processes", 1, M},
      {"ProcessInfo", "pid", 1, U},
      {"ProcessInfo", "info", 2, M},
      {"ExecProcessRequest", "id", 1, S},
      {"ExecProcessRequest", "exec_id", 2, S},
      {"ExecProcessRequest", "terminal", 3, B},
      {"ExecProcessRequest", "stdin", 4, S},
      {"ExecProcessRequest", "stdout", 5, S},
      {"ExecProcessRequest", "stderr", 6, S},
      {"ExecProcessRequest", "spec", 7, M},
      {"ResizePtyRequest", "id", 1, S},
      {"ResizePtyRequest", "exec_id", 2, S},
      {"ResizePtyRequest", "width", 3, U},
      {"ResizePtyRequest", "height", 4, U},
      {"CloseIORequest", "id", 1, S},
      {"CloseIORequest", "exec_id", 2, S},
      {"CloseIORequest", "stdin", 3, B},
      {"UpdateTaskRequest", "id", 1, S},
      {"UpdateTaskRequest", "resources", 2, M},
      {"UpdateTaskRequest", "annotations", 3, M},
      {"StatsRequest", "id", 1, S},
      {"StatsResponse", "stats", 1, M},
      {"ConnectRequest", "id", 1, S},
      {"ConnectResponse", "shim_pid", 1, U},
      {"ConnectResponse", "task_pid", 2, U},
      {"ConnectResponse", "version", 3, S},
      {"ShutdownRequest", "id", 1, S},
      {"ShutdownRequest", "now", 2, B},
      {"PauseRequest", "id", 1, S},
      {"ResumeRequest", "id", 1, S},
      {"CheckpointTaskRequest", "id", 1, S},
      {"CheckpointTaskRequest", "path", 2, S},
      {"CheckpointTaskRequest", "options", 3, M},
      {"Mount", "type", 1, S},
      {"Mount", "source", 2, S},
      {"Mount", "target", 3, S},
      {"Mount", "options", 4, S},
      {"TaskCreate", "container_id", 1, S},
      {"TaskCreate", "bundle", 2, S},
      {"TaskCreate", "rootfs", 3, M},
      {"TaskCreate", "io", 4, M},
      {"TaskCreate", "checkpoint", 5, S},
      {"TaskCreate", "pid", 6, U},
      {"TaskIO", "stdin", 1, S},
      {"TaskIO", "stdout", 2, S},
      {"TaskIO", "stderr", 3, S},
      {"TaskIO", "terminal", 4, B},
      {"TaskStart", "container_id", 1, S},
      {"TaskStart", "pid", 2, U},
      {"TaskExit", "container_id", 1, S},
      {"TaskExit", "id", 2, S},
      {"TaskExit", "pid", 3, U},
      {"TaskExit", "exit_status", 4, U},
      {"TaskExit", "exited_at", 5, M},
      {"TaskDelete", "container_id", 1, S},
      {"TaskDelete", "pid", 2, U},
      {"TaskDelete", "exit_status", 3, U},
      {"TaskDelete", "exited_at", 4, M},
      {"TaskDelete", "id", 5, S},
      {"TaskExecAdded", "container_id", 1, S},
      {"TaskExecAdded", "exec_id", 2, S},
      {"TaskExecStarted", "container_id", 1, S},
      {"TaskExecStarted", "exec_id", 2, S},
      {"TaskExecStarted", "pid", 3, U},
      {"TaskOOM", "container_id", 1, S},
      {"TaskPaused", "container_id", 1, S},
      {"TaskResumed", "container_id", 1, S},
      {"TaskCheckpointed", "container_id", 1, S},
      {"TaskCheckpointed", "checkpoint", 2, S},
      {"ForwardRequest", "envelope", 1, M},
      {"Envelope", "timestamp", 1, M},
      {"Envelope", "namespace", 2, S},
      {"Envelope", "topic", 3, S},
      {"Envelope", "event", 4, M},
  };
  // Link the generated files so their descriptors are in the generated pool.
  pb::CreateTaskRequest link_task;
  pb::TaskExit link_events;
  const google::protobuf::DescriptorPool* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const FieldFact& f : facts) {
    SCOPED_TRACE(std::string(f.message) + "." + f.field);
    const google::protobuf::Descriptor* d =
        pool->FindMessageTypeByName(std::string("kvcri.shim.containerd.pb.") + f.message);
    ASSERT_NE(d, nullptr);
    const google::protobuf::FieldDescriptor* field = d->FindFieldByName(f.field);
    ASSERT_NE(field, nullptr);
    EXPECT_EQ(field->number(), f.number);
    EXPECT_EQ(field->type(), f.type);
  }
  // Repeated where the doc says so, and nowhere else among these.
  EXPECT_TRUE(pool->FindMessageTypeByName("kvcri.shim.containerd.pb.CreateTaskRequest")
                  ->FindFieldByName("rootfs")
                  ->is_repeated());
  EXPECT_TRUE(pool->FindMessageTypeByName("kvcri.shim.containerd.pb.Mount")->FindFieldByName("options")->is_repeated());
  EXPECT_TRUE(pool->FindMessageTypeByName("kvcri.shim.containerd.pb.PidsResponse")
                  ->FindFieldByName("processes")
                  ->is_repeated());
  EXPECT_TRUE(pool->FindMessageTypeByName("kvcri.shim.containerd.pb.UpdateTaskRequest")
                  ->FindFieldByName("annotations")
                  ->is_map());
  EXPECT_EQ(pool->FindMessageTypeByName("kvcri.shim.containerd.pb.TaskExit")
                ->FindFieldByName("exited_at")
                ->message_type()
                ->full_name(),
            "google.protobuf.Timestamp");
}

TEST(ContainerdProtoFields, TaskServiceHasEveryMethodOfNamesH) {
  const google::protobuf::ServiceDescriptor* task =
      pb::CreateTaskRequest::descriptor()->file()->FindServiceByName("Task");
  ASSERT_NE(task, nullptr);
  EXPECT_EQ(task->method_count(), static_cast<int>(kTaskMethods.size()));
  for (std::string_view name : kTaskMethods) {
    EXPECT_NE(task->FindMethodByName(std::string(name)), nullptr) << name;
  }
  // Spot checks of the method table of section 3.
  EXPECT_EQ(task->FindMethodByName("Create")->input_type()->name(), "CreateTaskRequest");
  EXPECT_EQ(task->FindMethodByName("Checkpoint")->input_type()->name(), "CheckpointTaskRequest");
  EXPECT_EQ(task->FindMethodByName("Exec")->input_type()->name(), "ExecProcessRequest");
  EXPECT_EQ(task->FindMethodByName("Kill")->output_type()->full_name(), "google.protobuf.Empty");
  EXPECT_EQ(task->FindMethodByName("Wait")->output_type()->name(), "WaitResponse");
}

TEST(ContainerdNames, TypeUrlsAreBareProtoNames) {
  // containerd resolves these by exact match: no type.googleapis.com/ prefix.
  for (std::string_view url :
       {kTypeUrlTaskCreate, kTypeUrlTaskStart, kTypeUrlTaskExit, kTypeUrlTaskDelete, kTypeUrlTaskExecAdded,
        kTypeUrlTaskExecStarted, kTypeUrlTaskOOM, kTypeUrlTaskPaused, kTypeUrlTaskResumed, kTypeUrlTaskCheckpointed}) {
    EXPECT_EQ(url.substr(0, 18), "containerd.events.") << url;
    EXPECT_EQ(url.find('/'), std::string_view::npos) << url;
  }
  // Each event type_url names the message that carries it (our messages bear containerd's names).
  EXPECT_EQ(kTypeUrlTaskExit.substr(18), pb::TaskExit::descriptor()->name());
  EXPECT_EQ(kTypeUrlTaskOOM.substr(18), pb::TaskOOM::descriptor()->name());
  EXPECT_EQ(kTypeUrlTaskExecStarted.substr(18), pb::TaskExecStarted::descriptor()->name());
  EXPECT_EQ(kCgroupsV2MetricsTypeUrl, "io.containerd.cgroups.v2.Metrics");
  EXPECT_EQ(kTopicTaskExecStarted, "/tasks/exec-started");
}

}  // namespace
}  // namespace kvcri::shim::containerd
