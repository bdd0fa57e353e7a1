"""``berthd``: run the daemon, or print its config.

    berthd [--config FILE] [--address SOCK] [--root DIR] [--state DIR] [--log-level L]
    berthd config default     a working config (the embedded default)
    berthd config dump        the effective config, after imports and flags
    berthd --address SOCK publish --topic T --namespace NS   (event on stdin)
    berthd cluster ls         the nodes sharing this node's etcd metadata (live or not)
    berthd cluster holders NS DIGEST   which nodes hold a blob
    berthd cluster check      the content index's invariants hold

Without ``--config``, /etc/berthd/config.toml is read when it exists;
otherwise the embedded default runs the content, snapshotter and diff
plugins as supervised children under ``--root``/``--state``.  Errors reach
the user as one line naming the file and key (a traceback only with
``--debug``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from api.errdefs import FailedPrecondition
from daemon import config as configuration
from daemon import embedded, prefork
from daemon.config import Config, Overrides
from daemon.registry import RegistrationError, RequiredPluginError
from services.harness import logs, loop, memory
from services.harness.cli import report_errors

# The daemon's own modules (daemon.server and what it loads) are imported
# where they are used: the plugin processes are forked before that, and share
# only what they need (daemon.prefork).

PROG = "berthd"
log = logging.getLogger(__name__)


def _add_options(p: argparse.ArgumentParser, suppress: bool) -> None:
    # The options are accepted before and after "config default|dump".
    d = argparse.SUPPRESS if suppress else None
    p.add_argument(
        "--config",
        "-c",
        default=d,
        help=f"config file (default {configuration.DEFAULT_CONFIG_PATH}; "
        "without one, the embedded default)",
    )
    p.add_argument("--address", "-a", default=d, help="gRPC socket (overrides [grpc] address)")
    p.add_argument("--root", default=d, help="persistent data directory (overrides root)")
    p.add_argument("--state", default=d, help="runtime state directory (overrides state)")
    p.add_argument(
        "--log-level",
        "-l",
        default=d,
        choices=sorted(logs.LEVELS),
        help="log level (overrides [debug] level)",
    )
    p.add_argument(
        "--log-format",
        default=d,
        choices=logs.FORMATS,
        help="log format (overrides [debug] format)",
    )
    p.add_argument(
        "--metrics-address",
        default=d,
        help="HOST:PORT for /v1/metrics (overrides [metrics] address)",
    )
    p.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="show tracebacks on fatal errors",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="A containerd-compatible container daemon."
    )
    _add_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    cfg = commands.add_parser("config", help="information on the berthd config")
    config_commands = cfg.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    for name, text in (
        ("default", "print the default config (what runs when there is no config file)"),
        ("dump", "print the effective config, with imported files and flags applied"),
    ):
        sub = config_commands.add_parser(name, help=text)
        _add_options(sub, suppress=True)
    # What shims run through -publish-binary, as ``containerd publish``: the
    # event (a serialized google.protobuf.Any) on stdin, sent to the daemon.
    pub = commands.add_parser("publish", help="publish an event read from stdin to the daemon")
    pub.add_argument("--topic", required=True, help="event topic, e.g. /tasks/exit")
    pub.add_argument("--namespace", required=True, help="namespace the event belongs to")
    _add_options(pub, suppress=True)
    cl = commands.add_parser("cluster", help="the nodes sharing the etcd metadata backend")
    cl_commands = cl.add_subparsers(dest="cluster_command", metavar="SUBCOMMAND", required=True)
    sub = cl_commands.add_parser("ls", help="every node: live or not, host, pid, blobs held")
    _add_options(sub, suppress=True)
    sub = cl_commands.add_parser("check", help="check the content index's invariants")
    _add_options(sub, suppress=True)
    sub = cl_commands.add_parser("holders", help="the nodes that hold a blob")
    sub.add_argument("namespace")
    sub.add_argument("digest")
    _add_options(sub, suppress=True)
    return parser


def _overrides(args: argparse.Namespace) -> Overrides:
    def path(v: str | None) -> str | None:
        return os.path.abspath(v) if v else None

    return Overrides(
        root=path(args.root),
        state=path(args.state),
        address=path(args.address),
        log_level=args.log_level,
        metrics_address=args.metrics_address,
    )


def load_config(args: argparse.Namespace) -> Config:
    overrides = _overrides(args)
    path = args.config or configuration.DEFAULT_CONFIG_PATH
    if args.config is None and not os.path.exists(path):
        log.info("no config file at %s: using the embedded default", path)
        return embedded.embedded_default(overrides)
    return configuration.load(path, overrides)


def _config_command(args: argparse.Namespace) -> None:
    if args.config_command == "default":
        o = _overrides(args)
        sys.stdout.write(
            embedded.default_toml(
                o.root or configuration.DEFAULT_ROOT,
                o.state or configuration.DEFAULT_STATE,
                embedded.DEFAULT_METRICS_ADDRESS
                if o.metrics_address is None
                else o.metrics_address,
                o.address,
            )
        )
        return
    from daemon.server import builtin_registrations, plugin_configs

    cfg = load_config(args)
    sys.stdout.write(configuration.to_toml(cfg, plugin_configs(cfg, builtin_registrations())))


def _cluster_command(args: argparse.Namespace) -> None:
    from daemon.metadata import backends
    from daemon.metadata.etcd import clustercmd
    from daemon.metadata.plugin import METADATA_URI, MetadataConfig
    from daemon.server import builtin_registrations, plugin_configs

    cfg = load_config(args)
    meta = plugin_configs(cfg, builtin_registrations()).get(METADATA_URI)
    if not isinstance(meta, MetadataConfig) or meta.backend != "etcd":
        raise FailedPrecondition(f"{cfg.source or 'config'}: the metadata backend is not etcd")
    extra = [args.namespace, args.digest] if args.cluster_command == "holders" else []
    loop.run(clustercmd.run(backends.etcd_settings(meta), args.cluster_command, extra, sys.stdout))


async def _serve(cfg: Config) -> None:
    from daemon.server import Daemon

    await Daemon(cfg).serve()


def _run(args: argparse.Namespace) -> None:
    if args.command == "config":
        _config_command(args)
        return
    if args.command == "cluster":
        _cluster_command(args)
        return
    if args.command == "publish":
        from services.tasks.publish import publish_from_stdin

        address = args.address or os.path.join(configuration.DEFAULT_STATE, "berthd.sock")
        event = sys.stdin.buffer.read()
        loop.run(publish_from_stdin(address, args.topic, args.namespace, event))
        return
    cfg = load_config(args)
    level = args.log_level or cfg.debug.level or "info"
    logs.configure(level, args.log_format or cfg.debug.format or "text", PROG)
    # Chosen (and uvloop imported) before the plugins' children are parked,
    # so that they share its pages instead of each loading its own.
    loop.factory()
    prefork.park(cfg)
    loop.run(_serve(cfg))


def main(argv: Sequence[str] | None = None) -> int:
    memory.tune()
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level or "info", args.log_format or "text", PROG)
    return report_errors(
        PROG, args.debug, lambda: _run(args), (RegistrationError, RequiredPluginError)
    )


if __name__ == "__main__":
    sys.exit(main())
