// The strings containerd and the shim exchange by name: services, methods, event topics, type_urls, annotations.
#pragma once

#include <array>
#include <string_view>

namespace kvcri::shim::containerd {

// ttrpc services. Our protos live in package kvcri.shim.containerd.pb; these
// are the names that travel in the ttrpc Request's service field.
inline constexpr std::string_view kTaskService = "containerd.task.v2.Task";
inline constexpr std::string_view kEventsService = "containerd.services.events.ttrpc.v1.Events";
inline constexpr std::string_view kEventsForwardMethod = "Forward";  // ForwardRequest -> Empty

// containerd.task.v2.Task methods (the method field: bare names). Their
// messages are in proto/task.proto's `service Task`.
inline constexpr std::string_view kTaskState = "State";
inline constexpr std::string_view kTaskCreate = "Create";
inline constexpr std::string_view kTaskStart = "Start";
inline constexpr std::string_view kTaskDelete = "Delete";
inline constexpr std::string_view kTaskPids = "Pids";
inline constexpr std::string_view kTaskPause = "Pause";
inline constexpr std::string_view kTaskResume = "Resume";
inline constexpr std::string_view kTaskCheckpoint = "Checkpoint";
inline constexpr std::string_view kTaskKill = "Kill";
inline constexpr std::string_view kTaskExec = "Exec";
inline constexpr std::string_view kTaskResizePty = "ResizePty";
inline constexpr std::string_view kTaskCloseIO = "CloseIO";
inline constexpr std::string_view kTaskUpdate = "Update";
inline constexpr std::string_view kTaskWait = "Wait";
inline constexpr std::string_view kTaskStats = "Stats";
inline constexpr std::string_view kTaskConnect = "Connect";
inline constexpr std::string_view kTaskShutdown = "Shutdown";

// Every Task method, for a dispatcher's table and the test that holds it
// against the proto's service descriptor.
inline constexpr std::array<std::string_view, 17> kTaskMethods = {
    kTaskState,  kTaskCreate,     kTaskStart, kTaskDelete,  kTaskPids,      kTaskPause,
    kTaskResume, kTaskCheckpoint, kTaskKill,  kTaskExec,    kTaskResizePty, kTaskCloseIO,
    kTaskUpdate, kTaskWait,       kTaskStats, kTaskConnect, kTaskShutdown};

// Event topics (containerd runtime/events.go): Envelope.topic.
inline constexpr std::string_view kTopicTaskCreate = "/tasks/create";
inline constexpr std::string_view kTopicTaskStart = "/tasks/start";
inline constexpr std::string_view kTopicTaskExit = "/tasks/exit";
inline constexpr std::string_view kTopicTaskDelete = "/tasks/delete";
inline constexpr std::string_view kTopicTaskExecAdded = "/tasks/exec-added";
inline constexpr std::string_view kTopicTaskExecStarted = "/tasks/exec-started";
inline constexpr std::string_view kTopicTaskOOM = "/tasks/oom";
inline constexpr std::string_view kTopicTaskPaused = "/tasks/paused";
inline constexpr std::string_view kTopicTaskResumed = "/tasks/resumed";
inline constexpr std::string_view kTopicTaskCheckpointed = "/tasks/checkpointed";

// Event type_urls: Envelope.event's Any.type_url. containerd's typeurl
// resolves these by exact match to its proto full names, so they carry no
// "type.googleapis.com/" prefix (Any::PackFrom would add one, and our package).
inline constexpr std::string_view kTypeUrlTaskCreate = "containerd.events.TaskCreate";
inline constexpr std::string_view kTypeUrlTaskStart = "containerd.events.TaskStart";
inline constexpr std::string_view kTypeUrlTaskExit = "containerd.events.TaskExit";
inline constexpr std::string_view kTypeUrlTaskDelete = "containerd.events.TaskDelete";
inline constexpr std::string_view kTypeUrlTaskExecAdded = "containerd.events.TaskExecAdded";
inline constexpr std::string_view kTypeUrlTaskExecStarted = "containerd.events.TaskExecStarted";
inline constexpr std::string_view kTypeUrlTaskOOM = "containerd.events.TaskOOM";
inline constexpr std::string_view kTypeUrlTaskPaused = "containerd.events.TaskPaused";
inline constexpr std::string_view kTypeUrlTaskResumed = "containerd.events.TaskResumed";
inline constexpr std::string_view kTypeUrlTaskCheckpointed = "containerd.events.TaskCheckpointed";

// StatsResponse.stats type_urls: the only two containerd's CRI accepts
// ("unexpected metrics type" otherwise). Messages: proto/cgroups_v1.proto, cgroups_v2.proto.
inline constexpr std::string_view kCgroupsV1MetricsTypeUrl = "io.containerd.cgroups.v1.Metrics";
inline constexpr std::string_view kCgroupsV2MetricsTypeUrl = "io.containerd.cgroups.v2.Metrics";

// JSON-in-Any type_urls containerd registers for OCI types: ExecProcessRequest.spec
// and UpdateTaskRequest.resources carry the JSON of these runtime-spec structs.
inline constexpr std::string_view kOciProcessTypeUrl = "types.containerd.io/opencontainers/runtime-spec/1/Process";
inline constexpr std::string_view kOciLinuxResourcesTypeUrl =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

// ttrpc metadata key containerd sends its namespace under, and the variable
// containerd's ttrpc address arrives in (the shim publishes events there).
inline constexpr std::string_view kNamespaceMetadataKey = "containerd-namespace-ttrpc";
inline constexpr std::string_view kTtrpcAddressEnv = "TTRPC_ADDRESS";

// Annotations containerd's CRI plugin puts in the OCI spec (pkg/cri/annotations).
inline constexpr std::string_view kAnnotationContainerType = "io.kubernetes.cri.container-type";
inline constexpr std::string_view kContainerTypeSandbox = "sandbox";      // the Pod's sandbox task
inline constexpr std::string_view kContainerTypeContainer = "container";  // a container task
inline constexpr std::string_view kAnnotationSandboxId = "io.kubernetes.cri.sandbox-id";
inline constexpr std::string_view kAnnotationSandboxName = "io.kubernetes.cri.sandbox-name";
inline constexpr std::string_view kAnnotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace";
inline constexpr std::string_view kAnnotationSandboxUid = "io.kubernetes.cri.sandbox-uid";
inline constexpr std::string_view kAnnotationSandboxLogDirectory = "io.kubernetes.cri.sandbox-log-directory";
inline constexpr std::string_view kAnnotationSandboxCpuPeriod = "io.kubernetes.cri.sandbox-cpu-period";
inline constexpr std::string_view kAnnotationSandboxCpuQuota = "io.kubernetes.cri.sandbox-cpu-quota";
inline constexpr std::string_view kAnnotationSandboxCpuShares = "io.kubernetes.cri.sandbox-cpu-shares";
inline constexpr std::string_view kAnnotationSandboxMemory = "io.kubernetes.cri.sandbox-memory";
inline constexpr std::string_view kAnnotationContainerName = "io.kubernetes.cri.container-name";
inline constexpr std::string_view kAnnotationImageName = "io.kubernetes.cri.image-name";

// runc's explicit shim grouping annotation; it wins over the sandbox id, and
// we honour it the same way so a user's grouping means what it means for runc.
inline constexpr std::string_view kAnnotationShimGroup = "io.containerd.runc.v2.group";

// Files in a task's bundle directory.
inline constexpr std::string_view kBundleConfigFile = "config.json";  // the OCI spec, by containerd
inline constexpr std::string_view kBundleAddressFile = "address";     // our socket address, by `start`
inline constexpr std::string_view kBundleLogFifo = "log";             // containerd's FIFO, our stderr
inline constexpr std::string_view kBundleRootfsDir = "rootfs";        // where we mount the rootfs mounts
inline constexpr std::string_view kBundleWorkDir = "work";            // -> persistent per-task directory

}  // namespace kvcri::shim::containerd
