"""Helpers for client tests: run the real app against a server, scripted users, waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from textual.pilot import Pilot

from chatroom.client.app import ChatApp, make_app
from chatroom.client.scripted import ScriptedUser
from chatroom.client.widgets.log import MessageLog

# Terminal size for Pilot runs (big enough for all panes).
TERMINAL_SIZE = (120, 36)
# How long a test waits for something to show up (loopback is fast; the box is shared).
UI_TIMEOUT = 10.0
POLL_INTERVAL = 0.02


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
