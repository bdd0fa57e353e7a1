# ruff: noqa: E501
"""The part of etcd's v3 gRPC API berthd's metadata store speaks, transcribed from etcd.

The facts were copied once from etcd v3.4.23 (the Debian ``etcd-server`` the
tests run), ``etcdserver/etcdserverpb/rpc.proto`` and ``mvcc/mvccpb/kv.proto``;
nothing is read from etcd at run time.  Same conventions as ``wire_table``.
Only the RPCs and messages berthd declares are listed, each complete: a
declared message has every field etcd gives it.
"""

from google.protobuf.descriptor_pb2 import FieldDescriptorProto as F

from tests.api.wire_table import Message, Rpc

OPTIONAL = F.LABEL_OPTIONAL
REPEATED = F.LABEL_REPEATED
B, I64, U64, S, BOOL, E, M = (
    F.TYPE_BYTES, F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_STRING, F.TYPE_BOOL, F.TYPE_ENUM, F.TYPE_MESSAGE,
)  # fmt: skip

P = "etcdserverpb."

# fmt: off

RPCS: dict[str, Rpc] = {
    "/etcdserverpb.KV/Range": (P + "RangeRequest", P + "RangeResponse", False, False),
    "/etcdserverpb.KV/Put": (P + "PutRequest", P + "PutResponse", False, False),
    "/etcdserverpb.KV/DeleteRange": (P + "DeleteRangeRequest", P + "DeleteRangeResponse", False, False),
    "/etcdserverpb.KV/Txn": (P + "TxnRequest", P + "TxnResponse", False, False),
    "/etcdserverpb.Watch/Watch": (P + "WatchRequest", P + "WatchResponse", True, True),
    "/etcdserverpb.Lease/LeaseGrant": (P + "LeaseGrantRequest", P + "LeaseGrantResponse", False, False),
    "/etcdserverpb.Lease/LeaseRevoke": (P + "LeaseRevokeRequest", P + "LeaseRevokeResponse", False, False),
    "/etcdserverpb.Lease/LeaseKeepAlive": (P + "LeaseKeepAliveRequest", P + "LeaseKeepAliveResponse", True, True),
    "/etcdserverpb.Lease/LeaseTimeToLive": (P + "LeaseTimeToLiveRequest", P + "LeaseTimeToLiveResponse", False, False),
    "/etcdserverpb.Maintenance/Status": (P + "StatusRequest", P + "StatusResponse", False, False),
}

MESSAGES: dict[str, Message] = {
    "mvccpb.KeyValue": {
        "key": (1, B, OPTIONAL, None),
        "create_revision": (2, I64, OPTIONAL, None),
        "mod_revision": (3, I64, OPTIONAL, None),
        "version": (4, I64, OPTIONAL, None),
        "value": (5, B, OPTIONAL, None),
        "lease": (6, I64, OPTIONAL, None),
    },
    "mvccpb.Event": {
        "type": (1, E, OPTIONAL, "mvccpb.Event.EventType"),
        "kv": (2, M, OPTIONAL, "mvccpb.KeyValue"),
        "prev_kv": (3, M, OPTIONAL, "mvccpb.KeyValue"),
    },
    P + "ResponseHeader": {
        "cluster_id": (1, U64, OPTIONAL, None),
        "member_id": (2, U64, OPTIONAL, None),
        "revision": (3, I64, OPTIONAL, None),
        "raft_term": (4, U64, OPTIONAL, None),
    },
    P + "RangeRequest": {
        "key": (1, B, OPTIONAL, None),
        "range_end": (2, B, OPTIONAL, None),
        "limit": (3, I64, OPTIONAL, None),
        "revision": (4, I64, OPTIONAL, None),
        "sort_order": (5, E, OPTIONAL, P + "RangeRequest.SortOrder"),
        "sort_target": (6, E, OPTIONAL, P + "RangeRequest.SortTarget"),
        "serializable": (7, BOOL, OPTIONAL, None),
        "keys_only": (8, BOOL, OPTIONAL, None),
        "count_only": (9, BOOL, OPTIONAL, None),
        "min_mod_revision": (10, I64, OPTIONAL, None),
        "max_mod_revision": (11, I64, OPTIONAL, None),
        "min_create_revision": (12, I64, OPTIONAL, None),
        "max_create_revision": (13, I64, OPTIONAL, None),
    },
    P + "RangeResponse": {
        "header": (1, M, OPTIONAL, P + "ResponseHeader"),
        "kvs": (2, M, REPEATED, "mvccpb.KeyValue"),
        "more": (3, BOOL, OPTIONAL, None),
        "count": (4, I64, OPTIONAL, None),
    },
    P + "PutRequest": {
        "key": (1, B, OPTIONAL, None),
        "value": (2, B, OPTIONAL, None),
        "lease": (3, I64, OPTIONAL, None),
        "prev_kv": (4, BOOL, OPTIONAL, None),
        "ignore_value": (5, BOOL, OPTIONAL, None),
        "ignore_lease": (6, BOOL, OPTIONAL, None),
    },
    P + "PutResponse": {
        "header": (1, M, OPTIONAL, P + "ResponseHeader"),
        "prev_kv": (2, M, OPTIONAL, "mvccpb.KeyValue"),
    },
    P + "DeleteRangeRequest": {
        "key": (1, B, OPTIONAL, None),
        "range_end": (2, B, OPTIONAL, None),
        "prev_kv": (3, BOOL, OPTIONAL, None),
    },
    P + "DeleteRangeResponse": {
        "header": (1, M, OPTIONAL, P + "ResponseHeader"),
        "deleted": (2, I64, OPTIONAL, None),
        "prev_kvs": (3, M, REPEATED, "mvccpb.KeyValue"),
    },
    P + "RequestOp": {
        "request_range": (1, M, OPTIONAL, P + "RangeRequest"),
        "request_put": (2, M, OPTIONAL, P + "PutRequest"),
        "request_delete_range": (3, M, OPTIONAL, P + "DeleteRangeRequest"),
        "request_txn": (4, M, OPTIONAL, P + "TxnRequest"),
    },
    P + "ResponseOp": {
        "response_range": (1, M, OPTIONAL, P + "RangeResponse"),
        "response_put": (2, M, OPTIONAL, P + "PutResponse"),
        "response_delete_range": (3, M, OPTIONAL, P + "DeleteRangeResponse"),
        "response_txn": (4, M, OPTIONAL, P + "TxnResponse"),
    },
    P + "Compare": {
        "result": (1, E, OPTIONAL, P + "Compare.CompareResult"),
        "target": (2, E, OPTIONAL, P + "Compare.CompareTarget"),
        "key": (3, B, OPTIONAL, None),
        "version": (4, I64, OPTIONAL, None),
        "create_revision": (5, I64, OPTIONAL, None),
        "mod_revision": (6, I64, OPTIONAL, None),
        "value": (7, B, OPTIONAL, None),
        "lease": (8, I64, OPTIONAL, None),
        "range_end": (64, B, OPTIONAL, None),
    },
    P + "TxnRequest": {
        "compare": (1, M, REPEATED, P + "Compare"),
        "success": (2, M, REPEATED, P + "RequestOp"),
        "failure": (3, M, REPEATED, P + "RequestOp"),
    },
    P + "TxnResponse": {
        "header": (1, M, OPTIONAL, P + "ResponseHeader"),
        "succeeded": (2, BOOL, OPTIONAL, None),
        "responses": (3, M, REPEATED, P + "ResponseOp"),
    },
    P + "WatchRequest": {
        "create_request": (1, M, OPTIONAL, P + "WatchCreateRequest"),
        "cancel_request": (2, M, OPTIONAL, P + "WatchCancelRequest"),
        "progress_request": (3, M, OPTIONAL, P + "WatchProgressRequest"),
    },
    P + "WatchCreateRequest": {
        "key": (1, B, OPTIONAL, None),
        "range_end": (2, B, OPTIONAL, None),
        "start_revision": (3, I64, OPTIONAL, None),
        "progress_notify": (4, BOOL, OPTIONAL, None),
        "filters": (5, E, REPEATED, P + "WatchCreateRequest.FilterType"),
        "prev_kv": (6, BOOL, OPTIONAL, None),
        "watch_id": (7, I64, OPTIONAL, None),
        "fragment": (8, BOOL, OPTIONAL, None),
    },
    P + "WatchCancelRequest": {
        "watch_id": (1, I64, OPTIONAL, None),
    },
    P + "WatchProgressRequest": {},
    P + "WatchResponse": {
        "header": (1, M, OPTIONAL, P + "ResponseHeader"),
        "watch_id": (2, I64, OPTIONAL, None),
        "created": (3, BOOL, OPTIONAL, None),
        "canceled": (4, BOOL, OPTIONAL, None),
        "compact_revision": (5, I64, OPTIONAL, None),
        "cancel_reason": (6, S, OPTIONAL, None),
        "fragment": (7, BOOL, OPTIONAL, None),
        "events": (11, M, REPEATED, "mvccpb.Event"),
    },
    P + "LeaseGrantRequest": {
        "TTL": (1, I64, OPTIONAL, None),
        "ID": (2, I64, OPTIONAL, None),
    },
    P + "LeaseGrantResponse": {
        "header": (1, M, OPTIONAL, P + "ResponseHeader"),
        "ID": (2, I64, OPTIONAL, None),
        "TTL": (3, I64, OPTIONAL, None),
        "error": (4, S, OPTIONAL, None),
    },
    P + "LeaseRevokeRequest": {
        "ID": (1, I64, OPTIONAL, None),
    },
    P + "LeaseRevokeResponse": {
        "header": (1, M, OPTIONAL, P + "ResponseHeader"),
    },
    P + "LeaseKeepAliveRequest": {
        "ID": (1, I64, OPTIONAL, None),
    },
    P + "LeaseKeepAliveResponse": {
        "header": (1, M, OPTIONAL, P + "ResponseHeader"),
        "ID": (2, I64, OPTIONAL, None),
        "TTL": (3, I64, OPTIONAL, None),
    },
    P + "LeaseTimeToLiveRequest": {
        "ID": (1, I64, OPTIONAL, None),
        "keys": (2, BOOL, OPTIONAL, None),
    },
    P + "LeaseTimeToLiveResponse": {
        "header": (1, M, OPTIONAL, P + "ResponseHeader"),
        "ID": (2, I64, OPTIONAL, None),
        "TTL": (3, I64, OPTIONAL, None),
        "grantedTTL": (4, I64, OPTIONAL, None),
        "keys": (5, B, REPEATED, None),
    },
    P + "StatusRequest": {},
    P + "StatusResponse": {
        "header": (1, M, OPTIONAL, P + "ResponseHeader"),
        "version": (2, S, OPTIONAL, None),
        "dbSize": (3, I64, OPTIONAL, None),
        "leader": (4, U64, OPTIONAL, None),
        "raftIndex": (5, U64, OPTIONAL, None),
        "raftTerm": (6, U64, OPTIONAL, None),
        "raftAppliedIndex": (7, U64, OPTIONAL, None),
        "errors": (8, S, REPEATED, None),
        "dbSizeInUse": (9, I64, OPTIONAL, None),
        "isLearner": (10, BOOL, OPTIONAL, None),
    },
}

ENUMS: dict[str, dict[str, int]] = {
    "mvccpb.Event.EventType": {"PUT": 0, "DELETE": 1},
    P + "RangeRequest.SortOrder": {"NONE": 0, "ASCEND": 1, "DESCEND": 2},
    P + "RangeRequest.SortTarget": {"KEY": 0, "VERSION": 1, "CREATE": 2, "MOD": 3, "VALUE": 4},
    P + "Compare.CompareResult": {"EQUAL": 0, "GREATER": 1, "LESS": 2, "NOT_EQUAL": 3},
    P + "Compare.CompareTarget": {"VERSION": 0, "CREATE": 1, "MOD": 2, "VALUE": 3, "LEASE": 4},
    P + "WatchCreateRequest.FilterType": {"NOPUT": 0, "NODELETE": 1},
}

# fmt: on
