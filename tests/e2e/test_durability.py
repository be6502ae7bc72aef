"""Nothing a sender saw accepted is lost: kill -9 the server mid-burst, restart it on the
same database, and every echoed message is in CHATHISTORY, in order, exactly once.

Run it many times with ``CHATROOM_DURABILITY_RUNS=20 python3 -m pytest
tests/e2e/test_durability.py``.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from chatroom.protocol import Cap, LineBuffer, Message, parse

SENDERS = 4
MESSAGES_PER_SENDER = 5000  # far more than get through before the kill
KILL_AFTER_ECHOES = 400  # kill once this many echoes (in all) have come back
RUNS = int(os.environ.get("CHATROOM_DURABILITY_RUNS", "1"))
CAPS = " ".join(
    (Cap.ECHO_MESSAGE, Cap.MESSAGE_TAGS, Cap.SERVER_TIME, Cap.BATCH, Cap.DRAFT_CHATHISTORY)
)


class Peer:
    """A raw client that negotiates the history capabilities."""

    def __init__(self, port: int, nick: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = LineBuffer(limit=1 << 20)
        self.pending: list[Message] = []
        self.sock.sendall(
            f"CAP LS 302\r\nCAP REQ :{CAPS}\r\nNICK {nick}\r\nUSER {nick} 0 * :d\r\n"
            "CAP END\r\nJOIN #dur\r\n".encode()
        )
        self.until(lambda m: m.command == "366")

    def lines(self) -> list[Message]:
        try:
            data = self.sock.recv(1 << 16)
        except OSError:
            return []
        if not data:
            return []
        return [parse(raw) for raw in self.buf.feed(data)]

    def until(self, done, timeout: float = 10) -> list[Message]:
        got: list[Message] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = self.lines()
            if not batch:
                break
            got.extend(batch)
            if any(done(m) for m in batch):
                return got
        raise AssertionError(f"timed out; last lines {[str(m) for m in got[-5:]]}")

    def close(self) -> None:
        self.sock.close()


def _one_run(tmp_path: Path, server_process) -> int:
    db = tmp_path / "history.sqlite3"
    args = ("--db", str(db), "--no-flood-limit", "--log-level", "WARNING")
    server = server_process(*args)
    port = server.port
    senders = [Peer(port, f"s{i}") for i in range(SENDERS)]
    echoed: dict[int, list[tuple[int, str]]] = {i: [] for i in range(SENDERS)}
    total = [0]
    lock = threading.Lock()

    def send(i: int) -> None:
        payload = b"".join(
            f"PRIVMSG #dur :s{i} {n}\r\n".encode() for n in range(MESSAGES_PER_SENDER)
        )
        try:
            senders[i].sock.sendall(payload)
        except OSError:
            pass  # the server was killed under us

    def read(i: int) -> None:
        while True:
            batch = senders[i].lines()
            if not batch:
                return
            for m in batch:
                if m.command == "PRIVMSG" and m.nick == f"s{i}":
                    n = int(m.params[1].split()[1])
                    echoed[i].append((n, m.tags["msgid"]))
                    with lock:
                        total[0] += 1

    threads = [threading.Thread(target=f, args=(i,)) for i in range(SENDERS) for f in (send, read)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while total[0] < KILL_AFTER_ECHOES and time.monotonic() < deadline:
            time.sleep(0.001)
        server.proc.send_signal(signal.SIGKILL)  # mid-burst: senders are still sending
        server.proc.wait(10)
        for t in threads:
            t.join(15)
    finally:
        server.stop(signal.SIGKILL)
        for s in senders:
            s.close()
    assert total[0] >= KILL_AFTER_ECHOES, "the burst never got going"

    # Same database, same port: read everything back.
    server = server_process(*args, port=port)
    reader = None
    try:
        reader = Peer(port, "auditor")
        stored: list[Message] = []
        cursor = "timestamp=1970-01-01T00:00:00.000Z"
        while True:
            reader.sock.sendall(f"CHATHISTORY AFTER #dur {cursor} 1000\r\n".encode())
            got = reader.until(lambda m: m.command == "BATCH" and m.params[0].startswith("-"))
            page = [m for m in got if m.command == "PRIVMSG"]
            if not page:
                break
            stored.extend(page)
            cursor = f"msgid={page[-1].tags['msgid']}"
    finally:
        if reader is not None:
            reader.close()
        server.stop(signal.SIGTERM)

    ids = [m.tags["msgid"] for m in stored]
    assert len(ids) == len(set(ids)), "a message is stored twice"
    for i in range(SENDERS):
        mine = [m for m in stored if m.nick == f"s{i}"]
        numbers = [int(m.params[1].split()[1]) for m in mine]
        assert numbers == list(range(len(numbers))), f"s{i}: history out of order or with gaps"
        by_number = {int(m.params[1].split()[1]): m.tags["msgid"] for m in mine}
        for n, msgid in echoed[i]:
            assert by_number.get(n) == msgid, f"s{i} saw message {n} echoed, but it was lost"
    return total[0]


@pytest.mark.parametrize("run", range(RUNS))
def test_kill_9_mid_burst_loses_no_accepted_message(tmp_path, server_process, run):
    _one_run(tmp_path, server_process)
