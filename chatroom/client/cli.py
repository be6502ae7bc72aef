"""``chatroom-client`` command line: parse arguments, build the app, run it.

``--forget-fingerprint HOST:PORT`` edits the trusted certificates and ``--discover``
lists the servers announced on this network; both exit without starting the app (nor
loading Textual).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import NamedTuple

from chatroom.client.config import (
    PLAIN_PORT,
    TLS_PORT,
    config_dir,
    default_nick,
    parse_server,
    tls_by_default,
)
from chatroom.client.discovery import DISCOVER_SECONDS, DiscoveryError, discover, format_servers
from chatroom.client.trust import KnownServers, normalise_fingerprint, server_address
from chatroom.protocol import is_valid_nick

__all__ = [
    "Target",
    "build_parser",
    "discover_servers",
    "forget_fingerprint",
    "main",
    "resolve_target",
]

# Longest --timeout for --discover, in seconds: servers answer within a second or two;
# anything longer is a typo, not patience.
MAX_DISCOVER_SECONDS = 60.0


class Target(NamedTuple):
    """Where the command line says to connect: host (None: ask), port, TLS or not."""

    host: str | None
    port: int
    tls: bool


def build_parser() -> argparse.ArgumentParser:
    """The client's argument parser (separate so tests and docs can inspect it)."""
    parser = argparse.ArgumentParser(
        prog="chatroom-client",
        description="Chat on a LAN IRC server. Without HOST, a connect screen asks.",
        epilog="TLS: ircs://HOST (port 6697) or --tls uses it, irc://HOST (port 6667) or "
        "--no-tls does not; otherwise it is on for port 6697 and off for any other. A "
        "certificate no authority vouches for (a LAN server's own) is shown by its "
        "SHA-256 fingerprint on first contact and trusted if you say so; a later change "
        "is refused until --forget-fingerprint.",
    )
    parser.add_argument(
        "address",
        nargs="?",
        metavar="[irc[s]://]HOST[:PORT]",
        help="server to connect to (ircs:// for TLS)",
    )
    parser.add_argument("--nick", default=None, help="your nick (default: your login name)")
    parser.add_argument(
        "--join",
        nargs="+",
        default=[],
        metavar="ROOM",
        action="extend",
        help="rooms to join (the # is optional)",
    )
    parser.add_argument("--password", default=None, help="server password, if it has one")
    parser.add_argument(
        "--account",
        default=None,
        metavar="NAME",
        help="log in to this account with its remembered password (see /login)",
    )
    parser.add_argument(
        "--allow-plain-sasl",
        action="store_true",
        help="allow sending the account password as it is (SASL PLAIN, NickServ) over a "
        "link that is neither TLS nor loopback (client.toml: allow_plain_sasl = true)",
    )
    parser.add_argument(
        "--no-keyring",
        action="store_true",
        help="remember passwords in a private file, never in the OS keyring "
        "(client.toml: use_keyring = false)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port (default {PLAIN_PORT}, {TLS_PORT} with TLS, or from HOST:PORT)",
    )
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument(
        "--tls",
        action="store_true",
        default=None,
        help=f"connect with TLS (what ircs:// says; port {TLS_PORT} unless given)",
    )
    tls.add_argument(
        "--no-tls", dest="tls", action="store_false", help="connect without TLS (irc://)"
    )
    parser.add_argument(
        "--downloads",
        metavar="DIR",
        type=Path,
        default=None,
        help="save downloaded attachments in DIR (default: your downloads folder; "
        'client.toml: downloads = "DIR")',
    )
    parser.add_argument(
        "--trust-fingerprint",
        metavar="SHA256",
        default=None,
        help="accept the server's certificate only if its SHA-256 fingerprint is this one "
        "(colons and case do not matter), without asking; any other is refused (for scripts)",
    )
    parser.add_argument(
        "--forget-fingerprint",
        metavar="HOST:PORT",
        default=None,
        help="forget the certificate fingerprint trusted for this server (after it made a "
        "new certificate), then exit; the next connection asks again",
    )
    parser.add_argument(
        "--discover",
        action="store_true",
        help="list the chatroom servers announced on this network (name, address, ports, "
        "certificate fingerprint), then exit",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help=f"with --discover: seconds to listen (default {DISCOVER_SECONDS:g})",
    )
    return parser


def resolve_target(address: str | None, port: int | None = None, tls: bool | None = None) -> Target:
    """The server, port and TLS the command line asks for (ValueError if it can't be).

    The scheme says TLS or not (``ircs://``, ``irc://``); else ``--tls``/``--no-tls``;
    else the port: on for 6697, off for any other. The port: HOST:PORT, else ``--port``,
    else 6697 with TLS and 6667 without. Without HOST (the connect screen asks), TLS
    and 6697 unless told otherwise: our servers offer TLS by default.

    >>> [tuple(resolve_target(a)) for a in ("ircs://lan", "lan", "lan:6697", "irc://lan")]
    [('lan', 6697, True), ('lan', 6667, False), ('lan', 6697, True), ('lan', 6667, False)]
    >>> tuple(resolve_target("lan", tls=True)), tuple(resolve_target("lan:6697", tls=False))
    (('lan', 6697, True), ('lan', 6697, False))
    >>> [tuple(resolve_target(None, p, t)) for p, t in ((None, None), (None, False), (6667, None))]
    [(None, 6697, True), (None, 6667, False), (None, 6667, False)]
    """
    default_port = port if port is not None else (TLS_PORT if tls else None)
    if address is None:
        chosen = default_port or (PLAIN_PORT if tls is False else TLS_PORT)
        return Target(None, chosen, tls_by_default(chosen) if tls is None else tls)
    host, chosen, scheme_tls = parse_server(address, default_port)
    if scheme_tls is not None and tls is not None and scheme_tls != tls:
        scheme = "ircs://" if scheme_tls else "irc://"
        flag = "--tls" if tls else "--no-tls"
        raise ValueError(f"{scheme} and {flag} disagree: use one of them")
    if scheme_tls is not None:
        tls = scheme_tls
    return Target(host, chosen, tls_by_default(chosen) if tls is None else tls)


def forget_fingerprint(text: str, directory: Path | None = None) -> tuple[int, str]:
    """``--forget-fingerprint``: (exit code, what to print). Without a port, 6697."""
    try:
        host, port, _ = parse_server(text, TLS_PORT)
    except ValueError as exc:
        return 2, f"chatroom-client: --forget-fingerprint: {exc}"
    known = KnownServers(directory or config_dir())
    address = server_address(host, port)
    try:
        old = known.forget(address)
    except OSError as exc:
        return 1, f"chatroom-client: could not change {known.path}: {exc}"
    if old is None:
        return 1, f"No fingerprint is trusted for {address} (in {known.path})."
    return 0, (
        f"Forgot SHA-256 {old.fingerprint} for {address}.\n"
        "The next connection shows the server's fingerprint and asks whether to trust it: "
        "compare it with the one the server prints (chatroom-server fingerprint)."
    )


def discover_servers(timeout: float = DISCOVER_SECONDS) -> tuple[int, str]:
    """``--discover``: (exit code, what to print): the servers heard from in ``timeout``
    seconds, one a line, or why mDNS cannot run here (exit 1)."""
    try:
        servers = asyncio.run(discover(timeout))
    except DiscoveryError as exc:
        return 1, f"chatroom-client: cannot look for servers on this network: {exc}"
    return 0, format_servers(servers)


def main(argv: list[str] | None = None) -> int:
    """Run the client; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.timeout is not None and not args.discover:
        parser.error("--timeout goes with --discover")
    if args.discover:
        if args.address is not None:
            parser.error("--discover takes no server: it lists them")
        timeout = DISCOVER_SECONDS if args.timeout is None else args.timeout
        if not (0 < timeout <= MAX_DISCOVER_SECONDS):
            parser.error(f"--timeout: seconds, more than 0 and at most {MAX_DISCOVER_SECONDS:g}")
        code, text = discover_servers(timeout)
        print(text, file=sys.stdout if code == 0 else sys.stderr)
        return code
    if args.forget_fingerprint is not None:
        code, text = forget_fingerprint(args.forget_fingerprint)
        print(text, file=sys.stdout if code == 0 else sys.stderr)
        return code
    nick = args.nick or default_nick()
    if not is_valid_nick(nick):
        parser.error(f"{nick!r} is not a valid nick (letters, digits and -[]\\`_^{{|}})")
    pinned, tls_flag = None, args.tls
    if args.trust_fingerprint is not None:
        try:
            pinned = normalise_fingerprint(args.trust_fingerprint)
        except ValueError as exc:
            parser.error(f"--trust-fingerprint: {exc}")
        if tls_flag is None and not (args.address or "").lower().startswith("irc://"):
            tls_flag = True  # a fingerprint means TLS
    try:
        host, port, tls = resolve_target(args.address, args.port, tls_flag)
    except ValueError as exc:
        parser.error(str(exc))
    if pinned is not None and not tls:
        parser.error("--trust-fingerprint needs TLS (ircs:// or --tls)")
    from chatroom.client.app import make_app  # Textual loads only when we really run
    from chatroom.client.screens.preview import load_image_support

    load_image_support()  # it asks the terminal about itself: before Textual owns it

    app = make_app(
        host,
        port,
        nick,
        tuple(args.join),
        args.password,
        account=args.account,
        allow_plain_sasl=args.allow_plain_sasl,
        use_keyring=not args.no_keyring,
        tls=tls,
        trust_fingerprint=pinned,
        downloads_dir=args.downloads,
    )
    result = app.run()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
