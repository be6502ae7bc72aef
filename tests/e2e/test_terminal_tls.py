"""Real irssi and WeeChat over TLS, each pinning the server's self-signed certificate.

The server serves TLS beside plain text, its certificate made on first start under
``tmp_path``. irssi and WeeChat know only the TLS port and the fingerprint the server
prints at start, each in its own spelling:

- irssi 1.4: ``use_tls``, ``tls_pinned_cert`` = the SHA-256 fingerprint as the server
  prints it (uppercase hex pairs, colons), and ``tls_verify = "no"``: irssi still
  checks the chain when verifying, and a pin does not excuse a self-signed certificate.
- WeeChat 3.x ``ssl``/``ssl_fingerprint`` (4.x ``tls``/``tls_fingerprint``) = the same
  hex, lowercase, no colons; ``ssl_verify`` stays on, the pin replaces the chain check.

They chat with the test client, which is on the plain-text port; the server's log says
their connection was TLS. With a wrong fingerprint both must refuse: the error on their
screens, and no JOIN ever reaches the room.

The tmux sessions, the clients' private homes and configs, the bounded waits and the
teardown come from test_terminal_clients.py; skipped like it when a binary is missing.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import IRCClient, ServerFixture
from tests.e2e import test_terminal_clients as tc
from tests.e2e.test_terminal_clients import (
    IRSSI_NICK,
    ROOM,
    TEST_NICK,
    WAIT,
    WEECHAT_NICK,
    TmuxSession,
    screens,
    start_irssi,
    start_weechat,
)

pytestmark = pytest.mark.interop
# a fixture: bound in this module so that pytest finds it for the tests here
tmux_sessions = tc.tmux_sessions

# How long a refused client is watched for a JOIN after it showed its error.
REFUSED_FOR = 3.0
# The server's line for a connection that finished its TLS handshake (handler.py).
TLS_CONNECT = re.compile(r"connect from \S+ port \d+ \((TLSv1\.[23]) ")


@pytest.fixture
def irc_server(server_factory: Callable[..., ServerFixture], tmp_path: Path) -> ServerFixture:
    """The server with TLS on an ephemeral port beside plain text, its certificate made
    under ``tmp_path`` (``connect`` and ``tmux_sessions`` use it too)."""
    return server_factory(tls=True, tls_port=0, tls_dir=str(tmp_path / "tls"))


def tls_port(fx: ServerFixture) -> int:
    assert fx.server is not None and fx.server.tls_port is not None
    return fx.server.tls_port


def fingerprint(fx: ServerFixture) -> str:
    """The certificate's SHA-256 as the server prints it: ``AB:CD:...``."""
    assert fx.server is not None and fx.server.tls is not None
    return fx.server.tls.fingerprint


def wrong(fp: str) -> str:
    """``fp`` with its last byte changed: another certificate's fingerprint."""
    last = int(fp[-2:], 16)
    return f"{fp[:-2]}{last ^ 0xFF:02X}"


# ---------------------------------------------------------------------------------------
# the clients, over TLS
# ---------------------------------------------------------------------------------------


def start_irssi_tls(session: TmuxSession, host: str, port: int, pinned: str) -> None:
    """irssi on our TLS port, trusting only the certificate with fingerprint ``pinned``."""
    tls = f'use_tls = "yes";\n    tls_verify = "no";\n    tls_pinned_cert = "{pinned}";'
    start_irssi(session, host, port, tls=tls)


def start_weechat_tls(session: TmuxSession, host: str, port: int, pinned: str) -> None:
    """WeeChat on our TLS port, trusting only the certificate with fingerprint ``pinned``.

    start_weechat adds the server with TLS off; these settings run after and turn it on.
    WeeChat 3.x names the options ssl*, 4.x tls*: each ignores the others' names."""
    hexdigits = pinned.replace(":", "").lower()
    settings = [
        f"/set irc.server.test.{prefix}{option} {value}"
        for prefix in ("ssl", "tls")
        for option, value in (("", "on"), ("_verify", "on"), ("_fingerprint", hexdigits))
    ]
    start_weechat(session, host, port, settings)


# ---------------------------------------------------------------------------------------
# the server side
# ---------------------------------------------------------------------------------------


def tls_connects(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The TLS versions of the connections that completed a handshake, in order."""
    return [m.group(1) for r in caplog.records if (m := TLS_CONNECT.search(r.getMessage()))]


def wait_join(tester: IRCClient, nick: str, *sessions: TmuxSession) -> None:
    try:
        tester.expect("JOIN", where=lambda m: m.nick == nick, timeout=WAIT)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{screens(*sessions)}") from None


def chat_both_ways(tester: IRCClient, client: TmuxSession, nick: str, token: str) -> None:
    """A line typed in ``client`` reaches the test client; one from the test client
    shows on ``client``'s screen."""
    text = f"over tls from {nick} ✓ {token}"
    client.send_line(text)
    try:
        msg = tester.expect("PRIVMSG", where=lambda m: m.nick == nick, timeout=WAIT)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{screens(client)}") from None
    assert msg.params == (ROOM, text), f"{msg!r}\n{screens(client)}"

    text = f"to {nick} in clear, sent on over tls {token}"
    tester.send(f"PRIVMSG {ROOM} :{text}")
    client.wait_for_line(TEST_NICK, text)


def assert_never_joins(tester: IRCClient, nicks: set[str], *sessions: TmuxSession) -> None:
    """No JOIN from ``nicks`` for REFUSED_FOR seconds, and none of them on the server."""
    deadline = time.monotonic() + REFUSED_FOR
    seen: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        seen += [f"{m.nick} {m.command}" for m in tester.collect(quiet=min(left, 0.2))]
    joins = [s for s in seen if s.split()[0] in nicks and s.endswith("JOIN")]
    assert not joins, f"joined with a wrong fingerprint: {joins}\n{screens(*sessions)}"
    for nick in nicks:
        tester.send(f"WHOIS {nick}")
        tester.expect("401", where=lambda m, n=nick: m.params[1] == n)  # no such nick


# ---------------------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------------------


def test_irssi_pins_the_certificate_and_chats_over_tls(
    irc_server, connect, tmux_sessions, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="chatroom.server")
    tester = connect(TEST_NICK)
    tester.join(ROOM)

    irssi = tmux_sessions("irssi")
    port, fp = tls_port(irc_server), fingerprint(irc_server)
    start_irssi_tls(irssi, irc_server.host, port, fp)
    wait_join(tester, IRSSI_NICK, irssi)
    assert len(tls_connects(caplog)) == 1, caplog.text
    # irssi shows the fingerprint it pinned in the server's own format
    irssi.wait_for_line(f"Certificate Fingerprint: {fp} (SHA256)")

    irssi.send_line(f"/window goto {ROOM}")
    irssi.wait_for_line(IRSSI_NICK, f"has joined {ROOM}")
    chat_both_ways(tester, irssi, IRSSI_NICK, uuid.uuid4().hex[:6])


def test_weechat_pins_the_certificate_and_chats_over_tls(
    irc_server, connect, tmux_sessions, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="chatroom.server")
    tester = connect(TEST_NICK)
    tester.join(ROOM)

    weechat = tmux_sessions("weechat")
    port, fp = tls_port(irc_server), fingerprint(irc_server)
    start_weechat_tls(weechat, irc_server.host, port, fp)
    wait_join(tester, WEECHAT_NICK, weechat)
    assert len(tls_connects(caplog)) == 1, caplog.text

    weechat.wait_for_line(WEECHAT_NICK, f"has joined {ROOM}")
    chat_both_ways(tester, weechat, WEECHAT_NICK, uuid.uuid4().hex[:6])
    weechat.send_line("/buffer 1")  # the TLS lines are on the server's buffer
    line = weechat.wait_for_line(f"irc: connecting to server {irc_server.host}/{port}")
    assert "(SSL)" in line or "(TLS)" in line, screens(weechat)  # 3.x says SSL, 4.x TLS
    weechat.wait_for_line("gnutls: certificate fingerprint matches")


def test_a_wrong_pinned_fingerprint_is_refused_by_both(irc_server, connect, tmux_sessions) -> None:
    tester = connect(TEST_NICK)
    tester.join(ROOM)

    irssi = tmux_sessions("irssi")
    weechat = tmux_sessions("weechat")
    port, bad = tls_port(irc_server), wrong(fingerprint(irc_server))
    start_irssi_tls(irssi, irc_server.host, port, bad)
    start_weechat_tls(weechat, irc_server.host, port, bad)

    # irssi finishes the handshake, then compares the pin, says why and hangs up
    irssi.wait_for_line("Pinned certificate mismatch", others=[weechat])
    irssi.wait_for_line("Connection lost to", others=[weechat])
    # WeeChat opened the room's buffer before connecting: the error is on the server's
    weechat.send_line("/buffer 1")
    weechat.wait_for_line("certificate fingerprint does NOT match", others=[irssi])
    weechat.wait_for_line("TLS handshake failed", others=[irssi])
    assert_never_joins(tester, {IRSSI_NICK, WEECHAT_NICK}, irssi, weechat)
