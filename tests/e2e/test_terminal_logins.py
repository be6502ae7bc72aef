"""Real WeeChat and irssi logging in to accounts on our server: SASL and NickServ.

The account is made first through the real server by the test client (``REGISTER``);
then WeeChat logs in with SASL SCRAM-SHA-256 and irssi with SASL PLAIN, or irssi with
``/msg NickServ IDENTIFY`` typed into it. A login counts only when both sides agree:
the client's screen says so (900 "You are now logged in as ..."), and the test client's
``WHOIS`` gets 330 "is logged in as". A wrong password must show SASL's failure (904)
and leave WHOIS without a 330.

The tmux sessions, the clients' private homes and configs, the bounded waits and the
teardown come from test_terminal_clients.py; skipped like it when a binary is missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

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

WEECHAT_PASSWORD = "wee-scram-pass"
IRSSI_PASSWORD = "irssi-plain-pass"


@pytest.fixture
def irc_server(server_factory: Callable[..., ServerFixture]) -> ServerFixture:
    """One server for the test client and the terminal clients (``connect`` and
    ``tmux_sessions`` use it too): 4096 PBKDF2 rounds, SCRAM's least (RFC 7677)."""
    return server_factory(scram_iterations=4096)


# ---------------------------------------------------------------------------------------
# the server side
# ---------------------------------------------------------------------------------------


def account_and_tester(connect: Callable[..., IRCClient], nick: str, password: str) -> IRCClient:
    """Create the account ``nick`` through the server (REGISTER) and leave the nick free;
    return the test client, in ROOM, where the terminal client will autojoin."""
    c = connect(nick)
    c.send(f"REGISTER {nick} * {password}")
    done = c.expect("REGISTER")
    assert done.params[:2] == ("SUCCESS", nick), done
    c.send("QUIT")
    assert c.wait_closed(), f"{nick}: the server did not close after QUIT"
    tester = connect(TEST_NICK)
    tester.join(ROOM)
    return tester


def whois_account(tester: IRCClient, nick: str, *sessions: TmuxSession) -> str | None:
    """The account ``WHOIS nick`` names (330), or None; ``nick`` must be on the server."""
    tester.send(f"WHOIS {nick}")
    replies: list[tuple[str, ...]] = []
    deadline = time.monotonic() + WAIT
    while ("318", TEST_NICK, nick) not in [r[:3] for r in replies]:
        assert time.monotonic() < deadline, f"no end of WHOIS: {replies}\n{screens(*sessions)}"
        replies += [(m.command, *m.params) for m in tester.collect(quiet=0.1)]
    assert ("311", TEST_NICK, nick) in [r[:3] for r in replies], (
        f"{nick} is not on the server: {replies}\n{screens(*sessions)}"
    )
    logged_in = [r[3:] for r in replies if r[:3] == ("330", TEST_NICK, nick)]
    if not logged_in:
        return None
    assert len(logged_in) == 1 and logged_in[0][1:] == ("is logged in as",), replies
    return logged_in[0][0]


def wait_join(tester: IRCClient, nick: str, *sessions: TmuxSession) -> None:
    """Wait until ``nick`` joins ROOM (autojoin): it has registered with the server."""
    try:
        tester.expect("JOIN", where=lambda m: m.nick == nick, timeout=WAIT)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{screens(*sessions)}") from None


# ---------------------------------------------------------------------------------------
# the clients, with login settings
# ---------------------------------------------------------------------------------------


def weechat_sasl(mechanism: str, password: str) -> list[str]:
    """WeeChat's settings to log in as WEECHAT_NICK; on a failed login, go on without."""
    return [
        f"/set irc.server.test.sasl_mechanism {mechanism}",
        f"/set irc.server.test.sasl_username {WEECHAT_NICK}",
        f'/set irc.server.test.sasl_password "{password}"',
        "/set irc.server.test.sasl_fail continue",
    ]


def irssi_sasl(password: str) -> str:
    """irssi's chatnet settings to log in as IRSSI_NICK with SASL PLAIN (irssi >= 1.0)."""
    return (
        f'sasl_mechanism = "PLAIN"; sasl_username = "{IRSSI_NICK}"; sasl_password = "{password}";'
    )


# ---------------------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------------------


def test_weechat_logs_in_with_sasl_scram_sha_256(irc_server, connect, tmux_sessions) -> None:
    tester = account_and_tester(connect, WEECHAT_NICK, WEECHAT_PASSWORD)

    weechat = tmux_sessions("weechat")
    settings = weechat_sasl("scram-sha-256", WEECHAT_PASSWORD)
    start_weechat(weechat, irc_server.host, irc_server.port, settings)
    wait_join(tester, WEECHAT_NICK, weechat)

    assert whois_account(tester, WEECHAT_NICK, weechat) == WEECHAT_NICK
    # WeeChat has switched to the room; the login lines are on the core/server buffer
    weechat.send_line("/buffer 1")
    weechat.wait_for_line(f"You are now logged in as {WEECHAT_NICK}")
    weechat.wait_for_line("SASL authentication successful")


def test_weechat_with_a_wrong_password_is_told_and_not_logged_in(
    irc_server, connect, tmux_sessions
) -> None:
    tester = account_and_tester(connect, WEECHAT_NICK, WEECHAT_PASSWORD)

    weechat = tmux_sessions("weechat")
    settings = weechat_sasl("scram-sha-256", "not-" + WEECHAT_PASSWORD)
    start_weechat(weechat, irc_server.host, irc_server.port, settings)
    wait_join(tester, WEECHAT_NICK, weechat)  # sasl_fail continue: connected all the same

    assert whois_account(tester, WEECHAT_NICK, weechat) is None
    weechat.send_line("/buffer 1")
    weechat.wait_for_line("SASL authentication failed")
    screen = weechat.screen()
    assert "You are now logged in" not in screen, screens(weechat)
    assert "SASL authentication successful" not in screen, screens(weechat)
    # the nick is the account's: the server's guard asks whoever holds it to log in
    weechat.wait_for_line("NickServ", f"{WEECHAT_NICK} is a registered nick")


def test_irssi_logs_in_with_sasl_plain(irc_server, connect, tmux_sessions) -> None:
    tester = account_and_tester(connect, IRSSI_NICK, IRSSI_PASSWORD)

    irssi = tmux_sessions("irssi")
    start_irssi(irssi, irc_server.host, irc_server.port, irssi_sasl(IRSSI_PASSWORD))
    wait_join(tester, IRSSI_NICK, irssi)

    assert whois_account(tester, IRSSI_NICK, irssi) == IRSSI_NICK
    irssi.wait_for_line(f"You are now logged in as {IRSSI_NICK}")
    irssi.wait_for_line("SASL authentication succeeded")  # irssi's words for 903


def test_irssi_without_sasl_logs_in_through_nickserv(irc_server, connect, tmux_sessions) -> None:
    tester = account_and_tester(connect, IRSSI_NICK, IRSSI_PASSWORD)

    irssi = tmux_sessions("irssi")
    start_irssi(irssi, irc_server.host, irc_server.port)
    wait_join(tester, IRSSI_NICK, irssi)
    assert whois_account(tester, IRSSI_NICK, irssi) is None
    irssi.wait_for_line("NickServ", f"{IRSSI_NICK} is a registered nick")

    irssi.send_line(f"/msg NickServ IDENTIFY {IRSSI_PASSWORD}")
    irssi.wait_for_line(f"You are now logged in as {IRSSI_NICK}")  # 900, status window
    # /msg opened a query window with NickServ: its answer is there
    irssi.send_line("/window goto NickServ")
    irssi.wait_for_line("NickServ", f"You are now logged in as {IRSSI_NICK}.")
    assert whois_account(tester, IRSSI_NICK, irssi) == IRSSI_NICK
