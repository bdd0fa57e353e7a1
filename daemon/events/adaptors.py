"""Filter fields of an event envelope (containerd's ``events.Envelope.Field``
and the generated ``Field`` methods of the event messages)."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import any_pb2, message
from google.protobuf.descriptor import FieldDescriptor

from api import errdefs, filters
from api.containerd.types import event_pb2
from api.typeurl import JSONValue, TypeRegistry

Field = tuple[str, bool]


def message_field(msg: message.Message, fieldpath: Sequence[str], types: TypeRegistry) -> Field:
    """A string, bool or ``map<string,string>`` field of ``msg`` by proto field name;
    messages and ``Any`` are walked into.  Other scalars are not filterable, as
    in containerd's generated code."""
    if not fieldpath:
        return "", False
    fd = msg.DESCRIPTOR.fields_by_name.get(fieldpath[0])
    if fd is None:
        return "", False
    value = getattr(msg, fd.name)
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        vt = fd.message_type.fields_by_name["value"]
        if vt.type != FieldDescriptor.TYPE_STRING or not value:
            return "", False
        key = ".".join(fieldpath[1:])
        return (value[key], True) if key in value else ("", False)
    if fd.is_repeated:
        return "", False
    if fd.type == FieldDescriptor.TYPE_STRING:
        return value, bool(value)
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return ("true" if value else "false"), True
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        if not msg.HasField(fd.name):
            return "", False
        if isinstance(value, any_pb2.Any):
            return any_field(value, fieldpath[1:], types)
        return message_field(value, fieldpath[1:], types)
    return "", False


def any_field(packed: any_pb2.Any, fieldpath: Sequence[str], types: TypeRegistry) -> Field:
    try:
        decoded = types.unpack(packed)
    except errdefs.ErrdefsError:
        return "", False
    if isinstance(decoded, JSONValue):
        return "", False
    return message_field(decoded, fieldpath, types)


def adapt_envelope(env: event_pb2.Envelope, types: TypeRegistry) -> filters.Adaptor:
    """``namespace``, ``topic`` and ``event.<field>`` (decoded only when a filter asks)."""
    event = filters.AdaptorFunc(lambda fieldpath: any_field(env.event, fieldpath, types))
    return filters.adapt_envelope(env.namespace, env.topic, event)
