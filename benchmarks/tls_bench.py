#!/usr/bin/env python3
"""TLS against plain text: room fan-out through one server, both in one run, interleaved.

One ``chatroom-server`` process on 127.0.0.1 serves both ports (history off, flood
control off, its self-signed certificate in a temporary directory). Each run fills a
fresh room with C clients, all over TLS or all in clear, and S of them send M
PRIVMSGs each; every other member must receive every one, in order. Runs alternate
plain / TLS (the order rotates each repetition), and the table gives medians.

The load is ircload's ``fanout`` (../shared/tools/ircload, which speaks no TLS) redone
in Python so that both modes go through the same code: closed loop, each sender keeps
at most W messages in flight, a message leaving flight once *every* receiver has it
(shared counters between the generator processes); each message carries its send
time (CLOCK_MONOTONIC, shared by all processes), so latency is receive time minus
send time. The clients are spread over P generator processes; TLS clients pin the
server's certificate (TLS 1.3, the server's choice of cipher).

To keep the generator from being the bottleneck, a read is not parsed line by line:
per sender it finds the first and the last of its lines in what was read (their
sequence numbers must follow on from the previous read, and the lines in between
must number exactly the difference: loss, duplicates and reordering show), and
takes the latency of those two. So p50/p99 are over two samples per sender per
read: the oldest and the newest line, not every line.

What it reports per mode: deliveries/s (deliveries summed over receivers / time from
the first send to the last delivery), p50 and p99 latency, the server's CPU time per
delivery (from /proc: what TLS costs the server, whether or not the generator keeps
up), and the generator's CPU. On a 2-core machine the generator and the server
share the CPU: compare the two modes within one run, not with other machines.

    python3 benchmarks/tls_bench.py -n 5                 # 50 clients, 5 senders x 2000
    python3 benchmarks/tls_bench.py -n 3 -c 200 -s 10 -m 500
    python3 benchmarks/tls_bench.py --quick              # a smoke test

Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import selectors
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 15.0
RUN_TIMEOUT = 120.0  # one run, connecting to the last delivery
PAD = "p" * 64  # as ircload's default padding
# the text of each line: "L <sender> <seq> <send time, us> <pad>"
MARK = b" :L "
CLK = time.CLOCK_MONOTONIC


def now_us() -> int:
    return time.clock_gettime_ns(CLK) // 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the server --------------------------------------------------------------------------


class Server:
    """One chatroom-server with both ports, for the whole benchmark."""

    def __init__(self, workdir: Path) -> None:
        self.port, self.tls_port = free_port(), free_port()
        self.tls_dir = workdir / "tls"
        self.log_path = workdir / "server.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        argv = [
            sys.executable,
            "-c",
            "from chatroom.cli import server_main; raise SystemExit(server_main())",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--tls-port",
            str(self.tls_port),
            "--tls-dir",
            str(self.tls_dir),
            "--no-history",
            "--no-announce",  # a benchmark says nothing on the LAN
            "--no-http",  # no files in the user's data directory, no port 8067
            "--no-flood-limit",
            "--log-level",
            "WARNING",
        ]
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                for port in (self.port, self.tls_port):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        sys.exit(f"server did not start; see {self.log_path}:\n{self.log_path.read_text()}")

    @property
    def cert(self) -> Path:
        return self.tls_dir / "server-cert.pem"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def problems(self) -> list[str]:
        text = self.log_path.read_text(errors="replace")
        return [ln for ln in text.splitlines() if " ERROR " in ln or "Traceback" in ln]


# --- the load (one generator process) -----------------------------------------------------


class Client:
    __slots__ = ("buf", "expected", "index", "last", "sent", "sock")

    def __init__(self, index: int, sock: socket.socket) -> None:
        self.index = index
        self.sock = sock
        self.buf = b""
        self.last: dict[int, int] = {}  # sender -> last sequence number received
        self.expected = 0
        self.sent = 0


def _connect(port: int, cert: str | None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=RUN_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if cert:
        context = ssl.create_default_context(cafile=cert)
        sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
    return sock


def _read_until(sock: socket.socket, marker: bytes, buf: bytes = b"") -> bytes:
    while marker not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed while waiting for {marker!r}")
        buf += data
        if b"PING " in buf:
            for line in buf.split(b"\r\n"):
                if line.startswith(b"PING "):
                    sock.sendall(b"PONG " + line[5:] + b"\r\n")
    return buf


def generator(
    wid: int,
    indexes: list[int],
    args: dict,
    progress,  # RawArray('q', S*C): progress[s*C + r] = last seq of sender s that r has
    ready,  # Barrier: everyone joined
    results,  # Queue
) -> None:
    """Connect, register and join ``indexes``; after the barrier, send (the senders
    among them, windowed) and receive until every expected line arrived."""
    try:
        results.put((wid, _generate(indexes, args, progress, ready)))
    except BaseException as e:  # report, never hang the parent
        try:
            ready.abort()
        except Exception:
            pass
        results.put((wid, {"error": f"{type(e).__name__}: {e}"}))


def _generate(indexes: list[int], args: dict, progress, ready) -> dict:
    c_total, senders, count, window = args["c"], args["s"], args["m"], args["w"]
    room, tag, port, cert = args["room"], args["tag"], args["port"], args["cert"]
    clients: list[Client] = []
    for i in indexes:
        sock = _connect(port, cert)
        sock.sendall(f"NICK {tag}{i}\r\nUSER b 0 * :bench\r\nJOIN {room}\r\n".encode())
        clients.append(Client(i, sock))
    for c in clients:
        _read_until(c.sock, f" 366 {tag}{c.index} {room} ".encode())
        c.expected = (senders - (1 if c.index < senders else 0)) * count
        c.sock.setblocking(False)
    ready.wait(RUN_TIMEOUT)
    cpu0 = time.process_time()
    sel = selectors.DefaultSelector()
    for c in clients:
        sel.register(c.sock, selectors.EVENT_READ, c)
    mine = [c for c in clients if c.index < senders]
    pending = {c for c in clients if c.expected}
    latencies = array("q")
    first_send = last_delivery = 0
    deliveries = errors = 0
    deadline = time.monotonic() + RUN_TIMEOUT
    keys = [b":L %d " % s for s in range(senders)]
    while (pending or any(c.sent < count for c in mine)) and time.monotonic() < deadline:
        for c in mine:  # closed loop: at most `window` messages not yet everywhere
            if c.sent >= count:
                continue
            row = progress[c.index * c_total : (c.index + 1) * c_total]
            done = min(row)
            room_left = window - (c.sent - done)
            if room_left <= 0:
                continue
            stamp = now_us()
            first_send = first_send or stamp
            n = min(room_left, count - c.sent)
            lines = "".join(
                f"PRIVMSG {room} :L {c.index} {c.sent + k + 1} {stamp} {PAD}\r\n" for k in range(n)
            )
            c.sock.setblocking(True)
            c.sock.sendall(lines.encode())
            c.sock.setblocking(False)
            c.sent += n
        waiting = any(c.sent < count for c in mine)
        for key, _ in sel.select(0.0005 if waiting else 0.05):
            c = key.data
            sock = c.sock
            chunks = []
            try:
                while True:
                    data = sock.recv(262144)
                    if not data:
                        raise ConnectionError(f"{tag}{c.index}: closed by the server")
                    chunks.append(data)
                    if not isinstance(sock, ssl.SSLSocket) or not sock.pending():
                        break
            except (BlockingIOError, ssl.SSLWantReadError):
                pass
            if not chunks:
                continue
            t = now_us()
            data = c.buf + b"".join(chunks)
            cut = data.rfind(b"\n") + 1
            c.buf = data[cut:]
            got = data.count(MARK, 0, cut)
            advanced = 0
            last = c.last
            for s, key in enumerate(keys):
                i = data.find(key, 0, cut)
                if i < 0:
                    continue
                j = data.rfind(key, i, cut)
                seq0, t0 = data[i + len(key) : i + len(key) + 48].split(b" ", 2)[:2]
                seq1, t1 = data[j + len(key) : j + len(key) + 48].split(b" ", 2)[:2]
                before = last.get(s, 0)
                if int(seq0) != before + 1:
                    errors += 1
                last[s] = int(seq1)
                advanced += int(seq1) - before
                latencies.append(t - int(t0))
                latencies.append(t - int(t1))
            if advanced != got:  # lines lost, repeated or out of order
                errors += 1
            if got:
                deliveries += got
                last_delivery = t
                c.expected -= got
                for s, seq in last.items():
                    progress[s * c_total + c.index] = seq
                if c.expected <= 0:
                    pending.discard(c)
            if b"PING " in data[:cut]:
                for line in data[:cut].split(b"\r\n"):
                    if line.startswith(b"PING "):
                        sock.setblocking(True)
                        sock.sendall(b"PONG " + line[5:] + b"\r\n")
                        sock.setblocking(False)
    cpu = time.process_time() - cpu0
    sel.close()
    for c in clients:
        try:
            c.sock.setblocking(True)
            c.sock.sendall(b"QUIT :done\r\n")
        except OSError:
            pass
        c.sock.close()
    return {
        "deliveries": deliveries,
        "missing": sum(max(c.expected, 0) for c in clients),
        "errors": errors,
        "first_send": first_send,
        "last_delivery": last_delivery,
        "latencies": latencies.tobytes(),
        "cpu": cpu,
    }


def run(server: Server, mode: str, n: int, args: argparse.Namespace) -> dict:
    """One fan-out run over ``mode`` ("plain" or "tls"); returns its measurements."""
    c_total, senders = args.clients, args.senders
    progress = mp.RawArray("q", senders * c_total)
    for s in range(senders):
        progress[s * c_total + s] = 1 << 62  # a sender does not receive its own lines
    ready = mp.Barrier(args.procs + 1)
    results: mp.Queue = mp.Queue()
    common = {
        "c": c_total,
        "s": senders,
        "m": args.messages,
        "w": args.window,
        "room": f"#bench{n}",
        "tag": f"b{n}x",
        "port": server.tls_port if mode == "tls" else server.port,
        "cert": str(server.cert) if mode == "tls" else None,
    }
    procs = [
        mp.Process(
            target=generator,
            args=(w, list(range(w, c_total, args.procs)), common, progress, ready, results),
        )
        for w in range(args.procs)
    ]
    for p in procs:
        p.start()
    try:
        ready.wait(RUN_TIMEOUT)
        cpu0 = cpu_seconds(server.proc.pid)
        parts = [results.get(timeout=RUN_TIMEOUT)[1] for _ in procs]
        server_cpu = cpu_seconds(server.proc.pid) - cpu0
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    bad = [p["error"] for p in parts if "error" in p]
    if bad:
        return {"ok": False, "error": bad[0]}
    lat = array("q")
    for p in parts:
        lat.frombytes(p["latencies"])
    deliveries = sum(p["deliveries"] for p in parts)
    span = (max(p["last_delivery"] for p in parts) - min(p["first_send"] for p in parts)) / 1e6
    lat_sorted = sorted(lat)
    missing = sum(p["missing"] for p in parts)
    errors = sum(p["errors"] for p in parts)
    return {
        "ok": not missing and not errors,
        "deliveries": deliveries,
        "deliveries_per_s": deliveries / span if span > 0 else 0.0,
        "p50_ms": lat_sorted[len(lat_sorted) // 2] / 1000 if lat_sorted else 0.0,
        "p99_ms": lat_sorted[int(len(lat_sorted) * 0.99)] / 1000 if lat_sorted else 0.0,
        "server_us_per_delivery": server_cpu / deliveries * 1e6 if deliveries else 0.0,
        "server_cpu": server_cpu / span if span > 0 else 0.0,
        "generator_cpu": sum(p["cpu"] for p in parts) / span if span > 0 else 0.0,
        "missing": missing,
        "errors": errors,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--reps", type=int, default=5, help="repetitions (medians)")
    ap.add_argument("-c", "--clients", type=int, default=50, help="members of the room")
    ap.add_argument("-s", "--senders", type=int, default=5, help="of which send")
    ap.add_argument("-m", "--messages", type=int, default=2000, help="messages per sender")
    ap.add_argument("-w", "--window", type=int, default=16, help="in flight per sender")
    ap.add_argument("-p", "--procs", type=int, default=2, help="generator processes")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.clients, args.senders, args.messages = 1, 10, 2, 200
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    mp.set_start_method("fork")
    workdir = Path(tempfile.mkdtemp(prefix="chatroom-tls-bench-"))
    server = Server(workdir)
    rows: dict[str, list[dict]] = {"plain": [], "tls": []}
    print(
        f"room fan-out: {args.clients} clients, {args.senders} senders x {args.messages},"
        f" window {args.window}, {args.procs} generator processes, {args.reps} reps;"
        f" {os.cpu_count()} CPUs; log {server.log_path}",
        flush=True,
    )
    try:
        n = 0
        for rep in range(args.reps):
            for mode in ("plain", "tls") if rep % 2 == 0 else ("tls", "plain"):
                n += 1
                r = run(server, mode, n, args)
                rows[mode].append(r)
                if not r.get("ok"):
                    print(f"  rep {rep} {mode}: FAILED {r}", flush=True)
                    continue
                print(
                    f"  rep {rep} {mode:5}: {r['deliveries_per_s']:9.0f} deliveries/s,"
                    f" p50 {r['p50_ms']:6.2f} ms, p99 {r['p99_ms']:6.2f} ms,"
                    f" server {r['server_us_per_delivery']:5.2f} us CPU/delivery"
                    f" ({r['server_cpu']:.2f} cores), generator {r['generator_cpu']:.2f} cores",
                    flush=True,
                )
    finally:
        server.stop()
    problems = server.problems()

    def med(mode: str, key: str) -> float:
        vals = [r[key] for r in rows[mode] if r.get("ok")]
        return statistics.median(vals) if vals else float("nan")

    print()
    print("| mode | ok | deliveries/s | p50 ms | p99 ms | server us CPU/delivery | server cores |")
    print("|---|---|---|---|---|---|---|")
    for mode in ("plain", "tls"):
        oks = sum(1 for r in rows[mode] if r.get("ok"))
        print(
            f"| {mode} | {oks}/{len(rows[mode])} | {med(mode, 'deliveries_per_s'):.0f} |"
            f" {med(mode, 'p50_ms'):.2f} | {med(mode, 'p99_ms'):.2f} |"
            f" {med(mode, 'server_us_per_delivery'):.2f} | {med(mode, 'server_cpu'):.2f} |"
        )
    ratio = med("tls", "deliveries_per_s") / med("plain", "deliveries_per_s")
    cost = med("tls", "server_us_per_delivery") / med("plain", "server_us_per_delivery")
    print()
    print(f"TLS / plain fan-out throughput: {ratio:.2f}x (TLS costs {(1 - ratio) * 100:.0f}%)")
    print(f"TLS / plain server CPU per delivery: {cost:.2f}x")
    print(f"p99 latency: plain {med('plain', 'p99_ms'):.2f} ms, TLS {med('tls', 'p99_ms'):.2f} ms")
    if problems:
        print(f"server log problems ({len(problems)}): {problems[:3]}")
    all_ok = all(r.get("ok") for rs in rows.values() for r in rs)
    return 0 if all_ok and not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
