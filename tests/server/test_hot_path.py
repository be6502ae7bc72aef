"""The hot path for room lines (commands/messages.room_line) against the general one.

``PRIVMSG #room :text`` and ``NOTICE #room :text`` without tags skip the general parse
and dispatch. Nobody may notice: every line here is sent once as it is and once in
lower case (``privmsg``), which only the general path takes, and each client (plain,
server-time, message-tags, account-tag, the sender with echo-message) must receive
the same bytes for both, apart from each line's own time and msgid. History must keep
both alike too. Real server, real sockets.
"""

from __future__ import annotations

import itertools
import re
import time

import pytest

from chatroom.protocol import Cap, parse
from tests.conftest import IRCClient, ServerFixture, read_until
from tests.server.test_ircv3 import cap_client

pytestmark = pytest.mark.usefixtures("no_errors_logged")

ROOM = "#Hot"
SENDER_CAPS = (
    Cap.ECHO_MESSAGE,
    Cap.MESSAGE_TAGS,
    Cap.SERVER_TIME,
    Cap.ACCOUNT_TAG,
    Cap.BATCH,
    Cap.DRAFT_CHATHISTORY,
)
_tokens = itertools.count()
# a line's own stamp: what differs between two sends of the same text
_STAMP = re.compile(rb"(time|msgid)=[^; ]*")


def raw_until_pong(c: IRCClient) -> list[bytes]:
    """The raw lines the server sent ``c`` before answering a PING sent now."""
    token = f"hp{next(_tokens)}"
    c.send(f"PING :{token}")
    got: list[bytes] = []
    while True:
        if not c.lines and not c._fill(time.monotonic() + 5):
            raise AssertionError(f"{c.nick}: no PONG {token}; got {got[-10:]!r}")
        while c.lines:
            raw = c.lines.popleft()
            msg = parse(raw)
            if msg.command == "PONG" and msg.params[-1] == token:
                return got
            if msg.command != "PING":
                got.append(_STAMP.sub(rb"\1=*", raw))


@pytest.fixture
def room(server_factory, clients):
    """A room with the sender (echo-message, message-tags, logged in) and four
    receivers, one per encoding the server makes."""
    fx = server_factory(accounts=True, password_min_length=1, flood_limit=False)

    def connect(to: ServerFixture) -> IRCClient:
        return clients(to)

    sender = cap_client(connect, fx, "sender", SENDER_CAPS)
    sender.send("REGISTER * * :hunter2")
    sender.expect("REGISTER")
    receivers = [
        cap_client(connect, fx, "plain"),
        cap_client(connect, fx, "timed", [Cap.SERVER_TIME]),
        cap_client(connect, fx, "tagged", [Cap.MESSAGE_TAGS, Cap.SERVER_TIME]),
        cap_client(connect, fx, "acct", [Cap.MESSAGE_TAGS, Cap.ACCOUNT_TAG]),
    ]
    for c in (sender, *receivers):
        c.send(f"JOIN {ROOM}")
        c.expect("366")
    for c in (sender, *receivers):
        raw_until_pong(c)
    return fx, sender, receivers


def both_ways(sender: IRCClient, receivers: list[IRCClient], line: str) -> list[list[bytes]]:
    """Send ``line`` as it is, then with its command in lower case: everyone must see
    the same thing both times. What each got (the sender first), stamps blanked."""
    command, _, rest = line.partition(" ")
    seen = []
    for variant in (line, f"{command.lower()} {rest}"):
        sender.send_raw(variant.encode("utf-8", "surrogateescape") + b"\r\n")
        seen.append([raw_until_pong(c) for c in (sender, *receivers)])
    assert seen[0] == seen[1], line
    return seen[0]


TEXTS = [
    "hello",
    "two words",
    ":)",
    "::double colon",
    " leading and trailing space ",
    "ünïcödé ✓ 😀",
    "tab\there, and \x02bold\x02 \x0304colour",
    "a" * 400,
]


@pytest.mark.parametrize("command", ["PRIVMSG", "NOTICE"])
def test_room_lines_reach_everyone_alike_by_either_path(room, command: str) -> None:
    _fx, sender, receivers = room
    for text in TEXTS:
        seen = both_ways(sender, receivers, f"{command} {ROOM.lower()} :{text}")
        echo, plain, timed, tagged, acct = seen
        # what each got is the line, with the room's name as the room spells it
        body = f":sender!sender@127.0.0.1 {command} {ROOM} :{text}".encode()
        assert plain == [body]
        assert timed == [b"@time=* " + body]
        assert tagged == [b"@time=*;msgid=* " + body]
        assert acct == echo == [b"@account=sender;time=*;msgid=* " + body]


def test_history_keeps_both_alike(room) -> None:
    _fx, sender, receivers = room
    both_ways(sender, receivers, f"PRIVMSG {ROOM} :kept once")
    sender.send(f"CHATHISTORY LATEST {ROOM} * 10")
    got = read_until(sender, lambda m: m.command == "BATCH" and m.params[0].startswith("-"))
    kept = [m for m in got if m.command == "PRIVMSG"]
    assert [m.params for m in kept] == [(ROOM, "kept once")] * 2
    assert [m.source for m in kept] == ["sender!sender@127.0.0.1"] * 2
    assert len({m.tags["msgid"] for m in kept}) == 2


@pytest.mark.parametrize(
    "line",
    [
        "PRIVMSG #nowhere :hi",  # 403
        "NOTICE #nowhere :hi",  # nothing at all
        f"PRIVMSG {ROOM} :",  # 412
        f"PRIVMSG {ROOM}",  # 412
        f"PRIVMSG {ROOM} one :two",  # the text is "one"
        f"PRIVMSG {ROOM}  :two spaces",
        f"PRIVMSG {ROOM},#nowhere :two targets",
        f"PRIVMSG @{ROOM} :operators only",
        f"PRIVMSG {ROOM} :\udcff not UTF-8",  # FAIL INVALID_UTF8
        f"PRIVMSG {ROOM} :" + "x" * 494,  # a line of 512: 417
        f"PRIVMSG {ROOM} :" + "x" * 460,  # fits, but not once relayed with our source: 417
        f"PRIVMSG {ROOM} :" + "x" * 430,  # fits relayed
        "PRIVMSG sender :to a nick",
    ],
)
def test_every_other_case_is_answered_alike(room, line: str) -> None:
    _fx, sender, receivers = room
    both_ways(sender, receivers, line)


def test_who_may_not_speak_is_refused_alike(room, clients) -> None:
    fx, sender, receivers = room
    outsider = clients(fx, "outsider")
    for c in (sender, *receivers):
        raw_until_pong(c)
    seen = both_ways(outsider, [sender, *receivers], f"PRIVMSG {ROOM} :from outside")
    assert [parse(line).command for line in seen[0]] == ["404"]  # +n
    sender.send(f"MODE {ROOM} +m")  # the first to join is its operator
    for c in (sender, *receivers):
        raw_until_pong(c)
    seen = both_ways(receivers[0], [sender, *receivers[1:]], f"PRIVMSG {ROOM} :muted")
    assert [parse(line).command for line in seen[0]] == ["404"]
    assert seen[1:] == [[]] * 4


def test_a_bot_line_carries_the_bot_tag_by_either_path(room) -> None:
    _fx, sender, receivers = room
    sender.send("MODE sender +B")
    raw_until_pong(sender)
    seen = both_ways(sender, receivers, f"PRIVMSG {ROOM} :beep")
    plain, tagged = seen[1], seen[3]
    assert "bot" in parse(tagged[0]).tags  # a tag for clients of message-tags only
    assert parse(plain[0]).params == (ROOM, "beep")
