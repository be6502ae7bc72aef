"""Identity on real sockets: private history only its owner reads, accounts and logins.

Accounts (issue 10) end to end: SASL PLAIN and SCRAM-SHA-256 (IRCv3 sasl-3.1/3.2),
REGISTER (draft/account-registration), PASS account:password, NickServ, what others
see of an account (account-notify, account-tag, extended-join, WHOIS, WHOX), nick
ownership, the brute-force limits, bans by account and operators by account.
Registered rooms across a restart are in test_rooms_registered.py.
"""

from __future__ import annotations

import base64
import itertools
import logging
import re
import socket
import time
from collections.abc import Callable

import pytest

from chatroom.protocol import Message
from chatroom.sasl import ScramClient, plain_response
from chatroom.server.server import ChatServer
from tests.conftest import IRCClient, ServerFixture
from tests.conftest import read_until as until

HIST_CAPS = "batch server-time message-tags draft/chathistory"
EVER = "timestamp=2000-01-01T00:00:00.000Z timestamp=2999-01-01T00:00:00.000Z"
# Every server here: SCRAM at the RFC 7677 floor, so a login costs milliseconds, and no
# fake lag, so a test that sends many lines does not wait out its own flood control.
FAST = {"scram_iterations": 4096, "flood_limit": False}
PASSWORD = "secretpw"
NICKSERV = "NickServ!NickServ@services"
GUEST = re.compile(r"Guest\d{5}\Z")
# The numerics that end a SASL exchange: 903 success, 904 failure, 905 too long,
# 906 aborted, 907 already authenticated.
SASL_END = ("903", "904", "905", "906", "907")
_tokens = itertools.count()


# --- fixtures and helpers -------------------------------------------------------------------


class _PromptServer(ChatServer):
    """The real server with its liveness timer, which enforces the nick guard, running
    every 0.1 s instead of every second."""

    tick_interval = 0.1


@pytest.fixture
def chat_server_class() -> type[ChatServer]:
    """conftest's ``server_factory`` runs _PromptServer here."""
    return _PromptServer


@pytest.fixture
def connect(
    server_factory: Callable[..., ServerFixture], clients: Callable[..., IRCClient]
) -> Callable[..., IRCClient]:
    """Test clients, to a FAST server started on first use (or to ``to=``): tests with
    settings of their own start no server they do not use."""
    default: list[ServerFixture] = []

    def make(nick: str | None = None, to: ServerFixture | None = None) -> IRCClient:
        if to is None:
            if not default:
                default.append(server_factory(**FAST))
            to = default[0]
        return clients(to, nick)

    return make


def sync(c: IRCClient) -> list[Message]:
    """What the server sent ``c`` before answering a PING sent now (the PONG left out):
    a client's lines are answered in order, so this holds every reply to what it sent."""
    token = f"sync{next(_tokens)}"
    c.send(f"PING :{token}")
    return until(c, lambda m: m.command == "PONG" and m.params[-1] == token)[:-1]


def commands(lines: list[Message]) -> list[str]:
    return [m.command for m in lines]


def cap_ls(c: IRCClient) -> dict[str, str]:
    """CAP LS 302: each offered capability and its value ('' when it has none)."""
    c.send("CAP LS 302")
    offered: dict[str, str] = {}
    while True:
        line = c.expect("CAP", where=lambda m: m.params[1] == "LS")
        for token in line.params[-1].split():
            name, _, value = token.partition("=")
            offered[name] = value
        if line.params[2] != "*":
            return offered


def request(c: IRCClient, caps: str) -> None:
    c.send(f"CAP REQ :{caps}")
    reply = c.expect("CAP", where=lambda m: m.params[1] in ("ACK", "NAK"))
    assert reply.params[1:] == ("ACK", caps), reply


def cap_client(
    connect: Callable[..., IRCClient],
    nick: str,
    caps: str = HIST_CAPS,
    to: ServerFixture | None = None,
) -> IRCClient:
    """A registered client that negotiated ``caps``."""
    c = connect(to=to)
    c.send("CAP LS 302")
    request(c, caps)
    c.send("CAP END")
    c.register(nick)
    return c


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def pieces(response: str) -> list[str]:
    """A SASL response as AUTHENTICATE parameters: 400-byte chunks, and '+' after a
    last chunk of exactly 400 (or for an empty response)."""
    parts = [response[i : i + 400] for i in range(0, len(response), 400)]
    if len(response) % 400 == 0:
        parts.append("+")
    return parts


def sasl_plain(c: IRCClient, account: str, password: str) -> list[Message]:
    """AUTHENTICATE PLAIN as a client runs it; the lines up to the outcome (903, 904...)."""
    c.send("AUTHENTICATE PLAIN")
    assert c.expect("AUTHENTICATE").params == ("+",)
    for part in pieces(b64(plain_response(account, password))):
        c.send(f"AUTHENTICATE {part}")
    return until(c, lambda m: m.command in SASL_END)


def login_client(
    connect: Callable[..., IRCClient],
    nick: str,
    account: str | None = None,
    password: str = PASSWORD,
    caps: str = "",
    to: ServerFixture | None = None,
) -> IRCClient:
    """A client that logged in with SASL PLAIN while registering, as IRCv3 clients do."""
    c = connect(to=to)
    c.nick = nick
    c.send("CAP LS 302")
    request(c, " ".join(["sasl", *caps.split()]))
    c.send(f"NICK {nick}")
    c.send(f"USER {nick} 0 * :{nick} test")
    outcome = sasl_plain(c, account or nick, password)
    assert outcome[-1].command == "903", outcome
    c.send("CAP END")
    c.expect("001")
    c.expect("376")
    return c


def make_account(
    connect: Callable[..., IRCClient],
    name: str,
    password: str = PASSWORD,
    to: ServerFixture | None = None,
) -> None:
    """Register account ``name`` with REGISTER, then leave (the nick is free again)."""
    c = connect(name, to=to)
    c.send(f"REGISTER * * {password}")
    assert c.expect("REGISTER").params[:2] == ("SUCCESS", name)
    c.send("QUIT")
    assert c.wait_closed()
    c.close()  # the server's side of it ends only when ours does


def whois(c: IRCClient, nick: str) -> dict[str, Message]:
    """The WHOIS reply to ``nick``, by numeric."""
    c.send(f"WHOIS {nick}")
    return {m.command: m for m in until(c, lambda m: m.command == "318")}


def account_of(c: IRCClient, nick: str) -> str | None:
    """The account WHOIS shows for ``nick`` (330), or None."""
    found = whois(c, nick).get("330")
    return found.params[2] if found is not None else None


def from_service(lines: list[Message], service: str = "NickServ") -> list[str]:
    """The texts of the NOTICEs a service sent among ``lines``."""
    source = f"{service}!{service}@services"
    return [m.params[-1] for m in lines if m.command == "NOTICE" and m.source == source]


def say(c: IRCClient, line: str) -> list[Message]:
    """Send ``line``; everything the server answered it with."""
    c.send(line)
    return sync(c)


def logged_in_as(lines: list[Message]) -> list[str]:
    """The accounts of the 900 RPL_LOGGEDIN among ``lines``."""
    return [m.params[2] for m in lines if m.command == "900"]


# --- private history (issue 9) ----------------------------------------------------------------


def batch_lines(c: IRCClient) -> list[Message]:
    """The lines of the batch that starts now, up to its end."""
    start = c.expect("BATCH")
    end = "-" + start.params[0][1:]
    return until(c, lambda m: m.command == "BATCH" and m.params[0] == end)


def history_texts(c: IRCClient, command: str) -> list[str]:
    c.send(command)
    return [m.params[1] for m in batch_lines(c) if m.command == "PRIVMSG"]


def targets(c: IRCClient) -> list[str]:
    c.send(f"CHATHISTORY TARGETS {EVER} 10")
    return [m.params[1] for m in batch_lines(c) if m.command == "CHATHISTORY"]


def test_a_nick_taken_later_reads_no_private_history(connect) -> None:
    # the leak as reported: alice writes to bob, both leave, someone takes "bob"
    alice = cap_client(connect, "alice")
    bob = cap_client(connect, "bob")
    alice.send("PRIVMSG bob :the door code is 4711")
    bob.expect("PRIVMSG")
    assert history_texts(bob, "CHATHISTORY LATEST alice * 10") == ["the door code is 4711"]
    alice.send("QUIT")
    bob.send("QUIT")
    assert alice.wait_closed() and bob.wait_closed()

    impostor = cap_client(connect, "bob")
    assert targets(impostor) == []
    assert history_texts(impostor, "CHATHISTORY LATEST alice * 10") == []
    # what reaches the new "bob" from now on is its own to read back
    carol = cap_client(connect, "carol")
    carol.send("PRIVMSG bob :hello, whoever you are")
    impostor.expect("PRIVMSG")
    assert history_texts(impostor, "CHATHISTORY LATEST carol * 10") == ["hello, whoever you are"]
    assert targets(impostor) == ["carol"]


def test_private_history_follows_the_account_not_the_nick(connect) -> None:
    make_account(connect, "alice")
    make_account(connect, "bob")
    alice = login_client(connect, "alice", caps=HIST_CAPS)
    bob = login_client(connect, "bob", caps=HIST_CAPS)
    alice.send("PRIVMSG bob :the door code is 4711")
    bob.expect("PRIVMSG")
    bob.send("PRIVMSG alice :thanks, see you there")
    alice.expect("PRIVMSG")
    for c in (alice, bob):
        c.send("QUIT")
        assert c.wait_closed()
    both = ["the door code is 4711", "thanks, see you there"]

    # the account reads it back, under its own nick or another
    for nick in ("bob", "robert"):
        back = login_client(connect, nick, account="bob", caps=HIST_CAPS)
        assert history_texts(back, "CHATHISTORY LATEST alice * 10") == both
        assert targets(back) == ["alice"]
        back.send("QUIT")
        assert back.wait_closed()

    # the nick without the account reads nothing of it
    impostor = cap_client(connect, "bob")
    assert history_texts(impostor, "CHATHISTORY LATEST alice * 10") == []
    assert targets(impostor) == []


# --- SASL PLAIN -------------------------------------------------------------------------------


def test_sasl_plain_before_registration_logs_in_before_the_welcome(connect) -> None:
    make_account(connect, "alice")
    c = connect()
    c.nick = "alice"
    offered = cap_ls(c)
    assert offered["sasl"] == "PLAIN,SCRAM-SHA-256"
    request(c, "sasl")
    c.send("NICK alice")
    c.send("USER alice 0 * :Alice A")
    c.send("AUTHENTICATE PLAIN")
    assert c.expect("AUTHENTICATE").params == ("+",)
    c.send("AUTHENTICATE " + b64(plain_response("alice", PASSWORD)))
    lines = until(c, lambda m: m.command in SASL_END)
    assert commands(lines)[-1] == "903"
    assert logged_in_as(lines) == ["alice"]
    assert "001" not in commands(lines)  # registration waits for CAP END
    c.send("CAP END")
    c.expect("001")
    c.expect("376")
    assert account_of(connect("bob"), "alice") == "alice"


def test_sasl_plain_after_registration(connect) -> None:
    make_account(connect, "alice")
    c = cap_client(connect, "alice", "sasl")
    observer = connect("bob")
    assert account_of(observer, "alice") is None
    lines = sasl_plain(c, "alice", PASSWORD)
    assert [m.command for m in lines if m.command in ("900", "903")] == ["900", "903"]
    assert logged_in_as(lines) == ["alice"]
    assert account_of(observer, "alice") == "alice"


def test_sasl_plain_with_a_wrong_password_fails_and_logs_nobody_in(connect) -> None:
    make_account(connect, "alice")
    c = connect()
    c.nick = "alice"
    c.send("CAP LS 302")
    request(c, "sasl")
    c.send("NICK alice")
    c.send("USER alice 0 * :Alice A")
    before = sasl_plain(c, "alice", "not-the-password")
    assert commands(before)[-1] == "904"
    c.send("CAP END")
    c.expect("001")
    c.expect("376")
    after = sasl_plain(c, "alice", "still-not-it")  # and once registered
    assert commands(after)[-1] == "904"
    assert logged_in_as(before + after) == []
    assert account_of(connect("bob"), "alice") is None


# --- SASL SCRAM-SHA-256 -------------------------------------------------------------------------


def unb64(msg: Message) -> bytes:
    assert msg.command == "AUTHENTICATE", msg
    return base64.b64decode(msg.params[0])


def scram_first(c: IRCClient, scram: ScramClient) -> bytes:
    """Start SCRAM-SHA-256 and send the client-first message; the server-first."""
    c.send("AUTHENTICATE SCRAM-SHA-256")
    assert c.expect("AUTHENTICATE").params == ("+",)
    c.send("AUTHENTICATE " + b64(scram.first()))
    return unb64(until(c, lambda m: m.command in ("AUTHENTICATE", *SASL_END))[-1])


def attributes(message: bytes) -> dict[str, str]:
    """``r=...,s=...,i=...`` as a dict."""
    return dict(part.split("=", 1) for part in message.decode().split(","))


def test_sasl_scram_sha_256_proves_both_sides(connect) -> None:
    make_account(connect, "alice")
    c = cap_client(connect, "alice", "sasl")
    scram = ScramClient("alice", PASSWORD)
    server_first = scram_first(c, scram)
    c.send("AUTHENTICATE " + b64(scram.final(server_first)))
    server_final = unb64(until(c, lambda m: m.command in ("AUTHENTICATE", *SASL_END))[-1])
    scram.verify(server_final)  # raises unless the server knew the password's keys
    assert scram.authenticated
    c.send("AUTHENTICATE +")
    lines = until(c, lambda m: m.command in SASL_END)
    assert [m.command for m in lines if m.command in ("900", *SASL_END)] == ["900", "903"]
    assert logged_in_as(lines) == ["alice"]
    assert account_of(connect("bob"), "alice") == "alice"


def test_sasl_scram_with_a_wrong_password_fails(connect) -> None:
    make_account(connect, "alice")
    c = cap_client(connect, "alice", "sasl")
    scram = ScramClient("alice", "not-the-password")
    server_first = scram_first(c, scram)
    c.send("AUTHENTICATE " + b64(scram.final(server_first)))
    lines = until(c, lambda m: m.command in SASL_END)
    assert commands(lines) == ["904"]  # no server-final: the proof was wrong
    assert account_of(c, "alice") is None


def test_sasl_scram_for_an_unknown_account_fails_only_at_the_proof(connect) -> None:
    make_account(connect, "alice")
    c = cap_client(connect, "someone", "sasl")
    client_nonce = "f1xedClientNonce"
    scram = ScramClient("nobody", PASSWORD, nonce=client_nonce)
    server_first = scram_first(c, scram)
    attrs = attributes(server_first)
    # a server-first like any other: our nonce and more, a salt, a count
    assert attrs["r"].startswith(client_nonce) and len(attrs["r"]) > len(client_nonce)
    assert len(base64.b64decode(attrs["s"])) == 16
    assert int(attrs["i"]) >= 4096
    c.send("AUTHENTICATE " + b64(scram.final(server_first)))
    lines = until(c, lambda m: m.command in SASL_END)
    assert commands(lines) == ["904"]
    assert account_of(c, "someone") is None


def test_scram_server_first_does_not_tell_unknown_accounts_from_real_ones(connect) -> None:
    make_account(connect, "alice")
    c = cap_client(connect, "someone", "sasl")
    real = attributes(scram_first(c, ScramClient("alice", "guess")))
    c.send("AUTHENTICATE *")
    c.expect("906")
    unknown = attributes(scram_first(c, ScramClient("nobody", "guess")))
    c.send("AUTHENTICATE *")
    c.expect("906")
    assert len(base64.b64decode(unknown["s"])) == len(base64.b64decode(real["s"]))
    assert unknown["i"] == real["i"]


# --- SASL: the edges of the exchange --------------------------------------------------------


def sasl_ready(connect: Callable[..., IRCClient], nick: str = "alice") -> IRCClient:
    """A client mid-registration that requested sasl and gave NICK and USER."""
    c = connect()
    c.nick = nick
    c.send("CAP LS 302")
    request(c, "sasl")
    c.send(f"NICK {nick}")
    c.send(f"USER {nick} 0 * :{nick} test")
    return c


def test_authenticate_star_aborts_the_exchange_with_906(connect) -> None:
    make_account(connect, "alice")
    c = sasl_ready(connect)
    c.send("AUTHENTICATE PLAIN")
    c.expect("AUTHENTICATE")
    c.send("AUTHENTICATE *")
    assert commands(until(c, lambda m: m.command in SASL_END)) == ["906"]
    assert logged_in_as(sasl_plain(c, "alice", PASSWORD)) == ["alice"]  # a new one may start


def test_a_chunk_over_400_bytes_is_refused_with_905(connect) -> None:
    make_account(connect, "alice")
    c = sasl_ready(connect)
    c.send("AUTHENTICATE PLAIN")
    c.expect("AUTHENTICATE")
    c.send("AUTHENTICATE " + "A" * 401)
    assert commands(until(c, lambda m: m.command in SASL_END)) == ["905"]
    assert logged_in_as(sasl_plain(c, "alice", PASSWORD)) == ["alice"]


def test_invalid_base64_fails_with_904_and_a_retry_succeeds(connect) -> None:
    make_account(connect, "alice")
    c = sasl_ready(connect)
    c.send("AUTHENTICATE PLAIN")
    c.expect("AUTHENTICATE")
    c.send("AUTHENTICATE not*base64!")
    assert commands(until(c, lambda m: m.command in SASL_END)) == ["904"]
    lines = sasl_plain(c, "alice", PASSWORD)
    assert commands(lines)[-1] == "903"
    assert logged_in_as(lines) == ["alice"]


def test_an_unknown_mechanism_gets_908_with_the_list_then_904(connect) -> None:
    c = sasl_ready(connect)
    c.send("AUTHENTICATE EXTERNAL")
    lines = until(c, lambda m: m.command in SASL_END)
    assert commands(lines) == ["908", "904"]
    assert lines[0].params[1].split(",") == ["PLAIN", "SCRAM-SHA-256"]


@pytest.mark.parametrize(
    ("length", "chunks"),
    [(350, ["400", "76"]), (293, ["400", "+"]), (593, ["400", "400", "+"])],
    ids=["400+76", "400+plus", "800+plus"],
)
def test_a_plain_response_in_several_chunks_is_put_back_together(
    connect, length: int, chunks: list[str]
) -> None:
    password = "p" * length
    make_account(connect, "alice", password)  # a REGISTER line may carry 600 bytes of it
    response = b64(plain_response("alice", password))
    sent = pieces(response)
    assert [p if p == "+" else str(len(p)) for p in sent] == chunks
    c = sasl_ready(connect)
    c.send("AUTHENTICATE PLAIN")
    c.expect("AUTHENTICATE")
    for part in sent[:-1]:
        c.send(f"AUTHENTICATE {part}")
    assert "900" not in commands(sync(c))  # nothing happens before the last piece
    c.send(f"AUTHENTICATE {sent[-1]}")
    lines = until(c, lambda m: m.command in SASL_END)
    assert commands(lines)[-1] == "903"
    assert logged_in_as(lines) == ["alice"]


def test_authenticate_without_the_sasl_capability_fails_and_registration_goes_on(
    connect,
) -> None:
    make_account(connect, "alice")
    c = connect()
    c.nick = "alice"
    c.send("NICK alice")
    c.send("AUTHENTICATE PLAIN")
    assert commands(until(c, lambda m: m.command in SASL_END)) == ["904"]
    c.send("USER alice 0 * :Alice A")
    c.expect("001")
    c.expect("376")
    assert account_of(c, "alice") is None


def test_cap_end_during_an_exchange_aborts_it_with_906_then_welcomes(connect) -> None:
    make_account(connect, "alice")
    c = sasl_ready(connect)
    c.send("AUTHENTICATE PLAIN")
    c.expect("AUTHENTICATE")
    c.send("CAP END")
    lines = until(c, lambda m: m.command == "001")
    assert "906" in commands(lines)
    assert commands(lines).index("906") < commands(lines).index("001")
    c.expect("376")
    # the exchange is over: this payload is a new (unknown) mechanism, not a password
    c.send("AUTHENTICATE " + b64(plain_response("alice", PASSWORD)))
    assert commands(until(c, lambda m: m.command in SASL_END))[-1] == "904"
    assert account_of(c, "alice") is None


# --- REGISTER (draft/account-registration) ------------------------------------------------------


def test_register_before_connection_registration(connect) -> None:
    c = connect()
    c.nick = "alice"
    offered = cap_ls(c)
    assert offered["draft/account-registration"] == "before-connect"
    request(c, "draft/account-registration")
    c.send("NICK alice")
    c.send(f"REGISTER * * {PASSWORD}")
    assert c.expect("REGISTER").params[:2] == ("SUCCESS", "alice")
    assert c.expect("900").params[2] == "alice"
    c.send("USER alice 0 * :Alice A")
    c.send("CAP END")
    c.expect("001")
    c.expect("376")
    observer = connect("bob")
    assert account_of(observer, "alice") == "alice"
    # the account is real: another connection logs in to it
    again = sasl_ready(connect, "alice2")
    assert logged_in_as(sasl_plain(again, "alice", PASSWORD)) == ["alice"]


def test_register_after_connection_registration(connect) -> None:
    c = connect("bob")
    c.send(f"REGISTER * * {PASSWORD}")
    lines = until(c, lambda m: m.command == "900")
    success = [m for m in lines if m.command == "REGISTER"]
    assert [m.params[:2] for m in success] == [("SUCCESS", "bob")]
    assert logged_in_as(lines) == ["bob"]
    assert account_of(connect("carol"), "bob") == "bob"


# (nick, line, FAIL code) with account alice registered and bob online
REGISTER_REFUSALS = [
    ("alice", f"REGISTER * * {PASSWORD}", "ACCOUNT_EXISTS"),  # the account exists
    ("dave", f"REGISTER bob * {PASSWORD}", "ACCOUNT_EXISTS"),  # bob is someone's nick
    ("erin", f"REGISTER carol * {PASSWORD}", "ACCOUNT_NAME_MUST_BE_NICK"),
    ("frank", "REGISTER * * short", "WEAK_PASSWORD"),  # below password_min_length
    ("grace", f"REGISTER NickServ * {PASSWORD}", "BAD_ACCOUNT_NAME"),
]


def test_register_refusals_say_why_and_store_nothing(connect) -> None:
    make_account(connect, "alice")
    connect("bob")
    for nick, line, code in REGISTER_REFUSALS:
        c = connect(nick)
        lines = say(c, line)
        fails = [m for m in lines if m.command == "FAIL"]
        assert [m.params[:2] for m in fails] == [("REGISTER", code)], line
        assert "REGISTER" not in commands(lines) and logged_in_as(lines) == []
        name = line.split()[1] if line.split()[1] != "*" else nick
        if name != "alice":  # nothing was stored
            assert from_service(say(c, f"NS INFO {name}")) == [f"{name} is not registered."]


def test_register_while_logged_in_is_already_authenticated(connect) -> None:
    make_account(connect, "alice")
    c = login_client(connect, "alice")
    lines = say(c, "REGISTER * * anotherpassword")
    assert [m.params[:2] for m in lines if m.command == "FAIL"] == [
        ("REGISTER", "ALREADY_AUTHENTICATED")
    ]


def test_register_before_connect_can_be_turned_off(server_factory, connect) -> None:
    fx = server_factory(register_before_connect=False, **FAST)
    c = connect(to=fx)
    c.nick = "alice"
    assert cap_ls(c)["draft/account-registration"] == ""
    c.send("NICK alice")
    lines = say(c, f"REGISTER * * {PASSWORD}")
    assert [m.params[:2] for m in lines if m.command == "FAIL"] == [
        ("REGISTER", "COMPLETE_CONNECTION_REQUIRED")
    ]
    c.send("CAP END")
    c.send("USER alice 0 * :Alice A")
    c.expect("376")
    assert "REGISTER" in commands(say(c, f"REGISTER * * {PASSWORD}"))  # once connected


def test_a_register_flood_from_one_address_is_refused_and_stores_nothing(
    server_factory, connect
) -> None:
    fx = server_factory(exempt_loopback=False, registrations=2, **FAST)
    for name in ("first", "second"):
        c = connect(name, to=fx)
        assert "REGISTER" in commands(say(c, f"REGISTER * * {PASSWORD}"))
    third = connect("third", to=fx)
    lines = say(third, f"REGISTER * * {PASSWORD}")
    assert [m.params[:2] for m in lines if m.command == "FAIL"] == [
        ("REGISTER", "TEMPORARILY_UNAVAILABLE")
    ]
    assert logged_in_as(lines) == []
    # nothing was stored for it: neither NickServ nor SASL knows "third"
    other = cap_client(connect, "other", "sasl", to=fx)
    assert from_service(say(other, f"NS IDENTIFY third {PASSWORD}")) == [
        "Not logged in: Invalid account name or password."
    ]
    assert commands(sasl_plain(other, "third", PASSWORD))[-1] == "904"
    assert from_service(say(other, "NS INFO second"))[0].startswith("Account second,")


# --- PASS account:password ------------------------------------------------------------------------


def test_pass_account_and_password_logs_in_while_registering(connect) -> None:
    make_account(connect, "alice")
    c = connect()
    c.nick = "alice"
    c.send(f"PASS alice:{PASSWORD}")
    c.send("NICK alice")
    c.send("USER alice 0 * :Alice A")
    burst = until(c, lambda m: m.command == "376")
    assert logged_in_as(burst) == ["alice"]
    assert account_of(connect("bob"), "alice") == "alice"


def test_pass_alone_is_the_password_of_the_nicks_account(connect) -> None:
    make_account(connect, "alice")
    c = connect()
    c.nick = "somebody"
    c.send(f"PASS {PASSWORD}")
    c.send("NICK alice")
    c.send("USER alice 0 * :Alice A")
    assert logged_in_as(until(c, lambda m: m.command == "376")) == ["alice"]


def test_a_wrong_pass_says_so_and_the_connection_stays_unauthenticated(connect) -> None:
    make_account(connect, "alice")
    c = connect()
    c.nick = "alice"
    c.send("PASS alice:not-the-password")
    c.send("NICK alice")
    c.send("USER alice 0 * :Alice A")
    burst = until(c, lambda m: m.command == "376")
    assert "001" in commands(burst) and logged_in_as(burst) == []
    notices = [m.params[-1] for m in burst if m.command == "NOTICE"]
    assert any("Login with PASS failed" in n for n in notices), notices
    assert account_of(c, "alice") is None and not c.closed  # on, unauthenticated


# --- NickServ -----------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["PRIVMSG NickServ :", "NS "])
def test_nickserv_register_and_identify(connect, prefix: str) -> None:
    c = connect("alice")
    lines = say(c, f"{prefix}REGISTER {PASSWORD}")
    assert from_service(lines) == ["Account alice registered; you are logged in."]
    assert all(
        m.source == NICKSERV and m.params[0] == "alice" for m in lines if m.command == "NOTICE"
    )
    assert logged_in_as(lines) == ["alice"]
    c.send("QUIT")
    assert c.wait_closed()

    same_nick = connect("alice")  # IDENTIFY <password>: the account of my nick
    assert same_nick.expect("NOTICE").params[-1].startswith("alice is a registered nick.")
    lines = say(same_nick, f"{prefix}IDENTIFY {PASSWORD}")
    assert from_service(lines) == ["You are now logged in as alice."]
    assert logged_in_as(lines) == ["alice"]

    other_nick = connect("bob")  # IDENTIFY <account> <password>
    lines = say(other_nick, f"{prefix}IDENTIFY alice {PASSWORD}")
    assert logged_in_as(lines) == ["alice"]
    assert account_of(other_nick, "bob") == "alice"

    wrong = connect("carol")
    lines = say(wrong, f"{prefix}IDENTIFY alice not-the-password")
    assert from_service(lines) == ["Not logged in: Invalid account name or password."]
    assert logged_in_as(lines) == [] and account_of(wrong, "carol") is None


def test_nickserv_logout_says_901_and_tells_those_who_follow_accounts(connect) -> None:
    make_account(connect, "alice")
    alice = login_client(connect, "alice")
    peer = cap_client(connect, "bob", "account-notify")
    for c in (alice, peer):
        c.join("#room")
    lines = say(alice, "NS LOGOUT")
    assert "901" in commands(lines)
    said = from_service(lines)
    assert "You are now logged out." in said
    assert any(t.startswith("alice is a registered nick.") for t in said)  # guarded again
    change = peer.expect("ACCOUNT")
    assert change.params == ("*",) and change.source.startswith("alice!")
    assert account_of(peer, "alice") is None
    assert from_service(say(alice, "NS LOGOUT")) == ["You are not logged in."]


def test_nickserv_passwd_changes_the_password(connect) -> None:
    make_account(connect, "alice")
    alice = login_client(connect, "alice")
    refused = say(alice, "NS PASSWD not-the-password newpassword1")
    assert from_service(refused)[0].startswith("Password not changed")
    assert from_service(say(alice, f"NS PASSWD {PASSWORD} newpassword1")) == ["Password changed."]
    other = cap_client(connect, "bob", "sasl")
    assert commands(sasl_plain(other, "alice", PASSWORD))[-1] == "904"
    assert logged_in_as(sasl_plain(other, "alice", "newpassword1")) == ["alice"]


def test_nickserv_drop_needs_the_password_and_removes_the_account(connect) -> None:
    make_account(connect, "alice")
    alice = login_client(connect, "alice")
    refused = say(alice, "NS DROP not-the-password")
    assert from_service(refused)[0].startswith("Not dropped")
    assert "901" not in commands(refused)
    lines = say(alice, f"NS DROP {PASSWORD}")
    assert from_service(lines) == ["Account alice dropped."]
    assert "901" in commands(lines)
    assert from_service(say(alice, "NS INFO alice")) == ["alice is not registered."]
    other = cap_client(connect, "bob", "sasl")
    assert commands(sasl_plain(other, "alice", PASSWORD))[-1] == "904"
    assert account_of(other, "alice") is None


def test_nickserv_info_and_help(connect) -> None:
    make_account(connect, "alice")
    alice = login_client(connect, "alice")
    bob = connect("bob")
    info = from_service(say(bob, "PRIVMSG NickServ :INFO alice"))
    assert re.fullmatch(r"Account alice, registered \d{4}-\d\d-\d\d \d\d:\d\d UTC\.", info[0])
    assert info[1:] == ["Logged in now as: alice."]
    alice.send("QUIT")
    assert alice.wait_closed()
    assert from_service(say(bob, "NS INFO alice"))[1:] == ["Not logged in now."]
    assert from_service(say(bob, "NS INFO nobody")) == ["nobody is not registered."]

    everything = from_service(say(bob, "NS HELP"))
    for command in ("REGISTER", "IDENTIFY", "LOGOUT", "PASSWD", "DROP", "INFO", "REGAIN"):
        assert any(line.startswith(command + " ") for line in everything), command
    assert from_service(say(bob, "NS HELP identify")) == ["IDENTIFY [account] <password> -- log in"]
    # every way of addressing it
    for line in ("NICKSERV HELP INFO", "PRIVMSG nickserv :HELP INFO", "NS HELP INFO"):
        assert from_service(say(bob, line)) == [
            "INFO [account] -- when an account was registered, and whether it is on"
        ]
    unknown = from_service(say(bob, "NS FROBNICATE"))
    assert unknown == ["Unknown command FROBNICATE. /msg NickServ HELP lists them."]


def test_a_notice_to_nickserv_gets_no_reply(connect) -> None:
    make_account(connect, "alice")
    c = connect("bob")
    lines = say(c, "NOTICE NickServ :HELP") + say(c, f"NOTICE NickServ :IDENTIFY alice {PASSWORD}")
    assert lines == []
    assert account_of(c, "bob") is None


def test_nobody_may_take_a_service_nick(connect) -> None:
    c = connect("bob")
    for nick in ("NickServ", "chanserv"):
        c.send(f"NICK {nick}")
        assert c.expect("432").params[1] == nick
    early = connect()
    early.send("NICK NickServ")
    assert early.expect("432").params[1] == "NickServ"


# --- what others see of an account ----------------------------------------------------------------


def test_account_notify_tells_room_peers_of_logins_and_logouts(connect) -> None:
    make_account(connect, "alice")
    alice = connect("alice")
    follower = cap_client(connect, "bob", "account-notify")
    plain = connect("carol")
    for c in (alice, follower, plain):
        c.join("#room")
    say(alice, f"NS IDENTIFY {PASSWORD}")
    login = follower.expect("ACCOUNT")
    assert login.params == ("alice",) and login.source.startswith("alice!")
    say(alice, "NS LOGOUT")
    assert follower.expect("ACCOUNT").params == ("*",)
    assert "ACCOUNT" not in commands(sync(plain))  # only to those who asked for it


def test_account_tag_reaches_only_clients_that_asked_for_it(connect) -> None:
    make_account(connect, "alice")
    alice = login_client(connect, "alice")
    tagged = cap_client(connect, "bob", "account-tag")
    tags_only = cap_client(connect, "carol", "message-tags")
    plain = connect("dave")
    guest = connect("erin")
    for c in (alice, tagged, tags_only, plain, guest):
        c.join("#room")
    alice.send("PRIVMSG #room :hello")
    assert tagged.expect("PRIVMSG").tags.get("account") == "alice"
    carol_sees = tags_only.expect("PRIVMSG")
    assert "msgid" in carol_sees.tags and "account" not in carol_sees.tags
    assert dict(plain.expect("PRIVMSG").tags) == {}
    guest.send("PRIVMSG #room :hi, not logged in")  # nobody's account
    assert "account" not in tagged.expect("PRIVMSG").tags


def test_extended_join_shows_account_and_realname(connect) -> None:
    make_account(connect, "alice")
    extended = cap_client(connect, "bob", "extended-join")
    plain = connect("carol")
    for c in (extended, plain):
        c.join("#room")
    alice = login_client(connect, "alice")
    alice.join("#room")

    def join_of(c: IRCClient, nick: str) -> tuple[str, ...]:
        return c.expect("JOIN", where=lambda m: m.source.startswith(nick + "!")).params

    assert join_of(extended, "alice") == ("#room", "alice", "alice test")
    assert join_of(plain, "alice") == ("#room",)
    connect("dave").join("#room")
    assert join_of(extended, "dave") == ("#room", "*", "dave test")
    assert join_of(plain, "dave") == ("#room",)


def test_whois_and_whox_give_the_account(connect) -> None:
    make_account(connect, "alice")
    alice = login_client(connect, "alice")
    dave = connect("dave")
    for c in (alice, dave):
        c.join("#room")
    assert whois(dave, "alice")["330"].params[1:3] == ("alice", "alice")
    assert "330" not in whois(alice, "dave")
    dave.send("WHO #room %na")
    rows = until(dave, lambda m: m.command == "315")
    assert sorted(m.params[1:] for m in rows if m.command == "354") == [
        ("alice", "alice"),
        ("dave", "0"),
    ]


# --- nick ownership -------------------------------------------------------------------------------


def test_a_squatter_on_a_registered_nick_is_renamed_to_a_guest(server_factory, connect) -> None:
    fx = server_factory(nick_claim_timeout=0.5, **FAST)
    make_account(connect, "alice", to=fx)
    peer = connect("bob", to=fx)
    peer.join("#room")
    squatter = connect(to=fx)
    squatter.nick = "alice"
    for line in ("NICK alice", "USER alice 0 * :not alice", "JOIN #room"):
        squatter.send(line)
    lines = until(squatter, lambda m: m.command == "NICK", timeout=5)
    assert "366" in commands(lines)  # in the room before the rename
    assert any(t.startswith("alice is a registered nick. Log in") for t in from_service(lines))
    renamed = lines[-1]
    new = renamed.params[0]
    assert GUEST.match(new) and renamed.source.startswith("alice!")
    told = squatter.expect("NOTICE", where=lambda m: m.source == NICKSERV)
    assert told.params[-1] == f"You did not log in: you are now {new}."
    seen = peer.expect("NICK")
    assert seen.params == (new,) and seen.source.startswith("alice!")
    assert "401" in whois(peer, "alice")  # the nick is free for its owner


def test_who_logs_in_in_time_keeps_the_nick(server_factory, connect) -> None:
    fx = server_factory(nick_claim_timeout=0.5, **FAST)
    make_account(connect, "alice", to=fx)
    c = connect("alice", to=fx)
    assert c.expect("NOTICE").params[-1].startswith("alice is a registered nick.")
    assert logged_in_as(say(c, f"NS IDENTIFY {PASSWORD}")) == ["alice"]
    time.sleep(1.0)  # well past the claim timeout and the next liveness tick
    assert "NICK" not in commands(sync(c))
    assert account_of(connect("bob", to=fx), "alice") == "alice"


def squatted(connect: Callable[..., IRCClient]) -> tuple[IRCClient, IRCClient]:
    """Account alice exists; ``squatter`` has the nick without logging in, and shares
    #room with ``peer``."""
    make_account(connect, "alice")
    peer = connect("bob")
    peer.join("#room")
    squatter = connect("alice")
    squatter.expect("NOTICE")
    squatter.join("#room")
    return squatter, peer


def assert_taken_back(owner_lines: list[Message], squatter: IRCClient, peer: IRCClient) -> None:
    assert [m.params for m in owner_lines if m.command == "NICK"] == [("alice",)]
    renamed = squatter.expect("NICK")
    assert GUEST.match(renamed.params[0]) and renamed.source.startswith("alice!")
    assert peer.expect("NICK").params == renamed.params
    assert account_of(peer, "alice") == "alice"  # the nick is the owner's now


def test_the_owner_takes_the_nick_back_with_nick(connect) -> None:
    squatter, peer = squatted(connect)
    owner = login_client(connect, "alice_", account="alice")
    assert_taken_back(say(owner, "NICK alice"), squatter, peer)


def test_nickserv_regain_takes_the_nick_back(connect) -> None:
    squatter, peer = squatted(connect)
    owner = login_client(connect, "alice_", account="alice")
    assert_taken_back(say(owner, "PRIVMSG NickServ :REGAIN alice"), squatter, peer)
    refused = from_service(say(owner, "NS REGAIN bob"))
    assert refused == ["You may only regain the nick of the account you are logged in to."]


def test_the_owner_logged_in_while_registering_takes_the_nick(connect) -> None:
    squatter, peer = squatted(connect)
    owner = connect()
    owner.nick = "alice"
    owner.send("CAP LS 302")
    request(owner, "sasl")
    assert logged_in_as(sasl_plain(owner, "alice", PASSWORD)) == ["alice"]
    owner.send("NICK alice")
    owner.send("USER alice 0 * :the real alice")
    owner.send("CAP END")
    assert owner.expect("001").params[0] == "alice"
    renamed = squatter.expect("NICK")
    assert GUEST.match(renamed.params[0])
    assert peer.expect("NICK").params == renamed.params


# --- the brute-force limits ----------------------------------------------------------------------


def connect_from(
    connect: Callable[..., IRCClient], fx: ServerFixture, address: str, nick: str
) -> IRCClient:
    """A client connected from another loopback ``address`` (127.0.0.2...) that
    requested sasl and registered as ``nick``."""
    c = connect(to=fx)
    c.sock.close()
    c.sock = socket.create_connection((fx.host, fx.port), timeout=5, source_address=(address, 0))
    c.send("CAP LS 302")
    request(c, "sasl")
    c.send("CAP END")
    c.register(nick)
    return c


def too_many(lines: list[Message]) -> bool:
    return lines[-1].command == "904" and "Too many failed logins" in lines[-1].params[-1]


def test_failed_logins_for_one_account_lock_it_even_for_the_right_password(
    server_factory, connect
) -> None:
    fx = server_factory(login_failures=3, **FAST)
    make_account(connect, "alice", to=fx)
    make_account(connect, "bob", to=fx)
    mallory = cap_client(connect, "mallory", "sasl", to=fx)
    for guess in ("password1", "letmein12", "qwertyui"):
        lines = sasl_plain(mallory, "alice", guess)
        assert commands(lines)[-1] == "904" and not too_many(lines)
    assert too_many(sasl_plain(mallory, "alice", PASSWORD))
    refused = from_service(say(mallory, f"NS IDENTIFY alice {PASSWORD}"))
    assert refused[0].startswith("Not logged in: Too many failed logins")
    assert account_of(mallory, "mallory") is None
    # the lock is on the account, wherever the next try comes from...
    elsewhere = connect_from(connect, fx, "127.0.0.2", "alice")
    assert too_many(sasl_plain(elsewhere, "alice", PASSWORD))
    # ...and that address may still log in to other accounts
    assert logged_in_as(sasl_plain(elsewhere, "bob", PASSWORD)) == ["bob"]


def test_failed_logins_from_one_address_lock_every_account_from_it(server_factory, connect) -> None:
    fx = server_factory(login_failures=3, **FAST)
    make_account(connect, "alice", to=fx)
    mallory = cap_client(connect, "mallory", "sasl", to=fx)
    for name in ("ann", "ben", "cat"):  # one wrong guess for each of three accounts
        lines = sasl_plain(mallory, name, "password1")
        assert commands(lines)[-1] == "904" and not too_many(lines)
    assert too_many(sasl_plain(mallory, "alice", PASSWORD))
    scram = ScramClient("alice", PASSWORD)  # SCRAM is refused at its first step
    mallory.send("AUTHENTICATE SCRAM-SHA-256")
    mallory.expect("AUTHENTICATE")
    mallory.send("AUTHENTICATE " + b64(scram.first()))
    assert too_many(until(mallory, lambda m: m.command in SASL_END))
    # the account itself is not locked: from another address it logs in
    elsewhere = connect_from(connect, fx, "127.0.0.2", "alice")
    assert logged_in_as(sasl_plain(elsewhere, "alice", PASSWORD)) == ["alice"]


# --- bans ---------------------------------------------------------------------------------------


def op_room(connect: Callable[..., IRCClient], modes: str = "") -> IRCClient:
    """``op`` made #room (so operates it) and set ``modes`` on it."""
    op = connect("op")
    op.join("#room")
    if modes:
        op.send(f"MODE #room {modes}")
        op.expect("MODE")
    return op


def join_reply(c: IRCClient, room: str = "#room") -> str:
    """JOIN: '366' when in, else the numeric that refused it."""
    c.send(f"JOIN {room}")
    return until(c, lambda m: m.command in ("366", "471", "473", "474", "475"))[-1].command


def test_a_nick_ban_refuses_the_join_and_silences_a_member(connect) -> None:
    op = op_room(connect)
    mallory = connect("mallory")
    mallory.join("#room")
    op.send("MODE #room +b mallory!*@*")
    assert mallory.expect("MODE").params == ("#room", "+b", "mallory!*@*")
    assert "404" in commands(say(mallory, "PRIVMSG #room :can anyone hear me"))
    assert "PRIVMSG" not in commands(sync(op))
    mallory.send("PART #room")
    mallory.expect("PART")
    assert join_reply(mallory) == "474"
    assert join_reply(connect("alice")) == "366"


def test_a_ban_exception_lets_its_mask_in(connect) -> None:
    op_room(connect, "+be *!*@* mallory!*@*")
    assert join_reply(connect("mallory")) == "366"
    assert join_reply(connect("eve")) == "474"


def test_an_invite_exception_lets_its_mask_into_an_invite_only_room(connect) -> None:
    op_room(connect, "+iI carol!*@*")
    assert join_reply(connect("carol")) == "366"
    assert join_reply(connect("dave")) == "473"


def test_an_account_ban_holds_whatever_the_nick(connect) -> None:
    make_account(connect, "mallory")
    op = op_room(connect)
    member = login_client(connect, "innocent", account="mallory")
    member.join("#room")
    op.send("MODE #room +b $a:mallory")
    op.expect("MODE")
    assert "404" in commands(say(member, "PRIVMSG #room :hello"))
    assert join_reply(login_client(connect, "harmless", account="mallory")) == "474"
    assert join_reply(connect("mallory")) == "366"  # the nick alone is not the account
    op.send("MODE #room +b")
    assert [m.params[2] for m in until(op, lambda m: m.command == "368") if m.command == "367"] == [
        "$a:mallory"
    ]


def test_a_bare_account_extban_bans_everyone_logged_in(connect) -> None:
    make_account(connect, "alice")
    op = op_room(connect, "+b $a")
    isupport = [t for m in say(op, "VERSION") if m.command == "005" for t in m.params]
    assert "EXTBAN=$,a" in isupport
    assert join_reply(login_client(connect, "alice")) == "474"
    assert join_reply(connect("guest")) == "366"


# --- operators by account ------------------------------------------------------------------------


def test_an_oper_account_is_made_operator_when_it_logs_in(server_factory, connect) -> None:
    fx = server_factory(oper_accounts=("alice",), **FAST)
    make_account(connect, "alice", to=fx)
    make_account(connect, "bob", to=fx)
    alice = cap_client(connect, "alice", "sasl", to=fx)
    lines = sasl_plain(alice, "alice", PASSWORD)
    assert [m.params for m in lines if m.command == "MODE"] == [("alice", "+o")]
    assert "381" in commands(lines)
    bob = login_client(connect, "bob", to=fx)
    assert "313" in whois(bob, "alice")
    assert "313" not in whois(alice, "bob")  # a plain account is no operator


def test_an_oper_account_logged_in_while_registering_is_an_operator(
    server_factory, connect
) -> None:
    fx = server_factory(oper_accounts=("alice",), **FAST)
    make_account(connect, "alice", to=fx)
    login_client(connect, "alice", to=fx)
    assert "313" in whois(connect("bob", to=fx), "alice")


def test_an_oper_account_logged_in_while_registering_is_told_so(server_factory, connect) -> None:
    fx = server_factory(oper_accounts=("alice",), **FAST)
    make_account(connect, "alice", to=fx)
    c = connect(to=fx)
    c.nick = "alice"
    c.send("CAP LS 302")
    request(c, "sasl")
    c.send("NICK alice")
    c.send("USER alice 0 * :Alice A")
    lines = sasl_plain(c, "alice", PASSWORD)
    c.send("CAP END")
    lines += until(c, lambda m: m.command == "376") + sync(c)
    told = [
        m
        for m in lines
        if m.command == "381"
        or (m.command == "MODE" and "o" in m.params[-1])
        or (m.command == "221" and "o" in m.params[-1])
    ]
    assert told


# --- bad input -------------------------------------------------------------------------------


def test_bad_account_input_never_makes_a_traceback(connect, caplog) -> None:
    caplog.set_level(logging.INFO)
    make_account(connect, "alice")
    c = sasl_ready(connect)

    def outcome(*lines: str) -> str:
        for line in lines:
            c.send(line)
        return until(c, lambda m: m.command in SASL_END)[-1].command

    too_long = ["AUTHENTICATE " + "A" * 400] * 11 + ["AUTHENTICATE +"]
    assert outcome("AUTHENTICATE PLAIN", "AUTHENTICATE not*base64!") == "904"
    assert outcome("AUTHENTICATE PLAIN", "AUTHENTICATE " + "A" * 401) == "905"
    assert outcome("AUTHENTICATE PLAIN", *too_long) == "904"
    assert outcome("AUTHENTICATE PLAIN", "AUTHENTICATE " + b64(b"\xff\xfe\0x\0y")) == "904"
    assert outcome("AUTHENTICATE PLAIN", "AUTHENTICATE " + b64(b"no nul at all")) == "904"
    assert outcome("AUTHENTICATE PLAIN", "AUTHENTICATE :") == "904"
    assert outcome("AUTHENTICATE SCRAM-SHA-256", "AUTHENTICATE " + b64(b"\xff,,")) == "904"
    assert (
        outcome(
            "AUTHENTICATE SCRAM-SHA-256",
            "AUTHENTICATE " + b64(b"n,,n=alice,r=abcdef"),
            "AUTHENTICATE " + b64(b"c=garbage,r=nope,p=!!"),
        )
        == "904"
    )
    assert outcome("AUTHENTICATE " + "X" * 450) == "904"  # a mechanism nobody has
    assert commands(sasl_plain(c, "nobody", PASSWORD))[-1] == "904"  # unknown account
    assert commands(sasl_plain(c, "alice", "not-the-password"))[-1] == "904"
    for line in ("REGISTER", "REGISTER alice", "REGISTER alice *"):
        assert "461" in commands(say(c, line))
    c.send("CAP END")
    c.expect("376")
    for line in (
        "NS",
        "NS IDENTIFY",
        "NS IDENTIFY nobody whatever1",
        "NS PASSWD",
        "NS DROP",
        "NS REGAIN",
        "NS INFO",
        "CS",
        "CS INFO",
        "CS INFO #nowhere",
        "CS REGISTER #nowhere",
        "CS AMODE #nowhere +o nobody",
        "CS DROP notaroom",
    ):
        service = "NickServ" if line.startswith("NS") else "ChanServ"
        assert from_service(say(c, line), service), line  # an answer, not silence
    assert any("connect from" in r.getMessage() for r in caplog.records)  # we do see the log
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


# --- what a dropped account leaves behind ------------------------------------------------------


def test_dropping_an_account_logs_out_its_other_connections(connect) -> None:
    make_account(connect, "alice")
    alice = login_client(connect, "alice")
    phone = login_client(connect, "alice_phone", account="alice")
    assert from_service(say(alice, f"NS DROP {PASSWORD}")) == ["Account alice dropped."]
    assert phone.expect("901").params[0] == "alice_phone"
    assert account_of(alice, "alice_phone") is None


def test_a_dropped_account_name_cannot_be_registered_again_to_read_its_history(connect) -> None:
    make_account(connect, "alice")
    make_account(connect, "bob")
    alice = login_client(connect, "alice", caps=HIST_CAPS)
    bob = login_client(connect, "bob", caps=HIST_CAPS)
    alice.send("PRIVMSG bob :my bank pin is 1234")
    bob.expect("PRIVMSG")
    assert from_service(say(alice, f"NS DROP {PASSWORD}")) == ["Account alice dropped."]
    alice.send("QUIT")
    assert alice.wait_closed()
    # the name stays taken (Ergo's rule): nobody becomes the "alice" those lines were from
    newcomer = cap_client(connect, "alice")
    refused = say(newcomer, "REGISTER * * newcomerpw")
    assert [m.params[:2] for m in refused if m.command == "FAIL"] == [
        ("REGISTER", "ACCOUNT_EXISTS")
    ]
    assert history_texts(newcomer, "CHATHISTORY LATEST bob * 10") == []
    assert targets(newcomer) == []
    # while bob keeps his side of the conversation
    assert history_texts(bob, "CHATHISTORY LATEST alice * 10") == ["my bank pin is 1234"]
