# ruff: noqa: E501
"""containerd 1.7's v1 wire contract, transcribed from containerd's own .proto files.

Nothing here is read from containerd at run time; the facts were copied once from:

* containerd v1.7.34, ``vendor/github.com/containerd/containerd/api/`` (the
  ``github.com/containerd/containerd/api`` module v1.8.0 that 1.7.34 builds with;
  its own ``api/`` directory holds only a README);
* containerd v1.6.20, ``api/``, for the two pre-1.7 envelope types in ``OPTIONAL_MESSAGES``;
* ``grpc.health.v1`` and ``google.rpc.Status`` as vendored by containerd v1.7.34
  (google.golang.org/grpc v1.59.0: Health has exactly Check and Watch);
* ttrpc's own envelope (package ``ttrpc``) from github.com/containerd/ttrpc ``request.proto``
  (v1.2.x, vendored by containerd 1.7; v1.1.1, vendored by 1.6, declares the same fields);
* the cgroup statistics in ``CGROUP_STATS`` from github.com/containerd/cgroups v3.1.3 as
  vendored by containerd v2.3.4 (a superset of 1.6.20's and 1.7.34's; see the table).

Conventions:

* every name is fully qualified, without protoc's leading dot;
* an RPC is ``(request, response, client_streaming, server_streaming)``;
* a field is ``(number, FieldDescriptorProto type, label, type name or None)``; the type name
  is given for message and enum fields only;
* a map field is written in its wire shape, ``TYPE_MESSAGE``/``REPEATED`` with the type name
  ``"map<K, V>"`` standing for the synthesized ``FooEntry`` message (key = 1, value = 2).

Differences from 1.6 that matter here: ``Events/Subscribe`` streams ``containerd.types.Envelope``
(1.6: ``containerd.services.events.v1.Envelope``, same fields), and 1.7 added fields such as
``Container.sandbox``, ``ApplyRequest.sync_fs``, ``DiffRequest.source_date_epoch``,
``Platform.os_version``, ``Snapshot*.snapshotter`` events and ``Introspection/PluginInfo``.
The image events really are declared in package ``containerd.services.images.v1``, not
``containerd.events``; their Any type URLs depend on that.
"""

from google.protobuf.descriptor_pb2 import FieldDescriptorProto as F

OPTIONAL = F.LABEL_OPTIONAL
REPEATED = F.LABEL_REPEATED

Rpc = tuple[str, str, bool, bool]
Field = tuple[int, F.Type.ValueType, F.Label.ValueType, str | None]
Message = dict[str, Field]

# fmt: off

# Every RPC of the services berthd serves or calls, keyed by its gRPC/ttrpc method path.
RPCS: dict[str, Rpc] = {
    # services/content/v1/content.proto
    "/containerd.services.content.v1.Content/Info": ("containerd.services.content.v1.InfoRequest", "containerd.services.content.v1.InfoResponse", False, False),
    "/containerd.services.content.v1.Content/Update": ("containerd.services.content.v1.UpdateRequest", "containerd.services.content.v1.UpdateResponse", False, False),
    "/containerd.services.content.v1.Content/List": ("containerd.services.content.v1.ListContentRequest", "containerd.services.content.v1.ListContentResponse", False, True),
    "/containerd.services.content.v1.Content/Delete": ("containerd.services.content.v1.DeleteContentRequest", "google.protobuf.Empty", False, False),
    "/containerd.services.content.v1.Content/Read": ("containerd.services.content.v1.ReadContentRequest", "containerd.services.content.v1.ReadContentResponse", False, True),
    "/containerd.services.content.v1.Content/Status": ("containerd.services.content.v1.StatusRequest", "containerd.services.content.v1.StatusResponse", False, False),
    "/containerd.services.content.v1.Content/ListStatuses": ("containerd.services.content.v1.ListStatusesRequest", "containerd.services.content.v1.ListStatusesResponse", False, False),
    "/containerd.services.content.v1.Content/Write": ("containerd.services.content.v1.WriteContentRequest", "containerd.services.content.v1.WriteContentResponse", True, True),
    "/containerd.services.content.v1.Content/Abort": ("containerd.services.content.v1.AbortRequest", "google.protobuf.Empty", False, False),
    # services/snapshots/v1/snapshots.proto
    "/containerd.services.snapshots.v1.Snapshots/Prepare": ("containerd.services.snapshots.v1.PrepareSnapshotRequest", "containerd.services.snapshots.v1.PrepareSnapshotResponse", False, False),
    "/containerd.services.snapshots.v1.Snapshots/View": ("containerd.services.snapshots.v1.ViewSnapshotRequest", "containerd.services.snapshots.v1.ViewSnapshotResponse", False, False),
    "/containerd.services.snapshots.v1.Snapshots/Mounts": ("containerd.services.snapshots.v1.MountsRequest", "containerd.services.snapshots.v1.MountsResponse", False, False),
    "/containerd.services.snapshots.v1.Snapshots/Commit": ("containerd.services.snapshots.v1.CommitSnapshotRequest", "google.protobuf.Empty", False, False),
    "/containerd.services.snapshots.v1.Snapshots/Remove": ("containerd.services.snapshots.v1.RemoveSnapshotRequest", "google.protobuf.Empty", False, False),
    "/containerd.services.snapshots.v1.Snapshots/Stat": ("containerd.services.snapshots.v1.StatSnapshotRequest", "containerd.services.snapshots.v1.StatSnapshotResponse", False, False),
    "/containerd.services.snapshots.v1.Snapshots/Update": ("containerd.services.snapshots.v1.UpdateSnapshotRequest", "containerd.services.snapshots.v1.UpdateSnapshotResponse", False, False),
    "/containerd.services.snapshots.v1.Snapshots/List": ("containerd.services.snapshots.v1.ListSnapshotsRequest", "containerd.services.snapshots.v1.ListSnapshotsResponse", False, True),
    "/containerd.services.snapshots.v1.Snapshots/Usage": ("containerd.services.snapshots.v1.UsageRequest", "containerd.services.snapshots.v1.UsageResponse", False, False),
    "/containerd.services.snapshots.v1.Snapshots/Cleanup": ("containerd.services.snapshots.v1.CleanupRequest", "google.protobuf.Empty", False, False),
    # services/diff/v1/diff.proto
    "/containerd.services.diff.v1.Diff/Apply": ("containerd.services.diff.v1.ApplyRequest", "containerd.services.diff.v1.ApplyResponse", False, False),
    "/containerd.services.diff.v1.Diff/Diff": ("containerd.services.diff.v1.DiffRequest", "containerd.services.diff.v1.DiffResponse", False, False),
    # services/images/v1/images.proto
    "/containerd.services.images.v1.Images/Get": ("containerd.services.images.v1.GetImageRequest", "containerd.services.images.v1.GetImageResponse", False, False),
    "/containerd.services.images.v1.Images/List": ("containerd.services.images.v1.ListImagesRequest", "containerd.services.images.v1.ListImagesResponse", False, False),
    "/containerd.services.images.v1.Images/Create": ("containerd.services.images.v1.CreateImageRequest", "containerd.services.images.v1.CreateImageResponse", False, False),
    "/containerd.services.images.v1.Images/Update": ("containerd.services.images.v1.UpdateImageRequest", "containerd.services.images.v1.UpdateImageResponse", False, False),
    "/containerd.services.images.v1.Images/Delete": ("containerd.services.images.v1.DeleteImageRequest", "google.protobuf.Empty", False, False),
    # services/containers/v1/containers.proto
    "/containerd.services.containers.v1.Containers/Get": ("containerd.services.containers.v1.GetContainerRequest", "containerd.services.containers.v1.GetContainerResponse", False, False),
    "/containerd.services.containers.v1.Containers/List": ("containerd.services.containers.v1.ListContainersRequest", "containerd.services.containers.v1.ListContainersResponse", False, False),
    "/containerd.services.containers.v1.Containers/ListStream": ("containerd.services.containers.v1.ListContainersRequest", "containerd.services.containers.v1.ListContainerMessage", False, True),
    "/containerd.services.containers.v1.Containers/Create": ("containerd.services.containers.v1.CreateContainerRequest", "containerd.services.containers.v1.CreateContainerResponse", False, False),
    "/containerd.services.containers.v1.Containers/Update": ("containerd.services.containers.v1.UpdateContainerRequest", "containerd.services.containers.v1.UpdateContainerResponse", False, False),
    "/containerd.services.containers.v1.Containers/Delete": ("containerd.services.containers.v1.DeleteContainerRequest", "google.protobuf.Empty", False, False),
    # services/leases/v1/leases.proto
    "/containerd.services.leases.v1.Leases/Create": ("containerd.services.leases.v1.CreateRequest", "containerd.services.leases.v1.CreateResponse", False, False),
    "/containerd.services.leases.v1.Leases/Delete": ("containerd.services.leases.v1.DeleteRequest", "google.protobuf.Empty", False, False),
    "/containerd.services.leases.v1.Leases/List": ("containerd.services.leases.v1.ListRequest", "containerd.services.leases.v1.ListResponse", False, False),
    "/containerd.services.leases.v1.Leases/AddResource": ("containerd.services.leases.v1.AddResourceRequest", "google.protobuf.Empty", False, False),
    "/containerd.services.leases.v1.Leases/DeleteResource": ("containerd.services.leases.v1.DeleteResourceRequest", "google.protobuf.Empty", False, False),
    "/containerd.services.leases.v1.Leases/ListResources": ("containerd.services.leases.v1.ListResourcesRequest", "containerd.services.leases.v1.ListResourcesResponse", False, False),
    # services/namespaces/v1/namespace.proto
    "/containerd.services.namespaces.v1.Namespaces/Get": ("containerd.services.namespaces.v1.GetNamespaceRequest", "containerd.services.namespaces.v1.GetNamespaceResponse", False, False),
    "/containerd.services.namespaces.v1.Namespaces/List": ("containerd.services.namespaces.v1.ListNamespacesRequest", "containerd.services.namespaces.v1.ListNamespacesResponse", False, False),
    "/containerd.services.namespaces.v1.Namespaces/Create": ("containerd.services.namespaces.v1.CreateNamespaceRequest", "containerd.services.namespaces.v1.CreateNamespaceResponse", False, False),
    "/containerd.services.namespaces.v1.Namespaces/Update": ("containerd.services.namespaces.v1.UpdateNamespaceRequest", "containerd.services.namespaces.v1.UpdateNamespaceResponse", False, False),
    "/containerd.services.namespaces.v1.Namespaces/Delete": ("containerd.services.namespaces.v1.DeleteNamespaceRequest", "google.protobuf.Empty", False, False),
    # services/events/v1/events.proto
    "/containerd.services.events.v1.Events/Publish": ("containerd.services.events.v1.PublishRequest", "google.protobuf.Empty", False, False),
    "/containerd.services.events.v1.Events/Forward": ("containerd.services.events.v1.ForwardRequest", "google.protobuf.Empty", False, False),
    "/containerd.services.events.v1.Events/Subscribe": ("containerd.services.events.v1.SubscribeRequest", "containerd.types.Envelope", False, True),
    # services/ttrpc/events/v1/events.proto
    "/containerd.services.events.ttrpc.v1.Events/Forward": ("containerd.services.events.ttrpc.v1.ForwardRequest", "google.protobuf.Empty", False, False),
    # services/introspection/v1/introspection.proto
    "/containerd.services.introspection.v1.Introspection/Plugins": ("containerd.services.introspection.v1.PluginsRequest", "containerd.services.introspection.v1.PluginsResponse", False, False),
    "/containerd.services.introspection.v1.Introspection/Server": ("google.protobuf.Empty", "containerd.services.introspection.v1.ServerResponse", False, False),
    "/containerd.services.introspection.v1.Introspection/PluginInfo": ("containerd.services.introspection.v1.PluginInfoRequest", "containerd.services.introspection.v1.PluginInfoResponse", False, False),
    # services/version/v1/version.proto
    "/containerd.services.version.v1.Version/Version": ("google.protobuf.Empty", "containerd.services.version.v1.VersionResponse", False, False),
    # services/tasks/v1/tasks.proto
    "/containerd.services.tasks.v1.Tasks/Create": ("containerd.services.tasks.v1.CreateTaskRequest", "containerd.services.tasks.v1.CreateTaskResponse", False, False),
    "/containerd.services.tasks.v1.Tasks/Start": ("containerd.services.tasks.v1.StartRequest", "containerd.services.tasks.v1.StartResponse", False, False),
    "/containerd.services.tasks.v1.Tasks/Delete": ("containerd.services.tasks.v1.DeleteTaskRequest", "containerd.services.tasks.v1.DeleteResponse", False, False),
    "/containerd.services.tasks.v1.Tasks/DeleteProcess": ("containerd.services.tasks.v1.DeleteProcessRequest", "containerd.services.tasks.v1.DeleteResponse", False, False),
    "/containerd.services.tasks.v1.Tasks/Get": ("containerd.services.tasks.v1.GetRequest", "containerd.services.tasks.v1.GetResponse", False, False),
    "/containerd.services.tasks.v1.Tasks/List": ("containerd.services.tasks.v1.ListTasksRequest", "containerd.services.tasks.v1.ListTasksResponse", False, False),
    "/containerd.services.tasks.v1.Tasks/Kill": ("containerd.services.tasks.v1.KillRequest", "google.protobuf.Empty", False, False),
    "/containerd.services.tasks.v1.Tasks/Exec": ("containerd.services.tasks.v1.ExecProcessRequest", "google.protobuf.Empty", False, False),
    "/containerd.services.tasks.v1.Tasks/ResizePty": ("containerd.services.tasks.v1.ResizePtyRequest", "google.protobuf.Empty", False, False),
    "/containerd.services.tasks.v1.Tasks/CloseIO": ("containerd.services.tasks.v1.CloseIORequest", "google.protobuf.Empty", False, False),
    "/containerd.services.tasks.v1.Tasks/Pause": ("containerd.services.tasks.v1.PauseTaskRequest", "google.protobuf.Empty", False, False),
    "/containerd.services.tasks.v1.Tasks/Resume": ("containerd.services.tasks.v1.ResumeTaskRequest", "google.protobuf.Empty", False, False),
    "/containerd.services.tasks.v1.Tasks/ListPids": ("containerd.services.tasks.v1.ListPidsRequest", "containerd.services.tasks.v1.ListPidsResponse", False, False),
    "/containerd.services.tasks.v1.Tasks/Checkpoint": ("containerd.services.tasks.v1.CheckpointTaskRequest", "containerd.services.tasks.v1.CheckpointTaskResponse", False, False),
    "/containerd.services.tasks.v1.Tasks/Update": ("containerd.services.tasks.v1.UpdateTaskRequest", "google.protobuf.Empty", False, False),
    "/containerd.services.tasks.v1.Tasks/Metrics": ("containerd.services.tasks.v1.MetricsRequest", "containerd.services.tasks.v1.MetricsResponse", False, False),
    "/containerd.services.tasks.v1.Tasks/Wait": ("containerd.services.tasks.v1.WaitRequest", "containerd.services.tasks.v1.WaitResponse", False, False),
    # runtime/task/v2/shim.proto
    "/containerd.task.v2.Task/State": ("containerd.task.v2.StateRequest", "containerd.task.v2.StateResponse", False, False),
    "/containerd.task.v2.Task/Create": ("containerd.task.v2.CreateTaskRequest", "containerd.task.v2.CreateTaskResponse", False, False),
    "/containerd.task.v2.Task/Start": ("containerd.task.v2.StartRequest", "containerd.task.v2.StartResponse", False, False),
    "/containerd.task.v2.Task/Delete": ("containerd.task.v2.DeleteRequest", "containerd.task.v2.DeleteResponse", False, False),
    "/containerd.task.v2.Task/Pids": ("containerd.task.v2.PidsRequest", "containerd.task.v2.PidsResponse", False, False),
    "/containerd.task.v2.Task/Pause": ("containerd.task.v2.PauseRequest", "google.protobuf.Empty", False, False),
    "/containerd.task.v2.Task/Resume": ("containerd.task.v2.ResumeRequest", "google.protobuf.Empty", False, False),
    "/containerd.task.v2.Task/Checkpoint": ("containerd.task.v2.CheckpointTaskRequest", "google.protobuf.Empty", False, False),
    "/containerd.task.v2.Task/Kill": ("containerd.task.v2.KillRequest", "google.protobuf.Empty", False, False),
    "/containerd.task.v2.Task/Exec": ("containerd.task.v2.ExecProcessRequest", "google.protobuf.Empty", False, False),
    "/containerd.task.v2.Task/ResizePty": ("containerd.task.v2.ResizePtyRequest", "google.protobuf.Empty", False, False),
    "/containerd.task.v2.Task/CloseIO": ("containerd.task.v2.CloseIORequest", "google.protobuf.Empty", False, False),
    "/containerd.task.v2.Task/Update": ("containerd.task.v2.UpdateTaskRequest", "google.protobuf.Empty", False, False),
    "/containerd.task.v2.Task/Wait": ("containerd.task.v2.WaitRequest", "containerd.task.v2.WaitResponse", False, False),
    "/containerd.task.v2.Task/Stats": ("containerd.task.v2.StatsRequest", "containerd.task.v2.StatsResponse", False, False),
    "/containerd.task.v2.Task/Connect": ("containerd.task.v2.ConnectRequest", "containerd.task.v2.ConnectResponse", False, False),
    "/containerd.task.v2.Task/Shutdown": ("containerd.task.v2.ShutdownRequest", "google.protobuf.Empty", False, False),
    # grpc/health/v1/health.proto
    "/grpc.health.v1.Health/Check": ("grpc.health.v1.HealthCheckRequest", "grpc.health.v1.HealthCheckResponse", False, False),
    "/grpc.health.v1.Health/Watch": ("grpc.health.v1.HealthCheckRequest", "grpc.health.v1.HealthCheckResponse", False, True),
}

# Every message declared in the proto files that define RPCS' services, plus every type those
# messages embed (google.protobuf well-known types aside).
MESSAGES: dict[str, Message] = {
    # types/descriptor.proto
    "containerd.types.Descriptor": {
        "media_type": (1, F.TYPE_STRING, OPTIONAL, None),
        "digest": (2, F.TYPE_STRING, OPTIONAL, None),
        "size": (3, F.TYPE_INT64, OPTIONAL, None),
        "annotations": (5, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
    },
    # types/mount.proto
    "containerd.types.Mount": {
        "type": (1, F.TYPE_STRING, OPTIONAL, None),
        "source": (2, F.TYPE_STRING, OPTIONAL, None),
        "target": (3, F.TYPE_STRING, OPTIONAL, None),
        "options": (4, F.TYPE_STRING, REPEATED, None),
    },
    # types/platform.proto
    "containerd.types.Platform": {
        "os": (1, F.TYPE_STRING, OPTIONAL, None),
        "architecture": (2, F.TYPE_STRING, OPTIONAL, None),
        "variant": (3, F.TYPE_STRING, OPTIONAL, None),
        "os_version": (4, F.TYPE_STRING, OPTIONAL, None),
    },
    # types/metrics.proto
    "containerd.types.Metric": {
        "timestamp": (1, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
        "id": (2, F.TYPE_STRING, OPTIONAL, None),
        "data": (3, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
    },
    # types/event.proto
    "containerd.types.Envelope": {
        "timestamp": (1, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
        "namespace": (2, F.TYPE_STRING, OPTIONAL, None),
        "topic": (3, F.TYPE_STRING, OPTIONAL, None),
        "event": (4, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
    },
    # types/task/task.proto
    "containerd.v1.types.Process": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "id": (2, F.TYPE_STRING, OPTIONAL, None),
        "pid": (3, F.TYPE_UINT32, OPTIONAL, None),
        "status": (4, F.TYPE_ENUM, OPTIONAL, "containerd.v1.types.Status"),
        "stdin": (5, F.TYPE_STRING, OPTIONAL, None),
        "stdout": (6, F.TYPE_STRING, OPTIONAL, None),
        "stderr": (7, F.TYPE_STRING, OPTIONAL, None),
        "terminal": (8, F.TYPE_BOOL, OPTIONAL, None),
        "exit_status": (9, F.TYPE_UINT32, OPTIONAL, None),
        "exited_at": (10, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
    },
    "containerd.v1.types.ProcessInfo": {
        "pid": (1, F.TYPE_UINT32, OPTIONAL, None),
        "info": (2, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
    },
    # google/rpc/status.proto
    "google.rpc.Status": {
        "code": (1, F.TYPE_INT32, OPTIONAL, None),
        "message": (2, F.TYPE_STRING, OPTIONAL, None),
        "details": (3, F.TYPE_MESSAGE, REPEATED, "google.protobuf.Any"),
    },
    # ttrpc's envelope, github.com/containerd/ttrpc request.proto (v1.2.x; v1.1.1's types.go
    # declares the same fields)
    "ttrpc.Request": {
        "service": (1, F.TYPE_STRING, OPTIONAL, None),
        "method": (2, F.TYPE_STRING, OPTIONAL, None),
        "payload": (3, F.TYPE_BYTES, OPTIONAL, None),
        "timeout_nano": (4, F.TYPE_INT64, OPTIONAL, None),
        "metadata": (5, F.TYPE_MESSAGE, REPEATED, "ttrpc.KeyValue"),
    },
    "ttrpc.Response": {
        "status": (1, F.TYPE_MESSAGE, OPTIONAL, "google.rpc.Status"),
        "payload": (2, F.TYPE_BYTES, OPTIONAL, None),
    },
    "ttrpc.StringList": {
        "list": (1, F.TYPE_STRING, REPEATED, None),
    },
    "ttrpc.KeyValue": {
        "key": (1, F.TYPE_STRING, OPTIONAL, None),
        "value": (2, F.TYPE_STRING, OPTIONAL, None),
    },
    # services/content/v1/content.proto
    "containerd.services.content.v1.Info": {
        "digest": (1, F.TYPE_STRING, OPTIONAL, None),
        "size": (2, F.TYPE_INT64, OPTIONAL, None),
        "created_at": (3, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
        "updated_at": (4, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
        "labels": (5, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
    },
    "containerd.services.content.v1.InfoRequest": {
        "digest": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.content.v1.InfoResponse": {
        "info": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.content.v1.Info"),
    },
    "containerd.services.content.v1.UpdateRequest": {
        "info": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.content.v1.Info"),
        "update_mask": (2, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.FieldMask"),
    },
    "containerd.services.content.v1.UpdateResponse": {
        "info": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.content.v1.Info"),
    },
    "containerd.services.content.v1.ListContentRequest": {
        "filters": (1, F.TYPE_STRING, REPEATED, None),
    },
    "containerd.services.content.v1.ListContentResponse": {
        "info": (1, F.TYPE_MESSAGE, REPEATED, "containerd.services.content.v1.Info"),
    },
    "containerd.services.content.v1.DeleteContentRequest": {
        "digest": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.content.v1.ReadContentRequest": {
        "digest": (1, F.TYPE_STRING, OPTIONAL, None),
        "offset": (2, F.TYPE_INT64, OPTIONAL, None),
        "size": (3, F.TYPE_INT64, OPTIONAL, None),
    },
    "containerd.services.content.v1.ReadContentResponse": {
        "offset": (1, F.TYPE_INT64, OPTIONAL, None),
        "data": (2, F.TYPE_BYTES, OPTIONAL, None),
    },
    "containerd.services.content.v1.Status": {
        "started_at": (1, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
        "updated_at": (2, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
        "ref": (3, F.TYPE_STRING, OPTIONAL, None),
        "offset": (4, F.TYPE_INT64, OPTIONAL, None),
        "total": (5, F.TYPE_INT64, OPTIONAL, None),
        "expected": (6, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.content.v1.StatusRequest": {
        "ref": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.content.v1.StatusResponse": {
        "status": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.content.v1.Status"),
    },
    "containerd.services.content.v1.ListStatusesRequest": {
        "filters": (1, F.TYPE_STRING, REPEATED, None),
    },
    "containerd.services.content.v1.ListStatusesResponse": {
        "statuses": (1, F.TYPE_MESSAGE, REPEATED, "containerd.services.content.v1.Status"),
    },
    "containerd.services.content.v1.WriteContentRequest": {
        "action": (1, F.TYPE_ENUM, OPTIONAL, "containerd.services.content.v1.WriteAction"),
        "ref": (2, F.TYPE_STRING, OPTIONAL, None),
        "total": (3, F.TYPE_INT64, OPTIONAL, None),
        "expected": (4, F.TYPE_STRING, OPTIONAL, None),
        "offset": (5, F.TYPE_INT64, OPTIONAL, None),
        "data": (6, F.TYPE_BYTES, OPTIONAL, None),
        "labels": (7, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
    },
    "containerd.services.content.v1.WriteContentResponse": {
        "action": (1, F.TYPE_ENUM, OPTIONAL, "containerd.services.content.v1.WriteAction"),
        "started_at": (2, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
        "updated_at": (3, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
        "offset": (4, F.TYPE_INT64, OPTIONAL, None),
        "total": (5, F.TYPE_INT64, OPTIONAL, None),
        "digest": (6, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.content.v1.AbortRequest": {
        "ref": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    # services/snapshots/v1/snapshots.proto
    "containerd.services.snapshots.v1.PrepareSnapshotRequest": {
        "snapshotter": (1, F.TYPE_STRING, OPTIONAL, None),
        "key": (2, F.TYPE_STRING, OPTIONAL, None),
        "parent": (3, F.TYPE_STRING, OPTIONAL, None),
        "labels": (4, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
    },
    "containerd.services.snapshots.v1.PrepareSnapshotResponse": {
        "mounts": (1, F.TYPE_MESSAGE, REPEATED, "containerd.types.Mount"),
    },
    "containerd.services.snapshots.v1.ViewSnapshotRequest": {
        "snapshotter": (1, F.TYPE_STRING, OPTIONAL, None),
        "key": (2, F.TYPE_STRING, OPTIONAL, None),
        "parent": (3, F.TYPE_STRING, OPTIONAL, None),
        "labels": (4, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
    },
    "containerd.services.snapshots.v1.ViewSnapshotResponse": {
        "mounts": (1, F.TYPE_MESSAGE, REPEATED, "containerd.types.Mount"),
    },
    "containerd.services.snapshots.v1.MountsRequest": {
        "snapshotter": (1, F.TYPE_STRING, OPTIONAL, None),
        "key": (2, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.snapshots.v1.MountsResponse": {
        "mounts": (1, F.TYPE_MESSAGE, REPEATED, "containerd.types.Mount"),
    },
    "containerd.services.snapshots.v1.RemoveSnapshotRequest": {
        "snapshotter": (1, F.TYPE_STRING, OPTIONAL, None),
        "key": (2, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.snapshots.v1.CommitSnapshotRequest": {
        "snapshotter": (1, F.TYPE_STRING, OPTIONAL, None),
        "name": (2, F.TYPE_STRING, OPTIONAL, None),
        "key": (3, F.TYPE_STRING, OPTIONAL, None),
        "labels": (4, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
    },
    "containerd.services.snapshots.v1.StatSnapshotRequest": {
        "snapshotter": (1, F.TYPE_STRING, OPTIONAL, None),
        "key": (2, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.snapshots.v1.Info": {
        "name": (1, F.TYPE_STRING, OPTIONAL, None),
        "parent": (2, F.TYPE_STRING, OPTIONAL, None),
        "kind": (3, F.TYPE_ENUM, OPTIONAL, "containerd.services.snapshots.v1.Kind"),
        "created_at": (4, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
        "updated_at": (5, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
        "labels": (6, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
    },
    "containerd.services.snapshots.v1.StatSnapshotResponse": {
        "info": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.snapshots.v1.Info"),
    },
    "containerd.services.snapshots.v1.UpdateSnapshotRequest": {
        "snapshotter": (1, F.TYPE_STRING, OPTIONAL, None),
        "info": (2, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.snapshots.v1.Info"),
        "update_mask": (3, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.FieldMask"),
    },
    "containerd.services.snapshots.v1.UpdateSnapshotResponse": {
        "info": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.snapshots.v1.Info"),
    },
    "containerd.services.snapshots.v1.ListSnapshotsRequest": {
        "snapshotter": (1, F.TYPE_STRING, OPTIONAL, None),
        "filters": (2, F.TYPE_STRING, REPEATED, None),
    },
    "containerd.services.snapshots.v1.ListSnapshotsResponse": {
        "info": (1, F.TYPE_MESSAGE, REPEATED, "containerd.services.snapshots.v1.Info"),
    },
    "containerd.services.snapshots.v1.UsageRequest": {
        "snapshotter": (1, F.TYPE_STRING, OPTIONAL, None),
        "key": (2, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.snapshots.v1.UsageResponse": {
        "size": (1, F.TYPE_INT64, OPTIONAL, None),
        "inodes": (2, F.TYPE_INT64, OPTIONAL, None),
    },
    "containerd.services.snapshots.v1.CleanupRequest": {
        "snapshotter": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    # services/diff/v1/diff.proto
    "containerd.services.diff.v1.ApplyRequest": {
        "diff": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.types.Descriptor"),
        "mounts": (2, F.TYPE_MESSAGE, REPEATED, "containerd.types.Mount"),
        "payloads": (3, F.TYPE_MESSAGE, REPEATED, "map<string, google.protobuf.Any>"),
        "sync_fs": (4, F.TYPE_BOOL, OPTIONAL, None),
    },
    "containerd.services.diff.v1.ApplyResponse": {
        "applied": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.types.Descriptor"),
    },
    "containerd.services.diff.v1.DiffRequest": {
        "left": (1, F.TYPE_MESSAGE, REPEATED, "containerd.types.Mount"),
        "right": (2, F.TYPE_MESSAGE, REPEATED, "containerd.types.Mount"),
        "media_type": (3, F.TYPE_STRING, OPTIONAL, None),
        "ref": (4, F.TYPE_STRING, OPTIONAL, None),
        "labels": (5, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
        "source_date_epoch": (6, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
    },
    "containerd.services.diff.v1.DiffResponse": {
        "diff": (3, F.TYPE_MESSAGE, OPTIONAL, "containerd.types.Descriptor"),
    },
    # services/images/v1/images.proto
    "containerd.services.images.v1.Image": {
        "name": (1, F.TYPE_STRING, OPTIONAL, None),
        "labels": (2, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
        "target": (3, F.TYPE_MESSAGE, OPTIONAL, "containerd.types.Descriptor"),
        "created_at": (7, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
        "updated_at": (8, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
    },
    "containerd.services.images.v1.GetImageRequest": {
        "name": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.images.v1.GetImageResponse": {
        "image": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.images.v1.Image"),
    },
    "containerd.services.images.v1.CreateImageRequest": {
        "image": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.images.v1.Image"),
        "source_date_epoch": (2, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
    },
    "containerd.services.images.v1.CreateImageResponse": {
        "image": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.images.v1.Image"),
    },
    "containerd.services.images.v1.UpdateImageRequest": {
        "image": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.images.v1.Image"),
        "update_mask": (2, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.FieldMask"),
        "source_date_epoch": (3, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
    },
    "containerd.services.images.v1.UpdateImageResponse": {
        "image": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.images.v1.Image"),
    },
    "containerd.services.images.v1.ListImagesRequest": {
        "filters": (1, F.TYPE_STRING, REPEATED, None),
    },
    "containerd.services.images.v1.ListImagesResponse": {
        "images": (1, F.TYPE_MESSAGE, REPEATED, "containerd.services.images.v1.Image"),
    },
    "containerd.services.images.v1.DeleteImageRequest": {
        "name": (1, F.TYPE_STRING, OPTIONAL, None),
        "sync": (2, F.TYPE_BOOL, OPTIONAL, None),
        "target": (3, F.TYPE_MESSAGE, OPTIONAL, "containerd.types.Descriptor"),
    },
    # services/containers/v1/containers.proto
    "containerd.services.containers.v1.Container": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "labels": (2, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
        "image": (3, F.TYPE_STRING, OPTIONAL, None),
        "runtime": (4, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.containers.v1.Container.Runtime"),
        "spec": (5, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
        "snapshotter": (6, F.TYPE_STRING, OPTIONAL, None),
        "snapshot_key": (7, F.TYPE_STRING, OPTIONAL, None),
        "created_at": (8, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
        "updated_at": (9, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
        "extensions": (10, F.TYPE_MESSAGE, REPEATED, "map<string, google.protobuf.Any>"),
        "sandbox": (11, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.containers.v1.Container.Runtime": {
        "name": (1, F.TYPE_STRING, OPTIONAL, None),
        "options": (2, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
    },
    "containerd.services.containers.v1.GetContainerRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.containers.v1.GetContainerResponse": {
        "container": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.containers.v1.Container"),
    },
    "containerd.services.containers.v1.ListContainersRequest": {
        "filters": (1, F.TYPE_STRING, REPEATED, None),
    },
    "containerd.services.containers.v1.ListContainersResponse": {
        "containers": (1, F.TYPE_MESSAGE, REPEATED, "containerd.services.containers.v1.Container"),
    },
    "containerd.services.containers.v1.CreateContainerRequest": {
        "container": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.containers.v1.Container"),
    },
    "containerd.services.containers.v1.CreateContainerResponse": {
        "container": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.containers.v1.Container"),
    },
    "containerd.services.containers.v1.UpdateContainerRequest": {
        "container": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.containers.v1.Container"),
        "update_mask": (2, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.FieldMask"),
    },
    "containerd.services.containers.v1.UpdateContainerResponse": {
        "container": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.containers.v1.Container"),
    },
    "containerd.services.containers.v1.DeleteContainerRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.containers.v1.ListContainerMessage": {
        "container": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.containers.v1.Container"),
    },
    # services/leases/v1/leases.proto
    "containerd.services.leases.v1.Lease": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "created_at": (2, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
        "labels": (3, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
    },
    "containerd.services.leases.v1.CreateRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "labels": (3, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
    },
    "containerd.services.leases.v1.CreateResponse": {
        "lease": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.leases.v1.Lease"),
    },
    "containerd.services.leases.v1.DeleteRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "sync": (2, F.TYPE_BOOL, OPTIONAL, None),
    },
    "containerd.services.leases.v1.ListRequest": {
        "filters": (1, F.TYPE_STRING, REPEATED, None),
    },
    "containerd.services.leases.v1.ListResponse": {
        "leases": (1, F.TYPE_MESSAGE, REPEATED, "containerd.services.leases.v1.Lease"),
    },
    "containerd.services.leases.v1.Resource": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "type": (2, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.leases.v1.AddResourceRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "resource": (2, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.leases.v1.Resource"),
    },
    "containerd.services.leases.v1.DeleteResourceRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "resource": (2, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.leases.v1.Resource"),
    },
    "containerd.services.leases.v1.ListResourcesRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.leases.v1.ListResourcesResponse": {
        "resources": (1, F.TYPE_MESSAGE, REPEATED, "containerd.services.leases.v1.Resource"),
    },
    # services/namespaces/v1/namespace.proto
    "containerd.services.namespaces.v1.Namespace": {
        "name": (1, F.TYPE_STRING, OPTIONAL, None),
        "labels": (2, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
    },
    "containerd.services.namespaces.v1.GetNamespaceRequest": {
        "name": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.namespaces.v1.GetNamespaceResponse": {
        "namespace": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.namespaces.v1.Namespace"),
    },
    "containerd.services.namespaces.v1.ListNamespacesRequest": {
        "filter": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.namespaces.v1.ListNamespacesResponse": {
        "namespaces": (1, F.TYPE_MESSAGE, REPEATED, "containerd.services.namespaces.v1.Namespace"),
    },
    "containerd.services.namespaces.v1.CreateNamespaceRequest": {
        "namespace": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.namespaces.v1.Namespace"),
    },
    "containerd.services.namespaces.v1.CreateNamespaceResponse": {
        "namespace": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.namespaces.v1.Namespace"),
    },
    "containerd.services.namespaces.v1.UpdateNamespaceRequest": {
        "namespace": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.namespaces.v1.Namespace"),
        "update_mask": (2, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.FieldMask"),
    },
    "containerd.services.namespaces.v1.UpdateNamespaceResponse": {
        "namespace": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.namespaces.v1.Namespace"),
    },
    "containerd.services.namespaces.v1.DeleteNamespaceRequest": {
        "name": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    # services/events/v1/events.proto
    "containerd.services.events.v1.PublishRequest": {
        "topic": (1, F.TYPE_STRING, OPTIONAL, None),
        "event": (2, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
    },
    "containerd.services.events.v1.ForwardRequest": {
        "envelope": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.types.Envelope"),
    },
    "containerd.services.events.v1.SubscribeRequest": {
        "filters": (1, F.TYPE_STRING, REPEATED, None),
    },
    # services/ttrpc/events/v1/events.proto
    "containerd.services.events.ttrpc.v1.ForwardRequest": {
        "envelope": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.types.Envelope"),
    },
    # services/introspection/v1/introspection.proto
    "containerd.services.introspection.v1.Plugin": {
        "type": (1, F.TYPE_STRING, OPTIONAL, None),
        "id": (2, F.TYPE_STRING, OPTIONAL, None),
        "requires": (3, F.TYPE_STRING, REPEATED, None),
        "platforms": (4, F.TYPE_MESSAGE, REPEATED, "containerd.types.Platform"),
        "exports": (5, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
        "capabilities": (6, F.TYPE_STRING, REPEATED, None),
        "init_err": (7, F.TYPE_MESSAGE, OPTIONAL, "google.rpc.Status"),
    },
    "containerd.services.introspection.v1.PluginsRequest": {
        "filters": (1, F.TYPE_STRING, REPEATED, None),
    },
    "containerd.services.introspection.v1.PluginsResponse": {
        "plugins": (1, F.TYPE_MESSAGE, REPEATED, "containerd.services.introspection.v1.Plugin"),
    },
    "containerd.services.introspection.v1.ServerResponse": {
        "uuid": (1, F.TYPE_STRING, OPTIONAL, None),
        "pid": (2, F.TYPE_UINT64, OPTIONAL, None),
        "pidns": (3, F.TYPE_UINT64, OPTIONAL, None),
        "deprecations": (4, F.TYPE_MESSAGE, REPEATED, "containerd.services.introspection.v1.DeprecationWarning"),
    },
    "containerd.services.introspection.v1.DeprecationWarning": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "message": (2, F.TYPE_STRING, OPTIONAL, None),
        "last_occurrence": (3, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
    },
    "containerd.services.introspection.v1.PluginInfoRequest": {
        "type": (1, F.TYPE_STRING, OPTIONAL, None),
        "id": (2, F.TYPE_STRING, OPTIONAL, None),
        "options": (3, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
    },
    "containerd.services.introspection.v1.PluginInfoResponse": {
        "plugin": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.services.introspection.v1.Plugin"),
        "extra": (2, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
    },
    # services/version/v1/version.proto
    "containerd.services.version.v1.VersionResponse": {
        "version": (1, F.TYPE_STRING, OPTIONAL, None),
        "revision": (2, F.TYPE_STRING, OPTIONAL, None),
    },
    # services/tasks/v1/tasks.proto
    "containerd.services.tasks.v1.CreateTaskRequest": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "rootfs": (3, F.TYPE_MESSAGE, REPEATED, "containerd.types.Mount"),
        "stdin": (4, F.TYPE_STRING, OPTIONAL, None),
        "stdout": (5, F.TYPE_STRING, OPTIONAL, None),
        "stderr": (6, F.TYPE_STRING, OPTIONAL, None),
        "terminal": (7, F.TYPE_BOOL, OPTIONAL, None),
        "checkpoint": (8, F.TYPE_MESSAGE, OPTIONAL, "containerd.types.Descriptor"),
        "options": (9, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
        "runtime_path": (10, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.tasks.v1.CreateTaskResponse": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "pid": (2, F.TYPE_UINT32, OPTIONAL, None),
    },
    "containerd.services.tasks.v1.StartRequest": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "exec_id": (2, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.tasks.v1.StartResponse": {
        "pid": (1, F.TYPE_UINT32, OPTIONAL, None),
    },
    "containerd.services.tasks.v1.DeleteTaskRequest": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.tasks.v1.DeleteResponse": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "pid": (2, F.TYPE_UINT32, OPTIONAL, None),
        "exit_status": (3, F.TYPE_UINT32, OPTIONAL, None),
        "exited_at": (4, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
    },
    "containerd.services.tasks.v1.DeleteProcessRequest": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "exec_id": (2, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.tasks.v1.GetRequest": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "exec_id": (2, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.tasks.v1.GetResponse": {
        "process": (1, F.TYPE_MESSAGE, OPTIONAL, "containerd.v1.types.Process"),
    },
    "containerd.services.tasks.v1.ListTasksRequest": {
        "filter": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.tasks.v1.ListTasksResponse": {
        "tasks": (1, F.TYPE_MESSAGE, REPEATED, "containerd.v1.types.Process"),
    },
    "containerd.services.tasks.v1.KillRequest": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "exec_id": (2, F.TYPE_STRING, OPTIONAL, None),
        "signal": (3, F.TYPE_UINT32, OPTIONAL, None),
        "all": (4, F.TYPE_BOOL, OPTIONAL, None),
    },
    "containerd.services.tasks.v1.ExecProcessRequest": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "stdin": (2, F.TYPE_STRING, OPTIONAL, None),
        "stdout": (3, F.TYPE_STRING, OPTIONAL, None),
        "stderr": (4, F.TYPE_STRING, OPTIONAL, None),
        "terminal": (5, F.TYPE_BOOL, OPTIONAL, None),
        "spec": (6, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
        "exec_id": (7, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.tasks.v1.ExecProcessResponse": {},
    "containerd.services.tasks.v1.ResizePtyRequest": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "exec_id": (2, F.TYPE_STRING, OPTIONAL, None),
        "width": (3, F.TYPE_UINT32, OPTIONAL, None),
        "height": (4, F.TYPE_UINT32, OPTIONAL, None),
    },
    "containerd.services.tasks.v1.CloseIORequest": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "exec_id": (2, F.TYPE_STRING, OPTIONAL, None),
        "stdin": (3, F.TYPE_BOOL, OPTIONAL, None),
    },
    "containerd.services.tasks.v1.PauseTaskRequest": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.tasks.v1.ResumeTaskRequest": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.tasks.v1.ListPidsRequest": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.tasks.v1.ListPidsResponse": {
        "processes": (1, F.TYPE_MESSAGE, REPEATED, "containerd.v1.types.ProcessInfo"),
    },
    "containerd.services.tasks.v1.CheckpointTaskRequest": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "parent_checkpoint": (2, F.TYPE_STRING, OPTIONAL, None),
        "options": (3, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
    },
    "containerd.services.tasks.v1.CheckpointTaskResponse": {
        "descriptors": (1, F.TYPE_MESSAGE, REPEATED, "containerd.types.Descriptor"),
    },
    "containerd.services.tasks.v1.UpdateTaskRequest": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "resources": (2, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
        "annotations": (3, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
    },
    "containerd.services.tasks.v1.MetricsRequest": {
        "filters": (1, F.TYPE_STRING, REPEATED, None),
    },
    "containerd.services.tasks.v1.MetricsResponse": {
        "metrics": (1, F.TYPE_MESSAGE, REPEATED, "containerd.types.Metric"),
    },
    "containerd.services.tasks.v1.WaitRequest": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "exec_id": (2, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.services.tasks.v1.WaitResponse": {
        "exit_status": (1, F.TYPE_UINT32, OPTIONAL, None),
        "exited_at": (2, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
    },
    # runtime/task/v2/shim.proto
    "containerd.task.v2.CreateTaskRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "bundle": (2, F.TYPE_STRING, OPTIONAL, None),
        "rootfs": (3, F.TYPE_MESSAGE, REPEATED, "containerd.types.Mount"),
        "terminal": (4, F.TYPE_BOOL, OPTIONAL, None),
        "stdin": (5, F.TYPE_STRING, OPTIONAL, None),
        "stdout": (6, F.TYPE_STRING, OPTIONAL, None),
        "stderr": (7, F.TYPE_STRING, OPTIONAL, None),
        "checkpoint": (8, F.TYPE_STRING, OPTIONAL, None),
        "parent_checkpoint": (9, F.TYPE_STRING, OPTIONAL, None),
        "options": (10, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
    },
    "containerd.task.v2.CreateTaskResponse": {
        "pid": (1, F.TYPE_UINT32, OPTIONAL, None),
    },
    "containerd.task.v2.DeleteRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "exec_id": (2, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.task.v2.DeleteResponse": {
        "pid": (1, F.TYPE_UINT32, OPTIONAL, None),
        "exit_status": (2, F.TYPE_UINT32, OPTIONAL, None),
        "exited_at": (3, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
    },
    "containerd.task.v2.ExecProcessRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "exec_id": (2, F.TYPE_STRING, OPTIONAL, None),
        "terminal": (3, F.TYPE_BOOL, OPTIONAL, None),
        "stdin": (4, F.TYPE_STRING, OPTIONAL, None),
        "stdout": (5, F.TYPE_STRING, OPTIONAL, None),
        "stderr": (6, F.TYPE_STRING, OPTIONAL, None),
        "spec": (7, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
    },
    "containerd.task.v2.ExecProcessResponse": {},
    "containerd.task.v2.ResizePtyRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "exec_id": (2, F.TYPE_STRING, OPTIONAL, None),
        "width": (3, F.TYPE_UINT32, OPTIONAL, None),
        "height": (4, F.TYPE_UINT32, OPTIONAL, None),
    },
    "containerd.task.v2.StateRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "exec_id": (2, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.task.v2.StateResponse": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "bundle": (2, F.TYPE_STRING, OPTIONAL, None),
        "pid": (3, F.TYPE_UINT32, OPTIONAL, None),
        "status": (4, F.TYPE_ENUM, OPTIONAL, "containerd.v1.types.Status"),
        "stdin": (5, F.TYPE_STRING, OPTIONAL, None),
        "stdout": (6, F.TYPE_STRING, OPTIONAL, None),
        "stderr": (7, F.TYPE_STRING, OPTIONAL, None),
        "terminal": (8, F.TYPE_BOOL, OPTIONAL, None),
        "exit_status": (9, F.TYPE_UINT32, OPTIONAL, None),
        "exited_at": (10, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
        "exec_id": (11, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.task.v2.KillRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "exec_id": (2, F.TYPE_STRING, OPTIONAL, None),
        "signal": (3, F.TYPE_UINT32, OPTIONAL, None),
        "all": (4, F.TYPE_BOOL, OPTIONAL, None),
    },
    "containerd.task.v2.CloseIORequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "exec_id": (2, F.TYPE_STRING, OPTIONAL, None),
        "stdin": (3, F.TYPE_BOOL, OPTIONAL, None),
    },
    "containerd.task.v2.PidsRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.task.v2.PidsResponse": {
        "processes": (1, F.TYPE_MESSAGE, REPEATED, "containerd.v1.types.ProcessInfo"),
    },
    "containerd.task.v2.CheckpointTaskRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "path": (2, F.TYPE_STRING, OPTIONAL, None),
        "options": (3, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
    },
    "containerd.task.v2.UpdateTaskRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "resources": (2, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
        "annotations": (3, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
    },
    "containerd.task.v2.StartRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "exec_id": (2, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.task.v2.StartResponse": {
        "pid": (1, F.TYPE_UINT32, OPTIONAL, None),
    },
    "containerd.task.v2.WaitRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "exec_id": (2, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.task.v2.WaitResponse": {
        "exit_status": (1, F.TYPE_UINT32, OPTIONAL, None),
        "exited_at": (2, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
    },
    "containerd.task.v2.StatsRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.task.v2.StatsResponse": {
        "stats": (1, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
    },
    "containerd.task.v2.ConnectRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.task.v2.ConnectResponse": {
        "shim_pid": (1, F.TYPE_UINT32, OPTIONAL, None),
        "task_pid": (2, F.TYPE_UINT32, OPTIONAL, None),
        "version": (3, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.task.v2.ShutdownRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "now": (2, F.TYPE_BOOL, OPTIONAL, None),
    },
    "containerd.task.v2.PauseRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.task.v2.ResumeRequest": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    # grpc/health/v1/health.proto
    "grpc.health.v1.HealthCheckRequest": {
        "service": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "grpc.health.v1.HealthCheckResponse": {
        "status": (1, F.TYPE_ENUM, OPTIONAL, "grpc.health.v1.HealthCheckResponse.ServingStatus"),
    },
}

# Every enum declared in those files, as value name -> number.
ENUMS: dict[str, dict[str, int]] = {
    # types/task/task.proto
    "containerd.v1.types.Status": {"UNKNOWN": 0, "CREATED": 1, "RUNNING": 2, "STOPPED": 3, "PAUSED": 4, "PAUSING": 5},
    # services/content/v1/content.proto
    "containerd.services.content.v1.WriteAction": {"STAT": 0, "WRITE": 1, "COMMIT": 2},
    # services/snapshots/v1/snapshots.proto
    "containerd.services.snapshots.v1.Kind": {"UNKNOWN": 0, "VIEW": 1, "ACTIVE": 2, "COMMITTED": 3},
    # grpc/health/v1/health.proto
    "grpc.health.v1.HealthCheckResponse.ServingStatus": {"UNKNOWN": 0, "SERVING": 1, "NOT_SERVING": 2, "SERVICE_UNKNOWN": 3},
}

# Event payloads packed into Envelope.event; the Any type URL is the message's full name.
EVENTS: dict[str, Message] = {
    # events/container.proto (package containerd.events)
    "containerd.events.ContainerCreate": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "image": (2, F.TYPE_STRING, OPTIONAL, None),
        "runtime": (3, F.TYPE_MESSAGE, OPTIONAL, "containerd.events.ContainerCreate.Runtime"),
    },
    "containerd.events.ContainerCreate.Runtime": {
        "name": (1, F.TYPE_STRING, OPTIONAL, None),
        "options": (2, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
    },
    "containerd.events.ContainerUpdate": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
        "image": (2, F.TYPE_STRING, OPTIONAL, None),
        "labels": (3, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
        "snapshot_key": (4, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.events.ContainerDelete": {
        "id": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    # events/content.proto (package containerd.events)
    "containerd.events.ContentDelete": {
        "digest": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    # events/image.proto (package containerd.services.images.v1)
    "containerd.services.images.v1.ImageCreate": {
        "name": (1, F.TYPE_STRING, OPTIONAL, None),
        "labels": (2, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
    },
    "containerd.services.images.v1.ImageUpdate": {
        "name": (1, F.TYPE_STRING, OPTIONAL, None),
        "labels": (2, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
    },
    "containerd.services.images.v1.ImageDelete": {
        "name": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    # events/namespace.proto (package containerd.events)
    "containerd.events.NamespaceCreate": {
        "name": (1, F.TYPE_STRING, OPTIONAL, None),
        "labels": (2, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
    },
    "containerd.events.NamespaceUpdate": {
        "name": (1, F.TYPE_STRING, OPTIONAL, None),
        "labels": (2, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
    },
    "containerd.events.NamespaceDelete": {
        "name": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    # events/snapshot.proto (package containerd.events)
    "containerd.events.SnapshotPrepare": {
        "key": (1, F.TYPE_STRING, OPTIONAL, None),
        "parent": (2, F.TYPE_STRING, OPTIONAL, None),
        "snapshotter": (5, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.events.SnapshotCommit": {
        "key": (1, F.TYPE_STRING, OPTIONAL, None),
        "name": (2, F.TYPE_STRING, OPTIONAL, None),
        "snapshotter": (5, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.events.SnapshotRemove": {
        "key": (1, F.TYPE_STRING, OPTIONAL, None),
        "snapshotter": (5, F.TYPE_STRING, OPTIONAL, None),
    },
    # events/task.proto (package containerd.events)
    "containerd.events.TaskCreate": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "bundle": (2, F.TYPE_STRING, OPTIONAL, None),
        "rootfs": (3, F.TYPE_MESSAGE, REPEATED, "containerd.types.Mount"),
        "io": (4, F.TYPE_MESSAGE, OPTIONAL, "containerd.events.TaskIO"),
        "checkpoint": (5, F.TYPE_STRING, OPTIONAL, None),
        "pid": (6, F.TYPE_UINT32, OPTIONAL, None),
    },
    "containerd.events.TaskStart": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "pid": (2, F.TYPE_UINT32, OPTIONAL, None),
    },
    "containerd.events.TaskDelete": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "pid": (2, F.TYPE_UINT32, OPTIONAL, None),
        "exit_status": (3, F.TYPE_UINT32, OPTIONAL, None),
        "exited_at": (4, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
        "id": (5, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.events.TaskIO": {
        "stdin": (1, F.TYPE_STRING, OPTIONAL, None),
        "stdout": (2, F.TYPE_STRING, OPTIONAL, None),
        "stderr": (3, F.TYPE_STRING, OPTIONAL, None),
        "terminal": (4, F.TYPE_BOOL, OPTIONAL, None),
    },
    "containerd.events.TaskExit": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "id": (2, F.TYPE_STRING, OPTIONAL, None),
        "pid": (3, F.TYPE_UINT32, OPTIONAL, None),
        "exit_status": (4, F.TYPE_UINT32, OPTIONAL, None),
        "exited_at": (5, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
    },
    "containerd.events.TaskOOM": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.events.TaskExecAdded": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "exec_id": (2, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.events.TaskExecStarted": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "exec_id": (2, F.TYPE_STRING, OPTIONAL, None),
        "pid": (3, F.TYPE_UINT32, OPTIONAL, None),
    },
    "containerd.events.TaskPaused": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.events.TaskResumed": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.events.TaskCheckpointed": {
        "container_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "checkpoint": (2, F.TYPE_STRING, OPTIONAL, None),
    },
    # events/sandbox.proto (package containerd.events)
    "containerd.events.SandboxCreate": {
        "sandbox_id": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.events.SandboxStart": {
        "sandbox_id": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.events.SandboxExit": {
        "sandbox_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "exit_status": (2, F.TYPE_UINT32, OPTIONAL, None),
        "exited_at": (3, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
    },
}

# Other containerd types: checked only if api/ declares them. The types/ entries are 1.7
# types no RPC above references (runc options travel inside Any); the envelopes are the
# 1.6 ones that 1.7 replaced with containerd.types.Envelope.
OPTIONAL_MESSAGES: dict[str, Message] = {
    # types/introspection.proto
    "containerd.types.RuntimeRequest": {
        "runtime_path": (1, F.TYPE_STRING, OPTIONAL, None),
        "options": (2, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
    },
    "containerd.types.RuntimeVersion": {
        "version": (1, F.TYPE_STRING, OPTIONAL, None),
        "revision": (2, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.types.RuntimeInfo": {
        "name": (1, F.TYPE_STRING, OPTIONAL, None),
        "version": (2, F.TYPE_MESSAGE, OPTIONAL, "containerd.types.RuntimeVersion"),
        "options": (3, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
        "features": (4, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
        "annotations": (5, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
    },
    # types/sandbox.proto
    "containerd.types.Sandbox": {
        "sandbox_id": (1, F.TYPE_STRING, OPTIONAL, None),
        "runtime": (2, F.TYPE_MESSAGE, OPTIONAL, "containerd.types.Sandbox.Runtime"),
        "spec": (3, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
        "labels": (4, F.TYPE_MESSAGE, REPEATED, "map<string, string>"),
        "created_at": (5, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
        "updated_at": (6, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
        "extensions": (7, F.TYPE_MESSAGE, REPEATED, "map<string, google.protobuf.Any>"),
        "sandboxer": (10, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.types.Sandbox.Runtime": {
        "name": (1, F.TYPE_STRING, OPTIONAL, None),
        "options": (2, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
    },
    # types/runc/options/oci.proto
    # runtime/linux/runctypes/runc.proto (the legacy runtime's options)
    "containerd.linux.runc.RuncOptions": {
        "runtime": (1, F.TYPE_STRING, OPTIONAL, None),
        "runtime_root": (2, F.TYPE_STRING, OPTIONAL, None),
        "criu_path": (3, F.TYPE_STRING, OPTIONAL, None),
        "systemd_cgroup": (4, F.TYPE_BOOL, OPTIONAL, None),
    },
    "containerd.runc.v1.Options": {
        "no_pivot_root": (1, F.TYPE_BOOL, OPTIONAL, None),
        "no_new_keyring": (2, F.TYPE_BOOL, OPTIONAL, None),
        "shim_cgroup": (3, F.TYPE_STRING, OPTIONAL, None),
        "io_uid": (4, F.TYPE_UINT32, OPTIONAL, None),
        "io_gid": (5, F.TYPE_UINT32, OPTIONAL, None),
        "binary_name": (6, F.TYPE_STRING, OPTIONAL, None),
        "root": (7, F.TYPE_STRING, OPTIONAL, None),
        # 1.7 reserves 8; 1.6.20 (the shim Debian ships) still reads criu_path
        # there, so we keep the union. 1.7 peers skip it as an unknown field.
        "criu_path": (8, F.TYPE_STRING, OPTIONAL, None),
        "systemd_cgroup": (9, F.TYPE_BOOL, OPTIONAL, None),
        "criu_image_path": (10, F.TYPE_STRING, OPTIONAL, None),
        "criu_work_path": (11, F.TYPE_STRING, OPTIONAL, None),
        "task_api_address": (12, F.TYPE_STRING, OPTIONAL, None),
        "task_api_version": (13, F.TYPE_UINT32, OPTIONAL, None),
    },
    "containerd.runc.v1.CheckpointOptions": {
        "exit": (1, F.TYPE_BOOL, OPTIONAL, None),
        "open_tcp": (2, F.TYPE_BOOL, OPTIONAL, None),
        "external_unix_sockets": (3, F.TYPE_BOOL, OPTIONAL, None),
        "terminal": (4, F.TYPE_BOOL, OPTIONAL, None),
        "file_locks": (5, F.TYPE_BOOL, OPTIONAL, None),
        "empty_namespaces": (6, F.TYPE_STRING, REPEATED, None),
        "cgroups_mode": (7, F.TYPE_STRING, OPTIONAL, None),
        "image_path": (8, F.TYPE_STRING, OPTIONAL, None),
        "work_path": (9, F.TYPE_STRING, OPTIONAL, None),
    },
    "containerd.runc.v1.ProcessDetails": {
        "exec_id": (1, F.TYPE_STRING, OPTIONAL, None),
    },
    # containerd v1.6.20 api/services/events/v1/events.proto
    "containerd.services.events.v1.Envelope": {
        "timestamp": (1, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
        "namespace": (2, F.TYPE_STRING, OPTIONAL, None),
        "topic": (3, F.TYPE_STRING, OPTIONAL, None),
        "event": (4, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
    },
    # containerd v1.6.20 api/services/ttrpc/events/v1/events.proto
    "containerd.services.events.ttrpc.v1.Envelope": {
        "timestamp": (1, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Timestamp"),
        "namespace": (2, F.TYPE_STRING, OPTIONAL, None),
        "topic": (3, F.TYPE_STRING, OPTIONAL, None),
        "event": (4, F.TYPE_MESSAGE, OPTIONAL, "google.protobuf.Any"),
    },
}

# The cgroup statistics a shim's Task.Stats (and so Tasks.Metrics) returns in an Any whose type
# URL is the bare full name: "io.containerd.cgroups.v1.Metrics" on a cgroup v1 host,
# "io.containerd.cgroups.v2.Metrics" on a unified one.  Transcribed from github.com/containerd/
# cgroups v3.1.3 as vendored by containerd v2.3.4; cgroups v1.0.4 (containerd 1.6.20) and v3.0.2
# (containerd 1.7.34) declare the same messages and fields except those marked "not in v3.0.2"
# (added in v3.0.3 to v3.1.3).
CGROUP_STATS: dict[str, Message] = {
    # cgroups v3.1.3 cgroup1/stats/metrics.proto (package io.containerd.cgroups.v1)
    "io.containerd.cgroups.v1.Metrics": {
        "hugetlb": (1, F.TYPE_MESSAGE, REPEATED, "io.containerd.cgroups.v1.HugetlbStat"),
        "pids": (2, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v1.PidsStat"),
        "cpu": (3, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v1.CPUStat"),
        "memory": (4, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v1.MemoryStat"),
        "blkio": (5, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v1.BlkIOStat"),
        "rdma": (6, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v1.RdmaStat"),
        "network": (7, F.TYPE_MESSAGE, REPEATED, "io.containerd.cgroups.v1.NetworkStat"),
        "cgroup_stats": (8, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v1.CgroupStats"),
        "memory_oom_control": (9, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v1.MemoryOomControl"),
    },
    "io.containerd.cgroups.v1.HugetlbStat": {
        "usage": (1, F.TYPE_UINT64, OPTIONAL, None),
        "max": (2, F.TYPE_UINT64, OPTIONAL, None),
        "failcnt": (3, F.TYPE_UINT64, OPTIONAL, None),
        "pagesize": (4, F.TYPE_STRING, OPTIONAL, None),
    },
    "io.containerd.cgroups.v1.PidsStat": {
        "current": (1, F.TYPE_UINT64, OPTIONAL, None),
        "limit": (2, F.TYPE_UINT64, OPTIONAL, None),
    },
    "io.containerd.cgroups.v1.CPUStat": {
        "usage": (1, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v1.CPUUsage"),
        "throttling": (2, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v1.Throttle"),
    },
    "io.containerd.cgroups.v1.CPUUsage": {
        "total": (1, F.TYPE_UINT64, OPTIONAL, None),
        "kernel": (2, F.TYPE_UINT64, OPTIONAL, None),
        "user": (3, F.TYPE_UINT64, OPTIONAL, None),
        "per_cpu": (4, F.TYPE_UINT64, REPEATED, None),
    },
    "io.containerd.cgroups.v1.Throttle": {
        "periods": (1, F.TYPE_UINT64, OPTIONAL, None),
        "throttled_periods": (2, F.TYPE_UINT64, OPTIONAL, None),
        "throttled_time": (3, F.TYPE_UINT64, OPTIONAL, None),
    },
    "io.containerd.cgroups.v1.MemoryStat": {
        "cache": (1, F.TYPE_UINT64, OPTIONAL, None),
        "rss": (2, F.TYPE_UINT64, OPTIONAL, None),
        "rss_huge": (3, F.TYPE_UINT64, OPTIONAL, None),
        "mapped_file": (4, F.TYPE_UINT64, OPTIONAL, None),
        "dirty": (5, F.TYPE_UINT64, OPTIONAL, None),
        "writeback": (6, F.TYPE_UINT64, OPTIONAL, None),
        "pg_pg_in": (7, F.TYPE_UINT64, OPTIONAL, None),
        "pg_pg_out": (8, F.TYPE_UINT64, OPTIONAL, None),
        "pg_fault": (9, F.TYPE_UINT64, OPTIONAL, None),
        "pg_maj_fault": (10, F.TYPE_UINT64, OPTIONAL, None),
        "inactive_anon": (11, F.TYPE_UINT64, OPTIONAL, None),
        "active_anon": (12, F.TYPE_UINT64, OPTIONAL, None),
        "inactive_file": (13, F.TYPE_UINT64, OPTIONAL, None),
        "active_file": (14, F.TYPE_UINT64, OPTIONAL, None),
        "unevictable": (15, F.TYPE_UINT64, OPTIONAL, None),
        "hierarchical_memory_limit": (16, F.TYPE_UINT64, OPTIONAL, None),
        "hierarchical_swap_limit": (17, F.TYPE_UINT64, OPTIONAL, None),
        "total_cache": (18, F.TYPE_UINT64, OPTIONAL, None),
        "total_rss": (19, F.TYPE_UINT64, OPTIONAL, None),
        "total_rss_huge": (20, F.TYPE_UINT64, OPTIONAL, None),
        "total_mapped_file": (21, F.TYPE_UINT64, OPTIONAL, None),
        "total_dirty": (22, F.TYPE_UINT64, OPTIONAL, None),
        "total_writeback": (23, F.TYPE_UINT64, OPTIONAL, None),
        "total_pg_pg_in": (24, F.TYPE_UINT64, OPTIONAL, None),
        "total_pg_pg_out": (25, F.TYPE_UINT64, OPTIONAL, None),
        "total_pg_fault": (26, F.TYPE_UINT64, OPTIONAL, None),
        "total_pg_maj_fault": (27, F.TYPE_UINT64, OPTIONAL, None),
        "total_inactive_anon": (28, F.TYPE_UINT64, OPTIONAL, None),
        "total_active_anon": (29, F.TYPE_UINT64, OPTIONAL, None),
        "total_inactive_file": (30, F.TYPE_UINT64, OPTIONAL, None),
        "total_active_file": (31, F.TYPE_UINT64, OPTIONAL, None),
        "total_unevictable": (32, F.TYPE_UINT64, OPTIONAL, None),
        "usage": (33, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v1.MemoryEntry"),
        "swap": (34, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v1.MemoryEntry"),
        "kernel": (35, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v1.MemoryEntry"),
        "kernel_tcp": (36, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v1.MemoryEntry"),
    },
    "io.containerd.cgroups.v1.MemoryEntry": {
        "limit": (1, F.TYPE_UINT64, OPTIONAL, None),
        "usage": (2, F.TYPE_UINT64, OPTIONAL, None),
        "max": (3, F.TYPE_UINT64, OPTIONAL, None),
        "failcnt": (4, F.TYPE_UINT64, OPTIONAL, None),
    },
    "io.containerd.cgroups.v1.MemoryOomControl": {
        "oom_kill_disable": (1, F.TYPE_UINT64, OPTIONAL, None),
        "under_oom": (2, F.TYPE_UINT64, OPTIONAL, None),
        "oom_kill": (3, F.TYPE_UINT64, OPTIONAL, None),
    },
    "io.containerd.cgroups.v1.BlkIOStat": {
        "io_service_bytes_recursive": (1, F.TYPE_MESSAGE, REPEATED, "io.containerd.cgroups.v1.BlkIOEntry"),
        "io_serviced_recursive": (2, F.TYPE_MESSAGE, REPEATED, "io.containerd.cgroups.v1.BlkIOEntry"),
        "io_queued_recursive": (3, F.TYPE_MESSAGE, REPEATED, "io.containerd.cgroups.v1.BlkIOEntry"),
        "io_service_time_recursive": (4, F.TYPE_MESSAGE, REPEATED, "io.containerd.cgroups.v1.BlkIOEntry"),
        "io_wait_time_recursive": (5, F.TYPE_MESSAGE, REPEATED, "io.containerd.cgroups.v1.BlkIOEntry"),
        "io_merged_recursive": (6, F.TYPE_MESSAGE, REPEATED, "io.containerd.cgroups.v1.BlkIOEntry"),
        "io_time_recursive": (7, F.TYPE_MESSAGE, REPEATED, "io.containerd.cgroups.v1.BlkIOEntry"),
        "sectors_recursive": (8, F.TYPE_MESSAGE, REPEATED, "io.containerd.cgroups.v1.BlkIOEntry"),
    },
    "io.containerd.cgroups.v1.BlkIOEntry": {
        "op": (1, F.TYPE_STRING, OPTIONAL, None),
        "device": (2, F.TYPE_STRING, OPTIONAL, None),
        "major": (3, F.TYPE_UINT64, OPTIONAL, None),
        "minor": (4, F.TYPE_UINT64, OPTIONAL, None),
        "value": (5, F.TYPE_UINT64, OPTIONAL, None),
    },
    "io.containerd.cgroups.v1.RdmaStat": {
        "current": (1, F.TYPE_MESSAGE, REPEATED, "io.containerd.cgroups.v1.RdmaEntry"),
        "limit": (2, F.TYPE_MESSAGE, REPEATED, "io.containerd.cgroups.v1.RdmaEntry"),
    },
    "io.containerd.cgroups.v1.RdmaEntry": {
        "device": (1, F.TYPE_STRING, OPTIONAL, None),
        "hca_handles": (2, F.TYPE_UINT32, OPTIONAL, None),
        "hca_objects": (3, F.TYPE_UINT32, OPTIONAL, None),
    },
    "io.containerd.cgroups.v1.NetworkStat": {
        "name": (1, F.TYPE_STRING, OPTIONAL, None),
        "rx_bytes": (2, F.TYPE_UINT64, OPTIONAL, None),
        "rx_packets": (3, F.TYPE_UINT64, OPTIONAL, None),
        "rx_errors": (4, F.TYPE_UINT64, OPTIONAL, None),
        "rx_dropped": (5, F.TYPE_UINT64, OPTIONAL, None),
        "tx_bytes": (6, F.TYPE_UINT64, OPTIONAL, None),
        "tx_packets": (7, F.TYPE_UINT64, OPTIONAL, None),
        "tx_errors": (8, F.TYPE_UINT64, OPTIONAL, None),
        "tx_dropped": (9, F.TYPE_UINT64, OPTIONAL, None),
    },
    "io.containerd.cgroups.v1.CgroupStats": {
        "nr_sleeping": (1, F.TYPE_UINT64, OPTIONAL, None),
        "nr_running": (2, F.TYPE_UINT64, OPTIONAL, None),
        "nr_stopped": (3, F.TYPE_UINT64, OPTIONAL, None),
        "nr_uninterruptible": (4, F.TYPE_UINT64, OPTIONAL, None),
        "nr_io_wait": (5, F.TYPE_UINT64, OPTIONAL, None),
    },
    # cgroups v3.1.3 cgroup2/stats/metrics.proto (package io.containerd.cgroups.v2)
    "io.containerd.cgroups.v2.Metrics": {
        "pids": (1, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v2.PidsStat"),
        "cpu": (2, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v2.CPUStat"),
        "memory": (4, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v2.MemoryStat"),
        "rdma": (5, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v2.RdmaStat"),
        "io": (6, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v2.IOStat"),
        "hugetlb": (7, F.TYPE_MESSAGE, REPEATED, "io.containerd.cgroups.v2.HugeTlbStat"),
        "memory_events": (8, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v2.MemoryEvents"),
        "network": (9, F.TYPE_MESSAGE, REPEATED, "io.containerd.cgroups.v2.NetworkStat"),  # not in v3.0.2
    },
    "io.containerd.cgroups.v2.PSIData": {  # not in v3.0.2
        "avg10": (1, F.TYPE_DOUBLE, OPTIONAL, None),
        "avg60": (2, F.TYPE_DOUBLE, OPTIONAL, None),
        "avg300": (3, F.TYPE_DOUBLE, OPTIONAL, None),
        "total": (4, F.TYPE_UINT64, OPTIONAL, None),
    },
    "io.containerd.cgroups.v2.PSIStats": {  # not in v3.0.2
        "some": (1, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v2.PSIData"),
        "full": (2, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v2.PSIData"),
    },
    "io.containerd.cgroups.v2.PidsStat": {
        "current": (1, F.TYPE_UINT64, OPTIONAL, None),
        "limit": (2, F.TYPE_UINT64, OPTIONAL, None),
    },
    "io.containerd.cgroups.v2.CPUStat": {
        "usage_usec": (1, F.TYPE_UINT64, OPTIONAL, None),
        "user_usec": (2, F.TYPE_UINT64, OPTIONAL, None),
        "system_usec": (3, F.TYPE_UINT64, OPTIONAL, None),
        "nr_periods": (4, F.TYPE_UINT64, OPTIONAL, None),
        "nr_throttled": (5, F.TYPE_UINT64, OPTIONAL, None),
        "throttled_usec": (6, F.TYPE_UINT64, OPTIONAL, None),
        "psi": (7, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v2.PSIStats"),  # not in v3.0.2
        "nr_bursts": (8, F.TYPE_UINT64, OPTIONAL, None),  # not in v3.0.2
        "burst_usec": (9, F.TYPE_UINT64, OPTIONAL, None),  # not in v3.0.2
    },
    "io.containerd.cgroups.v2.MemoryStat": {
        "anon": (1, F.TYPE_UINT64, OPTIONAL, None),
        "file": (2, F.TYPE_UINT64, OPTIONAL, None),
        "kernel_stack": (3, F.TYPE_UINT64, OPTIONAL, None),
        "slab": (4, F.TYPE_UINT64, OPTIONAL, None),
        "sock": (5, F.TYPE_UINT64, OPTIONAL, None),
        "shmem": (6, F.TYPE_UINT64, OPTIONAL, None),
        "file_mapped": (7, F.TYPE_UINT64, OPTIONAL, None),
        "file_dirty": (8, F.TYPE_UINT64, OPTIONAL, None),
        "file_writeback": (9, F.TYPE_UINT64, OPTIONAL, None),
        "anon_thp": (10, F.TYPE_UINT64, OPTIONAL, None),
        "inactive_anon": (11, F.TYPE_UINT64, OPTIONAL, None),
        "active_anon": (12, F.TYPE_UINT64, OPTIONAL, None),
        "inactive_file": (13, F.TYPE_UINT64, OPTIONAL, None),
        "active_file": (14, F.TYPE_UINT64, OPTIONAL, None),
        "unevictable": (15, F.TYPE_UINT64, OPTIONAL, None),
        "slab_reclaimable": (16, F.TYPE_UINT64, OPTIONAL, None),
        "slab_unreclaimable": (17, F.TYPE_UINT64, OPTIONAL, None),
        "pgfault": (18, F.TYPE_UINT64, OPTIONAL, None),
        "pgmajfault": (19, F.TYPE_UINT64, OPTIONAL, None),
        "workingset_refault": (20, F.TYPE_UINT64, OPTIONAL, None),
        "workingset_activate": (21, F.TYPE_UINT64, OPTIONAL, None),
        "workingset_nodereclaim": (22, F.TYPE_UINT64, OPTIONAL, None),
        "pgrefill": (23, F.TYPE_UINT64, OPTIONAL, None),
        "pgscan": (24, F.TYPE_UINT64, OPTIONAL, None),
        "pgsteal": (25, F.TYPE_UINT64, OPTIONAL, None),
        "pgactivate": (26, F.TYPE_UINT64, OPTIONAL, None),
        "pgdeactivate": (27, F.TYPE_UINT64, OPTIONAL, None),
        "pglazyfree": (28, F.TYPE_UINT64, OPTIONAL, None),
        "pglazyfreed": (29, F.TYPE_UINT64, OPTIONAL, None),
        "thp_fault_alloc": (30, F.TYPE_UINT64, OPTIONAL, None),
        "thp_collapse_alloc": (31, F.TYPE_UINT64, OPTIONAL, None),
        "usage": (32, F.TYPE_UINT64, OPTIONAL, None),
        "usage_limit": (33, F.TYPE_UINT64, OPTIONAL, None),
        "swap_usage": (34, F.TYPE_UINT64, OPTIONAL, None),
        "swap_limit": (35, F.TYPE_UINT64, OPTIONAL, None),
        "max_usage": (36, F.TYPE_UINT64, OPTIONAL, None),  # not in v3.0.2
        "swap_max_usage": (37, F.TYPE_UINT64, OPTIONAL, None),  # not in v3.0.2
        "psi": (38, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v2.PSIStats"),  # not in v3.0.2
    },
    "io.containerd.cgroups.v2.MemoryEvents": {
        "low": (1, F.TYPE_UINT64, OPTIONAL, None),
        "high": (2, F.TYPE_UINT64, OPTIONAL, None),
        "max": (3, F.TYPE_UINT64, OPTIONAL, None),
        "oom": (4, F.TYPE_UINT64, OPTIONAL, None),
        "oom_kill": (5, F.TYPE_UINT64, OPTIONAL, None),
        "oom_group_kill": (6, F.TYPE_UINT64, OPTIONAL, None),  # not in v3.0.2
    },
    "io.containerd.cgroups.v2.RdmaStat": {
        "current": (1, F.TYPE_MESSAGE, REPEATED, "io.containerd.cgroups.v2.RdmaEntry"),
        "limit": (2, F.TYPE_MESSAGE, REPEATED, "io.containerd.cgroups.v2.RdmaEntry"),
    },
    "io.containerd.cgroups.v2.RdmaEntry": {
        "device": (1, F.TYPE_STRING, OPTIONAL, None),
        "hca_handles": (2, F.TYPE_UINT32, OPTIONAL, None),
        "hca_objects": (3, F.TYPE_UINT32, OPTIONAL, None),
    },
    "io.containerd.cgroups.v2.IOStat": {
        "usage": (1, F.TYPE_MESSAGE, REPEATED, "io.containerd.cgroups.v2.IOEntry"),
        "psi": (2, F.TYPE_MESSAGE, OPTIONAL, "io.containerd.cgroups.v2.PSIStats"),  # not in v3.0.2
    },
    "io.containerd.cgroups.v2.IOEntry": {
        "major": (1, F.TYPE_UINT64, OPTIONAL, None),
        "minor": (2, F.TYPE_UINT64, OPTIONAL, None),
        "rbytes": (3, F.TYPE_UINT64, OPTIONAL, None),
        "wbytes": (4, F.TYPE_UINT64, OPTIONAL, None),
        "rios": (5, F.TYPE_UINT64, OPTIONAL, None),
        "wios": (6, F.TYPE_UINT64, OPTIONAL, None),
    },
    "io.containerd.cgroups.v2.HugeTlbStat": {
        "current": (1, F.TYPE_UINT64, OPTIONAL, None),
        "max": (2, F.TYPE_UINT64, OPTIONAL, None),
        "pagesize": (3, F.TYPE_STRING, OPTIONAL, None),
        "failcnt": (4, F.TYPE_UINT64, OPTIONAL, None),  # not in v3.0.2
    },
    "io.containerd.cgroups.v2.NetworkStat": {  # not in v3.0.2
        "name": (1, F.TYPE_STRING, OPTIONAL, None),
        "rx_bytes": (2, F.TYPE_UINT64, OPTIONAL, None),
        "rx_packets": (3, F.TYPE_UINT64, OPTIONAL, None),
        "rx_errors": (4, F.TYPE_UINT64, OPTIONAL, None),
        "rx_dropped": (5, F.TYPE_UINT64, OPTIONAL, None),
        "tx_bytes": (6, F.TYPE_UINT64, OPTIONAL, None),
        "tx_packets": (7, F.TYPE_UINT64, OPTIONAL, None),
        "tx_errors": (8, F.TYPE_UINT64, OPTIONAL, None),
        "tx_dropped": (9, F.TYPE_UINT64, OPTIONAL, None),
    },
}

# fmt: on
