"""A multiline message (IRCv3 ``draft/multiline``) reaching real irssi and WeeChat.

The test client negotiates ``draft/multiline batch message-tags`` and sends three lines
to ``#lan`` as one ``draft/multiline`` batch. irssi and WeeChat, in the room, must show
each of the three as a line of its own, in order, from the test client's nick: whether
the server hands them a batch (a client that took the cap) or plain PRIVMSGs (one that
did not). The server must take the batch without a ``FAIL``.

The tmux sessions, the clients' private homes and configs, the bounded waits and the
teardown come from test_terminal_clients.py; skipped like it when a binary is missing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from chatroom.protocol import Message
from tests.conftest import IRCClient
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

MULTILINE_CAPS = "draft/multiline batch message-tags"


def multiline_client(connect: Callable[..., IRCClient], nick: str) -> IRCClient:
    """A test client registered through CAP negotiation with ``MULTILINE_CAPS`` acked."""
    c = connect()
    c.nick = nick
    c.send("CAP LS 302")
    c.send(f"CAP REQ :{MULTILINE_CAPS}")
    reply = c.expect("CAP", where=lambda m: m.params[1] in ("ACK", "NAK"), timeout=WAIT)
    assert reply.params[1:] == ("ACK", MULTILINE_CAPS), reply
    c.send(f"NICK {nick}")
    c.send(f"USER {nick} 0 * :{nick} test")
    c.send("CAP END")
    c.expect("001", timeout=WAIT)
    c.expect("376", timeout=WAIT)
    return c


def until_pong(c: IRCClient, token: str) -> list[Message]:
    """Send ``PING token``; return everything received before its PONG (bounded by WAIT).

    The server handles a client's lines in order, so a reply to anything sent before
    the PING (a FAIL, say) is in the list."""
    c.send(f"PING :{token}")
    got: list[Message] = []
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for msg in c.collect(quiet=0.1):
            if msg.command == "PONG" and msg.params[-1] == token:
                return got
            got.append(msg)
    raise AssertionError(f"{c.nick}: no PONG {token} within {WAIT:.0f} s; got {got!r}")


def wait_for_lines(
    session: TmuxSession, nick: str, texts: list[str], others: list[TmuxSession]
) -> None:
    """Each of ``texts`` from ``nick`` on a screen line of its own, in order."""
    found = [session.wait_for_line(nick, text, others=others) for text in texts]
    for text, line in zip(texts, found, strict=True):
        strays = [t for t in texts if t != text and t in line]
        assert not strays, (
            f"{session.label}: {text!r} shares its line with {strays!r}: {line!r}\n"
            + screens(session, *others)
        )
    rows = session.screen().splitlines()
    order = [rows.index(line) if line in rows else -1 for line in found]
    assert -1 not in order and order == sorted(order), (
        f"{session.label}: lines missing or out of order (rows {order})\n"
        + screens(session, *others)
    )


def test_a_multiline_batch_shows_as_separate_lines_in_irssi_and_weechat(
    irc_server, connect, tmux_sessions
):
    token = uuid.uuid4().hex[:6]  # makes every line we look for unique to this run
    tester = multiline_client(connect, TEST_NICK)
    tester.join(ROOM)

    irssi = tmux_sessions("irssi")
    weechat = tmux_sessions("weechat")
    start_irssi(irssi, irc_server.host, irc_server.port)
    start_weechat(weechat, irc_server.host, irc_server.port)
    both = (irssi, weechat)

    waiting = {IRSSI_NICK, WEECHAT_NICK}
    while waiting:
        try:
            msg = tester.expect("JOIN", where=lambda m: m.nick in waiting, timeout=WAIT)
        except AssertionError as exc:
            raise AssertionError(f"JOIN from {sorted(waiting)}: {exc}\n{screens(*both)}") from None
        waiting.discard(msg.nick)
    # irssi opens the room in window 2 but stays in the status window; WeeChat switches.
    irssi.send_line(f"/window goto {ROOM}")
    irssi.wait_for_line(IRSSI_NICK, f"has joined {ROOM}", others=[weechat])
    weechat.wait_for_line(WEECHAT_NICK, f"has joined {ROOM}", others=[irssi])

    texts = [
        f"first of three {token}",
        f"second, with ünïcode ✓ {token}",
        f"third and last {token}",
    ]
    ref = f"ml{token}"
    tester.send(f"BATCH +{ref} draft/multiline {ROOM}")
    for text in texts:
        tester.send(f"@batch={ref} PRIVMSG {ROOM} :{text}")
    tester.send(f"BATCH -{ref}")

    replies = until_pong(tester, token)
    failed = [m for m in replies if m.command == "FAIL"]
    assert not failed, f"the server refused the batch: {failed!r}\n{screens(*both)}"

    wait_for_lines(weechat, TEST_NICK, texts, others=[irssi])
    wait_for_lines(irssi, TEST_NICK, texts, others=[weechat])
