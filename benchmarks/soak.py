#!/usr/bin/env python3
"""Churn soak: thousands of short sessions against a real server; its RSS, threads and fds.

Each session connects, registers (a third of them with every IRCv3 capability), joins
a room, talks, and ends one of five ways: a clean QUIT; a reset (SO_LINGER 0, then
close); a half-close (shutdown(SHUT_WR), then read to the end); never reading, in a
busy room, until the server drops it (SendQ exceeded); or half a line, then close.
Sessions run ``--concurrency`` at a time against one ``chatroom-server`` process on
127.0.0.1 (temporary ``--db``, ``--no-flood-limit``, every other setting default).
Two long-lived clients keep the rooms alive and the busy room busy.

The server's VmRSS (split by kind of mapping, from /proc/PID/smaps: the main malloc
heap, glibc's per-thread arenas, thread stacks, other anonymous memory such as
Python's object arenas, and mapped files), its thread count and open descriptors
are read at the baseline (after a warm-up), every 10% of a round and after a settle
period. Rounds after the first run the same churn on the same server: memory that
plateaus is warm-up (allocator arenas, caches up to their bound); memory that keeps
growing round after round is a leak.

    python3 benchmarks/soak.py                 # 2 rounds of 4,600 sessions, 20 at a time
    python3 benchmarks/soak.py --quick         # 2 rounds of 500
    python3 benchmarks/soak.py -n 10000 -c 40 --rounds 3

``CHATROOM_SOAK_TRACEMALLOC=1`` (or ``--tracemalloc``) runs the server in a child of
this script instead, in-process (``ChatServer``, built from the same command-line
flags) with tracemalloc on; it is snapshotted at the baseline and after each round,
and the allocation sites that grew most are printed by file:line, with the sizes
of the server's own containers. Much slower: a round of 4,600 takes minutes, not
20 seconds (``CHATROOM_SOAK_TRACE_FRAMES``, default 6, trades detail for speed).

Linux only (/proc). Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from server_bench import START_TIMEOUT, free_port, wait_listening  # noqa: E402  (beside this script)

ALL_CAPS = "message-tags server-time echo-message batch labeled-response draft/chathistory"
ROOMS = [f"#soak{i}" for i in range(10)]
BUSY = "#busy"
# How sessions end, and how often (weights).
ENDINGS = {"quit": 30, "reset": 20, "halfclose": 20, "noread": 10, "midline": 20}
WAIT = 15.0  # any single wait of a session: only a broken server takes this long
NOREAD_DEADLINE = 30.0  # a never-reading client must have been dropped by then
NOREAD_RCVBUF = 4096  # small, so the server's SendQ (not our kernel buffer) fills up
PAD_TAG_BYTES = 4000  # client-only tag data of one flood line (servers take up to 4094)
SETTLE_S = 3.0
# Frames kept per traced allocation (CHATROOM_SOAK_TRACE_FRAMES): more show where the
# top growers come from, and cost the traced server more.
TRACE_FRAMES = int(os.environ.get("CHATROOM_SOAK_TRACE_FRAMES", "6"))
TOP = 15


# --- the server --------------------------------------------------------------------------


def server_flags(port: int, db: Path) -> list[str]:
    return [
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-flood-limit",
        "--no-tls",  # no certificate in the user's data directory, no port 6697
        "--no-announce",  # a benchmark says nothing on the LAN
        "--no-http",  # no files in the user's data directory, no port 8067
        "--db",
        str(db),
        "--log-level",
        "INFO",  # one line per connect and disconnect: the server's view of the endings
    ]


_ARENA_ALIGN = 64 << 20  # glibc's per-thread malloc arenas: 64 MiB-aligned heaps
# A thread's stack: one anonymous mapping of RLIMIT_STACK bytes (glibc keeps up to
# 40 MiB of finished threads' stacks for reuse, with whatever pages they touched).
_STACK_BYTES = resource.getrlimit(resource.RLIMIT_STACK)[0]


def rss_parts(pid: int) -> dict[str, float]:
    """Where the resident memory is (MiB), from /proc/PID/smaps: ``heap``, the main
    malloc heap (brk); ``arenas``, glibc's per-thread malloc arenas; ``stacks``,
    thread stacks, live and cached; ``anon``, other anonymous memory (Python's object
    arenas, large blocks); ``files``, mapped files (code, SQLite's -shm)."""
    parts = dict.fromkeys(("heap", "arenas", "stacks", "anon", "files"), 0)
    kind = "anon"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(None, 5)
        if "-" in head[0] and ":" not in head[0]:  # a mapping: "start-end perms ... [path]"
            path = head[5] if len(head) > 5 else ""
            start, end = (int(x, 16) for x in head[0].split("-"))
            if path == "[heap]":
                kind = "heap"
            elif path and not path.startswith("["):
                kind = "files"
            elif not path and start % _ARENA_ALIGN == 0:
                kind = "arenas"
            elif not path and end - start == _STACK_BYTES:
                kind = "stacks"
            else:
                kind = "anon"
        elif head[0] == "Rss:":
            parts[kind] += int(head[1])
    return {k: v / 1024 for k, v in parts.items()}


class Server:
    """``chatroom-server`` as a process; or, traced, this script serving in-process."""

    def __init__(self, workdir: Path, traced: bool) -> None:
        self.port = free_port()
        self.db = workdir / "history.sqlite3"
        self.log_path = workdir / "server.log"
        self.traced = traced
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        flags = server_flags(self.port, self.db)
        if traced:
            argv = [sys.executable, __file__, "--serve-traced", *flags]
        else:
            main = "from chatroom.cli import server_main; raise SystemExit(server_main())"
            argv = [sys.executable, "-c", main, *flags]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if traced else subprocess.DEVNULL,
            stdout=subprocess.PIPE if traced else subprocess.DEVNULL,
            stderr=self._log,
            text=True,
            cwd=ROOT,
        )
        if traced:
            assert self._ask("ready") == "ready"
        if wait_listening(self.port, self.proc, START_TIMEOUT):
            return
        self.stop()
        sys.exit(f"server did not start; see {self.log_path}:\n{self.log_path.read_text()}")

    def _ask(self, command: str) -> str:
        """One request to the traced child, one line back (its stdout is ours alone)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if command != "ready":
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def snapshot(self, path: Path) -> None:
        assert self._ask(f"snap {path}") == "ok"

    def stats(self) -> dict:
        return json.loads(self._ask("stats"))

    def sample(self) -> dict[str, float]:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        db_bytes = sum(
            p.stat().st_size for p in self.db.parent.glob(self.db.name + "*") if p.exists()
        )
        return {
            "rss": int(fields["VmRSS"].split()[0]) / 1024,
            **rss_parts(self.proc.pid),
            "threads": int(fields["Threads"]),
            "fds": len(os.listdir(f"/proc/{self.proc.pid}/fd")),
            "db": db_bytes / 2**20,
        }

    def stop(self) -> int:
        if self.proc.poll() is None:
            if self.traced:
                try:
                    self._ask("stop")
                except (OSError, ValueError):
                    pass
            else:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        rc = self.proc.wait()
        self._log.close()
        return rc

    def disconnect_reasons(self) -> Counter[str]:
        """Why the server says each connection ended (its INFO log)."""
        reasons: Counter[str] = Counter()
        for line in self.log_path.read_text(errors="replace").splitlines():
            found = re.search(r" disconnect \S+ \([^)]*\): (.*)$", line)
            if found:
                reasons[re.sub(r"^Quit: .*", "Quit: ...", found.group(1))] += 1
        return reasons

    def problems(self) -> list[str]:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [ln for ln in lines if " ERROR " in ln or " CRITICAL " in ln or "Traceback" in ln]


def serve_traced(argv: list[str]) -> int:
    """The child of ``--tracemalloc``: ChatServer in this process, tracemalloc on,
    driven over stdin (``snap PATH``, ``stats``, ``stop``), answering on stdout."""
    import gc
    import logging
    import tracemalloc

    tracemalloc.start(TRACE_FRAMES)
    sys.path.insert(0, str(ROOT))
    from chatroom.cli import build_config, server_parser
    from chatroom.server.server import ChatServer

    config = build_config(server_parser().parse_args(argv))
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server = ChatServer(config)
    server.start()
    print("ready", flush=True)
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "snap":
            gc.collect()
            tracemalloc.take_snapshot().dump(arg)
            print("ok", flush=True)
        elif command == "stats":
            print(json.dumps(_container_sizes(server)), flush=True)
        elif command == "stop":
            break
    server.stop()
    print("bye", flush=True)
    return 0


def _container_sizes(server: object) -> dict[str, int]:
    """Sizes of the server's long-lived containers (whatever of them exists)."""

    def size(path: str) -> int:
        obj: object = server
        for name in path.split("."):
            obj = getattr(obj, name, None)
            if obj is None:
                return -1
        return obj if isinstance(obj, int) else len(obj)  # type: ignore[arg-type]

    import threading as th

    paths = [
        "_sessions",
        "_conn_threads",
        "registry.connections",
        "registry.users",
        "registry.channels",
        "registry.whowas",
        "registry.per_address",
        "writer._groups",
        "writer._group_refs",
        "writer._closing",
        "writer._dirty",
        "writer._inbox",
        "pipeline._inbox",
    ]
    out = {p: size(p) for p in paths}
    channels = getattr(getattr(server, "registry", None), "channels", {})
    out["sum(len(channel.invited))"] = sum(len(c.invited) for c in channels.values())
    out["sum(len(channel.members))"] = sum(len(c.members) for c in channels.values())
    out["threads"] = th.active_count()
    return out


# --- the clients ----------------------------------------------------------------------------


class Client:
    """A blocking IRC connection with just enough reading for a soak."""

    def __init__(self, port: int, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(WAIT)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.pending: deque[bytes] = deque()  # complete lines not yet looked at
        self.eof = False
        self.error = False  # the server said ERROR

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(f"{ln}\r\n" for ln in lines).encode())

    def _commands(self, deadline: float):
        """Yield (command, line) as they arrive, until EOF or the deadline."""
        while True:
            if b"\n" in self.buf:  # split once per read: long lines must not cost O(n^2)
                *lines, self.buf = self.buf.split(b"\n")
                self.pending.extend(lines)
            while self.pending:
                line = self.pending.popleft()
                words = line.rstrip(b"\r").split(b" ")
                if words and words[0].startswith(b"@"):
                    words = words[1:]
                if words and words[0].startswith(b":"):
                    words = words[1:]
                command = words[0] if words else b""
                if command == b"PING":
                    self.sock.sendall(b"PONG " + b" ".join(words[1:]) + b"\r\n")
                elif command == b"ERROR":
                    self.error = True
                yield command, line
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.eof:
                return
            # select, not a socket timeout: another thread may be sending on this socket
            # (the chatter), and its sendall must keep the long timeout
            if not select.select([self.sock], [], [], remaining)[0]:
                return
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                self.eof = True
            self.buf += data

    def wait_for(self, command: bytes, token: bytes = b"") -> bool:
        for cmd, line in self._commands(time.monotonic() + WAIT):
            if cmd == command and token in line:
                return True
        return False

    def sync(self, token: str) -> bool:
        self.send(f"PING :{token}")
        return self.wait_for(b"PONG", token.encode())

    def read_to_eof(self, timeout: float = WAIT) -> bool:
        for _ in self._commands(time.monotonic() + timeout):
            pass
        return self.eof

    def reset(self) -> None:
        """Close with a TCP RST: SO_LINGER on, zero seconds."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Background:
    """Two long-lived clients: the keeper sits in every room (rooms live on, as on a
    real server), the chatter floods the busy room with tagged lines while some
    never-reading session waits there to be dropped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.waiting = 0  # never-reading sessions in the busy room
        self.flood_lines = 0
        self.drop_times: list[float] = []  # seconds each never-reader took to be dropped
        self.lock = threading.Lock()
        self.keeper = self._join("keeper", "", [*ROOMS, BUSY])
        self.chatter = self._join("chatter", "message-tags", [BUSY])  # no echo of its flood
        self.threads = [
            threading.Thread(target=self._drain, args=(c,), daemon=True)
            for c in (self.keeper, self.chatter)
        ]
        self.threads.append(threading.Thread(target=self._flood, daemon=True))
        for t in self.threads:
            t.start()

    def _join(self, nick: str, caps: str, rooms: list[str]) -> Client:
        c = Client(self.port)
        c.send(*([f"CAP REQ :{caps}"] if caps else []), f"NICK {nick}", f"USER {nick} 0 * :soak")
        if caps:
            c.send("CAP END")
        c.send(f"JOIN {','.join(rooms)}")
        assert c.sync("joined"), f"{nick} could not join"
        return c

    def _drain(self, c: Client) -> None:
        while not self.stop.is_set() and not c.eof:
            for _ in c._commands(time.monotonic() + 0.5):
                pass

    def _flood(self) -> None:
        line = f"@+soak/pad={'x' * PAD_TAG_BYTES} TAGMSG {BUSY}\r\n".encode()
        while not self.stop.is_set():
            if self.waiting:
                try:
                    self.chatter.sock.sendall(line * 20)
                except TimeoutError:
                    continue  # a server WAIT seconds behind: keep pushing
                except OSError:
                    return
                self.flood_lines += 20
                time.sleep(0.01)
            else:
                time.sleep(0.05)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(2)
        self.keeper.close()
        self.chatter.close()


def session(port: int, name: str, ending: str, rng: random.Random, bg: Background) -> str:
    """One connect/talk/leave; returns how it went ("ok" or what was off)."""
    room = BUSY if ending == "noread" else rng.choice(ROOMS)
    tagged = rng.random() < 1 / 3 or ending == "noread"
    c = Client(port, rcvbuf=NOREAD_RCVBUF if ending == "noread" else None)
    try:
        if tagged:
            c.send("CAP LS 302", f"CAP REQ :{ALL_CAPS}")
        c.send(f"NICK {name}", f"USER {name[:10]} 0 * :soak session {name}")
        if tagged:
            c.send("CAP END")
        if not c.wait_for(b"001"):
            return "no welcome"
        c.send(f"JOIN {room}")
        for n in range(rng.randint(2, 6)):
            c.send(f"PRIVMSG {room} :{name} says {n}: " + "lorem ipsum " * rng.randint(1, 15))
        if rng.random() < 0.2:
            c.send(f"PRIVMSG keeper :hello from {name}")
        if rng.random() < 0.1:
            c.send(f"WHO {room}", f"NAMES {room}", "LIST")
        if tagged and rng.random() < 0.2:
            c.send(f"CHATHISTORY LATEST {room} * 50")
        if rng.random() < 0.1:
            c.send(f"NICK {name}x")
        if ending == "noread":
            return _never_read(c, bg)
        if ending == "reset" and rng.random() < 0.5:
            c.reset()  # in the middle of whatever the server is still sending
            return "ok"
        if not c.sync(f"talked-{name}"):
            return "no PONG after talking"
        if ending == "quit":
            c.send("QUIT :bye")
            return "ok" if c.read_to_eof() and c.error else "no ERROR/close after QUIT"
        if ending == "reset":
            c.reset()
            return "ok"
        if ending == "halfclose":
            c.sock.shutdown(socket.SHUT_WR)
            return "ok" if c.read_to_eof() else "not closed after half-close"
        # midline: half a line, then a FIN or a RST
        c.sock.sendall(f"PRIVMSG {room} :this line never ends".encode())
        if rng.random() < 0.5:
            c.reset()
        return "ok"
    except OSError as e:
        return f"{type(e).__name__}"
    finally:
        c.close()


def _never_read(c: Client, bg: Background) -> str:
    """Sit in the busy room reading nothing; the server must drop us (SendQ). Our
    PINGs go unanswered (we do not read), and a send fails once it has closed."""
    with bg.lock:
        bg.waiting += 1
    started = time.monotonic()
    try:
        while time.monotonic() < started + NOREAD_DEADLINE:
            try:
                c.sock.sendall(b"PING :still-here\r\n")
            except OSError:
                bg.drop_times.append(time.monotonic() - started)
                return "ok"
            time.sleep(0.25)
        return "never dropped"
    finally:
        with bg.lock:
            bg.waiting -= 1


# --- the soak ---------------------------------------------------------------------------------


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, int, dict[str, float], float]] = []
        self.started = time.monotonic()
        print(f"{'phase':<14}{'sessions':>9}{'RSS MiB':>9} {'= heap':>7}{'arenas':>7}"
              f"{'stacks':>7}{'anon':>7}{'files':>7}{'threads':>9}{'fds':>6}{'db MiB':>8}"
              f"{'elapsed s':>11}")  # fmt: skip

    def add(self, phase: str, sessions: int, sample: dict[str, float]) -> None:
        t = time.monotonic() - self.started
        self.rows.append((phase, sessions, sample, t))
        print(
            f"{phase:<14}{sessions:>9}{sample['rss']:>9.1f} {sample['heap']:>7.1f}"
            f"{sample['arenas']:>7.1f}{sample['stacks']:>7.1f}{sample['anon']:>7.1f}"
            f"{sample['files']:>7.1f}"
            f"{sample['threads']:>9}{sample['fds']:>6}{sample['db']:>8.1f}{t:>11.1f}",
            flush=True,
        )


def run_round(
    port: int, bg: Background, n: int, concurrency: int, tag: str, seed: int, progress=None
) -> Counter[tuple[str, str]]:
    """``n`` sessions, ``concurrency`` at a time; ``progress(done)`` at every 10%."""
    rng = random.Random(seed)
    kinds = rng.choices(list(ENDINGS), list(ENDINGS.values()), k=n)
    outcomes: Counter[tuple[str, str]] = Counter()
    marks = {max(1, n * k // 10) for k in range(1, 11)}
    with ThreadPoolExecutor(concurrency) as pool:
        futures = {
            pool.submit(session, port, f"{tag}s{i}", kind, random.Random(seed * 7919 + i), bg): kind
            for i, kind in enumerate(kinds)
        }
        for done, future in enumerate(as_completed(futures), 1):
            outcomes[futures[future], future.result()] += 1
            if progress is not None and done in marks:
                progress(done)
    return outcomes


def settle(server: Server, base: dict[str, float], timeout: float = 30.0) -> None:
    """Until threads and fds are back to the baseline (bounded), then SETTLE_S more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = server.sample()
        if s["threads"] <= base["threads"] and s["fds"] <= base["fds"]:
            break
        time.sleep(0.25)
    time.sleep(SETTLE_S)


def top_growers(old_path: Path, new_path: Path, title: str) -> None:
    import tracemalloc

    old = tracemalloc.Snapshot.load(str(old_path))
    new = tracemalloc.Snapshot.load(str(new_path))
    ignore = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
        tracemalloc.Filter(False, "<unknown>"),
    ]
    old, new = old.filter_traces(ignore), new.filter_traces(ignore)
    total_old = sum(s.size for s in old.statistics("filename"))
    total_new = sum(s.size for s in new.statistics("filename"))
    print(
        f"\n{title}: traced {total_old / 2**20:.2f} -> {total_new / 2**20:.2f} MiB"
        f" ({(total_new - total_old) / 1024:+.0f} KiB); top {TOP} growing sites:"
    )
    for st in new.compare_to(old, "lineno")[:TOP]:
        frame = st.traceback[0]
        where = (
            os.path.relpath(frame.filename, ROOT) if str(ROOT) in frame.filename else frame.filename
        )
        print(
            f"  {st.size_diff / 1024:+10.1f} KiB {st.count_diff:+8d} blocks"
            f"  (now {st.size / 1024:9.1f} KiB)  {where}:{frame.lineno}"
        )
    print("  where the top 3 come from (newest frame first):")
    for st in new.compare_to(old, "traceback")[:3]:
        print(f"  {st.size_diff / 1024:+.1f} KiB in {st.count_diff:+d} blocks:")
        for frame in list(st.traceback)[::-1][:6][::-1]:
            where = (
                os.path.relpath(frame.filename, ROOT)
                if str(ROOT) in frame.filename
                else frame.filename
            )
            print(f"      {where}:{frame.lineno}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve-traced"]:
        return serve_traced(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", "--sessions", type=int, default=4600, help="sessions per round")
    p.add_argument("-c", "--concurrency", type=int, default=20, help="sessions at a time")
    p.add_argument("--rounds", type=int, default=2, help="rounds on the same server")
    p.add_argument("--warmup", type=int, default=200, help="sessions before the baseline")
    p.add_argument("--quick", action="store_true", help="rounds of 500 sessions")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tracemalloc", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    n = 500 if args.quick else args.sessions
    traced = args.tracemalloc or os.environ.get("CHATROOM_SOAK_TRACEMALLOC") == "1"

    with tempfile.TemporaryDirectory(prefix="chatroom-soak-") as tmp:
        workdir = Path(tmp)
        server = Server(workdir, traced)
        bg = Background(server.port)
        rc = 0
        try:
            print(
                f"soak: {args.rounds} x {n} sessions, {args.concurrency} at a time, server pid"
                f" {server.proc.pid}{' (tracemalloc)' if traced else ''}; endings {ENDINGS}"
            )
            run_round(server.port, bg, min(args.warmup, n), args.concurrency, "w", args.seed)
            time.sleep(SETTLE_S)
            table = Table()
            base = server.sample()
            table.add("baseline", 0, base)
            snaps = [workdir / "snap-0"]
            if traced:
                server.snapshot(snaps[0])
                print(f"    containers: {server.stats()}")
            summary = []
            total: Counter[tuple[str, str]] = Counter()
            before = base
            for r in range(1, args.rounds + 1):
                during: list[dict[str, float]] = []

                def progress(done: int, r: int = r, during: list = during) -> None:
                    s = server.sample()
                    during.append(s)
                    table.add(f"r{r} {done * 100 // n}%", done, s)

                total += run_round(
                    server.port, bg, n, args.concurrency, f"r{r}", args.seed + r, progress
                )
                settle(server, base)
                after = server.sample()
                table.add(f"r{r} after", n, after)
                if traced:
                    snaps.append(workdir / f"snap-{r}")
                    server.snapshot(snaps[-1])
                    print(f"    containers: {server.stats()}")
                peak = max(d["rss"] for d in during)
                summary.append(
                    f"round {r}: RSS before/during/after {before['rss']:.1f} / {peak:.1f} (peak)"
                    f" / {after['rss']:.1f} MiB; threads {before['threads']}/"
                    f"{max(d['threads'] for d in during)}/{after['threads']};"
                    f" fds {before['fds']}/{max(d['fds'] for d in during)}/{after['fds']}"
                )
                before = after
            print("\nsessions:", ", ".join(f"{k}/{o}: {c}" for (k, o), c in sorted(total.items())))
            drops = sorted(bg.drop_times)
            if drops:
                print(
                    f"never-readers dropped after {drops[len(drops) // 2]:.2f} s (median),"
                    f" {drops[-1]:.2f} s (max); the busy room took {bg.flood_lines} flood lines"
                )
            bad = sum(c for (_, o), c in total.items() if o != "ok")
            if bad:
                print(f"  {bad} sessions did not go as expected (see above)")
                rc = 1
            for line in summary:
                print(line)
            if traced:
                top_growers(snaps[0], snaps[1], "baseline -> after round 1")
                for r in range(2, len(snaps)):
                    top_growers(snaps[r - 1], snaps[r], f"after round {r - 1} -> after round {r}")
        finally:
            bg.close()
            stop_rc = server.stop()
        reasons = server.disconnect_reasons()
        print(
            "server's disconnect reasons:", ", ".join(f"{r}: {c}" for r, c in reasons.most_common())
        )
        problems = server.problems()
        print(f"\nserver exit status {stop_rc}; {len(problems)} ERROR/traceback lines in its log")
        for line in problems[:10]:
            print("   ", line)
        return rc or (1 if problems or stop_rc else 0)


if __name__ == "__main__":
    sys.exit(main())
