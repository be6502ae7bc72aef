#!/usr/bin/env python3
"""The floor of our architecture: the least CPU a message can cost in it.

A relay with chatroom-server's shape and nothing else: ``socketserver``'s
ThreadingTCPServer with a reader thread per connection, one writer thread for every
socket and, with ``--db``, a store thread that commits each batch to SQLite (WAL,
synchronous=NORMAL, a messages table indexed by conversation) before it is delivered
(``--writer-commits``: no store thread; the writer commits each batch, then sends it).
It speaks just what ircload needs (NICK/USER -> 001, JOIN -> JOIN and 366, PRIVMSG to
a room, PING/PONG, QUIT) and checks nothing: no parsing beyond the command, no
limits, no flood control, no modes, no tags, no error replies.

It is not a server. ``server_bench.py --servers floor,floor-hist,...`` runs it beside
ours and ngIRCd, so that what a message costs in our code is seen against what it
costs in the architecture alone (issue 14):

    python3 benchmarks/server_bench.py -n 3 --only rooms,fanout50 \
        --servers ours,ngircd,floor,floor-hist,floor-wc

Loopback only: it binds 127.0.0.1 and takes no other address.
"""

from __future__ import annotations

import argparse
import itertools
import signal
import socket
import socketserver
import sqlite3
import threading
import time
from collections import deque

HOST = "127.0.0.1"
RECV_BYTES = 65536
# The writer's wait when a socket's kernel buffer is full (a floor: no SendQ limit).
RETRY_WAIT = 0.001
# Seconds between two WAL checkpoints, as ours (pipeline.CHECKPOINT_INTERVAL).
CHECKPOINT_INTERVAL = 2.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, msgid TEXT NOT NULL UNIQUE, time_ms INTEGER NOT NULL,
    target TEXT NOT NULL, sender TEXT NOT NULL, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS messages_target_id ON messages(target, id);
"""


class Mailbox:
    """Items handed to one thread, taken all at once: one wake-up per batch."""

    def __init__(self) -> None:
        self.items: deque = deque()
        self.cond = threading.Condition(threading.Lock())
        self.waiting = False
        self.closed = False

    def post(self, item: object) -> None:
        with self.cond:
            self.items.append(item)
            if self.waiting:
                self.cond.notify()

    def take(self, timeout: float | None = None) -> list:
        with self.cond:
            if not self.items and not self.closed:
                self.waiting = True
                self.cond.wait(timeout)
                self.waiting = False
            out = list(self.items)
            self.items.clear()
            return out

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()


class History:
    """The SQLite side, as ours keeps it: WAL, synchronous=NORMAL, and a checkpoint on a
    timer (pipeline.CHECKPOINT_INTERVAL) rather than SQLite's every 1000 pages."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.executescript(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0;"
            + SCHEMA
        )
        self.ids = itertools.count(1)
        self.next_checkpoint = time.monotonic() + CHECKPOINT_INTERVAL

    def commit(self, batches: list) -> None:
        """Store every relayed line of ``batches`` (entries of 5: a room line's) at once."""
        rows = []
        for batch in batches:
            for entry in batch:
                if len(entry) == 5:
                    n = next(self.ids)
                    rows.append((n, f"m{n:012x}", 0, *entry[2:]))
        if rows:
            self.conn.execute("BEGIN")
            self.conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)", rows)
            self.conn.execute("COMMIT")
        if time.monotonic() >= self.next_checkpoint:
            self.next_checkpoint = time.monotonic() + CHECKPOINT_INTERVAL
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        self.conn.close()


class Relay:
    """Rooms, the writer thread and (with a database) the store thread."""

    def __init__(self, db: str | None, writer_commits: bool = False) -> None:
        self.lock = threading.Lock()
        self.rooms: dict[str, list[socket.socket]] = {}
        self.writes = Mailbox()
        # writer_commits: no store thread, the writer commits each batch before sending it
        # (one thread hand-off less per batch; sending waits for every commit)
        self.stores = Mailbox() if db and not writer_commits else None
        self.db = db
        self.stopping = False
        self.threads = [threading.Thread(target=self._writer, name="writer")]
        if self.stores:
            self.threads.append(threading.Thread(target=self._store, name="store"))
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stopping = True
        self.writes.close()
        if self.stores:
            self.stores.close()
        for t in self.threads:
            t.join()

    def deliver(self, batch: list[tuple]) -> None:
        """Relayed lines from one reader's read, (line, recipients) or, with a database,
        (line, recipients, room, nick, text): stored first when there is a store thread."""
        (self.stores or self.writes).post(batch)

    def _store(self) -> None:
        assert self.stores is not None and self.db is not None
        history = History(self.db)
        while not self.stopping:
            batches = self.stores.take()
            if batches:
                history.commit(batches)
                self.writes.post([(d, to) for batch in batches for d, to, *_ in batch])
        history.close()

    def _writer(self) -> None:
        pending: dict[socket.socket, bytearray] = {}
        history = History(self.db) if self.db is not None and self.stores is None else None
        while not self.stopping:
            batches = self.writes.take(RETRY_WAIT if pending else None)
            if history is not None:
                history.commit(batches)
            for batch in batches:
                for data, to, *_ in batch:
                    for s in to:
                        buf = pending.get(s)
                        if buf is None:
                            pending[s] = bytearray(data)
                        else:
                            buf += data
            for s, buf in list(pending.items()):
                try:
                    sent = s.send(buf, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                except OSError:
                    sent = len(buf)
                if sent == len(buf):
                    del pending[s]
                else:
                    del buf[:sent]
        if history is not None:
            history.close()


class Handler(socketserver.BaseRequestHandler):
    relay: Relay

    def handle(self) -> None:
        relay, sock = self.relay, self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        nick, prefix, joined = "", "", []
        rest = b""
        store = relay.db is not None  # entries carry what the store needs
        try:
            while True:
                data = sock.recv(RECV_BYTES)
                if not data:
                    return
                *lines, rest = (rest + data).split(b"\r\n")
                batch = []
                for line in lines:
                    cmd, _, args = line.partition(b" ")
                    if cmd == b"PRIVMSG":
                        target, _, text = args.partition(b" :")
                        out = b":" + prefix + b" PRIVMSG " + target + b" :" + text + b"\r\n"
                        with relay.lock:
                            to = [s for s in relay.rooms.get(target, ()) if s is not sock]
                        if store:
                            batch.append((out, to, target.decode(), nick, text.decode()))
                        else:
                            batch.append((out, to))
                    elif cmd == b"PING":
                        relay.writes.post([(b":floor PONG floor " + args + b"\r\n", [sock])])
                    elif cmd == b"NICK":
                        nick = args.decode()
                    elif cmd == b"USER":
                        prefix = f"{nick}!u@127.0.0.1".encode()
                        relay.writes.post([(f":floor 001 {nick} :Hi\r\n".encode(), [sock])])
                    elif cmd == b"JOIN":
                        with relay.lock:
                            members = relay.rooms.setdefault(args, [])
                            members.append(sock)
                            to = list(members)
                        joined.append(args)
                        join = b":" + prefix + b" JOIN " + args + b"\r\n"
                        end = f":floor 366 {nick} {args.decode()} :End\r\n".encode()
                        relay.writes.post([(join, to), (end, [sock])])
                    elif cmd == b"QUIT":
                        return
                if batch:
                    relay.deliver(batch)
        except OSError:
            return
        finally:
            with relay.lock:
                for room in joined:
                    relay.rooms[room].remove(sock)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    # readers blocked in recv end with the process (SIGTERM from server_bench, whose
    # clients have quit by then); the writer and store threads are joined by Relay.stop
    daemon_threads = True
    request_queue_size = 4096


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--db", help="SQLite file: commit every message before delivery")
    ap.add_argument(
        "--writer-commits",
        action="store_true",
        help="with --db: the writer thread commits each batch itself (no store thread)",
    )
    args = ap.parse_args()
    relay = Relay(args.db, args.writer_commits)
    Handler.relay = relay
    server = Server((HOST, args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        relay.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
