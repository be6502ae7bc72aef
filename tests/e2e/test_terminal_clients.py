"""Real IRC clients against our server: irssi and WeeChat, each in a detached tmux session.

irssi, WeeChat and the test client (conftest's IRCClient) all join ``#lan`` on a server
bound to 127.0.0.1. Text typed into irssi or WeeChat (``tmux send-keys``) must reach the
others with the right nick, and text from the others must show up on their screens
(``tmux capture-pane -p``). Each client runs with a private home directory and a
generated config that knows only our server: no TLS, no DCC, no scripts, no other
networks, nothing that autoconnects anywhere else.

Skipped only when tmux, irssi or weechat is not installed (CI installs all three). Every
wait is bounded by ``WAIT``; a failed wait shows both clients' screens, and the tmux
servers and the clients in them are stopped by PID at teardown, pass or fail.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from chatroom.protocol import Message

pytestmark = pytest.mark.interop

ROOM = "#lan"
IRSSI_NICK = "irssiuser"
WEECHAT_NICK = "weeuser"
TEST_NICK = "tester"
# Bound on anything a client has to do (connect, join, show a line); normally < 1 s.
WAIT = 15.0
# Wide and tall enough that no line we look for wraps or scrolls out of view.
PANE_WIDTH, PANE_HEIGHT = 220, 60

TMUX = shutil.which("tmux")
IRSSI = shutil.which("irssi")
WEECHAT = shutil.which("weechat")

# ---------------------------------------------------------------------------------------
# tmux helpers
# ---------------------------------------------------------------------------------------


def _running(pid: int) -> bool:
    """Whether ``pid`` is alive; a zombie nobody has reaped yet counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat.rpartition(")")[2].split()[0] != "Z"


def _wait_gone(pids: Sequence[int], timeout: float) -> list[int]:
    """Wait up to ``timeout`` for ``pids`` to exit; return the ones still running."""
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _running(p)]
    return alive


class TmuxSession:
    """One program in a detached tmux session, on a tmux server of its own (``tmux -L``)."""

    def __init__(self, label: str, workdir: Path) -> None:
        self.label = label
        self.socket = f"chatroom-{label}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.workdir = workdir
        self.target = "main"
        self.pids: list[int] = []  # the tmux server, then the program in the pane
        self.last_screen = ""
        # The tmux server, and so the program, inherits this environment and nothing else.
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(workdir),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "TERM": "xterm-256color",
        }

    def _tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert TMUX is not None
        res = subprocess.run(
            [TMUX, "-L", self.socket, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"{self.label}: tmux {' '.join(args)} failed ({res.returncode}): "
                f"{res.stderr.strip()}"
            )
        return res

    def start(self, argv: Sequence[str]) -> None:
        """Run ``argv`` (no shell) in a new detached session of the given size."""
        conf = self.workdir / "tmux.conf"
        # remain-on-exit: a client that quits or crashes leaves its last screen readable
        conf.write_text(
            'set -g remain-on-exit on\nset -g status off\nset -g default-terminal "screen"\n'
        )
        self._tmux(
            "-f", str(conf),
            "new-session", "-d", "-s", self.target,
            "-x", str(PANE_WIDTH), "-y", str(PANE_HEIGHT),
            "-c", str(self.workdir),
            "--", *argv,
        )  # fmt: skip
        out = self._tmux("display-message", "-p", "-t", self.target, "#{pid} #{pane_pid}")
        self.pids = [int(p) for p in out.stdout.split()]

    def send_line(self, text: str) -> None:
        """Type ``text`` literally (no key-name lookup) and press Enter."""
        self._tmux("send-keys", "-t", self.target, "-l", "--", text)
        self._tmux("send-keys", "-t", self.target, "Enter")

    def screen(self) -> str:
        """The visible pane text; the last one captured once tmux is gone."""
        res = self._tmux("capture-pane", "-p", "-J", "-t", self.target, check=False)
        if res.returncode == 0:
            self.last_screen = "\n".join(line.rstrip() for line in res.stdout.splitlines())
        return self.last_screen

    def wait_for_line(self, *parts: str, others: Sequence[TmuxSession] = ()) -> str:
        """Poll the screen until one line contains all of ``parts``; return that line.

        After ``WAIT`` seconds, fail with this screen and the ``others``' screens."""
        deadline = time.monotonic() + WAIT
        while True:
            for line in self.screen().splitlines():
                if all(p in line for p in parts):
                    return line
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{self.label}: no line with {parts!r} on screen within {WAIT:.0f} s\n"
                    + screens(self, *others)
                )
            time.sleep(0.1)

    def kill(self) -> None:
        """Stop the tmux server and make sure the program in the pane is gone too."""
        if not self.pids:
            return
        self.screen()  # keep the final screen for messages
        self._tmux("kill-server", check=False)  # SIGHUP to the pane's program
        alive = _wait_gone(self.pids, 3.0)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in alive:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            alive = _wait_gone(alive, 2.0)
        assert not alive, f"{self.label}: processes {alive} survived SIGKILL"


def screens(*sessions: TmuxSession) -> str:
    """Every session's current screen, labelled, blank lines dropped."""
    parts = []
    for s in sessions:
        body = "\n".join(ln for ln in s.screen().splitlines() if ln.strip()) or "(empty)"
        parts.append(f"----- {s.label} screen -----\n{body}")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------
# the clients
# ---------------------------------------------------------------------------------------

# Only our server, autoconnected; the room autojoined. irssi asks on its screen whether to
# remove settings it does not know, so every name here must exist in irssi >= 1.2.
IRSSI_CONFIG = """\
servers = (
  {{
    address = "{host}";
    port = "{port}";
    chatnet = "lan";
    {tls}
    autoconnect = "yes";
  }}
);
chatnets = {{
  lan = {{
    type = "IRC";{chatnet}
    # irssi spaces queued commands 2.2 s apart by default; 5 at once, then 100 ms
    # apart, is still well inside the server's flood control (burst 10, 4 lines/s).
    cmdmax = "5";
    cmdspeed = "100";
  }};
}};
channels = ( {{ name = "{room}"; chatnet = "lan"; autojoin = "yes"; }} );
settings = {{
  core = {{
    nick = "{nick}";
    user_name = "irssi";
    real_name = "irssi interop";
    settings_autosave = "no";
  }};
  "irc/core" = {{ alternate_nick = "{nick}_"; }};
  "irc/dcc" = {{ dcc_autoget = "no"; dcc_autoresume = "no"; dcc_autochat_masks = ""; }};
  "fe-common/core" = {{ autolog = "no"; beep_msg_level = ""; }};
}};
"""


PLAIN_SERVER = 'use_tls = "no";\n    tls_verify = "no";'


def start_irssi(
    session: TmuxSession, host: str, port: int, chatnet: str = "", tls: str = PLAIN_SERVER
) -> list[str]:
    """irssi on our server; ``chatnet``: more settings of its network (SASL); ``tls``:
    the server entry's TLS settings (clear text by default)."""
    home = session.workdir / "irssi-home"
    home.mkdir()
    extra = f"\n    {chatnet}" if chatnet else ""
    config = IRSSI_CONFIG.format(
        host=host, port=port, room=ROOM, nick=IRSSI_NICK, chatnet=extra, tls=tls
    )
    (home / "config").write_text(config)
    assert IRSSI is not None
    argv = [IRSSI, f"--home={home}"]
    session.start(argv)
    return argv


def start_weechat(
    session: TmuxSession, host: str, port: int, settings: Sequence[str] = ()
) -> list[str]:
    """WeeChat on our server; ``settings``: more commands run before it connects."""
    home = session.workdir / "weechat-home"
    home.mkdir()
    commands = [
        "/set weechat.bar.nicklist.hidden on",  # chat lines start at the left edge
        f"/server add test {host}/{port} -notls",
        "/set irc.server.test.tls off",
        f"/set irc.server.test.nicks {WEECHAT_NICK}",
        f"/set irc.server.test.username {WEECHAT_NICK}",
        '/set irc.server.test.realname "WeeChat interop"',
        f"/set irc.server.test.autojoin {ROOM}",
        "/set irc.server.test.autoreconnect off",
        # WeeChat spaces queued messages 2 s apart by default. 3.x names the options
        # anti_flood_prio_high/_low, 4.x anti_flood; each version ignores the others
        # with an "option not found" line on its core buffer.
        "/set irc.server.test.anti_flood_prio_high 0",
        "/set irc.server.test.anti_flood_prio_low 0",
        "/set irc.server.test.anti_flood 0",
        *settings,
        "/connect test",
    ]
    assert WEECHAT is not None
    # -a: no autoconnect; -s: no scripts; -P irc: only the IRC plugin, so no relay,
    # xfer (DCC), fifo, logger or script downloads. -r: run the commands at startup.
    argv = [WEECHAT, "--dir", str(home), "-a", "-s", "-P", "irc", "-r", ";".join(commands)]
    session.start(argv)
    return argv


@pytest.fixture
def tmux_sessions(tmp_path: Path, irc_server: object) -> Iterator[Callable[[str], TmuxSession]]:
    """Make TmuxSessions with private work dirs; all are killed at teardown, pass or fail.

    Depends on ``irc_server`` only so that the clients stop before the server does."""
    for name, path in (("tmux", TMUX), ("irssi", IRSSI), ("weechat", WEECHAT)):
        if path is None:
            pytest.skip(f"{name} is not installed")
    made: list[TmuxSession] = []

    def make(label: str) -> TmuxSession:
        workdir = tmp_path / label
        workdir.mkdir()
        session = TmuxSession(label, workdir)
        made.append(session)
        return session

    yield make
    errors = []
    for session in made:
        try:
            session.kill()
        except AssertionError as exc:
            errors.append(str(exc))
    assert not errors, errors


# ---------------------------------------------------------------------------------------
# the test
# ---------------------------------------------------------------------------------------


def test_irssi_weechat_and_a_test_client_chat_in_one_room(irc_server, connect, tmux_sessions):
    token = uuid.uuid4().hex[:6]  # makes every line we look for unique to this run
    tester = connect(TEST_NICK)
    tester.join(ROOM)  # first in, so the test client is the room operator

    irssi = tmux_sessions("irssi")
    weechat = tmux_sessions("weechat")
    start_irssi(irssi, irc_server.host, irc_server.port)
    start_weechat(weechat, irc_server.host, irc_server.port)
    both = (irssi, weechat)

    def expect(command: str, where: Callable[[Message], bool], what: str) -> Message:
        try:
            return tester.expect(command, where=where, timeout=WAIT)
        except AssertionError as exc:
            raise AssertionError(f"test client, {what}: {exc}\n{screens(*both)}") from None

    def check(msg: Message, *params: str) -> None:
        assert msg.params == params, f"{msg!r}: expected params {params!r}\n{screens(*both)}"

    # Both register and autojoin, in either order.
    waiting = {IRSSI_NICK, WEECHAT_NICK}
    while waiting:
        msg = expect("JOIN", lambda m: m.nick in waiting, f"JOIN from {sorted(waiting)}")
        check(msg, ROOM)
        waiting.discard(msg.nick)
    # irssi opens the room in window 2 but stays in the status window; WeeChat switches.
    irssi.send_line(f"/window goto {ROOM}")
    irssi.wait_for_line(IRSSI_NICK, f"has joined {ROOM}", others=[weechat])
    weechat.wait_for_line(WEECHAT_NICK, f"has joined {ROOM}", others=[irssi])

    # typed in irssi -> the test client and WeeChat
    text = f"hello from irssi, héllo ✓ {token}"
    irssi.send_line(text)
    check(expect("PRIVMSG", lambda m: m.nick == IRSSI_NICK, "irssi's message"), ROOM, text)
    weechat.wait_for_line(IRSSI_NICK, text, others=[irssi])

    # typed in WeeChat -> the test client and irssi
    text = f"hello from weechat, grüße ✓ {token}"
    weechat.send_line(text)
    check(expect("PRIVMSG", lambda m: m.nick == WEECHAT_NICK, "WeeChat's message"), ROOM, text)
    irssi.wait_for_line(WEECHAT_NICK, text, others=[weechat])

    # sent by the test client -> irssi's and WeeChat's screens
    text = f"hello from the test client {token}"
    tester.send(f"PRIVMSG {ROOM} :{text}")
    irssi.wait_for_line(TEST_NICK, text, others=[weechat])
    weechat.wait_for_line(TEST_NICK, text, others=[irssi])

    # /topic in irssi (the room is +t: the test client makes irssi an operator first)
    tester.send(f"MODE {ROOM} +o {IRSSI_NICK}")
    irssi.wait_for_line(f"+o {IRSSI_NICK}", TEST_NICK, others=[weechat])
    topic = f"lan party {token}"
    irssi.send_line(f"/topic {topic}")
    check(expect("TOPIC", lambda m: m.nick == IRSSI_NICK, "irssi's /topic"), ROOM, topic)
    weechat.wait_for_line(IRSSI_NICK, topic, others=[irssi])

    # /quit in WeeChat -> QUIT to the test client; irssi shows it too
    reason = f"bye {token}"
    weechat.send_line(f"/quit {reason}")
    msg = expect("QUIT", lambda m: m.nick == WEECHAT_NICK, "WeeChat's /quit")
    assert reason in msg.param(0), f"{msg!r}: no {reason!r} in the reason\n{screens(*both)}"
    irssi.wait_for_line(WEECHAT_NICK, "has quit", reason, others=[weechat])
