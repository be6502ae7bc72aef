#!/usr/bin/env python3
"""The file host on loopback: upload and download MiB/s beside a plain Python file
server, the server's memory during an upload, and the chat's fan-out p99 while files
transfer (issue 13).

Why: the web port shares one process (and one GIL) with the chat. This measures what
a 50 MiB file costs: how fast it goes up and down compared with a plain file server
driven by the same client, whether the server's memory stays flat while a body streams
to disk, and how much later a room's messages arrive while it does.

How, all on 127.0.0.1, everything in a temporary directory (never the user's data
directory; XDG dirs point into it too), stopped by PID at the end:

- ``chatroom-server`` with its web port (``--no-tls``, or ``--tls-dir TMP/tls`` with
  ``--tls``), history and accounts in TMP, files in TMP/files, flood control off,
  ``--no-announce`` and CHATROOM_NO_MDNS=1, and a settings file that only lifts the
  file host's quotas and upload rate (``file_max_bytes`` is raised only when
  ``--size-mib`` passes the 50 MiB default). One account, ``bench``, is registered over
  IRC (REGISTER) and uploads by HTTP Basic.
- The baseline, in its own process: the standard library's ThreadingHTTPServer with
  SimpleHTTPRequestHandler (what ``python3 -m http.server`` runs) serving the same file
  for downloads, plus a ``do_POST`` that streams the body to a new file in 64 KiB pieces
  and fsyncs it before answering 201 (ours also fsyncs, and checks the password per
  upload). It speaks HTTP/1.1 so that curl's ``Expect: 100-continue`` is answered at
  once, as ours answers it; with ``--tls`` a second one serves HTTPS with the chat's
  own certificate.
- Every transfer is one ``curl`` (``-o /dev/null``; uploads ``--data-binary @FILE``),
  so both servers meet the same client. MiB/s is the file's size / curl's time_total
  (the whole request: connection, login, body, fsync, answer). Runs alternate ours /
  baseline, the order turning each repetition; the table gives medians and ours /
  baseline.
- Memory: the server's VmRSS sampled every 5 ms during each upload, and VmHWM.
- Fan-out: ircload (../shared/tools/ircload, built with cargo on demand) puts C
  clients in one room and one of them sends R PRIVMSGs a second (open loop, each
  stamped with its send time) for T seconds; every other member's delivery latency
  gives p50 / p99. Each repetition measures the room idle, during a loop of uploads of
  the file, a loop of downloads, and both loops at once (the loops are curl one after
  another, started before ircload connects and stopped after it finishes); then, as a
  control, the same upload and download loops against the baseline: the machine is as
  busy (2 cores), but not the chat's process, so what the rows differ by is what
  sharing a process (and its GIL) with the file host costs.

    python3 benchmarks/files_bench.py -n 3            # HTTP, 50 MiB, fan-out of 50
    python3 benchmarks/files_bench.py -n 3 --tls      # HTTPS rows too; transfers in TLS
    python3 benchmarks/files_bench.py --quick         # a smoke test: 8 MiB, 1 rep, 2 s

Machines here are shared and have 2 cores (curl, the server and ircload share them):
compare within one run, not with other machines.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import server_bench  # noqa: E402  (beside this script: its server and ircload helpers)
from server_bench import find_ircload, free_port  # noqa: E402

START_TIMEOUT = 20.0
CURL_TIMEOUT = 120.0  # one transfer
CHUNK = 64 * 1024
MIB = 1 << 20
ACCOUNT, PASSWORD = "bench", "password"
RSS_SAMPLE_S = 0.005
LOOP_MAX_TRANSFERS = 500  # per loop, per window: a bound, never reached in practice
# the transfers beside the room: to ours, or to the baseline (a control: another process
# taking the same CPU, so what is left is what sharing the process costs)
MODES = ("idle", "upload", "download", "both", "upload-baseline", "download-baseline")


# --- helpers ------------------------------------------------------------------------------


def wait_listening(ports: list[int], proc: subprocess.Popen, timeout: float) -> bool:
    """True once every 127.0.0.1 port accepts; False if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    return all(
        server_bench.wait_listening(port, proc, max(0.0, deadline - time.monotonic()))
        for port in ports
    )


def stop_process(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM our own child by PID, SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, all its threads, ended ones included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kb(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM); 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    """VmRSS of a process every RSS_SAMPLE_S while in the ``with`` block: the largest."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, status_kb(self.pid, "VmRSS"))
            self._stop.wait(RSS_SAMPLE_S)

    def __enter__(self) -> RssSampler:
        self.peak_kb = status_kb(self.pid, "VmRSS")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak_kb = max(self.peak_kb, status_kb(self.pid, "VmRSS"))


# --- curl ---------------------------------------------------------------------------------

WRITE_OUT = "\n%{http_code} %{time_total} %{size_upload} %{size_download}"


def curl_upload_argv(url: str, path: Path, insecure: bool) -> list[str]:
    return [
        "curl",
        "-s",
        "-S",
        *(["-k"] if insecure else []),
        "-u",
        f"{ACCOUNT}:{PASSWORD}",
        "-H",
        "Content-Type: application/octet-stream",
        "-H",
        'Content-Disposition: attachment; filename="f.bin"',
        "--data-binary",
        f"@{path}",
        "-w",
        WRITE_OUT,
        url,
    ]


def curl_download_argv(url: str, insecure: bool, out: str = "/dev/null") -> list[str]:
    return ["curl", "-s", "-S", *(["-k"] if insecure else []), "-o", out, "-w", WRITE_OUT, url]


def parse_curl(stdout: str) -> dict[str, Any]:
    """The -w line (the last) and the body before it (an upload's answer: the link)."""
    body, _, last = stdout.rstrip("\n").rpartition("\n")
    code, total, up, down = last.split()
    return {
        "code": int(code),
        "time": float(total),
        "up": int(float(up)),
        "down": int(float(down)),
        "body": body.strip(),
    }


def curl(argv: list[str]) -> dict[str, Any]:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=CURL_TIMEOUT)
    if out.returncode != 0:
        raise RuntimeError(f"curl failed ({out.returncode}): {out.stderr.strip()}")
    return parse_curl(out.stdout)


# --- the baseline server (this script, in its own process) --------------------------------


class BaselineHandler(SimpleHTTPRequestHandler):
    """``python3 -m http.server``'s handler, plus POST: the body to a new file, fsynced."""

    protocol_version = "HTTP/1.1"  # answers Expect: 100-continue, as ours does
    counter = itertools.count(1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        name = f"up-{next(self.counter)}.bin"
        path = Path(self.directory) / "uploads" / name
        left = length
        with open(path, "wb") as f:
            while left > 0:
                data = self.rfile.read(min(CHUNK, left))
                if not data:
                    break
                f.write(data)
                left -= len(data)
            f.flush()
            os.fsync(f.fileno())
        if left:
            path.unlink(missing_ok=True)
            self.send_error(400, "short body")
            return
        body = f"/uploads/{name}\n".encode()
        self.send_response(201)
        self.send_header("Location", f"/uploads/{name}")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve_baseline(directory: str, port: int, cert: str | None, key: str | None) -> None:
    (Path(directory) / "uploads").mkdir(exist_ok=True)
    handler = functools.partial(BaselineHandler, directory=directory)
    httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    if cert and key:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # as the chat's own context
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=httpd.shutdown).start())
    httpd.serve_forever()
    httpd.server_close()


# --- the processes ------------------------------------------------------------------------


class Servers:
    """chatroom-server and the baseline(s), for the whole benchmark."""

    def __init__(self, work: Path, size: int, tls: bool) -> None:
        self.work = work
        self.tls = tls
        self.port, self.http_port, self.tls_port = free_port(), free_port(), free_port()
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Any] = []
        env = dict(os.environ, CHATROOM_NO_MDNS="1", PYTHONUNBUFFERED="1")
        for var, sub in (("XDG_DATA_HOME", "xdg-data"), ("XDG_CONFIG_HOME", "xdg-config")):
            env[var] = str(work / sub)  # a safety net: nothing should look there
        self.env = env
        config = work / "bench.toml"
        config.write_text(
            "[server]\n"
            f"file_max_bytes = {max(50 * MIB, size)}\n"
            f"file_quota_bytes = {1 << 40}\n"
            f"files_total_bytes = {1 << 40}\n"
            "uploads_per_minute = 1000000\n"
        )
        argv = [
            sys.executable,
            "-c",
            "from chatroom.cli import server_main; raise SystemExit(server_main())",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http-port",
            str(self.http_port),
            "--config",
            str(config),
            "--db",
            str(work / "chat.db"),
            "--files-dir",
            str(work / "files"),
            "--no-announce",
            "--no-flood-limit",
            "--password-min-length",
            "1",
            "--log-level",
            "WARNING",
        ]
        argv += (
            ["--tls-port", str(self.tls_port), "--tls-dir", str(work / "tls")]
            if tls
            else ["--no-tls"]
        )
        self.server = self._start("server", argv, [self.port, self.http_port], cwd=ROOT)
        self.plain_dir = work / "plain"
        self.base_port = free_port()
        me = [sys.executable, str(Path(__file__).resolve()), "--serve-baseline"]
        self.baseline = self._start(
            "baseline-http",
            [*me, str(self.plain_dir), str(self.base_port)],
            [self.base_port],
        )
        self.baseline_tls: subprocess.Popen | None = None
        self.base_tls_port = 0
        if tls:
            self.base_tls_port = free_port()
            cert, key = work / "tls" / "server-cert.pem", work / "tls" / "server-key.pem"
            self.baseline_tls = self._start(
                "baseline-https",
                [*me, str(self.plain_dir), str(self.base_tls_port), str(cert), str(key)],
                [self.base_tls_port],
            )

    def _start(self, name: str, argv: list[str], ports: list[int], cwd: Path | None = None):
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.logs.append(log)
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=cwd)
        self.procs.append(proc)
        if not wait_listening(ports, proc, START_TIMEOUT):
            raise RuntimeError(f"{name} did not start: {(self.work / f'{name}.log').read_text()}")
        return proc

    def url(self, ours: bool, https: bool, path: str) -> str:
        scheme = "https" if https else "http"
        # ours: one port, the first byte tells HTTP from HTTPS
        port = self.http_port if ours else self.base_tls_port if https else self.base_port
        return f"{scheme}://127.0.0.1:{port}{path}"

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)
        for log in self.logs:
            log.close()

    def problems(self) -> list[str]:
        text = (self.work / "server.log").read_text(errors="replace")
        return [ln for ln in text.splitlines() if " ERROR " in ln or "Traceback" in ln]


def register_account(port: int) -> None:
    """NICK/USER, wait for 001, REGISTER bench, wait for REGISTER SUCCESS, QUIT."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"NICK {ACCOUNT}\r\nUSER {ACCOUNT} 0 * :bench\r\n".encode())
        buf = b""
        sent = False
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                raise RuntimeError(f"server closed during registration: {buf[-300:]!r}")
            buf += data
            for line in data.split(b"\r\n"):
                if line.startswith(b"PING "):
                    sock.sendall(b"PONG " + line[5:] + b"\r\n")
            if not sent and f" 001 {ACCOUNT} ".encode() in buf:
                sock.sendall(f"REGISTER {ACCOUNT} * {PASSWORD}\r\n".encode())
                sent = True
            if b"REGISTER SUCCESS" in buf:
                sock.sendall(b"QUIT :bench\r\n")
                return
            if b"FAIL REGISTER" in buf:
                raise RuntimeError(f"REGISTER failed: {buf[-300:]!r}")
        raise RuntimeError(f"no REGISTER SUCCESS in time: {buf[-300:]!r}")


# --- throughput and memory ----------------------------------------------------------------


def upload(s: Servers, ours: bool, https: bool, path: Path, size: int) -> dict[str, Any]:
    url = s.url(ours, https, "/upload")
    pid = (s.server if ours else (s.baseline_tls if https else s.baseline)).pid  # type: ignore[union-attr]
    hwm0 = status_kb(pid, "VmHWM")
    with RssSampler(pid) as rss:
        rss0 = rss.peak_kb
        r = curl(curl_upload_argv(url, path, https))
    if r["code"] != 201 or r["up"] != size:
        raise RuntimeError(f"upload to {url}: HTTP {r['code']}, {r['up']} bytes: {r['body']}")
    r.update(rss0_kb=rss0, rss_peak_kb=rss.peak_kb, hwm0_kb=hwm0, hwm_kb=status_kb(pid, "VmHWM"))
    return r


def download(s: Servers, url: str, https: bool, size: int) -> dict[str, Any]:
    r = curl(curl_download_argv(url, https))
    if r["code"] != 200 or r["down"] != size:
        raise RuntimeError(f"download of {url}: HTTP {r['code']}, {r['down']} bytes")
    return r


def ours_file_url(s: Servers, https: bool, path: Path, size: int, digest: str) -> str:
    """Upload once (untimed: a warm-up) and check the bytes come back as they went."""
    r = upload(s, True, https, path, size)
    link = r["body"].splitlines()[-1]
    if not link.startswith(("https://" if https else "http://") + "127.0.0.1:"):
        raise RuntimeError(f"unexpected upload answer: {r['body']!r}")
    check = s.work / "check.bin"
    r = curl(curl_download_argv(link, https, str(check)))
    got = hashlib.sha256(check.read_bytes()).hexdigest()
    check.unlink()
    if r["code"] != 200 or got != digest:
        raise RuntimeError(f"{link}: HTTP {r['code']}, the bytes differ from what was uploaded")
    return link


def throughput(
    s: Servers, path: Path, size: int, digest: str, reps: int, schemes: list[bool]
) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """(scheme, direction, server) -> runs; ours and the baseline alternate."""
    rows: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    links = {https: ours_file_url(s, https, path, size, digest) for https in schemes}
    for https in schemes:  # warm the baseline the same way
        upload(s, False, https, path, size)
        download(s, s.url(False, https, "/f.bin"), https, size)
    for rep in range(reps):
        for https in schemes:
            scheme = "HTTPS" if https else "HTTP"
            order = (True, False) if rep % 2 == 0 else (False, True)
            for ours in order:
                who = "ours" if ours else "baseline"
                up = upload(s, ours, https, path, size)
                url = links[https] if ours else s.url(False, https, "/f.bin")
                down = download(s, url, https, size)
                rows.setdefault((scheme, "upload", who), []).append(up)
                rows.setdefault((scheme, "download", who), []).append(down)
                print(
                    f"  rep {rep} {scheme:5} {who:8}: upload {size / MIB / up['time']:7.1f}"
                    f" MiB/s (RSS peak {up['rss_peak_kb'] / 1024:.1f} MiB), download"
                    f" {size / MIB / down['time']:7.1f} MiB/s",
                    flush=True,
                )
        for f in (s.plain_dir / "uploads").glob("up-*.bin"):  # the baseline's copies
            f.unlink()
    return rows


# --- fan-out under transfers --------------------------------------------------------------


class TransferLoop:
    """curl after curl (uploads or downloads of the file) until stopped or bounded."""

    def __init__(self, argv: list[str], size: int) -> None:
        self.argv = argv
        self.size = size
        self.done: list[float] = []  # time_total of each completed transfer
        self.failed = 0
        self._stop = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for _ in range(LOOP_MAX_TRANSFERS):
            with self._lock:
                if self._stop.is_set():
                    return
                self._proc = subprocess.Popen(
                    self.argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
                )
            try:
                out, _ = self._proc.communicate(timeout=CURL_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.communicate()
                self.failed += 1
                continue
            if self._stop.is_set():
                return  # cut short by stop(): not counted
            try:
                r = parse_curl(out)
            except ValueError:
                self.failed += 1
                continue
            if r["code"] in (200, 201) and self.size in (r["up"], r["down"]):
                self.done.append(r["time"])
            else:
                self.failed += 1

    def start(self) -> TransferLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()  # our own curl, by PID
        self._thread.join(CURL_TIMEOUT)

    @property
    def mib_s(self) -> float:
        return len(self.done) * self.size / MIB / sum(self.done) if self.done else 0.0


def fanout_run(
    s: Servers,
    ircload: Path,
    mode: str,
    args: argparse.Namespace,
    path: Path,
    size: int,
    link: str,
    tag: str,
) -> dict[str, Any]:
    https = args.tls
    loops: list[TransferLoop] = []
    if mode in ("upload", "both", "upload-baseline"):
        ours = mode != "upload-baseline"
        up = curl_upload_argv(s.url(ours, https, "/upload"), path, https)
        loops.append(TransferLoop(up, size))
    if mode in ("download", "both", "download-baseline"):
        url = link if mode != "download-baseline" else s.url(False, https, "/f.bin")
        loops.append(TransferLoop(curl_download_argv(url, https), size))
    messages = int(args.rate * args.seconds)
    argv = [str(ircload), "fanout", "-c", str(args.clients), "-s", "1", "-m", str(messages)]
    argv += ["--rate", str(args.rate), "-w", "0", "--timeout", str(args.seconds + 30)]
    argv += ["--port", str(s.port), "--pid", str(s.server.pid), "--label", mode, "--tag", tag]
    cpu0, t0 = cpu_seconds(s.server.pid), time.monotonic()
    try:
        for loop in loops:
            loop.start()
        if loops:
            time.sleep(0.5)  # the first transfer under way before the room fills
        out = subprocess.run(argv, capture_output=True, text=True, timeout=args.seconds + 90)
    finally:
        for loop in loops:
            loop.stop()
    # ircload's own server_cpu misses threads that start and end within the run (it
    # sums per-thread schedstat): the web port's per-connection threads do; so /proc/stat
    server_cores = (cpu_seconds(s.server.pid) - cpu0) / (time.monotonic() - t0)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"ok": False, "error": out.stderr[-500:]}
    r = json.loads(lines[-1])
    r["server_cores"] = server_cores
    r["transfers"] = sum(len(loop.done) for loop in loops)
    r["transfer_failed"] = sum(loop.failed for loop in loops)
    r["transfer_mib_s"] = [loop.mib_s for loop in loops]
    return r


def fanout(
    s: Servers, ircload: Path, args: argparse.Namespace, path: Path, size: int, link: str
) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    for rep in range(args.reps):
        order = MODES[rep % len(MODES) :] + MODES[: rep % len(MODES)]
        for mode in order:
            r = fanout_run(s, ircload, mode, args, path, size, link, f"rep{rep}")
            rows[mode].append(r)
            if "error" in r:
                print(f"  rep {rep} fan-out {mode:8}: FAILED {r['error']}", flush=True)
                continue
            speeds = ", ".join(f"{v:.0f}" for v in r["transfer_mib_s"]) or "-"
            print(
                f"  rep {rep} fan-out {mode:8}: ok={r.get('ok')} p50 {r['lat_p50_ms']:.2f} ms,"
                f" p99 {r['lat_p99_ms']:.2f} ms, max {r['lat_max_ms']:.1f} ms,"
                f" lost {r.get('lost')}, {r['transfers']} transfers ({speeds} MiB/s),"
                f" chat server {r['server_cores']:.2f} cores",
                flush=True,
            )
        for f in (s.plain_dir / "uploads").glob("up-*.bin"):
            f.unlink()
    return rows


# --- the report ---------------------------------------------------------------------------


def med(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def report(
    args: argparse.Namespace,
    size: int,
    thr: dict[tuple[str, str, str], list[dict[str, Any]]],
    fan: dict[str, list[dict[str, Any]]] | None,
    fan_skipped: str,
    started: str,
) -> str:
    mib = size / MIB
    curl_version = subprocess.run(["curl", "--version"], capture_output=True, text=True)
    out = [
        f"files_bench, {started}: a {mib:g} MiB file of random bytes, {args.reps} reps"
        f" interleaved, medians; {os.cpu_count()} CPUs, loopback;"
        f" curl {curl_version.stdout.split()[1]}, Python {sys.version.split()[0]}",
        "",
        "command: python3 benchmarks/files_bench.py " + " ".join(sys.argv[1:]),
        "",
        "| transfer (curl, one at a time) | chatroom-server MiB/s | baseline MiB/s |"
        " ours / baseline |",
        "|---|---|---|---|",
    ]
    for scheme in ("HTTP", "HTTPS"):
        for direction in ("upload", "download"):
            ours = thr.get((scheme, direction, "ours"))
            base = thr.get((scheme, direction, "baseline"))
            if not ours or not base:
                continue
            o = med([mib / r["time"] for r in ours])
            b = med([mib / r["time"] for r in base])
            out.append(f"| {direction}, {scheme} | {o:.0f} | {b:.0f} | {o / b:.2f}x |")
    out += [
        "",
        "Baseline: Python's ThreadingHTTPServer + SimpleHTTPRequestHandler (what `python3 -m"
        " http.server` runs) in its own process, serving the same file for downloads; its"
        " uploads are a do_POST that streams the body to a new file in 64 KiB pieces and"
        " fsyncs it before the 201 (ours also checks the account's password by HTTP Basic,"
        " fsyncs the file and its description and renames both into place). MiB/s = file"
        " size / curl's time_total for the whole request.",
        "",
        f"| server RSS during a {mib:g} MiB upload | before | peak (sampled every 5 ms) |"
        " largest growth in one upload | VmHWM at the end |",
        "|---|---|---|---|---|",
    ]
    for who, label in (("ours", "chatroom-server"), ("baseline", "baseline")):
        ups = [r for (sch, d, w), rs in thr.items() if d == "upload" and w == who for r in rs]
        if not ups:
            continue
        before = min(r["rss0_kb"] for r in ups) / 1024
        peak = max(r["rss_peak_kb"] for r in ups) / 1024
        growth = max(r["rss_peak_kb"] - r["rss0_kb"] for r in ups) / 1024
        hwm = max(r["hwm_kb"] for r in ups) / 1024
        out.append(
            f"| {label} ({len(ups)} upload{'s' if len(ups) != 1 else ''}) |"
            f" {before:.1f} MiB | {peak:.1f} MiB |"
            f" +{growth:.1f} MiB | {hwm:.1f} MiB |"
        )
    out.append("")
    if fan is None:
        out.append(f"Fan-out not measured: {fan_skipped}")
        return "\n".join(out)
    scheme = "HTTPS" if args.tls else "HTTP"
    out += [
        f"| room fan-out: {args.clients} clients, 1 sender at {args.rate:g} msg/s for"
        f" {args.seconds:g} s (ircload, open loop) | ok | p50 ms | p99 ms | max ms |"
        f" p99 / idle | lost | {scheme} transfers in the window | their MiB/s |"
        " chat server cores |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    idle_p99 = med([r["lat_p99_ms"] for r in fan["idle"] if "lat_p99_ms" in r])
    labels = {
        "idle": "idle (no transfer)",
        "upload": f"during a loop of {mib:g} MiB uploads",
        "download": f"during a loop of {mib:g} MiB downloads",
        "both": "during both loops at once",
        "upload-baseline": f"control: {mib:g} MiB uploads to the baseline",
        "download-baseline": f"control: {mib:g} MiB downloads from the baseline",
    }
    for mode in MODES:
        rows = [r for r in fan[mode] if "lat_p99_ms" in r]
        if not rows:
            out.append(f"| {labels[mode]} | 0/{len(fan[mode])} | - | - | - | - | - | - | - | - |")
            continue
        oks = sum(1 for r in rows if r.get("ok"))
        p99 = med([r["lat_p99_ms"] for r in rows])
        speeds = []
        for i in range(len(rows[0]["transfer_mib_s"])):
            speeds.append(med([r["transfer_mib_s"][i] for r in rows if r["transfer_mib_s"][i]]))
        speed = " + ".join(f"{v:.0f}" for v in speeds) or "-"
        p50 = med([r["lat_p50_ms"] for r in rows])
        out.append(
            f"| {labels[mode]} | {oks}/{len(fan[mode])} | {p50:.2f} | {p99:.2f} |"
            f" {med([r['lat_max_ms'] for r in rows]):.1f} |"
            f" {p99 / idle_p99:.2f}x | {max(r.get('lost', 0) for r in rows)} |"
            f" {med([r['transfers'] for r in rows]):.0f} | {speed} |"
            f" {med([r['server_cores'] for r in rows]):.2f} |"
        )
    out += [
        "",
        "Each window: the loops (curl after curl, one transfer at a time per loop) start"
        " 0.5 s before ircload connects and stop after it finishes; 'their MiB/s' is over"
        " the transfers that completed (upload + download for both loops); the chat is"
        " plain text (ircload speaks no TLS). Chat server cores: its CPU (/proc/PID/stat)"
        " over the window. The control rows send the same loops to the baseline (another"
        " process): the machine is as busy, but the chat's process is not; the difference"
        " to the rows above is what sharing one process with the file host costs.",
    ]
    return "\n".join(out)


def main() -> int:
    if sys.argv[1:2] == ["--serve-baseline"]:
        rest: list[Any] = [*sys.argv[2:], None, None]
        serve_baseline(rest[0], int(rest[1]), rest[2], rest[3])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--reps", type=int, default=5, help="repetitions (medians)")
    ap.add_argument("--size-mib", type=float, default=50, help="the file's size (MiB)")
    ap.add_argument("--tls", action="store_true", help="HTTPS rows too; fan-out under HTTPS")
    ap.add_argument("-c", "--clients", type=int, default=50, help="members of the room")
    ap.add_argument("--rate", type=float, default=100, help="messages a second to the room")
    ap.add_argument("--seconds", type=float, default=5, help="length of one fan-out window")
    ap.add_argument("--no-fanout", action="store_true", help="throughput and memory only")
    ap.add_argument("--ircload", help="path to a built ircload binary")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--quick", action="store_true", help="a smoke test: 8 MiB, 1 rep, 2 s")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.size_mib, args.seconds = 1, 8, 2
    if not shutil.which("curl"):
        sys.exit("curl is needed (apt-get install -y curl)")
    size = int(args.size_mib * MIB)
    ircload, fan_skipped = (None, "--no-fanout") if args.no_fanout else find_ircload(args.ircload)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="chatroom-files-bench-"))
    (work / "plain").mkdir()
    path = work / "plain" / "f.bin"
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left > 0:
            block = os.urandom(min(MIB, left))
            digest.update(block)
            f.write(block)
            left -= len(block)
    servers: Servers | None = None
    problems: list[str] = []
    try:
        servers = Servers(work, size, args.tls)
        register_account(servers.port)
        print(f"{work}: server pid {servers.server.pid}, baseline pid {servers.baseline.pid}")
        schemes = [False, True] if args.tls else [False]
        thr = throughput(servers, path, size, digest.hexdigest(), args.reps, schemes)
        fan = None
        if ircload is not None:
            link = ours_file_url(servers, args.tls, path, size, digest.hexdigest())
            fan = fanout(servers, ircload, args, path, size, link)
        text = report(args, size, thr, fan, fan_skipped, started)
    finally:
        if servers is not None:
            servers.stop()
            problems = servers.problems()
        if args.keep:
            print(f"(kept {work})", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(text)
    if problems:
        print(f"\nserver log problems ({len(problems)}): {problems[:3]}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
