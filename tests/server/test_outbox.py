"""The writer on its own: fan-out order and variants, exclusion, SendQ, bounded caches.

Real sockets (socket pairs), a real writer thread; no server around them."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from chatroom.server import outbox as ob_mod
from chatroom.server.outbox import Outbox, Writer
from chatroom.server.records import Multicast


@pytest.fixture
def writer():
    w = Writer(close_linger=0.5, flush_bytes=16 * 1024)
    w.start()
    yield w
    w.stop()


@pytest.fixture
def pairs(writer):
    """Make (outbox, peer socket) pairs; everything is closed at teardown."""
    made: list[tuple[Outbox, socket.socket]] = []

    def make(n: int, limit: int = 1 << 16) -> list[tuple[Outbox, socket.socket]]:
        for _ in range(n):
            ours, theirs = socket.socketpair()
            theirs.settimeout(5)
            made.append((Outbox(ours, writer, limit), theirs))
        return made[-n:]

    yield make
    for ob, theirs in made:
        ob.reader_finished()  # the writer closes our end
        theirs.close()


def read_until(sock: socket.socket, want: bytes, timeout: float = 5) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while want not in got and time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        got += chunk
    return got


def test_fan_out_keeps_order_skips_the_sender_and_picks_each_variant(writer, pairs):
    members = pairs(12)
    outboxes = tuple(ob for ob, _ in members)
    members[3][0].variant = 2  # this one negotiated message-tags
    sender = outboxes[0]
    for n in range(200):
        line = f"line {n}\r\n".encode()
        writer.multicast((line, line, b"@t " + line), outboxes, exclude=sender)
    writer.multicast((b"end\r\n",) * 3, outboxes)
    for i, (_, theirs) in enumerate(members):
        got = read_until(theirs, b"end\r\n").decode()
        lines = got.splitlines()
        assert lines[-1] == "end"
        if i == 0:
            assert lines == ["end"], "the sender must not get its own line back"
            continue
        prefix = "@t " if i == 3 else ""
        assert lines[:-1] == [f"{prefix}line {n}" for n in range(200)]


def test_a_client_that_never_reads_is_cut_off_at_its_sendq(writer, pairs):
    (stuck, _), (healthy, hers) = pairs(2, limit=512 * 1024)
    # The healthy client is another process, as real clients are: a reader thread in
    # this process would compete with the writer for the GIL and look stuck itself.
    hers.settimeout(None)  # a blocking descriptor for the child to read
    counter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; print('ready', flush=True); print(len(sys.stdin.buffer.read()))",
        ],
        stdin=hers.fileno(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert counter.stdout.readline() == "ready\n"  # reading before anything is sent
    line = b"x" * 1000 + b"\r\n"
    # 8 MB, far beyond the stuck one's SendQ and socket buffers, at ~100 MB/s: a pace a
    # reading client keeps up with even on a busy machine (unpaced, the writer outruns
    # any reader by more than a SendQ within a millisecond)
    for n in range(8000):
        writer.multicast((line,) * 3, (stuck, healthy))
        if n % 100 == 99:
            time.sleep(0.001)
    healthy.close("done")  # flushes everything, then FIN: the counter sees EOF
    out, _ = counter.communicate(timeout=20)
    hers.close()
    assert int(out) == 8000 * len(line), "the healthy client must get everything"
    assert stuck.close_reason == "SendQ exceeded"
    assert healthy.close_reason == "done"


def test_cached_groupings_are_bounded_by_the_references_they_hold(writer, pairs, monkeypatch):
    monkeypatch.setattr(ob_mod, "GROUP_CACHE_REFS", 500)
    members = [ob for ob, _ in pairs(20)]
    for n in range(200):  # 200 different recipient tuples of 10-20, as room churn makes
        writer.multicast((b"x\r\n",) * 3, tuple(members[: 10 + n % 11]))
    deadline = time.monotonic() + 5
    while writer.backlog and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer._group_refs <= 500 + 20
    assert len(writer._groups) < 200


def test_an_entry_the_writer_cannot_handle_is_skipped_and_counted(writer, pairs, caplog):
    ((ob, theirs),) = pairs(1)
    writer.multicast((b"before\r\n",) * 3, (ob,))
    writer.post(Multicast((object(),), (b"x\r\n",) * 3))
    writer.post(("no such kind",))
    writer.multicast((b"after\r\n",) * 3, (ob,))
    assert read_until(theirs, b"after\r\n") == b"before\r\nafter\r\n"
    assert writer.alive and writer.errors == 1  # an unknown kind is ignored, as before
    assert "skipped an entry" in caplog.text
