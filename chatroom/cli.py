"""Command-line entry points: ``chatroom-server`` and ``chatroom-client``.

The client imports Textual lazily so that the server never pays for it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from chatroom.server.config import VERSION, Config

if TYPE_CHECKING:
    from chatroom.server.server import ChatServer

# How often (seconds) the server's main thread looks whether a signal asked it to stop.
SIGNAL_POLL = 0.1


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
    p.add_argument("--no-tls", action="store_true", help="no TLS port (clear text only)")
    p.add_argument(
        "--no-announce",
        action="store_true",
        help="do not announce the server on the LAN (mDNS/DNS-SD)",
    )
    p.add_argument("--tls-port", type=int, metavar="PORT", help="TLS port (default 6697)")
    p.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="a real certificate (PEM, with its chain) instead of the self-signed one",
    )
    p.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM)")
    p.add_argument(
        "--tls-dir",
        metavar="DIR",
        help="where the self-signed certificate and key are kept (default: beside the"
        " database, else your data directory)",
    )
    p.add_argument(
        "--no-http",
        action="store_true",
        help="no web port (no file host, front page or /metrics)",
    )
    p.add_argument(
        "--http-port",
        type=int,
        metavar="PORT",
        help="web port: file host, front page, /metrics; HTTPS too with TLS (default 8067)",
    )
    p.add_argument(
        "--files-dir",
        metavar="DIR",
        help="where uploaded files are kept (default: files/ beside the database)",
    )
    p.add_argument(
        "--plaintext",
        choices=("on", "loopback", "off"),
        help="the clear-text port: on (default), loopback (this machine only) or off",
    )
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
    p.add_argument(
        "--db",
        metavar="PATH",
        help="history database (default: history.sqlite3 in your data directory;"
        " ':memory:' keeps history only while the server runs)",
    )
    p.add_argument("--no-history", action="store_true", help="keep no history at all (no database)")
    p.add_argument(
        "--no-accounts",
        action="store_true",
        help="no built-in accounts (SASL, REGISTER, NickServ, ChanServ)",
    )
    p.add_argument(
        "--password-min-length",
        type=int,
        metavar="N",
        help="shortest account password accepted (default 8)",
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
        db=args.db,
        password_min_length=args.password_min_length,
        tls_port=args.tls_port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_dir=args.tls_dir,
        plaintext=args.plaintext,
        http_port=args.http_port,
        files_dir=args.files_dir,
    )
    if args.no_http:
        config = config.with_overrides(http=False)
    if args.no_tls:
        config = config.with_overrides(tls=False)
    if args.no_announce:
        config = config.with_overrides(announce=False)
    if args.no_accounts:
        config = config.with_overrides(accounts=False)
    if args.no_flood_limit:
        config = config.with_overrides(flood_limit=False)
    if args.no_history:
        config = config.with_overrides(history=False)
    config.check()
    return config


def fingerprint_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chatroom-server fingerprint",
        description="Print the SHA-256 fingerprint of the server's TLS certificate, as"
        " `openssl x509 -noout -fingerprint -sha256` does.",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--tls-dir", metavar="DIR", help="the server's --tls-dir")
    where.add_argument("--tls-cert", metavar="FILE", help="the server's --tls-cert")
    p.add_argument("--db", metavar="PATH", help="the server's --db (the TLS dir is beside it)")
    p.add_argument("--config", type=Path, metavar="FILE.toml", help="the server's settings file")
    return p


def fingerprint_main(argv: list[str]) -> int:
    """``chatroom-server fingerprint``: the certificate the server uses (or would make)."""
    from chatroom.server.tls import certificate_fingerprint, openssl_line, tls_files

    args = fingerprint_parser().parse_args(argv)
    try:
        config = Config.from_toml(args.config) if args.config else Config()
    except (OSError, ValueError) as e:
        print(f"chatroom-server fingerprint: {e}", file=sys.stderr)
        return 2
    config = config.with_overrides(db=args.db, tls_dir=args.tls_dir)
    if args.tls_cert:
        cert = Path(args.tls_cert)
    elif config.tls_cert:
        cert = Path(config.tls_cert)
    else:
        cert = tls_files(config.with_overrides(tls_key=""))[0]
    if not cert.exists():
        print(
            f"chatroom-server fingerprint: no certificate at {cert} (the server makes one"
            " when it first starts with TLS on)",
            file=sys.stderr,
        )
        return 1
    try:
        print(openssl_line(certificate_fingerprint(cert)))
    except (OSError, ValueError) as e:
        print(f"chatroom-server fingerprint: {cert}: {e}", file=sys.stderr)
        return 1
    return 0


def export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chatroom-server export",
        description="Write a room's stored history to stdout.",
    )
    p.add_argument("room", help="room name, e.g. '#lan' (or 'lan')")
    p.add_argument("--db", metavar="PATH", help="history database (default: the server's)")
    p.add_argument("--format", choices=("text", "jsonl"), default="text")
    return p


def export_main(argv: list[str]) -> int:
    """``chatroom-server export ROOM``: history as text lines or JSON lines."""
    import json
    import sqlite3

    from chatroom.protocol import casefold
    from chatroom.server.config import default_db_path
    from chatroom.server.store import HistoryReadError, HistoryStore

    args = export_parser().parse_args(argv)
    path = args.db or default_db_path()
    if not Path(path).exists():
        print(f"chatroom-server export: no history database at {path}", file=sys.stderr)
        return 1
    room = args.room if args.room.startswith("#") else "#" + args.room
    try:
        # a reader: no lock (the server may be running) and no check (a damaged file
        # gives up what it still can, up to the first unreadable page)
        store = HistoryStore(
            path, retention_count=0, retention_days=0, exclusive=False, check=False
        )
    except (sqlite3.Error, RuntimeError) as e:
        print(f"chatroom-server export: {path}: {e}", file=sys.stderr)
        return 1
    count = 0
    try:
        for m in store.export(casefold(room)):
            count += 1
            if args.format == "jsonl":
                record = {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(m.time_ms / 1000))
                    + f".{m.time_ms % 1000:03d}Z",
                    "msgid": m.msgid,
                    "target": m.display,
                    "from": m.sender,
                    "command": m.command,
                    "text": m.text,
                }
                if m.tags:
                    record["tags"] = m.tags
                print(json.dumps(record, ensure_ascii=False))
            else:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.time_ms / 1000))
                nick = m.sender.split("!", 1)[0]
                text = m.text
                if text.startswith("\x01ACTION ") and text.endswith("\x01"):
                    print(f"{stamp} * {nick} {text[8:-1]}")
                elif m.command == "NOTICE":
                    print(f"{stamp} -{nick}- {text}")
                else:
                    print(f"{stamp} <{nick}> {text}")
    except BrokenPipeError:
        return 0
    except HistoryReadError as e:
        sys.stdout.flush()
        print(f"chatroom-server export: stopped after {count} messages: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if count == 0:
        print(f"chatroom-server export: no history for {room} in {path}", file=sys.stderr)
    return 0


def open_server(config: Config) -> ChatServer | None:
    """The server, its ports open; None, with the reason on stderr, if it cannot start."""
    import sqlite3

    from chatroom.server.server import ChatServer
    from chatroom.server.store import HistoryOpenError
    from chatroom.server.tls import TLSSetupError

    try:
        return ChatServer(config)
    except HistoryOpenError as e:  # names the file and what to do
        print(f"chatroom-server: {e}", file=sys.stderr)
    except TLSSetupError as e:  # names the file and what to do
        print(f"chatroom-server: TLS: {e}", file=sys.stderr)
    except OSError as e:
        tls = f", {config.host}:{config.tls_port} (TLS)" if config.tls else ""
        web = f", {config.host}:{config.http_port} (web; --no-http)" if config.http else ""
        print(
            f"chatroom-server: cannot listen on {config.host}:{config.port}{tls}{web}: {e}",
            file=sys.stderr,
        )
    except (sqlite3.Error, RuntimeError) as e:
        print(f"chatroom-server: history database: {e}", file=sys.stderr)
    return None


def server_main(argv: list[str] | None = None) -> int:
    """Run the server in the foreground until SIGINT or SIGTERM; exit 0 after a clean stop,
    1 if it could not start or stopped itself on an internal failure."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:
        return export_main(argv[1:])
    if argv[:1] == ["fingerprint"]:
        return fingerprint_main(argv[1:])
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
    from chatroom.server.server import how_to_reach
    from chatroom.server.tls import openssl_line

    signalled: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        # A flag, nothing more: the handler runs in the main thread between two of its
        # bytecodes, maybe while it holds a lock. Setting an Event here deadlocked the
        # stop for good when the signal came while the loop below was inside Event.wait,
        # holding the Event's own lock (a server was seen ignoring SIGTERM so).
        signalled.append(signum)

    # Before the ports open: a signal that comes as soon as they answer stops the server
    # in order (after it has said where it listens) instead of killing it silently.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = open_server(config)
    if server is None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        return 1
    server.start()
    ports = []
    if server.port is not None:
        plain_host = "127.0.0.1" if config.plaintext == "loopback" else config.host
        ports.append(f"{plain_host}:{server.port}")
    if server.tls is not None:
        ports.append(f"{config.host}:{server.tls_port} (TLS)")
    if server.http_port is not None:
        ports.append(f"{config.host}:{server.http_port} (web)")
    print(
        f"chatroom-server {VERSION} listening on {' and '.join(ports)}"
        f" as {config.server_name}; Ctrl-C stops it",
        flush=True,
    )
    if server.tls is not None:
        print(f"TLS certificate {server.tls.cert_path}", flush=True)
        print(openssl_line(server.tls.fingerprint), flush=True)
    for line in how_to_reach(
        config.host,
        server.port,
        tls_port=server.tls_port,
        fingerprint=server.tls.fingerprint if server.tls is not None else "",
        plaintext=config.plaintext,
        http_port=server.http_port,
    ):
        logging.getLogger("chatroom.server").info("%s", line)
    while not signalled:
        if server.stopping.is_set():
            break  # it stopped itself: a thread it cannot run without died
        time.sleep(SIGNAL_POLL)  # a signal ends it early, its handler run (PEP 475)
    if signalled:
        logging.getLogger("chatroom.server").info(
            "%s received, shutting down", signal.Signals(signalled[0]).name
        )
    server.stop()  # or waits for the stop under way
    if server.fault is not None:
        print(f"chatroom-server: {server.fault}", file=sys.stderr)
        return 1
    return 0


def client_main(argv: list[str] | None = None) -> int:
    """``chatroom-client``: the Textual app (imported only now)."""
    from chatroom.client.cli import main

    return main(argv)
