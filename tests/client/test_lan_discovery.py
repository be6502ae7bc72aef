"""LAN discovery in the client: the connect screen's live "On this network" list, the
connect screen's TLS default, and ``chatroom-client --discover``.

The UI tests give the app a fake browser (no zeroconf, no sockets) through
``make_app(discovery=...)``; every client test also runs with CHATROOM_NO_MDNS set
(conftest.py). One test runs the real thing, the real server announcing itself and the
real client finding it (``--discover`` and the connect screen), inside a private
network namespace (netns.py): never on this machine's network.
"""

from __future__ import annotations

import doctest
import io
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from client_helpers import TERMINAL_SIZE, wait_until
from test_tls_trust import HOST, asked, self_signed, shown, tls_server
from textual.pilot import Pilot
from textual.widgets import Input, OptionList, Static, Switch

from chatroom.client import cli
from chatroom.client.app import ChatApp, make_app
from chatroom.client.discovery import NO_MDNS_ENV, DiscoveredServer, DiscoveryError
from chatroom.client.screens import connect
from chatroom.client.screens.connect import ConnectScreen
from chatroom.client.widgets import lan
from chatroom.client.widgets.lan import LanServers
from tests.netns import REPO, run_in_netns

FP = ":".join(f"{i:02X}" for i in range(32))
OTHER_FP = ":".join(["AB"] * 32)


class FakeDiscovery:
    """A :class:`~chatroom.client.widgets.lan.ServerBrowser` the test drives:
    ``show(...)`` is what mDNS would report. ``error``: what start() raises."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.on_change: Callable[[list[DiscoveredServer]], None] | None = None
        self.starts = 0
        self.stops = 0

    async def start(self, on_change: Callable[[list[DiscoveredServer]], None]) -> None:
        self.starts += 1
        if self.error is not None:
            raise self.error
        self.on_change = on_change

    async def stop(self) -> None:
        self.stops += 1
        self.on_change = None

    @property
    def running(self) -> bool:
        return self.on_change is not None

    def show(self, *servers: DiscoveredServer) -> None:
        assert self.on_change is not None, "not started"
        self.on_change(list(servers))


def lan_server(name: str, tls_port: int | None = 6697, **kwargs: object) -> DiscoveredServer:
    fields: dict[str, object] = {
        "host": "192.168.1.20",
        "plain_port": 6667,
        "tls_port": tls_port,
        "fingerprint": FP if tls_port else None,
        "network": "LAN",
        "version": "chatroom-0.1",
    }
    fields |= kwargs
    return DiscoveredServer(name, **fields)  # type: ignore[arg-type]


def app_with(fake: FakeDiscovery | None, config_dir: Path, **kwargs: object) -> ChatApp:
    """The connect screen (no host) with ``fake`` as its browser (None: not looking)."""
    factory = (lambda: fake) if fake is not None else None
    return make_app(None, nick="alice", config_dir=config_dir, discovery=factory, **kwargs)  # type: ignore[arg-type]


async def connect_screen(app: ChatApp, pilot: Pilot) -> ConnectScreen:
    await wait_until(pilot, lambda: isinstance(app.screen, ConnectScreen), what="connect")
    screen = app.screen
    assert isinstance(screen, ConnectScreen)
    return screen


def rows(screen: ConnectScreen) -> list[str]:
    """The "On this network" rows, as shown (none while the list is hidden)."""
    listing = screen.query_one("#lan", OptionList)
    if not listing.display:
        return []
    return [str(listing.get_option_at_index(i).prompt) for i in range(listing.option_count)]


def status_line(screen: ConnectScreen) -> str:
    status = screen.query_one("#lan-status", Static)
    return str(status.render()) if status.display else ""


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    return tmp_path / "config"


# --- the live list ------------------------------------------------------------------------


async def test_servers_appear_and_disappear_as_announced(config_dir: Path) -> None:
    fake = FakeDiscovery()
    app = app_with(fake, config_dir)
    async with app.run_test(size=TERMINAL_SIZE) as pilot:
        screen = await connect_screen(app, pilot)
        await wait_until(pilot, lambda: fake.running, what="discovery started")
        assert rows(screen) == [] and "Looking for servers" in status_line(screen)
        # Above the recent servers.
        lan_box = screen.query_one(LanServers).region
        assert lan_box.y < screen.query_one("#recent-title").region.y

        fake.show(lan_server("alpha"), lan_server("beta", tls_port=None, host="10.0.0.7"))
        await wait_until(pilot, lambda: len(rows(screen)) == 2, what="two servers")
        assert rows(screen) == [
            "alpha  192.168.1.20:6697  TLS  LAN",
            "beta   10.0.0.7:6667  no TLS  LAN",
        ]
        assert status_line(screen) == ""

        fake.show(lan_server("beta", tls_port=None, host="10.0.0.7"))
        await wait_until(pilot, lambda: len(rows(screen)) == 1, what="alpha withdrawn")
        assert rows(screen)[0].startswith("beta")

        fake.show()
        await wait_until(pilot, lambda: rows(screen) == [], what="all withdrawn")
        assert "Looking for servers" in status_line(screen)
        assert fake.stops == 0
    # Leaving (here: the app exiting) stops discovery.
    assert (fake.starts, fake.stops, fake.running) == (1, 1, False)


async def test_the_highlight_stays_on_its_server_while_the_list_changes(
    config_dir: Path,
) -> None:
    fake = FakeDiscovery()
    app = app_with(fake, config_dir)
    async with app.run_test(size=TERMINAL_SIZE) as pilot:
        screen = await connect_screen(app, pilot)
        await wait_until(pilot, lambda: fake.running, what="discovery started")
        fake.show(lan_server("beta"), lan_server("gamma", host="10.0.0.9"))
        listing = screen.query_one("#lan", OptionList)
        await wait_until(pilot, lambda: listing.option_count == 2, what="listed")
        listing.highlighted = 1  # gamma
        fake.show(
            lan_server("alpha", host="10.0.0.1"),
            lan_server("beta"),
            lan_server("gamma", host="10.0.0.9"),
        )
        await wait_until(pilot, lambda: listing.option_count == 3, what="alpha arrived")
        assert listing.highlighted == 2
        assert str(listing.get_option_at_index(2).prompt).startswith("gamma")


@pytest.mark.parametrize("announced", ["matching", "different"])
async def test_choosing_a_server_fills_the_form_and_its_fingerprint_reaches_the_question(
    tmp_path: Path, config_dir: Path, announced: str
) -> None:
    cert = self_signed(tmp_path, "lan")
    async with tls_server(cert) as server:
        fp = cert.fingerprint if announced == "matching" else OTHER_FP
        fake = FakeDiscovery()
        app = app_with(fake, config_dir)
        async with app.run_test(size=TERMINAL_SIZE) as pilot:
            try:
                screen = await connect_screen(app, pilot)
                screen.query_one("#tls", Switch).value = False  # chosen TLS must win
                await wait_until(pilot, lambda: fake.running, what="discovery started")
                fake.show(
                    lan_server("lan.example", tls_port=server.port, host=HOST, fingerprint=fp)
                )
                listing = screen.query_one("#lan", OptionList)
                await wait_until(pilot, lambda: listing.option_count == 1, what="listed")
                listing.focus()
                listing.highlighted = 0
                await pilot.press("enter")
                nick = screen.query_one("#nick", Input)
                await wait_until(pilot, lambda: nick.has_focus, what="form filled")
                await pilot.pause()
                assert screen.query_one("#host", Input).value == HOST
                assert screen.query_one("#port", Input).value == str(server.port)
                assert screen.query_one("#tls", Switch).value is True
                assert app.screen is screen  # filled in, not connected: the nick is checked
                await pilot.press("enter")
                await asked(app, pilot)
                assert fake.stops == 1 and not fake.running  # the connect screen has gone
                assert app.connection is not None
                assert app.connection.settings.expected_fingerprint == fp
                assert app.connection.settings.tls
                text = shown(app)
                if announced == "matching":
                    assert "matches the fingerprint the server announced" in text
                else:
                    assert "does NOT match the fingerprint announced" in text
                    assert OTHER_FP[:47] in text
            finally:
                if app.connection is not None:
                    await app.connection.close("test over")


async def test_the_announced_fingerprint_stays_with_the_server_that_announced_it(
    config_dir: Path,
) -> None:
    """Chosen, then another port typed: another server, so nothing was announced for it
    (its trust question must not compare with a stranger's fingerprint)."""
    with socket.socket() as probe:  # a port nothing listens on: the connection fails
        probe.bind((HOST, 0))
        closed_port = probe.getsockname()[1]
    fake = FakeDiscovery()
    app = app_with(fake, config_dir)
    async with app.run_test(size=TERMINAL_SIZE) as pilot:
        try:
            screen = await connect_screen(app, pilot)
            await wait_until(pilot, lambda: fake.running, what="discovery started")
            chosen = lan_server("lan.example", host=HOST)
            fake.show(chosen)
            await wait_until(pilot, lambda: len(rows(screen)) == 1, what="listed")
            screen.post_message(LanServers.Chosen(screen.query_one(LanServers), chosen))
            await wait_until(pilot, lambda: screen.query_one("#host", Input).value == HOST)
            screen.query_one("#port", Input).value = str(closed_port)
            await pilot.pause()
            screen.connect()
            await wait_until(pilot, lambda: app.connection is not None, what="connecting")
            assert app.connection is not None
            assert app.connection.settings.port == closed_port
            assert app.connection.settings.expected_fingerprint is None
        finally:
            if app.connection is not None:
                await app.connection.close("test over")


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (DiscoveryError("mDNS unavailable: [Errno 19] No such device"), "No such device"),
        (OSError("Network is unreachable"), "Network is unreachable"),
    ],
)
async def test_unavailable_discovery_is_one_dim_line(
    config_dir: Path, error: Exception, says: str
) -> None:
    fake = FakeDiscovery(error)
    app = app_with(fake, config_dir)
    async with app.run_test(size=TERMINAL_SIZE, notifications=True) as pilot:
        screen = await connect_screen(app, pilot)
        await wait_until(pilot, lambda: says in status_line(screen), what="the dim line")
        status = screen.query_one("#lan-status", Static)
        assert status.region.height == 1
        line = status.render()
        assert str(line).startswith("Discovery unavailable: ")
        assert [str(span.style) for span in line.spans] == ["dim"]  # type: ignore[attr-defined]
        assert rows(screen) == []
        assert not screen.query_one(LanServers).available
        assert app.screen is screen and not app._notifications  # no popup, no toast
        # The form works as ever.
        screen.query_one("#host", Input).value = "chat.lan"
        await pilot.pause()
    assert fake.stops == 1  # stop() after a failed start() is harmless, and done


async def test_the_real_discovery_obeys_the_no_mdns_switch(config_dir: Path) -> None:
    """make_app's default browser is the real Discovery; CHATROOM_NO_MDNS (set for
    every client test) keeps its sockets shut, and the screen says so in one line."""
    assert os.environ.get(NO_MDNS_ENV) == "1"
    app = make_app(None, nick="alice", config_dir=config_dir)
    async with app.run_test(size=TERMINAL_SIZE) as pilot:
        screen = await connect_screen(app, pilot)
        await wait_until(pilot, lambda: NO_MDNS_ENV in status_line(screen), what="dim line")


async def test_no_browser_means_not_looking(config_dir: Path) -> None:
    app = app_with(None, config_dir)
    async with app.run_test(size=TERMINAL_SIZE) as pilot:
        screen = await connect_screen(app, pilot)
        await wait_until(pilot, lambda: "discovery is off" in status_line(screen))


# --- the TLS default ------------------------------------------------------------------------


async def test_with_no_recent_server_the_form_says_tls_on_port_6697(config_dir: Path) -> None:
    app = app_with(None, config_dir)
    async with app.run_test(size=TERMINAL_SIZE) as pilot:
        screen = await connect_screen(app, pilot)
        port = screen.query_one("#port", Input)
        switch = screen.query_one("#tls", Switch)
        assert (port.value, switch.value) == ("6697", True)
        # The port rule still holds when the user changes the port...
        port.value = "6667"
        await wait_until(pilot, lambda: not switch.value, what="off for 6667")
        port.value = "6697"
        await wait_until(pilot, lambda: switch.value, what="on for 6697")
        # ...and for a port typed after the host.
        host = screen.query_one("#host", Input)
        host.value = "chat.lan:6667"
        await wait_until(pilot, lambda: not switch.value, what="off for host:6667")
        switch.value = True  # the user's word is final until the port changes again
        host.value = "chat.lan:6667 "
        await pilot.pause()
        assert switch.value
        host.value = "chat.lan:6697"
        await wait_until(pilot, lambda: switch.value, what="on for host:6697")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ("6697", True)),
        ({"tls": False}, ("6667", False)),
        ({"port": 6667}, ("6667", False)),
        ({"port": 7000, "tls": True}, ("7000", True)),
    ],
)
async def test_what_the_command_line_says_overrides_the_default(
    config_dir: Path, kwargs: dict[str, object], expected: tuple[str, bool]
) -> None:
    app = app_with(None, config_dir, **kwargs)
    async with app.run_test(size=TERMINAL_SIZE) as pilot:
        screen = await connect_screen(app, pilot)
        assert (screen.query_one("#port", Input).value, screen.query_one("#tls", Switch).value) == (
            expected
        )


def test_make_app_port_defaults() -> None:
    assert make_app("lan", nick="a").options.port == 6667  # a host without TLS: as before
    assert make_app("lan", nick="a", tls=True).options.port == 6697
    assert make_app(None, nick="a").options.port == 6697
    assert make_app(None, nick="a", tls=False).options.port == 6667


def test_doctests() -> None:
    for module in (lan, connect):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


# --- chatroom-client --discover ---------------------------------------------------------------


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_discover_prints_the_servers_found_and_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    asked_for: list[float] = []

    async def fake_discover(timeout: float = 3.0, interfaces: object = None) -> list:
        asked_for.append(timeout)
        return [lan_server("lan.example"), lan_server("old box", tls_port=None, host="10.0.0.7")]

    monkeypatch.setattr(cli, "discover", fake_discover)
    code, out, err = run_cli("--discover")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"lan.example  192.168.1.20  tls=6697 plain=6667  sha256:{FP}",
        "old box      10.0.0.7      plain=6667           -",
    ]
    assert asked_for == [3.0]
    assert run_cli("--discover", "--timeout", "0.5")[0] == 0
    assert asked_for[-1] == 0.5


def test_discover_with_nothing_found_or_no_mdns(monkeypatch: pytest.MonkeyPatch) -> None:
    async def nothing(timeout: float = 3.0, interfaces: object = None) -> list:
        return []

    async def broken(timeout: float = 3.0, interfaces: object = None) -> list:
        raise DiscoveryError("mDNS unavailable: [Errno 19] No such device")

    monkeypatch.setattr(cli, "discover", nothing)
    assert run_cli("--discover") == (0, "no chatroom servers found on this network\n", "")
    monkeypatch.setattr(cli, "discover", broken)
    code, out, err = run_cli("--discover")
    assert (code, out) == (1, "")
    assert "cannot look for servers on this network: mDNS unavailable" in err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("--discover", "--timeout", "0"), "--timeout"),
        (("--discover", "--timeout", "nan"), "--timeout"),
        (("--discover", "--timeout", "1e9"), "--timeout"),
        (("--timeout", "2"), "goes with --discover"),
        (("--discover", "chat.lan"), "takes no server"),
    ],
)
def test_discover_arguments_are_checked(argv: tuple[str, ...], says: str) -> None:
    code, _, err = run_cli(*argv)
    assert code == 2 and says in err


def test_discover_runs_without_textual() -> None:
    """In a fresh interpreter, with mDNS off (no network): exit 1, and Textual never
    loaded."""
    code = (
        "import sys; from chatroom.client.cli import main; rc = main(['--discover']); "
        "print('textual' in sys.modules); sys.exit(rc)"
    )
    env = dict(os.environ, **{NO_MDNS_ENV: "1"})
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=30
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout.strip() == "False"
    assert f"{NO_MDNS_ENV} is set" in done.stderr


# --- the real thing, in a private network namespace --------------------------------------------

# Runs inside the namespace: the real server (TLS on, on 127.0.0.1) announcing itself,
# `chatroom-client --discover` in a child process, the connect screen with the real
# Discovery; then the server stops, the screen's list empties and a second --discover
# finds nothing. Prints one JSON object.
_REAL_THING = """
import asyncio, dataclasses, json, subprocess, sys, tempfile, threading, time
from pathlib import Path
from chatroom.server.config import Config
from chatroom.server.server import ChatServer

tmp = Path(tempfile.mkdtemp())
config = Config(host="127.0.0.1", port=0, tls=True, tls_port=0, tls_dir=str(tmp),
                db=":memory:", server_name="lan.test", network="TestNet", announce=True)
server = ChatServer(config)
server.start()  # on loopback it announces itself on the loopback interface
fingerprint = server.tls.fingerprint
assert server.announcer is not None and server.announcer.wait_announced(5), "not announced"

def discover_cli(*extra):
    done = subprocess.run([sys.executable, "-m", "chatroom.client.cli", "--discover", *extra],
                          capture_output=True, text=True, timeout=20)
    return {"code": done.returncode, "out": done.stdout, "err": done.stderr}

first = discover_cli()

async def until(pilot, predicate, timeout=8.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        await pilot.pause(0.05)
    return bool(predicate())

async def connect_screen():
    from textual.widgets import OptionList
    from chatroom.client.app import make_app
    from chatroom.client.screens.connect import ConnectScreen
    from chatroom.client.widgets.lan import LanServers
    app = make_app(None, nick="alice", config_dir=tmp / "config", use_keyring=False)
    out = {}
    async with app.run_test(size=(120, 36)) as pilot:
        assert await until(pilot, lambda: isinstance(app.screen, ConnectScreen))
        lan = app.screen.query_one(LanServers)
        out["found"] = await until(pilot, lambda: bool(lan.servers))
        listing = app.screen.query_one("#lan", OptionList)
        out["rows"] = [str(listing.get_option_at_index(i).prompt)
                       for i in range(listing.option_count)]
        out["servers"] = [dataclasses.asdict(s) for s in lan.servers]
        await asyncio.to_thread(server.stop)  # withdraws the announcement
        out["gone"] = await until(pilot, lambda: not lan.servers)
        out["rows_after"] = listing.option_count if listing.display else 0
    out["tasks_after"] = [t.get_name() for t in asyncio.all_tasks()
                          if t is not asyncio.current_task()]
    return out

screen = asyncio.run(connect_screen())
second = discover_cli("--timeout", "2")
print(json.dumps({
    "fingerprint": fingerprint, "plain_port": server.port,
    "tls_port": server.tls_port, "first": first, "screen": screen, "second": second,
    "threads": [t.name for t in threading.enumerate()],
}))
"""


def test_in_a_namespace_the_announced_server_is_found_then_gone() -> None:
    out = run_in_netns(_REAL_THING, timeout=60)
    fp, tls_port, plain_port = out["fingerprint"], out["tls_port"], out["plain_port"]
    first = out["first"]
    assert first["code"] == 0, first["err"]
    (line,) = [row for row in first["out"].splitlines() if row.startswith("lan.test")]
    assert line.split() == [
        "lan.test",
        "127.0.0.1",
        f"tls={tls_port}",
        f"plain={plain_port}",
        f"sha256:{fp}",
    ]
    screen = out["screen"]
    assert screen["found"], screen
    assert screen["servers"] == [
        {
            "name": "lan.test",
            "host": "127.0.0.1",
            "plain_port": plain_port,
            "tls_port": tls_port,
            "fingerprint": fp,
            "network": "TestNet",
            "version": screen["servers"][0]["version"],
        }
    ]
    assert screen["rows"] == [f"lan.test  127.0.0.1:{tls_port}  TLS  TestNet"]
    assert screen["gone"] and screen["rows_after"] == 0  # withdrawn live
    assert screen["tasks_after"] == []  # discovery left no task behind
    second = out["second"]
    assert second["code"] == 0, second["err"]
    assert "lan.test" not in second["out"]
    assert second["out"].strip() == "no chatroom servers found on this network"
    assert not [t for t in out["threads"] if "zeroconf" in t.lower()], out["threads"]
