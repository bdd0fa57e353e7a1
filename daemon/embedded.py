"""The embedded default: what ``berthd`` runs with no config file.

One command gives a working daemon: the content store, the snapshotters and
the differ start as supervised child processes on sockets under the state
directory, with their data under the root (in containerd's
``<root>/<plugin uri>`` layout).  As containerd on Linux, it has ``overlayfs``
(clients' default) and ``native``: one snapshotter process serves both on one
socket, each request naming its snapshotter.  ``berthd config default`` prints exactly
this text, so writing it to /etc/berthd/config.toml changes nothing.
"""

from __future__ import annotations

import json
import os

from daemon.config import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_ROOT,
    DEFAULT_STATE,
    Config,
    Overrides,
    parse_string,
    resolve,
)

EMBEDDED_SOURCE = "<embedded default>"

# Metrics are on by default, on loopback, at containerd's customary port;
# ``--metrics-address ""`` turns them off.
DEFAULT_METRICS_ADDRESS = "127.0.0.1:1338"

_DEFAULT_TEMPLATE = """\
# berthd's embedded default: the daemon starts the content store, the
# snapshotters and the differ as supervised child processes on sockets under
# its state directory, with their data under its root.
# Running each plugin as its own service instead: see deploy/.
version = 2
root = {root}
state = {state}

[grpc]
  address = {address}
  uid = 0
  gid = 0
  max_recv_message_size = {max_size}
  max_send_message_size = {max_size}

[ttrpc]
  address = {ttrpc}

[debug]
  level = "info"

[metrics]
  # HOST:PORT serving /v1/metrics (the daemon's and its plugins' families).
  address = {metrics}

[plugins]
  [plugins."io.containerd.service.v1.diff-service"]
    default = ["walking"]

[proxy_plugins]
  [proxy_plugins.content]
    type = "content"
    address = {content_sock}
    command = ["berthd-content", "--root", {content_root}, "--address", {content_sock}]
    metrics_address = "auto"

  # One process serves both snapshotters on one socket (each request names
  # its snapshotter), each with its root under the daemon's root:
  # <root>/io.containerd.snapshotter.v1.overlayfs and .native.
  [proxy_plugins.overlayfs]
    type = "snapshot"
    address = {snap_sock}
    command = ["berthd-snapshotter", "--root", {root}, "--address", {snap_sock}, \
"--backend", "overlayfs", "--backend", "native"]
    metrics_address = "auto"

  # Served by the overlayfs entry's process: no command of its own.
  [proxy_plugins.native]
    type = "snapshot"
    address = {snap_sock}

  # The differ reads and writes blobs through the daemon, so a layer it
  # writes is recorded in the request's namespace (and kept by GC); the
  # bytes of a layer to apply, once the daemon has said the namespace has
  # it, it reads from the content plugin directly.  It mounts only what
  # lies under the snapshotters' roots.
  [proxy_plugins.walking]
    type = "diff"
    address = {diff_sock}
    command = ["berthd-diff", "--root", {diff_root}, "--address", {diff_sock}, \
"--content-address", {address}, "--content-read-address", {content_sock}, \
"--allowed-root", {overlay_root}, "--allowed-root", {native_root}]
    metrics_address = "auto"
"""


def default_toml(
    root: str = DEFAULT_ROOT,
    state: str = DEFAULT_STATE,
    metrics_address: str = DEFAULT_METRICS_ADDRESS,
    address: str | None = None,
) -> str:
    """The embedded default as a config file (``berthd config default``).

    ``address`` (default ``<state>/berthd.sock``) also places the ttrpc socket
    and is where the differ reaches content, so all three move together.
    """

    def q(s: str) -> str:
        return json.dumps(s)

    address = address or os.path.join(state, "berthd.sock")
    return _DEFAULT_TEMPLATE.format(
        root=q(root),
        state=q(state),
        address=q(address),
        ttrpc=q(address + ".ttrpc"),
        max_size=DEFAULT_MAX_MESSAGE_SIZE,
        metrics=q(metrics_address),
        content_sock=q(os.path.join(state, "content.sock")),
        content_root=q(os.path.join(root, "io.containerd.content.v1.content")),
        snap_sock=q(os.path.join(state, "snapshotter.sock")),
        overlay_root=q(os.path.join(root, "io.containerd.snapshotter.v1.overlayfs")),
        native_root=q(os.path.join(root, "io.containerd.snapshotter.v1.native")),
        diff_sock=q(os.path.join(state, "diff.sock")),
        diff_root=q(os.path.join(root, "io.containerd.differ.v1.walking")),
    )


def embedded_default(overrides: Overrides | None = None) -> Config:
    """The config used when no file exists: the default rendered for the overridden dirs."""
    o = overrides or Overrides()
    text = default_toml(o.root or DEFAULT_ROOT, o.state or DEFAULT_STATE, address=o.address)
    return resolve(parse_string(text, EMBEDDED_SOURCE), o)
