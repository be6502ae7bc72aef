"""Start a private ngircd, or our server as a process, on loopback: for the interop tests,
the client benchmark and the screenshots.

Never the system instance: a config in a temp dir, an ephemeral port, ``--nodaemon``,
stopped by its PID.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["NGIRCD", "Ngircd", "free_port", "start_server", "stop_server"]

NGIRCD = os.environ.get("CHATROOM_NGIRCD", "/usr/sbin/ngircd")
# How long ngircd may take to start listening.
START_TIMEOUT = 10.0
# Flags that configure TLS; without one, our server is started with --no-tls.
TLS_FLAGS = ("--tls-port", "--tls-dir", "--tls-cert", "--tls-key", "--no-tls")
STOP_TIMEOUT = 5.0

_CONF = """\
[Global]
    Name = ngircd.test.local
    Info = chatroom interop test
    Listen = 127.0.0.1
    Ports = {port}
    MotdPhrase = "chatroom test server"
    PidFile = {rundir}/ngircd.pid
    ServerUID = {uid}
    ServerGID = {gid}
{password}
[Limits]
    MaxConnections = 0
    MaxConnectionsIP = 0
    MaxJoins = 0
    MaxNickLength = 20
    MaxPenaltyTime = 0
    PingTimeout = 120
    PongTimeout = 20

[Options]
    DNS = no
    Ident = no
    PAM = no
    MorePrivacy = no
    RequireAuthPing = no
    ScrubCTCP = no
"""


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def available() -> bool:
    """True when the ngircd binary is installed."""
    return Path(NGIRCD).exists() or shutil.which("ngircd") is not None


class Ngircd:
    """One ngircd process: ``.host``, ``.port``, ``start()``, ``stop()``, ``restart()``."""

    host = "127.0.0.1"

    def __init__(self, password: str | None = None, port: int | None = None) -> None:
        self.password = password
        self.port = port or free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="chatroom-ngircd-"))
        self._proc: subprocess.Popen[bytes] | None = None

    def _write_conf(self) -> Path:
        conf = self._dir / "ngircd.conf"
        password = f"    Password = {self.password}\n" if self.password else ""
        conf.write_text(
            _CONF.format(
                port=self.port,
                rundir=self._dir,
                uid=os.getuid(),
                gid=os.getgid(),
                password=password,
            )
        )
        (self._dir / "ngircd.motd").write_text("chatroom test server\n")
        return conf

    def start(self) -> Ngircd:
        """Start and wait until the port accepts connections."""
        conf = self._write_conf()
        binary = NGIRCD if Path(NGIRCD).exists() else shutil.which("ngircd") or NGIRCD
        self._proc = subprocess.Popen(
            [binary, "--nodaemon", "-f", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"ngircd exited with {self._proc.returncode}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("ngircd did not start listening")

    def stop(self) -> None:
        """Terminate (then kill) the process we started."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)

    def restart(self) -> None:
        """Stop and start again on the same port (clients see a dropped link)."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and remove the temp dir."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Ngircd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_server(kind: str, *args: str) -> tuple[object, int]:
    """``kind`` "ngircd" (a private ngircd) or "chatroom" (our server in a subprocess with
    ``args`` added to its command line); returns the handle for stop_server and the port."""
    if kind == "ngircd":
        server = Ngircd().start()
        return server, server.port
    port = free_port()
    if "--db" not in args and "--no-history" not in args:
        # never the user's own history file: scripts and benchmarks start afresh each run
        args = (*args, "--db", ":memory:")
    if not any(a.split("=")[0] in TLS_FLAGS for a in args):
        # nor a certificate in the user's data directory, nor port 6697: TLS only when
        # the caller configures it (with --tls-dir or --tls-cert/--tls-key)
        args = (*args, "--no-tls")
    if "--no-announce" not in args:  # scripts and tests say nothing on the LAN
        args = (*args, "--no-announce")
    if not any(a.startswith(("--http", "--no-http", "--files-dir")) for a in args):
        # nor files in the user's data directory, nor port 8067
        args = (*args, "--no-http")
    code = "import sys; from chatroom.cli import server_main; sys.exit(server_main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--host", "127.0.0.1", "--port", str(port), *args],
        cwd=Path(__file__).resolve().parents[2],  # the checkout, so `chatroom` imports
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise SystemExit("server did not start")


def stop_server(server: object) -> None:
    if isinstance(server, subprocess.Popen):
        server.terminate()
        server.wait(timeout=STOP_TIMEOUT)
    else:
        server.close()  # type: ignore[attr-defined]
