"""Identity on real sockets: private history only its owner reads, accounts and logins."""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import IRCClient

HIST_CAPS = "batch server-time message-tags draft/chathistory"
EVER = "timestamp=2000-01-01T00:00:00.000Z timestamp=2999-01-01T00:00:00.000Z"


def cap_client(connect: Callable[..., IRCClient], nick: str, caps: str = HIST_CAPS) -> IRCClient:
    """A registered client that negotiated ``caps``."""
    c = connect()
    c.send("CAP LS 302")
    c.send(f"CAP REQ :{caps}")
    c.expect("CAP", where=lambda m: m.params[1] == "ACK")
    c.send("CAP END")
    c.register(nick)
    return c


def history_texts(c: IRCClient, command: str) -> list[str]:
    c.send(command)
    c.expect("BATCH")
    return [m.params[1] for m in c.collect() if m.command == "PRIVMSG"]


def targets(c: IRCClient) -> list[str]:
    c.send(f"CHATHISTORY TARGETS {EVER} 10")
    return [m.params[1] for m in c.collect() if m.command == "CHATHISTORY"]


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
