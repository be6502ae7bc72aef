"""Client test helpers: run the real app against a real server, plus scripted users.

``irc_server`` (tests/conftest.py) is our own server; ``ngircd`` starts a private
ngircd on loopback for the interop tests and skips when ngircd is not installed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from ngircd_proc import Ngircd, available
from textual.pilot import Pilot

from chatroom.client.app import ChatApp, make_app
from chatroom.client.scripted import ScriptedUser
from chatroom.client.widgets.log import MessageLog

# Terminal size for Pilot runs (big enough for all panes).
TERMINAL_SIZE = (120, 36)
# How long a test waits for something to show up (loopback is fast; the box is shared).
UI_TIMEOUT = 10.0
POLL_INTERVAL = 0.02


@pytest.fixture
def ngircd() -> Iterator[Ngircd]:
    """A private ngircd on 127.0.0.1 (interop); skipped when ngircd is absent."""
    if not available():
        pytest.skip("ngircd is not installed (apt-get install ngircd)")
    server = Ngircd().start()
    yield server
    server.close()


@pytest.fixture
def ngircd_factory() -> Iterator[Callable[..., Ngircd]]:
    """ngircd with options, e.g. ``ngircd_factory(password="s3cret")``."""
    if not available():
        pytest.skip("ngircd is not installed (apt-get install ngircd)")
    made: list[Ngircd] = []

    def make(**kwargs: object) -> Ngircd:
        server = Ngircd(**kwargs).start()  # type: ignore[arg-type]
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


async def wait_until(
    pilot: Pilot, predicate: Callable[[], object], timeout: float = UI_TIMEOUT, what: str = ""
) -> None:
    """Let the app run until ``predicate()`` is true; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(POLL_INTERVAL)


def log_text(app: ChatApp) -> str:
    """What the message log shows right now."""
    return app.screen.query_one(MessageLog).visible_text()


@asynccontextmanager
async def run_client(
    server: object,
    tmp_path: Path,
    nick: str = "alice",
    rooms: tuple[str, ...] = (),
    **kwargs: object,
) -> AsyncIterator[tuple[ChatApp, Pilot]]:
    """Run the real app connected to ``server`` (anything with .host and .port)."""
    app = make_app(
        server.host,  # type: ignore[attr-defined]
        server.port,  # type: ignore[attr-defined]
        nick,
        rooms,
        config_dir=tmp_path / "config",
        **kwargs,  # type: ignore[arg-type]
    )
    async with app.run_test(size=TERMINAL_SIZE) as pilot:
        try:
            yield app, pilot
        finally:
            if app.connection is not None:
                await app.connection.close("test over")


@asynccontextmanager
async def scripted_users(server: object, *nicks: str) -> AsyncIterator[list[ScriptedUser]]:
    """Connected scripted users, closed at the end."""
    users = []
    try:
        for nick in nicks:
            users.append(
                await ScriptedUser(server.host, server.port, nick).connect()  # type: ignore[attr-defined]
            )
        yield users
    finally:
        await asyncio.gather(*(u.quit() for u in users), return_exceptions=True)
