"""Packing values into ``google.protobuf.Any`` the way containerd does.

containerd names a protobuf message in an Any by its bare full name
("containerd.events.TaskExit", no "type.googleapis.com/" prefix) and names
JSON-encoded Go types by a registered URL, e.g. the OCI runtime spec as
"types.containerd.io/opencontainers/runtime-spec/1/Spec".  Unpacking accepts
either form of a protobuf URL.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from typing import Any as AnyValue

from google.protobuf import any_pb2, descriptor_pool, message, message_factory

from api.errdefs import InvalidArgument, NotFound

OCI_SPEC_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
OCI_PROCESS_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"

# The event payload modules; importing them registers their messages.
EVENT_MODULES = (
    "api.containerd.events.container_pb2",
    "api.containerd.events.content_pb2",
    "api.containerd.events.image_pb2",
    "api.containerd.events.namespace_pb2",
    "api.containerd.events.snapshot_pb2",
    "api.containerd.events.task_pb2",
    "api.containerd.events.sandbox_pb2",
)

# Payloads other than events that travel in an Any the daemon unpacks: the
# cgroup statistics a runc shim returns from Task.Stats.
PAYLOAD_MODULES = (
    "api.cgroups.v1.metrics_pb2",
    "api.cgroups.v2.metrics_pb2",
)

# Topic each event payload is published on (containerd's runtime/events and services).
EVENT_TOPICS = {
    "containerd.events.ContainerCreate": "/containers/create",
    "containerd.events.ContainerUpdate": "/containers/update",
    "containerd.events.ContainerDelete": "/containers/delete",
    "containerd.events.ContentDelete": "/content/delete",
    "containerd.services.images.v1.ImageCreate": "/images/create",
    "containerd.services.images.v1.ImageUpdate": "/images/update",
    "containerd.services.images.v1.ImageDelete": "/images/delete",
    "containerd.events.NamespaceCreate": "/namespaces/create",
    "containerd.events.NamespaceUpdate": "/namespaces/update",
    "containerd.events.NamespaceDelete": "/namespaces/delete",
    "containerd.events.SnapshotPrepare": "/snapshot/prepare",
    "containerd.events.SnapshotCommit": "/snapshot/commit",
    "containerd.events.SnapshotRemove": "/snapshot/remove",
    "containerd.events.TaskCreate": "/tasks/create",
    "containerd.events.TaskStart": "/tasks/start",
    "containerd.events.TaskDelete": "/tasks/delete",
    "containerd.events.TaskExit": "/tasks/exit",
    "containerd.events.TaskOOM": "/tasks/oom",
    "containerd.events.TaskExecAdded": "/tasks/exec-added",
    "containerd.events.TaskExecStarted": "/tasks/exec-started",
    "containerd.events.TaskPaused": "/tasks/paused",
    "containerd.events.TaskResumed": "/tasks/resumed",
    "containerd.events.TaskCheckpointed": "/tasks/checkpointed",
}


@dataclass(frozen=True)
class JSONValue:
    """A JSON-encoded value carried in an Any under a registered URL."""

    type_url: str
    value: AnyValue


@dataclass
class TypeRegistry:
    """Which URLs this process can pack and unpack."""

    json_urls: set[str] = field(default_factory=lambda: {OCI_SPEC_URL, OCI_PROCESS_URL})
    pool: descriptor_pool.DescriptorPool = field(default_factory=descriptor_pool.Default)

    def __post_init__(self) -> None:
        for name in (*EVENT_MODULES, *PAYLOAD_MODULES):
            importlib.import_module(name)

    def pack(self, value: message.Message | JSONValue) -> any_pb2.Any:
        if isinstance(value, JSONValue):
            if value.type_url not in self.json_urls:
                raise InvalidArgument(f"type url {value.type_url!r} is not registered")
            data = json.dumps(value.value, separators=(",", ":")).encode()
            return any_pb2.Any(type_url=value.type_url, value=data)
        return any_pb2.Any(type_url=type_url(value), value=value.SerializeToString())

    def unpack(self, packed: any_pb2.Any) -> message.Message | JSONValue:
        url = packed.type_url
        if url in self.json_urls:
            try:
                return JSONValue(url, json.loads(packed.value or b"null"))
            except ValueError as e:
                raise InvalidArgument(f"{url}: invalid JSON: {e}") from None
        name = url.rsplit("/", 1)[-1]
        try:
            desc = self.pool.FindMessageTypeByName(name)
        except KeyError:
            raise NotFound(f"type with url {url!r}") from None
        cls = message_factory.GetMessageClass(desc)
        msg = cls()
        try:
            msg.ParseFromString(packed.value)
        except message.DecodeError as e:
            raise InvalidArgument(f"{url}: {e}") from None
        return msg


def type_url(msg: message.Message) -> str:
    return str(msg.DESCRIPTOR.full_name)


def topic_of(msg: message.Message) -> str:
    """The topic containerd publishes this event payload on."""
    try:
        return EVENT_TOPICS[type_url(msg)]
    except KeyError:
        raise InvalidArgument(f"{type_url(msg)} is not an event payload") from None
