#!/usr/bin/env python3
"""Load benchmark: chatroom-server beside ngircd, interleaved, medians and ratios.

Every run starts a fresh server on 127.0.0.1, drives it with ``ircload`` (the Rust
load generator in ../shared/tools/ircload, built on demand) and stops it by PID.
Servers: ours with history (the default: SQLite in a temp dir), ours with
``--no-history``, and ngircd when installed (penalties and per-address limits off,
as the ircload README describes); with ``--baseline REV``, also ours as it was at git
revision REV (history on), from ``git archive`` into the run's directory, so a change
is measured against what it changes in one interleaved run. Flood control is off for
every server (``--no-flood-limit``); every other limit is our default. ``floor`` and
``floor-hist`` are relay_floor.py: our architecture with nothing else in it, the least a
message can cost in it (``floor-wc``: with no store thread, the writer commits).

    python3 benchmarks/server_bench.py -n 3              # everything, 3 repetitions
    python3 benchmarks/server_bench.py -n 3 --only fanout50,memory
    python3 benchmarks/server_bench.py -n 3 --only rooms --baseline origin/main
    python3 benchmarks/server_bench.py --quick           # smoke test, tiny sizes

Machines here are shared and noisy: compare ratios within one run, not absolutes.
Loopback only; every run is bounded by ircload's own timeouts and ours.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
IRCLOAD_SRC = ROOT.parent / "shared" / "tools" / "ircload"
IRCLOAD_TARGET = Path(tempfile.gettempdir()) / "ircload-target"
START_TIMEOUT = 15.0
MEMORY_CLIENTS = 2000
MEMORY_SETTLE_S = 2.0
CONNECT_RATE = 1000  # new connections per second in the memory scenario
# After a messaging run, how long the server is left running before it is stopped, its
# CPU meanwhile counted as the run's too: work a server defers to a quiet moment (ours
# indexes history for search then, pipeline.FTS_QUIET) is part of what a message costs.
AFTER_RUN_S = 1.5

SCENARIOS: dict[str, list[str]] = {
    "fanout50": ["fanout", "-c", "50", "-s", "5", "-m", "2000"],
    "fanout200": ["fanout", "-c", "200", "-s", "10", "-m", "500"],
    "rooms": ["rooms"],
    "slow": ["slow"],
    "slowctl": ["slow", "--slow-control"],
    "storm": ["storm", "--steps", "1000,2000,5000"],
    "memory": [],  # measured by this script: idle registered clients, RSS per client
}
QUICK: dict[str, list[str]] = {
    "fanout50": ["fanout", "-c", "10", "-s", "2", "-m", "200"],
    "fanout200": ["fanout", "-c", "20", "-s", "4", "-m", "100"],
    "rooms": ["rooms", "-r", "2", "-c", "20", "-s", "4", "-m", "100"],
    "slow": ["slow", "-c", "5", "-s", "2", "-m", "2000"],
    "slowctl": ["slow", "--slow-control", "-c", "5", "-s", "2", "-m", "2000"],
    "storm": ["storm", "--steps", "100,200"],
    "memory": [],
}

NGIRCD_CONF = """[Global]
\tName = ngircd.bench.local
\tInfo = chatroom benchmark anchor
\tListen = 127.0.0.1
\tPorts = {port}
\tMotdPhrase = "bench"
\tPidFile = {rundir}/ngircd.pid
\tServerUID = 0
\tServerGID = 0
[Limits]
\tMaxConnections = 0
\tMaxConnectionsIP = 0
\tMaxJoins = 0
\tMaxNickLength = 9
\tMaxPenaltyTime = 0
\tPingTimeout = 120
\tPongTimeout = 20
[Options]
\tDNS = no
\tIdent = no
\tPAM = no
\tMorePrivacy = no
\tRequireAuthPing = no
\tScrubCTCP = no
"""


def wait_listening(port: int, proc: subprocess.Popen, timeout: float) -> bool:
    """True once 127.0.0.1:``port`` accepts; False if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            if proc.poll() is not None:
                return False
            time.sleep(0.05)
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ircload_binary(explicit: str | None) -> Path:
    binary, why = find_ircload(explicit)
    if binary is None:
        sys.exit(why)
    return binary


def find_ircload(explicit: str | None) -> tuple[Path | None, str]:
    """The ircload binary (built on demand), or None and why (files_bench.py measures
    without it)."""
    if explicit:
        return Path(explicit), ""
    binary = IRCLOAD_TARGET / "release" / "ircload"
    if binary.exists():
        return binary, ""
    if not shutil.which("cargo") or not (IRCLOAD_SRC / "Cargo.toml").exists():
        return None, f"ircload is not built and cannot be (needs cargo and {IRCLOAD_SRC})"
    build = subprocess.run(
        [
            "cargo",
            "build",
            "--release",
            "--offline",
            "--manifest-path",
            str(IRCLOAD_SRC / "Cargo.toml"),
            "--target-dir",
            str(IRCLOAD_TARGET),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if build.returncode != 0 or not binary.exists():
        return None, f"building ircload failed: {build.stderr[-300:]}"
    return binary, ""


def extract_revision(rev: str, workdir: Path) -> Path:
    """The ``chatroom`` package as it was at git revision ``rev``, in a directory of
    ``workdir`` (put first on PYTHONPATH, it is imported instead of this checkout's)."""
    target = workdir / "baseline"
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "chatroom"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


BASELINE_DIR: Path | None = None  # set by main() when --baseline is given


class Server:
    """One fresh server process on loopback, stopped by PID."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.port = free_port()
        self.rundir = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=workdir))
        if kind == "ngircd":
            conf = self.rundir / "ngircd.conf"
            conf.write_text(NGIRCD_CONF.format(port=self.port, rundir=self.rundir))
            argv = [shutil.which("ngircd") or "/usr/sbin/ngircd", "--nodaemon", "-f", str(conf)]
        elif kind in ("floor", "floor-hist", "floor-wc"):
            argv = [sys.executable, str(HERE / "relay_floor.py"), "--port", str(self.port)]
            if kind != "floor":
                argv += ["--db", str(self.rundir / "history.sqlite3")]
            if kind == "floor-wc":
                argv.append("--writer-commits")
        else:
            argv = [
                sys.executable,
                "-c",
                "from chatroom.cli import server_main; raise SystemExit(server_main())",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-flood-limit",
                "--no-tls",  # no certificate in the user's data directory, no port 6697
                "--no-announce",  # a benchmark says nothing on the LAN
                "--no-http",  # no files in the user's data directory, no port 8067
                "--log-level",
                "WARNING",
            ]
            argv += (
                ["--no-history"]
                if kind == "ours-nohist"
                else ["--db", str(self.rundir / "history.sqlite3")]
            )
        env = None
        if kind == "base":
            env = {**os.environ, "PYTHONPATH": str(BASELINE_DIR)}
        self.log = open(self.rundir / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        # cwd: ``python -c`` puts it first on sys.path, before PYTHONPATH
        self.proc = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=self.rundir
        )
        if wait_listening(self.port, self.proc, START_TIMEOUT):
            return
        self.stop()
        raise RuntimeError(f"{kind} did not start; see {self.rundir / 'server.log'}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure_memory(server: Server, clients: int) -> dict:
    """RSS per idle registered client: hold ``clients`` connections, compare RSS.

    Connects without blocking at CONNECT_RATE per second (a server with a short
    accept queue would otherwise stall us on SYN retries), registers each, answers
    PINGs, and reads VmRSS once all are registered and the server has settled."""
    import selectors

    before = rss_kb(server.pid)
    sel = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    seen: dict[socket.socket, bytes] = {}
    registered = 0
    started = time.monotonic()
    deadline = started + 120
    try:
        while (registered < clients or len(socks) < clients) and time.monotonic() < deadline:
            due = min(clients, int((time.monotonic() - started) * CONNECT_RATE) + 1)
            while len(socks) < due:
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", server.port))
                sel.register(s, selectors.EVENT_WRITE)
                socks.append(s)
            for key, mask in sel.select(0.01):
                s = key.fileobj
                if mask & selectors.EVENT_WRITE:
                    i = len(seen)
                    seen[s] = b""
                    s.send(f"NICK m{i}\r\nUSER m 0 * :m\r\n".encode())
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                try:
                    data = s.recv(65536)
                except (BlockingIOError, ConnectionError):
                    continue
                if s in seen and b" 001 " in seen[s] + data and b" 001 " not in seen[s]:
                    registered += 1
                seen[s] = (seen[s] + data)[-64:]
                for line in data.split(b"\r\n"):
                    if line.startswith(b"PING"):
                        s.send(b"PONG" + line[4:] + b"\r\n")
        time.sleep(MEMORY_SETTLE_S)
        after = rss_kb(server.pid)
    finally:
        for s in socks:
            s.close()
        sel.close()
    return {
        "ok": registered == clients,
        "registered": registered,
        "rss_before_kb": before,
        "rss_after_kb": after,
        "kb_per_client": (after - before) / max(registered, 1),
    }


def run_one(ircload: Path, server: Server, name: str, args: list[str]) -> dict:
    if name == "memory":
        return measure_memory(server, MEMORY_CLIENTS if not QUICK_MODE else 200)
    out = subprocess.run(
        [
            str(ircload),
            *args,
            "--port",
            str(server.port),
            "--pid",
            str(server.pid),
            "--label",
            server.kind,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    after = None
    if name not in ("storm", "slow", "slowctl"):
        before = cpu_seconds(server.pid)
        time.sleep(AFTER_RUN_S)
        after = cpu_seconds(server.pid) - before
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"ok": False, "error": out.stderr[-500:]}
    result = json.loads(lines[-1])
    if after is not None:
        result["after_run_cpu_s"] = after
    result.update(cpu_per_message(result))
    return result


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_message(result: dict) -> dict:
    """Server CPU (all its threads, ircload's /proc reading) per message sent, in µs:
    the figure that matters for a per-message path, and far steadier than throughput on
    a shared machine (it does not care how long the run took, only what it cost). With
    ``after``: plus what the server used in the AFTER_RUN_S after the run (deferred work,
    and the clients' QUITs)."""
    cores, wall, sent = result.get("server_cpu"), result.get("wall_s"), result.get("sent")
    if not (isinstance(cores, (int, float)) and wall and sent):
        return {}
    out = {"cpu_us_per_msg": cores * wall / sent * 1e6}
    if "after_run_cpu_s" in result:
        out["cpu_us_per_msg_after"] = (cores * wall + result["after_run_cpu_s"]) / sent * 1e6
    return out


def summarize(results: dict[str, dict[str, list[dict]]], servers: list[str]) -> str:
    def med(rows: list[dict], key: str, sub: str | None = None) -> float | None:
        vals = []
        for r in rows:
            v = r.get(sub, {}).get(key) if sub else r.get(key)
            if isinstance(v, (int, float)):
                vals.append(float(v))
        return statistics.median(vals) if vals else None

    def fmt(v: float | None, unit: str = "") -> str:
        if v is None:
            return "-"
        if unit == "/s":
            return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.0f}k"
        return f"{v:.2f}" if v < 100 else f"{v:.0f}"

    out = []
    ref = "ngircd" if "ngircd" in servers else None
    out.append(
        "| scenario | server | ok | deliveries/s | ratio vs ngircd | p50 ms | p99 ms |"
        " lost/dup/reorder/leak | server CPU | CPU µs/msg | with after-run CPU | notes |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, by_server in results.items():
        for kind in servers:
            rows = by_server.get(kind, [])
            if not rows:
                continue
            oks = sum(1 for r in rows if r.get("ok"))
            notes = ""
            dps = med(rows, "deliveries_per_s")
            ratio = "-"
            if ref and kind != ref and dps:
                ref_dps = med(by_server.get(ref, []), "deliveries_per_s")
                if ref_dps:
                    ratio = f"{dps / ref_dps:.2f}x"
            if name == "storm":
                notes = (
                    f"max clean C {fmt(med(rows, 'max_ok'))}, regs/s "
                    f"{fmt(med(rows, 'regs_per_s'))}, reg p99 {fmt(med(rows, 'reg_p99_ms'))} ms"
                )
            elif name == "slow":
                fates = ",".join(sorted({r.get("slow", {}).get("outcome", "?") for r in rows}))
                notes = (
                    f"slow client: {fates} after "
                    f"{fmt(med(rows, 'disconnect_after_s', 'slow'))} s "
                    f"({rows[0].get('slow', {}).get('quit_reason_seen_by_others', '-')})"
                )
            elif name == "memory":
                notes = (
                    f"{fmt(med(rows, 'kb_per_client'))} KiB RSS per idle client "
                    f"({rows[0].get('registered')} clients)"
                )
            errs = (
                "/".join(fmt(med(rows, k)) for k in ("lost", "dup", "reorder", "leak"))
                if dps is not None
                else "-"
            )
            out.append(
                f"| {name} | {kind} | {oks}/{len(rows)} | {fmt(dps, '/s')} | {ratio} |"
                f" {fmt(med(rows, 'lat_p50_ms'))} | {fmt(med(rows, 'lat_p99_ms'))} | {errs} |"
                f" {fmt(med(rows, 'server_cpu'))} | {fmt(med(rows, 'cpu_us_per_msg'))} |"
                f" {fmt(med(rows, 'cpu_us_per_msg_after'))} | {notes} |"
            )

    def compare_cpu(name: str, other: str, ours_is: str, other_is: str) -> None:
        """CPU per message of ours against server ``other``, without and with after-run."""
        for key, what in (("cpu_us_per_msg", ""), ("cpu_us_per_msg_after", " with after-run")):
            cpu = med(results.get(name, {}).get("ours", []), key)
            theirs = med(results.get(name, {}).get(other, []), key)
            if cpu and theirs:
                out.append(
                    f"CPU per message{what}, {name}: {cpu:.1f} µs {ours_is},"
                    f" {theirs:.1f} µs {other_is} ({cpu / theirs:.2f}x)"
                )

    if "ours" in servers and "base" in servers:
        out.append("")
        for name in ("fanout50", "fanout200", "rooms"):
            compare_cpu(name, "base", "now", "at the baseline")
    if "ours" in servers and "ours-nohist" in servers:
        out.append("")
        for name in ("fanout50", "fanout200", "rooms"):
            on = med(results.get(name, {}).get("ours", []), "deliveries_per_s")
            off = med(results.get(name, {}).get("ours-nohist", []), "deliveries_per_s")
            if on and off:
                out.append(f"history on / off, {name}: {on / off:.2f}x")
            compare_cpu(name, "ours-nohist", "with history", "without")
    for floor, what in (("floor-hist", "the floor with history"), ("floor", "the floor")):
        if "ours" in servers and floor in servers:
            out.append("")
            for name in ("fanout50", "fanout200", "rooms"):
                compare_cpu(name, floor, "ours", what)
    if "slow" in results and "slowctl" in results:
        for kind in servers:
            p99 = med(results["slow"].get(kind, []), "lat_p99_ms")
            ctl = med(results["slowctl"].get(kind, []), "lat_p99_ms")
            if p99 and ctl:
                out.append(
                    f"slow vs control p99, {kind}: {p99 / ctl:.2f}x ({p99:.2f} / {ctl:.2f} ms)"
                )
    return "\n".join(out)


QUICK_MODE = False


def main() -> int:
    global QUICK_MODE, BASELINE_DIR
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--reps", type=int, default=3, help="repetitions (medians)")
    ap.add_argument("--only", help="comma list of scenarios: " + ",".join(SCENARIOS))
    ap.add_argument(
        "--servers",
        default="ours,ours-nohist,ngircd",
        help="comma list among ours, ours-nohist, ngircd (and base: see --baseline), and"
        " floor, floor-hist, floor-wc: relay_floor.py, our architecture with nothing else in"
        " it (floor-wc: its writer commits, no store thread)",
    )
    ap.add_argument(
        "--baseline",
        metavar="REV",
        help="also run ours as at this git revision (history on), as server 'base'",
    )
    ap.add_argument("--ircload", help="path to a built ircload binary")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    ap.add_argument("--out", type=Path, help="directory for results.jsonl and summary.md")
    args = ap.parse_args()
    QUICK_MODE = args.quick
    table = QUICK if args.quick else SCENARIOS
    names = args.only.split(",") if args.only else list(table)
    servers = [s for s in args.servers.split(",") if s]
    if "ngircd" in servers and not shutil.which("ngircd") and not Path("/usr/sbin/ngircd").exists():
        print("ngircd not installed: measuring ours only", file=sys.stderr)
        servers.remove("ngircd")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ircload = ircload_binary(args.ircload)
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="chatroom-bench-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.baseline:
        BASELINE_DIR = extract_revision(args.baseline, out_dir)
        if "base" not in servers:
            servers.append("base")
    elif "base" in servers:
        sys.exit("server 'base' needs --baseline REV")
    results: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with open(out_dir / "results.jsonl", "w") as log:
        for rep in range(args.reps):
            for name in names:
                order = servers[rep % len(servers) :] + servers[: rep % len(servers)]
                for kind in order:
                    server = Server(kind, out_dir)
                    try:
                        r = run_one(ircload, server, name, table[name])
                    finally:
                        server.stop()
                    r.update({"bench_scenario": name, "bench_server": kind, "rep": rep})
                    log.write(json.dumps(r) + "\n")
                    log.flush()
                    results[name][kind].append(r)
                    brief = r.get("deliveries_per_s") or r.get("max_ok") or r.get("kb_per_client")
                    print(
                        f"rep {rep} {name:9s} {kind:11s} ok={r.get('ok')} {brief}", file=sys.stderr
                    )
    summary = f"chatroom server benchmark, {started}, {args.reps} reps, medians\n"
    if args.baseline:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline],
            capture_output=True,
            text=True,
        ).stdout.strip()
        summary += f"base: ours at {args.baseline} ({rev}), history on\n"
    summary += "\n"
    summary += summarize(results, servers)
    (out_dir / "summary.md").write_text(summary + "\n")
    print(summary)
    print(f"\n(results in {out_dir})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
