"""Socketless tests of logging in: the Authenticator (SASL, REGISTER, NickServ) fed
server lines, wired to chatroom.sasl's server side; and the password store."""

from __future__ import annotations

import base64
import doctest
import os
import stat
from pathlib import Path

import pytest

import chatroom.client.auth as auth_module
import chatroom.client.commands as commands_module
import chatroom.client.passwords as passwords_module
import chatroom.client.state as state_module
from chatroom.client.auth import (
    AUTH_TIMEOUT,
    PLAIN,
    SCRAM,
    Authenticator,
    Credentials,
    authenticate_messages,
)
from chatroom.client.events import Registered
from chatroom.client.passwords import (
    KEYRING_SERVICE,
    NO_KEYRING_ENV,
    FilePasswords,
    Passwords,
    open_passwords,
    password_key,
)
from chatroom.client.session import ClientSession
from chatroom.client.state import ClientState
from chatroom.protocol import Cap, Message, parse
from chatroom.sasl import MIN_ITERATIONS, ScramServer, make_credentials, parse_plain

SASL_CAPS = frozenset({Cap.SASL})
BOTH = {Cap.SASL: "PLAIN,SCRAM-SHA-256"}
ALICE = Credentials("alice", "correct horse")


def lines(messages: list[Message]) -> list[str]:
    return [str(m) for m in messages]


def feed(auth: Authenticator, *server_lines: str) -> list[str]:
    out: list[Message] = []
    for line in server_lines:
        out += auth.handle(parse(line), "alice")
    return lines(out)


def payload(messages: list[str]) -> bytes:
    """The bytes that AUTHENTICATE lines carry (400-byte chunks reassembled)."""
    chunks = [m.removeprefix("AUTHENTICATE ") for m in messages]
    return base64.b64decode("".join(c for c in chunks if c != "+"))


def notices(auth: Authenticator) -> list[str]:
    said, auth.notices = [n.text for n in auth.notices], []
    return said


def test_module_doctests() -> None:
    for module in (auth_module, passwords_module, commands_module, state_module):
        assert doctest.testmod(module).failed == 0, module.__name__


# --- SASL ---------------------------------------------------------------------------


def test_scram_login_against_the_real_server_side() -> None:
    server = ScramServer(
        lambda name: make_credentials("correct horse", MIN_ITERATIONS) if name == "alice" else None,
        fake_secret=b"k",
    )
    auth = Authenticator(ALICE)
    auth.reset(secure=False)  # SCRAM never sends the password: fine on any link
    assert lines(auth.caps_ready(SASL_CAPS, BOTH)) == [f"AUTHENTICATE {SCRAM}"]
    assert auth.busy  # CAP END waits
    first = feed(auth, "AUTHENTICATE +")
    server_first = base64.b64encode(server.first(payload(first))).decode()
    final = feed(auth, f"AUTHENTICATE {server_first}")
    assert b"correct horse" not in payload(final)
    server_final = base64.b64encode(server.final(payload(final))).decode()
    assert feed(auth, f"AUTHENTICATE {server_final}") == ["AUTHENTICATE +"]
    feed(auth, ":s 900 alice alice!a@h alice :You are now logged in as alice")
    assert auth.busy  # until 903
    feed(auth, ":s 903 alice :SASL authentication successful")
    assert not auth.busy and auth.credentials == ALICE and auth.confirmed == ALICE
    assert notices(auth) == []  # the 900 line says it


def test_a_server_that_cannot_prove_it_knows_the_password_is_refused() -> None:
    server = ScramServer(lambda _: make_credentials("other", MIN_ITERATIONS), fake_secret=b"k")
    auth = Authenticator(ALICE)
    auth.reset(secure=True)
    auth.caps_ready(SASL_CAPS, {Cap.SASL: SCRAM})
    first = feed(auth, "AUTHENTICATE +")
    server.first(payload(first))
    # A made-up server-first/final pair: the signature cannot match.
    nonce = payload(first).decode().split("r=")[1]
    fake_first = f"r={nonce}xyz,s={base64.b64encode(b'salt').decode()},i=4096"
    feed(auth, f"AUTHENTICATE {base64.b64encode(fake_first.encode()).decode()}")
    bogus = base64.b64encode(b"v=" + base64.b64encode(b"x" * 32)).decode()
    assert feed(auth, f"AUTHENTICATE {bogus}") == ["AUTHENTICATE *"]
    assert not auth.busy and auth.confirmed is None
    assert notices(auth) == [
        "Could not log in as alice: the server could not prove that it knows your "
        "password; you are connected without being logged in"
    ]


def test_plain_only_on_loopback_unless_allowed() -> None:
    only_plain = {Cap.SASL: PLAIN}
    auth = Authenticator(ALICE)
    auth.reset(secure=False)
    assert auth.caps_ready(SASL_CAPS, only_plain) == []
    assert not auth.busy  # CAP END goes at once
    [refusal] = notices(auth)
    assert "only PLAIN" in refusal and "--allow-plain-sasl" in refusal
    auth.reset(secure=True)  # loopback (or TLS)
    assert lines(auth.caps_ready(SASL_CAPS, only_plain)) == ["AUTHENTICATE PLAIN"]
    sent = feed(auth, "AUTHENTICATE +")
    assert parse_plain(payload(sent)) == ("", "alice", "correct horse")
    allowed = Authenticator(ALICE, allow_plain=True)
    allowed.reset(secure=False)
    assert lines(allowed.caps_ready(SASL_CAPS, only_plain)) == ["AUTHENTICATE PLAIN"]


def test_without_a_mechanism_list_scram_first_then_908_decides() -> None:
    auth = Authenticator(ALICE)
    auth.reset(secure=True)
    assert lines(auth.caps_ready(SASL_CAPS, {Cap.SASL: ""})) == [f"AUTHENTICATE {SCRAM}"]
    assert feed(
        auth,
        ":s 908 alice PLAIN,EXTERNAL :are available SASL mechanisms",
        ":s 904 alice :SASL authentication failed",
    ) == ["AUTHENTICATE PLAIN"]
    assert auth.busy
    # Not on loopback: PLAIN is not tried, and the user is told why.
    auth = Authenticator(ALICE)
    auth.reset(secure=False)
    auth.caps_ready(SASL_CAPS, {Cap.SASL: ""})
    feed(auth, ":s 908 alice PLAIN :are available", ":s 904 alice :SASL authentication failed")
    assert not auth.busy and "only PLAIN" in notices(auth)[0]


def test_a_wrong_password_is_told_with_the_servers_words() -> None:
    auth = Authenticator(ALICE)
    auth.reset(secure=True)
    auth.caps_ready(SASL_CAPS, BOTH)
    feed(auth, "AUTHENTICATE +")
    feed(auth, ":s 904 alice :Invalid account credentials")
    assert not auth.busy and auth.confirmed is None
    assert notices(auth) == [
        "Could not log in as alice: Invalid account credentials; you are connected "
        "without being logged in"
    ]
    assert auth.credentials == ALICE  # tried again at the next connect


@pytest.mark.parametrize(
    ("size", "chunks"),
    [(0, ["+"]), (297, [396]), (300, [400, "+"]), (301, [400, 4]), (600, [400, 400, "+"])],
)
def test_authenticate_payloads_go_in_400_byte_chunks(size: int, chunks: list) -> None:
    sent = lines(authenticate_messages(b"x" * size))
    assert [
        m.removeprefix("AUTHENTICATE ") if m.endswith("+") else len(m) - 13 for m in sent
    ] == chunks
    assert payload(sent) == b"x" * size


def test_the_servers_chunks_are_put_back_together() -> None:
    server = ScramServer(
        lambda _: make_credentials("correct horse", MIN_ITERATIONS), fake_secret=b"k"
    )
    auth = Authenticator(ALICE)
    auth.reset(secure=True)
    auth.caps_ready(SASL_CAPS, BOTH)
    first = feed(auth, "AUTHENTICATE +")
    # A server-first with a long extension attribute, sent in 400-byte chunks.
    real = server.first(payload(first)).decode()
    long_first = base64.b64encode(f"{real},x={'y' * 400}".encode()).decode()
    parts = [long_first[i : i + 400] for i in range(0, len(long_first), 400)]
    assert len(parts) > 1
    for part in parts[:-1]:
        assert feed(auth, f"AUTHENTICATE {part}") == []  # more to come
    final = feed(auth, f"AUTHENTICATE {parts[-1]}")
    assert payload(final).startswith(b"c=")


def test_a_silent_server_does_not_hold_registration_forever() -> None:
    auth = Authenticator(ALICE)
    auth.reset(secure=True)
    auth.caps_ready(SASL_CAPS, BOTH)
    assert auth.busy
    assert lines(auth.expire()) == ["AUTHENTICATE *"]
    assert not auth.busy
    assert notices(auth) == [
        f"Could not log in as alice: no answer from the server within {AUTH_TIMEOUT:.0f} s; "
        "you are connected without being logged in"
    ]


# --- registering, NickServ ------------------------------------------------------------


def test_register_before_connect_then_log_in_with_it_on_reconnect() -> None:
    new = Credentials("alice", "correct horse", register=True)
    auth = Authenticator(new)
    auth.reset(secure=False)
    caps = frozenset({Cap.SASL, Cap.ACCOUNT_REGISTRATION})
    offered = {**BOTH, Cap.ACCOUNT_REGISTRATION: "before-connect"}
    assert lines(auth.caps_ready(caps, offered)) == ["REGISTER alice * :correct horse"]
    assert auth.busy
    feed(auth, "REGISTER SUCCESS alice :Account created")
    assert not auth.busy and auth.credentials == ALICE and auth.confirmed == ALICE
    auth.reset(secure=False)  # the next connect logs in, it does not register again
    assert lines(auth.caps_ready(caps, offered)) == [f"AUTHENTICATE {SCRAM}"]


def test_registration_the_server_does_not_offer_is_said_plainly() -> None:
    auth = Authenticator(Credentials("alice", "pw", register=True))
    auth.reset(secure=True)
    assert auth.caps_ready(SASL_CAPS, BOTH) == []
    [said] = notices(auth)
    assert "does not support registering accounts" in said and "not registered" in said
    assert auth.credentials is None


def test_registration_failure_stops_trying() -> None:
    auth = Authenticator(Credentials("alice", "pw", register=True))
    auth.reset(secure=True)
    caps = frozenset({Cap.ACCOUNT_REGISTRATION})
    auth.caps_ready(caps, {Cap.ACCOUNT_REGISTRATION: "before-connect"})
    feed(auth, "FAIL REGISTER ACCOUNT_EXISTS alice :Account already exists")
    assert not auth.busy and auth.credentials is None


def test_nickserv_when_there_is_no_sasl_and_only_where_cleartext_is_ok() -> None:
    auth = Authenticator(ALICE)
    auth.reset(secure=True)
    assert auth.caps_ready(frozenset(), {}) == []
    assert lines(auth.welcomed()) == ["PRIVMSG NickServ :IDENTIFY alice correct horse"]
    feed(auth, ":alice!a@h ACCOUNT alice")
    assert auth.confirmed == ALICE
    far = Authenticator(ALICE)
    far.reset(secure=False)
    far.caps_ready(frozenset(), {})
    assert far.welcomed() == []
    assert "NickServ would get your password unencrypted" in notices(far)[0]


def test_login_after_registration_uses_sasl_when_acknowledged() -> None:
    auth = Authenticator()
    auth.reset(secure=False)
    auth.caps_ready(SASL_CAPS, BOTH)
    auth.welcomed()
    assert lines(auth.login(ALICE)) == [f"AUTHENTICATE {SCRAM}"]
    assert notices(auth) == ["Logging in as alice…"]
    assert auth.login(ALICE) == []  # one at a time
    assert "already waiting" in notices(auth)[0]
    # A server without SASL: NickServ, and the credentials count once it says so.
    plain = Authenticator()
    plain.reset(secure=True)
    plain.caps_ready(frozenset(), {})
    plain.welcomed()
    assert lines(plain.login(ALICE)) == ["PRIVMSG NickServ :IDENTIFY alice correct horse"]
    assert plain.credentials is None
    feed(plain, ":s 900 alice alice!a@h alice :You are now logged in as alice")
    assert plain.credentials == ALICE
    assert lines(plain.logout()) == ["PRIVMSG NickServ :LOGOUT"]
    assert plain.credentials is None


def test_our_login_echo_opens_no_window_but_other_lines_do() -> None:
    state = ClientState("alice")
    state.echo_message = True
    state.handle(parse(":alice!a@h PRIVMSG NickServ :IDENTIFY alice hunter2"))
    assert state.buffer("NickServ") is None  # the client's own login, echoed
    state.handle(parse(":dave!d@h PRIVMSG alice :\x01ACTION waves\x01"))
    assert state.buffer("dave").entries[-1].text == "waves"
    state.own_message("NickServ", "IDENTIFY alice hunter2")  # typed: shown, redacted
    state.handle(parse(":alice!a@h PRIVMSG NickServ :IDENTIFY alice hunter2"))
    assert [e.text for e in state.buffer("NickServ").entries] == ["IDENTIFY ••••••"]


def test_logged_in_before_001_under_a_nick_we_did_not_get() -> None:
    session = ClientSession("alice", "irc.test")
    session.receive(parse(":irc.test 900 * * alice :You are now logged in as alice"))
    session.on_event(Registered("alice_", "irc.test", frozenset({Cap.SASL})))
    assert session.state.account == "alice"  # alice was taken: we are alice_, logged in
    assert session.state.identity("alice_").value == "verified"


# --- remembered passwords -------------------------------------------------------------


class MemoryKeyring:
    """A keyring backend of our own (never the user's)."""

    priority = 1

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        del self.items[(service, username)]


class BrokenKeyring(MemoryKeyring):
    def set_password(self, service: str, username: str, password: str) -> None:
        raise RuntimeError("the keyring is locked")


def test_file_fallback_is_private_and_fixed_when_it_is_not(tmp_path: Path) -> None:
    store = Passwords(FilePasswords(tmp_path / "config"))
    store.set("chat.lan", 6667, "Alice", "s3cret")
    path = tmp_path / "config" / "passwords.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.get("chat.lan", 6667, "alice") == "s3cret"  # accounts fold
    assert store.get("chat.lan", 6668, "alice") is None  # per server
    os.chmod(path, 0o644)
    fresh = Passwords(FilePasswords(tmp_path / "config"))
    assert fresh.get("chat.lan", 6667, "alice") == "s3cret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and fresh.file.fixed_mode
    fresh.delete("chat.lan", 6667, "alice")
    assert not path.exists()


def test_keyring_backend_keeps_passwords_out_of_the_file(tmp_path: Path) -> None:
    keyring = MemoryKeyring()
    file = FilePasswords(tmp_path)
    file.set(password_key("chat.lan", 6667, "alice"), "old")
    store = Passwords(file, keyring)
    assert store.where == "the system keyring"
    store.set("chat.lan", 6667, "alice", "new")
    assert keyring.items == {(KEYRING_SERVICE, "alice@chat.lan:6667"): "new"}
    assert not (tmp_path / "passwords.json").exists()  # the old copy went
    assert store.get("chat.lan", 6667, "alice") == "new"
    broken = Passwords(FilePasswords(tmp_path), BrokenKeyring())
    broken.set("chat.lan", 6667, "bob", "pw")  # a locked keyring: the file instead
    assert broken.keyring is None and broken.get("chat.lan", 6667, "bob") == "pw"


def test_the_keyring_library_is_used_only_with_a_real_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyring = pytest.importorskip("keyring")
    from keyring.backend import KeyringBackend
    from keyring.backends import fail

    class TestKeyring(KeyringBackend):
        priority = 1  # type: ignore[assignment]
        items: dict[tuple[str, str], str] = {}

        def get_password(self, service: str, username: str) -> str | None:
            return self.items.get((service, username))

        def set_password(self, service: str, username: str, password: str) -> None:
            self.items[(service, username)] = password

    previous = keyring.get_keyring()
    monkeypatch.delenv(NO_KEYRING_ENV)
    try:
        keyring.set_keyring(TestKeyring())
        store = open_passwords(tmp_path)
        store.set("chat.lan", 6667, "alice", "s3cret")
        assert TestKeyring.items == {(KEYRING_SERVICE, "alice@chat.lan:6667"): "s3cret"}
        keyring.set_keyring(fail.Keyring())  # no usable backend: the file
        assert open_passwords(tmp_path).keyring is None
        monkeypatch.setenv(NO_KEYRING_ENV, "1")
        keyring.set_keyring(TestKeyring())
        assert open_passwords(tmp_path).keyring is None
    finally:
        keyring.set_keyring(previous)
