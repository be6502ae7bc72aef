"""``chatroom-client`` command line: parse arguments, build the app, run it."""

from __future__ import annotations

import argparse
import sys

from chatroom.client.config import default_nick, parse_address
from chatroom.client.connection import DEFAULT_PORT
from chatroom.protocol import is_valid_nick

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The client's argument parser (separate so tests and docs can inspect it)."""
    parser = argparse.ArgumentParser(
        prog="chatroom-client",
        description="Chat on a LAN IRC server. Without HOST, a connect screen asks.",
    )
    parser.add_argument("address", nargs="?", metavar="HOST[:PORT]", help="server to connect to")
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
        "--port", type=int, default=None, help=f"port (default {DEFAULT_PORT}, or from HOST:PORT)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the client; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    nick = args.nick or default_nick()
    if not is_valid_nick(nick):
        parser.error(f"{nick!r} is not a valid nick (letters, digits and -[]\\`_^{{|}})")
    host, port = None, args.port or DEFAULT_PORT
    if args.address:
        try:
            host, port = parse_address(args.address, port)
        except ValueError as exc:
            parser.error(str(exc))
    from chatroom.client.app import make_app  # Textual loads only when we really run

    app = make_app(
        host,
        port,
        nick,
        tuple(args.join),
        args.password,
        account=args.account,
        allow_plain_sasl=args.allow_plain_sasl,
        use_keyring=not args.no_keyring,
    )
    result = app.run()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
