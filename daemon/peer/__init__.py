"""Peer content: the nodes of a cluster fetch blobs from each other.

Each node serves its content store read-only to the other nodes (``server``)
over gRPC on TCP with mutual TLS (``settings``); a blob the cluster's content
index knows but this node does not hold is fetched from a live holder
(``fetch``, over ``client``), written through the local store's atomic
ingest and recorded here.  ``plugin`` wires it into the daemon; ``index``
is what it needs from the cluster's metadata.
"""
