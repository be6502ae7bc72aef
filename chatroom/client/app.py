"""The Textual app: wires the connection to the session and the session to the screens.

Build it with :func:`make_app` so the command line, the tests, the benchmark and the
screenshot script all run the same thing.

Every event of the :class:`~chatroom.client.connection.Connection` goes to the
:class:`~chatroom.client.session.ClientSession`, which changes the model and returns the
lines to send (CHATHISTORY requests, JOINs); the app sends them and schedules a repaint,
at most every :data:`FLUSH_INTERVAL`. The screens read the model; what the user types
goes through :mod:`chatroom.client.commands`, with the app as its
:class:`~chatroom.client.commands.CommandTarget`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.notifications import SeverityLevel

from chatroom.client.commands import CommandError, normalise_room, run_input, say
from chatroom.client.config import RecentServer, config_dir, default_nick, remember_server
from chatroom.client.connection import (
    BACKOFF_BASE,
    DEFAULT_PORT,
    LAG_INTERVAL,
    Connection,
    ConnectionSettings,
    ConnState,
    Event,
    StateChanged,
)
from chatroom.client.formatting import strip_formatting
from chatroom.client.history import HISTORY_PAGE, HISTORY_REQUEST_TIMEOUT
from chatroom.client.model import SERVER_KEY
from chatroom.client.screens.chat import ChatScreen
from chatroom.client.screens.connect import ConnectDetails, ConnectScreen
from chatroom.client.screens.dialogs import HelpScreen, key_help
from chatroom.client.session import ClientSession
from chatroom.client.state import ClientState
from chatroom.client.widgets.chat_input import ChatInput
from chatroom.protocol import Message, UnserializableMessage

__all__ = ["FLUSH_INTERVAL", "ChatApp", "ClientOptions", "make_app"]

# The screen is repainted from the model at most this often (50 Hz): at 1,000
# messages a second each repaint carries ~20 lines instead of doing 1,000 repaints.
FLUSH_INTERVAL = 0.02
# Pause between the lines of a multi-line paste, so servers' flood control keeps us.
PASTE_LINE_INTERVAL = 0.05
# How often history requests are checked against their deadline.
HISTORY_EXPIRE_INTERVAL = 1.0


@dataclass(frozen=True)
class ClientOptions:
    """Everything the command line (or a test) can say about how to start."""

    host: str | None = None
    port: int = DEFAULT_PORT
    nick: str = field(default_factory=default_nick)
    rooms: tuple[str, ...] = ()
    password: str | None = None
    config_dir: Path | None = None
    lag_interval: float = LAG_INTERVAL
    backoff_base: float = BACKOFF_BASE
    history_page: int = HISTORY_PAGE
    history_timeout: float = HISTORY_REQUEST_TIMEOUT


class ChatApp(App[int]):
    """chatroom-client. Implements :class:`~chatroom.client.commands.CommandTarget`."""

    CSS_PATH = "chatroom.tcss"
    TITLE = "chatroom"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [Binding("ctrl+q", "quit", "quit", priority=True, show=False)]

    def __init__(self, options: ClientOptions) -> None:
        super().__init__()
        self.options = options
        self.config_dir = options.config_dir or config_dir()
        self.session = self._make_session(options.host or "server")
        self.connection: Connection | None = None
        self.chat_screen: ChatScreen | None = None
        self._flush_pending = False
        self._last_flush = 0.0

    @property
    def state(self) -> ClientState:
        """The model the screens show (the session's)."""
        return self.session.state

    @property
    def conn_state(self) -> str:
        """The connection's state, in words: idle, connecting, connected, waiting..."""
        return str(self.session.link)

    @property
    def lag(self) -> float | None:
        """The last measured round trip to the server, in seconds."""
        return self.session.lag

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """A toast. Its text is often a peer's (a reason from the server, a mention), so
        every toast goes through the log's sanitiser: no terminal controls (a title
        change, a cleared screen) and no IRC codes; and it is not read as markup
        unless a caller that wrote all of it asks for that with ``markup=True``.
        """
        super().notify(
            strip_formatting(message),
            title=strip_formatting(title),
            severity=severity,
            timeout=timeout,
            markup=markup,
        )

    def _make_session(
        self, host: str, label: str = "", rooms: list[str] | None = None
    ) -> ClientSession:
        opts = self.options
        return ClientSession(
            opts.nick,
            host,
            label=label,
            rooms=rooms or (),
            history_page=opts.history_page,
            history_timeout=opts.history_timeout,
        )

    def on_mount(self) -> None:
        self.set_interval(HISTORY_EXPIRE_INTERVAL, self._expire_history)
        opts = self.options
        if opts.host:
            self.start_chat(opts.host, opts.port, opts.nick, opts.password, opts.rooms)
        else:
            defaults = ConnectDetails("", opts.port, opts.nick, opts.password)
            self.push_screen(ConnectScreen(defaults, self.config_dir), self._connect_chosen)

    # --- starting and stopping ------------------------------------------------------------

    def _connect_chosen(self, details: ConnectDetails | None) -> None:
        """The connect screen's answer."""
        if details is not None:
            self.start_chat(details.host, details.port, details.nick, details.password)

    def start_chat(
        self,
        host: str,
        port: int,
        nick: str,
        password: str | None = None,
        rooms: tuple[str, ...] = (),
    ) -> None:
        """Show the chat screen and connect (reconnecting by itself from then on)."""
        remember_server(RecentServer(host, port, nick), self.config_dir)
        self.options = replace(self.options, host=host, port=port, nick=nick, password=password)
        self.session = self._make_session(
            host, f"{host}:{port}", [normalise_room(r) for r in rooms]
        )
        settings = ConnectionSettings(
            host=host,
            port=port,
            nick=nick,
            password=password,
            lag_interval=self.options.lag_interval,
            backoff_base=self.options.backoff_base,
        )
        self.connection = Connection(settings, self._on_connection_event)
        self.chat_screen = ChatScreen()
        self.push_screen(self.chat_screen)
        self.connection.start()

    async def action_quit(self) -> None:
        """Ctrl+Q: say goodbye to the server, then exit."""
        await self._quit("Leaving")

    async def _quit(self, reason: str) -> None:
        if self.connection is not None:
            await self.connection.close(reason)
        self.exit(0)

    # --- connection -> session -> screen ----------------------------------------------------

    def _on_connection_event(self, event: Event) -> None:
        self._send_all(self.session.on_event(event))
        if (
            isinstance(event, StateChanged)
            and event.state is ConnState.CLOSED
            and event.reason != "closed"
        ):
            self.notify(event.reason, title="Disconnected", severity="error", markup=False)
        self._schedule_flush()

    def _send_all(self, messages: list[Message]) -> None:
        for message in messages:
            self.send(message)

    def _expire_history(self) -> None:
        self.session.expire()
        if self.state.dirty_entries:
            self._schedule_flush()

    def load_older(self, key: str) -> None:
        """The user reached the top of buffer ``key``'s log: fetch older lines."""
        self._send_all(self.session.older(key))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_pending:
            return
        self._flush_pending = True
        delay = self._last_flush + FLUSH_INTERVAL - time.monotonic()
        if delay > 0:
            self.set_timer(delay, self.flush)
        else:
            self.call_later(self.flush)

    def flush(self) -> None:
        """Paint what changed in the model (the chat screen may be under a dialog)."""
        self._flush_pending = False
        self._last_flush = time.monotonic()
        if self.chat_screen is not None:
            # NoMatches: the app is shutting down and the screen's widgets are gone.
            with contextlib.suppress(NoMatches):
                self.chat_screen.flush()

    # --- CommandTarget ----------------------------------------------------------------------

    def send(self, message: Message) -> bool:
        """Send a line to the server; False while not connected."""
        if self.connection is None or not self.connection.connected:
            return False
        return self.connection.send(message)

    def switch_to(self, key: str) -> None:
        """Show buffer ``key`` and mark it read."""
        self.state.set_active(key)
        if self.chat_screen is not None:
            self.chat_screen.refresh_all()

    def expect_join(self, room: str) -> None:
        """Switch to ``room`` once the server says we joined it."""
        self.session.expect_join(room)

    def close_buffer(self, key: str) -> None:
        """Forget a buffer and its cached rows."""
        buf = self.state.close(key)
        if buf is not None and self.chat_screen is not None and self.chat_screen.ready:
            from chatroom.client.widgets.log import MessageLog

            self.chat_screen.query_one(MessageLog).forget(buf)
            self.chat_screen.refresh_all()

    def show_help(self) -> None:
        """Open the help screen."""
        if not isinstance(self.screen, HelpScreen):
            keys = key_help([*ChatInput.BINDINGS, *ChatScreen.BINDINGS, *self.BINDINGS])
            self.push_screen(HelpScreen(keys))

    def quit(self, reason: str) -> None:
        """/quit: leave the server and exit."""
        self.run_worker(self._quit(reason), exclusive=True, group="quit")

    def reconnect(self) -> None:
        """/reconnect: drop the link (if any) and connect again now."""
        if self.connection is None:
            return
        self.state.info("Reconnecting…", SERVER_KEY)
        if self.connection.connected:
            self.connection.drop()
        self.connection.reconnect_now()

    # --- user input -----------------------------------------------------------------------

    def submit(self, line: str) -> None:
        """A line from the input: run it, and show any mistake as a line in the log."""
        try:
            run_input(self, line)
        except CommandError as exc:
            self.state.info(str(exc), error=True)
        except UnserializableMessage as exc:
            self.state.info(f"Can't send that: {exc}", error=True)
        self._send_all(self.session.fetch_opened())
        self._schedule_flush()

    def submit_lines(self, lines: list[str]) -> None:
        """Pasted lines: sent as text (not commands) to the shown window, one by one."""
        target = self.state.active_buffer.name
        self.run_worker(self._send_lines(target, lines), group="paste")

    async def _send_lines(self, target: str, lines: list[str]) -> None:
        for i, line in enumerate(lines):
            if i:
                await asyncio.sleep(PASTE_LINE_INTERVAL)
            try:
                if self.state.active_buffer.key == SERVER_KEY:
                    raise CommandError("Pasted text needs a room or a private conversation")
                say(self, target, line)
            except (CommandError, UnserializableMessage) as exc:
                self.state.info(str(exc), error=True)
                self._schedule_flush()
                return
            self._schedule_flush()


def make_app(
    host: str | None = None,
    port: int = DEFAULT_PORT,
    nick: str | None = None,
    rooms: tuple[str, ...] | list[str] = (),
    password: str | None = None,
    *,
    config_dir: Path | None = None,
    lag_interval: float = LAG_INTERVAL,
    backoff_base: float = BACKOFF_BASE,
    history_page: int = HISTORY_PAGE,
    history_timeout: float = HISTORY_REQUEST_TIMEOUT,
) -> ChatApp:
    """Build the client app: with ``host`` it connects at once, else it asks."""
    options = ClientOptions(
        host=host,
        port=port,
        nick=nick or default_nick(),
        rooms=tuple(rooms),
        password=password,
        config_dir=config_dir,
        lag_interval=lag_interval,
        backoff_base=backoff_base,
        history_page=history_page,
        history_timeout=history_timeout,
    )
    return ChatApp(options)
