"""The plugin processes a config has the daemon fork, known before it loads.

``berthd`` parks one child per such process (``daemon.forkspawn.park``)
before it imports the rest of itself, so that the plugins start from an
interpreter holding only what they need.  The rules follow what the proxy
plugins' inits do (``daemon.proxyplugins``): an enabled entry of a known type,
with an address and a command that is one of this installation's own console
scripts.  Should an init not come to start its process after all, its parked
child waits, idle, until the supervisor stops.
"""

from __future__ import annotations

import logging

from api.errdefs import NotFound
from daemon import forkspawn
from daemon.config import PROXY_TYPES, Config

log = logging.getLogger(__name__)


def entries(cfg: Config) -> list[tuple[str, str]]:
    """The entry points of the plugin processes the daemon will start by fork."""
    disabled = set(cfg.disabled_plugins)
    known = set(PROXY_TYPES.values())
    out = []
    for name, p in cfg.proxy_plugins.items():
        if not p.command or not p.address or p.plugin_type not in known:
            continue
        if f"{p.plugin_type}.{name}" in disabled:
            continue
        try:
            entry = forkspawn.entry_point(forkspawn.find_executable(p.command[0]))
        except NotFound:
            continue
        if entry is not None:
            out.append(entry)
    return out


def park(cfg: Config) -> int:
    """Park a child for each plugin process ``cfg`` will fork; how many were."""
    if not forkspawn.enabled():
        return 0
    found = entries(cfg)
    return forkspawn.park(len(found), sorted({module for module, _ in found}))
