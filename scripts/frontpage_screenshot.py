"""Screenshot the server's front page in a real browser (headless Chromium).

Starts a real ChatServer on 127.0.0.1 (ephemeral ports; history, certificate and files
in a temporary directory; TLS on, so the fingerprint shows; no mDNS), connects a few
IRC users over raw sockets who join rooms and set topics (one room secret, which must
not show; one user invisible, who must not either), checks the page as served, then
has Chromium load it and saves:

  screenshots/frontpage.png        desktop width (1280 px)
  screenshots/frontpage-phone.png  a phone (390 px wide)
  screenshots/frontpage-dark.png   desktop width, the system in dark mode
  screenshots/metrics.png          /metrics, desktop width, as Chromium shows the text

The users also say a few things, and the text Chromium renders for ``/metrics`` is
checked: Prometheus' text format (a HELP and a TYPE line before each sample), and the
figures of this scene (connections, people, rooms, at least the messages sent, no
uploads). Any mismatch ends the script with a non-zero exit and says what differed.

The browser reaches the server as ``office-chat.lan`` (mapped to 127.0.0.1 inside
Chromium only), so the page shows what someone on the LAN sees. Everything stays on
loopback; nothing of the user's own data directory is read or written.

Usage: python3 scripts/frontpage_screenshot.py [--out DIR] [--chromium PATH]
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import math
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ["CHATROOM_NO_MDNS"] = "1"  # before the server is imported: never announce

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chatroom.server.config import Config  # noqa: E402
from chatroom.server.server import ChatServer  # noqa: E402

# The name the browser uses for the server (resolved to 127.0.0.1 by Chromium alone).
SHOWN_HOST = "office-chat.lan"
# Bound every wait: a broken server must not hang the script.
WAIT = 10.0
# (file name, viewport width in CSS pixels, dark mode, a phone)
SHOTS = [
    ("frontpage.png", 1280, False, False),
    ("frontpage-phone.png", 390, False, True),
    ("frontpage-dark.png", 1280, True, False),
]
METRICS_WIDTH = 1280

# nick -> the lines it sends once registered (the rooms it joins, topics, modes)
USERS: dict[str, list[str]] = {
    "alice": [
        "JOIN #general",
        "TOPIC #general :Lunch at 12:30 in the kitchen. Bring your own mug ☕",
        "JOIN #dev",
        "TOPIC #dev :Release freeze on Friday; reviews before 16:00 <please>",
    ],
    "bob": [
        "JOIN #general",
        "JOIN #dev",
        "JOIN #printers",
        "TOPIC #printers :Floor 2 is out of toner",
        "PRIVMSG #dev :the build is green again",
        "PRIVMSG #printers :a new cartridge is on its way",
    ],
    "carol": ["JOIN #general", "JOIN #dev", "AWAY :in a meeting"],
    "dave": [
        "JOIN #general",
        "JOIN #random",
        "TOPIC #random :Anything goes (within reason)",
        "PRIVMSG #random :has anyone seen my charger?",
    ],
    "erin": ["JOIN #general", "JOIN #random", "PRIVMSG dave :it is on the printer"],
    "frank": ["JOIN #general", "JOIN #printers"],
    "grace": ["JOIN #general", "NOTICE #general :the coffee machine is fixed"],
    "heidi": ["JOIN #hr-private", "MODE #hr-private +s", "TOPIC #hr-private :salary review"],
    "ivan": ["MODE ivan +i", "JOIN #general"],
    "judy": ["JOIN #general", "JOIN #dev", "PRIVMSG #general :nobody outside sees this"],
}
# (never message text: neither a room's nor a private one)
MUST_NOT_SHOW = [
    "hr-private",
    "salary review",
    "ivan",
    "nobody outside sees this",
    "the build is green again",
    "it is on the printer",
    "<script",
]
# What /metrics must say of this scene: everyone stays connected and registered, the
# rooms are those joined (the secret one too), and every PRIVMSG/NOTICE above (one target
# each) counts once at least; nobody uploads.
MESSAGES_SENT = sum(
    line.startswith(("PRIVMSG ", "NOTICE ")) for lines in USERS.values() for line in lines
)
ROOMS = {line.split()[1] for lines in USERS.values() for line in lines if line.startswith("JOIN ")}
METRICS_EQUAL = {
    "chatroom_connections": len(USERS),
    "chatroom_users_registered": len(USERS),
    "chatroom_rooms": len(ROOMS),
    "chatroom_accounts": 0,
    "chatroom_sendq_drops_total": 0,
    "chatroom_flood_kills_total": 0,
    "chatroom_uploads_total": 0,
    "chatroom_files_stored": 0,
}
METRICS_AT_LEAST = {
    "chatroom_messages_total": MESSAGES_SENT,
    # each message reaches at least one socket (the private one, dave's; a room's, the
    # others in it: every room written to has two people or more)
    "chatroom_deliveries_total": MESSAGES_SENT,
}


class RawUser:
    """An IRC user on a plain socket: registers, sends its lines, waits until done."""

    def __init__(self, port: int, nick: str) -> None:
        self.nick = nick
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.buffer = b""

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def wait_for(self, token: bytes) -> None:
        deadline = time.monotonic() + WAIT
        while token not in self.buffer:
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.nick}: timed out waiting for {token!r}")
            data = self.sock.recv(65536)
            if not data:
                raise SystemExit(f"{self.nick}: the server closed the connection")
            self.buffer += data
            for line in self.buffer.split(b"\r\n"):
                if line.startswith(b"PING "):
                    self.sock.sendall(b"PONG " + line[5:] + b"\r\n")
        self.buffer = self.buffer[self.buffer.index(token) + len(token) :]

    def run(self, lines: list[str]) -> None:
        self.send(f"NICK {self.nick}")
        self.send(f"USER {self.nick} 0 * :{self.nick.title()}")
        self.wait_for(b" 376 ")  # end of MOTD: registered
        for line in lines:
            self.send(line)
        self.send("PING :done")  # answered after everything before it
        self.wait_for(b"PONG")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def check_page(url: str) -> None:
    """What the page must and must not say, read as the browser gets it."""
    request = urllib.request.Request(url, headers={"Host": SHOWN_HOST})
    with urllib.request.urlopen(request, timeout=WAIT) as response:
        page = response.read().decode("utf-8")
        csp = response.headers["Content-Security-Policy"]
    for secret in MUST_NOT_SHOW:
        if secret in page:
            raise SystemExit(f"the front page shows {secret!r}")
    for expected in ("#general", "9 people", "Floor 2 is out of toner", "&lt;please&gt;"):
        if expected not in page:
            raise SystemExit(f"the front page lacks {expected!r}")
    if not csp or "default-src 'none'" not in csp:
        raise SystemExit(f"unexpected Content-Security-Policy: {csp!r}")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus' text format (0.0.4) as read in the browser: every sample preceded by
    its metric's ``# HELP`` and ``# TYPE`` lines (counters ending in ``_total``); the
    samples by name (labels dropped). SystemExit saying what is wrong otherwise."""
    if not text.strip():
        raise SystemExit("/metrics: Chromium shows no text")
    samples: dict[str, float] = {}
    helped: set[str] = set()
    typed: dict[str, str] = {}
    sample = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^{}]*\})? (\S+)")
    for number, line in enumerate(text.strip("\n").split("\n"), 1):
        if line.startswith("# HELP "):
            helped.add(line.split(" ", 3)[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            if kind not in ("counter", "gauge", "histogram", "summary", "untyped"):
                raise SystemExit(f"/metrics line {number}: unknown type {kind!r}")
            if kind == "counter" and not name.endswith("_total"):
                raise SystemExit(f"/metrics line {number}: counter {name} lacks _total")
            typed[name] = kind
        else:
            match = sample.fullmatch(line)
            if match is None:
                raise SystemExit(f"/metrics line {number} is not Prometheus text: {line!r}")
            name = match[1]
            if name not in helped or name not in typed:
                raise SystemExit(f"/metrics: {name} has no # HELP or # TYPE line before it")
            try:
                samples[name] = float(match[3])
            except ValueError:
                raise SystemExit(f"/metrics line {number}: {match[3]!r} is no number") from None
    return samples


def check_metrics(text: str, url: str) -> dict[str, float]:
    """The figures of /metrics (its text as Chromium rendered it) are this scene's."""
    with urllib.request.urlopen(url, timeout=WAIT) as response:
        kind = response.headers["Content-Type"]
    if not kind or not kind.startswith("text/plain; version=0.0.4"):
        raise SystemExit(f"/metrics is served as {kind!r}, not Prometheus text")
    samples = parse_metrics(text)

    def shown(name: str) -> str:
        return f"{samples[name]:g}" if name in samples else "missing"

    wrong = []
    for name, expected in METRICS_EQUAL.items():
        if samples.get(name) != expected:
            wrong.append(f"{name} is {shown(name)}, expected {expected}")
    for name, least in METRICS_AT_LEAST.items():
        if samples.get(name, -1) < least:
            wrong.append(f"{name} is {shown(name)}, expected at least {least}")
    if not samples.get("chatroom_uptime_seconds", 0) > 0:
        wrong.append("chatroom_uptime_seconds is not positive")
    if samples.get("chatroom_build_info") != 1:
        wrong.append("chatroom_build_info is not 1")
    if wrong:
        raise SystemExit("/metrics as Chromium shows it is wrong:\n  " + "\n  ".join(wrong))
    return samples


# Runs a command with the given fds as its 3 and 4 (what --remote-debugging-pipe reads
# and writes); the wrapper a distribution installs as `chromium` passes them on.
_ON_FDS_3_AND_4 = (
    "import os, sys\n"
    "r, w = int(sys.argv[1]), int(sys.argv[2])\n"
    "os.dup2(r, 3); os.dup2(w, 4); os.close(r); os.close(w)\n"
    "os.execvp(sys.argv[3], sys.argv[3:])\n"
)


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe
    (``--remote-debugging-pipe``: JSON messages ending in NUL, on its fds 3 and 4), so a
    screenshot is of the whole page at its real height, with no port opened and no
    library beyond the standard one. (``--screenshot`` alone takes only the window.)"""

    def __init__(self, chromium: str, profile: str) -> None:
        to_chrome, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome = os.pipe()
        # above 4, so that putting them on 3 and 4 in the child cannot clobber one another
        ours = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome, from_chrome)]
        os.close(to_chrome)
        os.close(from_chrome)
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _ON_FDS_3_AND_4,
                *map(str, ours),
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                "--disable-extensions",
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                f"--host-resolver-rules=MAP {SHOWN_HOST} 127.0.0.1",
                "about:blank",
            ],
            pass_fds=ours,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        for fd in ours:
            os.close(fd)
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise SystemExit("chromium: no answer in time")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                self._log.seek(0)
                raise SystemExit(f"chromium exited:\n{self._log.read()[-2000:].decode()}")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message: dict = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 30
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise SystemExit(f"chromium: {method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self._events.append(reply)

    def wait_event(self, method: str, session: str) -> None:
        deadline = time.monotonic() + 30
        while True:
            for i, event in enumerate(self._events):
                if event["method"] == method and event.get("sessionId") == session:
                    del self._events[i]
                    return
            event = self._read_message(deadline)
            if "method" in event:
                self._events.append(event)

    def screenshot(self, url: str, width: int, dark: bool, mobile: bool) -> bytes:
        """The whole page at ``url`` in a viewport ``width`` CSS pixels wide, as PNG."""
        return self.visit(url, width, dark, mobile)[0]

    def visit(
        self, url: str, width: int, dark: bool = False, mobile: bool = False
    ) -> tuple[bytes, str]:
        """Load ``url`` in a new tab ``width`` CSS pixels wide: the whole page as PNG,
        and its text as rendered (``document.body.innerText``)."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        self.call("Page.enable", session=session)
        scheme = {"name": "prefers-color-scheme", "value": "dark" if dark else "light"}
        self.call("Emulation.setEmulatedMedia", {"features": [scheme]}, session)
        metrics = {"width": width, "deviceScaleFactor": 1, "mobile": mobile}
        self.call("Emulation.setDeviceMetricsOverride", {**metrics, "height": 800}, session)
        self.call("Page.navigate", {"url": url}, session)
        self.wait_event("Page.loadEventFired", session)
        layout = self.call("Page.getLayoutMetrics", session=session)
        height = math.ceil(layout["cssContentSize"]["height"])
        self.call("Emulation.setDeviceMetricsOverride", {**metrics, "height": height}, session)
        data = self.call("Page.captureScreenshot", {"format": "png"}, session)["data"]
        evaluated = self.call(
            "Runtime.evaluate",
            {"expression": "document.body.innerText", "returnByValue": True},
            session,
        )
        self.call("Target.closeTarget", {"targetId": target})
        if "exceptionDetails" in evaluated:
            raise SystemExit(f"chromium: reading {url}: {evaluated['exceptionDetails']}")
        return base64.b64decode(data), evaluated["result"].get("value", "")

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except SystemExit:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)
        self._log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chatroom-frontpage-") as tmp:
        config = Config(
            host="127.0.0.1",
            port=0,
            tls=True,
            tls_port=0,
            tls_dir=str(Path(tmp) / "tls"),
            db=str(Path(tmp) / "history.sqlite3"),
            files_dir=str(Path(tmp) / "files"),
            http=True,
            http_port=0,
            announce=False,
            server_name="office-chat.lan",
            network="OfficeLAN",
        )
        server = ChatServer(config)
        server.start()
        users: list[RawUser] = []
        try:
            for nick, lines in USERS.items():
                user = RawUser(server.port, nick)  # type: ignore[arg-type]
                users.append(user)
                user.run(lines)
            url = f"http://{SHOWN_HOST}:{server.http_port}/"
            check_page(f"http://127.0.0.1:{server.http_port}/")
            with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
                browser = Browser(args.chromium, profile)
                try:
                    for name, width, dark, mobile in SHOTS:
                        png = browser.screenshot(url, width, dark, mobile)
                        (args.out / name).write_bytes(png)
                        print(f"wrote {args.out / name} ({width} px wide)")
                    metrics_url = f"http://127.0.0.1:{server.http_port}/metrics"
                    png, text = browser.visit(metrics_url, METRICS_WIDTH)
                    samples = check_metrics(text, metrics_url)
                    (args.out / "metrics.png").write_bytes(png)
                    print(f"wrote {args.out / 'metrics.png'} ({METRICS_WIDTH} px wide)")
                    shown = ("connections", "rooms", "messages_total", "deliveries_total")
                    print(
                        "/metrics in Chromium: Prometheus text, "
                        + ", ".join(f"{n} {samples['chatroom_' + n]:g}" for n in shown)
                    )
                finally:
                    browser.close()
        finally:
            for user in users:
                user.close()
            server.stop()


if __name__ == "__main__":
    main()
