"""GET /metrics: the Prometheus text format, and figures that match what happened.

A real server on 127.0.0.1 with real IRC clients; the scrape rendered from it directly
(web/metrics.render) and fetched over HTTP from its web port. Counters are compared
before and after: each must move by exactly what the test did.
"""

from __future__ import annotations

import base64
import dataclasses
import doctest
import http.client
import re
import socket
import time
from pathlib import Path

import pytest

from chatroom.server import pipeline as pipeline_mod
from chatroom.server.server import ChatServer
from chatroom.server.web import metrics
from tests.conftest import IRCClient

# name{labels} value
_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)")


def parse(text: str) -> dict[str, float]:
    """Samples by name (with labels); checks the format on the way: every sample has
    its HELP and TYPE before it, counters end in _total, values are numbers."""
    samples: dict[str, float] = {}
    helped: set[str] = set()
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert help_text, f"{name}: empty HELP"
            helped.add(name)
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert kind in ("counter", "gauge"), line
            assert name.endswith("_total") == (kind == "counter"), line
            types[name] = kind
        else:
            match = _SAMPLE.fullmatch(line)
            assert match, f"not a sample line: {line!r}"
            name, labels, value = match.groups()
            assert name in helped and name in types, f"{name}: no HELP or TYPE before it"
            samples[name + (labels or "")] = float(value)
    return samples


def scrape(server: ChatServer) -> dict[str, float]:
    body = metrics.render(server)
    assert body.endswith(b"\n")
    return parse(body.decode("utf-8"))


def wait_for(server: ChatServer, name: str, value: float, timeout: float = 5.0) -> None:
    """Until sample ``name`` reads ``value`` (figures kept by the store thread lag)."""
    deadline = time.monotonic() + timeout
    while (got := scrape(server)[name]) != value:
        assert time.monotonic() < deadline, f"{name} is {got}, expected {value}"
        time.sleep(0.02)


def settle(*cs: IRCClient) -> None:
    """Every line the server queued for these clients has reached them (a PING's PONG
    comes after everything posted before it)."""
    for c in cs:
        c.send("PING :settle")
        c.expect("PONG", where=lambda m: m.params[-1] == "settle")


def test_the_scrape_is_well_formed_and_says_what_it_is(server_factory):
    fx = server_factory()
    text = metrics.render(fx.server).decode("utf-8")
    samples = parse(text)
    assert samples['chatroom_build_info{version="0.1.0"}'] == 1
    assert 0 <= samples["chatroom_uptime_seconds"] < 60
    for name in (
        "chatroom_connections",
        "chatroom_users_registered",
        "chatroom_accounts",
        "chatroom_rooms",
        "chatroom_messages_total",
        "chatroom_deliveries_total",
        "chatroom_sendq_drops_total",
        "chatroom_flood_kills_total",
        "chatroom_history_rows",
        "chatroom_uploads_total",
        "chatroom_upload_bytes_total",
        "chatroom_files_stored",
        "chatroom_files_bytes",
    ):
        assert samples[name] == 0, name
    assert "rate()" in re.search(r"# HELP chatroom_messages_total (.*)", text).group(1)


def test_connections_users_rooms_and_accounts(server_factory, clients):
    fx = server_factory()
    alice, bob = clients(fx, "alice"), clients(fx, "bob")
    clients(fx)  # connected, never registered
    alice.join("#one")
    alice.join("#two")
    bob.join("#two")
    bob.join("#secret")
    bob.send("MODE #secret +s")
    bob.expect("MODE")
    alice.send("REGISTER * * correct-horse-battery")
    assert alice.expect("REGISTER").params[0] == "SUCCESS"
    wait_for(fx.server, "chatroom_connections", 3)
    samples = scrape(fx.server)
    assert samples["chatroom_users_registered"] == 2
    assert samples["chatroom_rooms"] == 3  # a count: the secret room is one of them
    assert samples["chatroom_accounts"] == 1
    bob.send("QUIT")
    bob.wait_closed()
    wait_for(fx.server, "chatroom_connections", 2)
    samples = scrape(fx.server)
    assert samples["chatroom_users_registered"] == 1
    assert samples["chatroom_rooms"] == 2


@pytest.mark.parametrize("history", [True, False], ids=["history", "no-history"])
def test_messages_and_deliveries_count_exactly_what_was_relayed(server_factory, clients, history):
    fx = server_factory(history=history, flood_limit=False)
    alice, bob, carol = (clients(fx, n) for n in ("alice", "bob", "carol"))
    for c in (alice, bob, carol):
        c.join("#room")
    settle(alice, bob, carol)
    before = scrape(fx.server)
    for n in range(10):
        alice.send(f"PRIVMSG #room :hello {n}")
    alice.send("NOTICE #room :a notice")
    alice.send("PRIVMSG bob :just to you")
    alice.send("PRIVMSG #room,carol :two targets, two messages")
    alice.send("PRIVMSG #nowhere :refused: not relayed")
    alice.expect("403")
    for c in (bob, carol):
        got = [c.expect(cmd) for cmd in ["PRIVMSG"] * 10 + ["NOTICE"]]
        assert got[-1].params[-1] == "a notice"
    bob.expect("PRIVMSG", where=lambda m: m.params[-1] == "just to you")
    bob.expect("PRIVMSG", where=lambda m: m.params[-1].startswith("two targets"))
    for _ in range(2):  # the room's copy and the private one
        carol.expect("PRIVMSG", where=lambda m: m.params[-1].startswith("two targets"))
    after = scrape(fx.server)
    assert after["chatroom_messages_total"] - before["chatroom_messages_total"] == 14
    # 12 room lines to 2 members each, 2 private lines, and the 403 to alice
    assert (
        after["chatroom_deliveries_total"] - before["chatroom_deliveries_total"] == 12 * 2 + 2 + 1
    )
    if history:
        wait_for(fx.server, "chatroom_history_rows", 14)  # one row a message, to one or many
    else:
        assert after["chatroom_history_rows"] == 0


def test_history_rows_are_counted_at_start_and_follow_retention(
    server_factory, clients, tmp_path: Path, monkeypatch
):
    # the store thread applies retention every RETENTION_INTERVAL, looking when it wakes
    monkeypatch.setattr(pipeline_mod, "RETENTION_INTERVAL", 0.1)
    monkeypatch.setattr(pipeline_mod, "CHECKPOINT_INTERVAL", 0.05)
    db = str(tmp_path / "history.sqlite3")
    fx = server_factory(db=db)
    alice, bob = clients(fx, "alice"), clients(fx, "bob")
    alice.join("#room")
    bob.join("#room")
    for n in range(5):
        alice.send(f"PRIVMSG #room :{n}")
    for _ in range(5):
        bob.expect("PRIVMSG")
    wait_for(fx.server, "chatroom_history_rows", 5)
    alice.close()
    bob.close()
    fx.restart()  # a new server on the same database counts what is there
    wait_for(fx.server, "chatroom_history_rows", 5)
    fx.config = dataclasses.replace(fx.config, retention_count=2)  # 2 a conversation
    fx.restart()
    wait_for(fx.server, "chatroom_history_rows", 2)


def test_flood_kills_are_counted(server_factory, clients):
    fx = server_factory(flood_burst=5, flood_rate=10.0, flood_max_lag=1.0)
    flooder, watcher = clients(fx, "flooder"), clients(fx, "watcher")
    watcher.join("#lan")
    flooder.join("#lan")
    flooder.send_raw(b"".join(f"PRIVMSG #lan :f{n}\r\n".encode() for n in range(200)))
    quit_msg = watcher.expect("QUIT", where=lambda m: m.nick == "flooder", timeout=10)
    assert quit_msg.params[0] == "Excess Flood"
    assert scrape(fx.server)["chatroom_flood_kills_total"] == 1


def test_sendq_drops_are_counted(server_factory, clients):
    fx = server_factory(flood_limit=False, sendq_bytes=64 * 1024)
    talker, watcher = clients(fx, "talker"), clients(fx, "watcher")
    talker.join("#lan")
    # a client that joins and never reads again, with a small window so that the
    # kernel takes little of what is queued for it
    stuck = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        stuck.connect((fx.host, fx.port))
        stuck.sendall(b"NICK stuck\r\nUSER s 0 * :never reads\r\nJOIN #lan\r\n")
        talker.expect("JOIN", where=lambda m: m.nick == "stuck")
        watcher.send("MONITOR + stuck")
        watcher.expect("730")
        line = "PRIVMSG #lan :" + "x" * 400 + "\r\n"
        deadline = time.monotonic() + 20
        while scrape(fx.server)["chatroom_sendq_drops_total"] == 0:
            assert time.monotonic() < deadline, "the stuck client was never dropped"
            talker.send_raw(line.encode() * 200)  # 80 KB a round
            settle(talker)
        watcher.expect("731")  # it is gone
    finally:
        stuck.close()
    assert scrape(fx.server)["chatroom_sendq_drops_total"] == 1


# --- over HTTP -------------------------------------------------------------------------------


def test_metrics_over_http(server_factory, clients, tmp_path: Path):
    fx = server_factory(http=True, http_port=0, files_dir=str(tmp_path / "files"))
    clients(fx, "alice")
    conn = http.client.HTTPConnection("127.0.0.1", fx.server.http_port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert parse(body.decode("utf-8"))["chatroom_users_registered"] == 1
        conn.request("HEAD", "/metrics")
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b""
    finally:
        conn.close()


def test_uploads_are_counted(server_factory, clients, tmp_path: Path):
    fx = server_factory(http=True, http_port=0, files_dir=str(tmp_path / "files"))
    alice = clients(fx, "alice")
    alice.send("REGISTER * * correct-horse-battery")
    assert alice.expect("REGISTER").params[0] == "SUCCESS"
    body = b"the minutes of the meeting\n" * 100
    conn = http.client.HTTPConnection("127.0.0.1", fx.server.http_port, timeout=5)
    try:
        conn.request(
            "POST",
            "/upload",
            body=body,
            headers={
                "Authorization": "Basic "
                + base64.b64encode(b"alice:correct-horse-battery").decode(),
                "Content-Type": "text/plain",
                "Content-Disposition": 'attachment; filename="minutes.txt"',
            },
        )
        response = conn.getresponse()
        response.read()
        assert response.status == 201
    finally:
        conn.close()
    samples = scrape(fx.server)
    assert samples["chatroom_uploads_total"] == 1
    assert samples["chatroom_upload_bytes_total"] == len(body)
    assert samples["chatroom_files_stored"] == 1
    assert samples["chatroom_files_bytes"] == len(body)


def test_doctests() -> None:
    assert doctest.testmod(metrics).failed == 0
