"""Command-line entry points: ``chatroom-server`` and ``chatroom-client``.

The client imports Textual lazily so that the server never pays for it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from chatroom.server.config import VERSION, Config


def _oper(value: str) -> tuple[str, str]:
    name, sep, password = value.partition(":")
    if not sep or not name or not password:
        raise argparse.ArgumentTypeError("expected NAME:PASSWORD")
    return name, password


def server_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chatroom-server",
        description="Group chat for your LAN: an IRC server any IRC client can join.",
    )
    p.add_argument("--host", help="address to listen on (default 0.0.0.0; '::' = IPv4+IPv6)")
    p.add_argument("--port", type=int, help="TCP port (default 6667)")
    p.add_argument("--name", dest="server_name", help="server name shown to clients")
    p.add_argument("--motd", type=Path, metavar="FILE", help="message of the day file")
    p.add_argument("--password", help="server password clients must send with PASS")
    p.add_argument(
        "--oper",
        type=_oper,
        action="append",
        default=[],
        metavar="NAME:PASSWORD",
        help="an IRC operator login (repeatable)",
    )
    p.add_argument("--config", type=Path, metavar="FILE.toml", help="settings file")
    p.add_argument(
        "--no-flood-limit",
        action="store_true",
        help="switch off flood control (benchmarks, trusted LANs)",
    )
    p.add_argument("--log-level", help="DEBUG, INFO (default), WARNING or ERROR")
    p.add_argument("--version", action="version", version=VERSION)
    return p


def build_config(args: argparse.Namespace) -> Config:
    """Defaults, then the TOML file, then flags: later wins."""
    config = Config()
    if args.config:
        config = Config.from_toml(args.config, config)
    motd = args.motd.read_text(encoding="utf-8") if args.motd else None
    opers = {**config.opers, **dict(args.oper)} if args.oper else None
    config = config.with_overrides(
        host=args.host,
        port=args.port,
        server_name=args.server_name,
        motd=motd,
        password=args.password,
        opers=opers,
        log_level=args.log_level,
    )
    if args.no_flood_limit:
        config = config.with_overrides(flood_limit=False)
    return config


def server_main(argv: list[str] | None = None) -> int:
    """Run the server in the foreground until SIGINT or SIGTERM; exit 0 after a clean stop."""
    args = server_parser().parse_args(argv)
    try:
        config = build_config(args)
    except (OSError, ValueError) as e:
        print(f"chatroom-server: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from chatroom.server.server import ChatServer

    try:
        server = ChatServer(config)
    except OSError as e:
        print(
            f"chatroom-server: cannot listen on {config.host}:{config.port}: {e}", file=sys.stderr
        )
        return 1
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("chatroom.server").info(
            "%s received, shutting down", signal.Signals(signum).name
        )
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    server.start()
    print(
        f"chatroom-server {VERSION} listening on {config.host}:{server.port}"
        f" as {config.server_name}; Ctrl-C stops it",
        flush=True,
    )
    while not stop.wait(0.5):
        pass
    server.stop()
    return 0


def client_main(argv: list[str] | None = None) -> int:
    """``chatroom-client``: the Textual app (imported only now)."""
    from chatroom.client.cli import main

    return main(argv)
