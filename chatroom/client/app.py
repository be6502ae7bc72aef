"""The Textual app: wires the connection to the model and the model to the screens.

Build it with :func:`make_app` so the command line, the tests, the benchmark and the
screenshot script all run the same thing.

Every line from the server goes through a :class:`BatchCollector` first: history
batches go to the :class:`HistoryFetcher`, everything else to the model. The fetcher
is told when we join a room, open a private window, reach the top of a log or
reconnect, and answers with CHATHISTORY requests, which the app sends.
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
    LagMeasured,
    Notice,
    Received,
    Registered,
    StateChanged,
    join_messages,
)
from chatroom.client.formatting import strip_formatting
from chatroom.client.history import (
    HISTORY_BATCH_TYPES,
    HISTORY_PAGE,
    HISTORY_REQUEST_TIMEOUT,
    TARGETS_BATCH_TYPES,
    Batch,
    BatchCollector,
    HistoryFetcher,
)
from chatroom.client.screens.chat import ChatScreen
from chatroom.client.screens.connect import ConnectScreen
from chatroom.client.screens.dialogs import HelpScreen
from chatroom.client.state import SERVER_KEY, BufferKind, ClientState
from chatroom.protocol import Message, UnserializableMessage, casefold

__all__ = ["FLUSH_INTERVAL", "ChatApp", "ClientOptions", "make_app"]

# The screen is repainted from the model at most this often (50 Hz): at 1,000
# messages a second each repaint carries ~20 lines instead of doing 1,000 repaints.
FLUSH_INTERVAL = 0.02
# Pause between the lines of a multi-line paste, so servers' flood control keeps us.
PASTE_LINE_INTERVAL = 0.05
# How often history requests are checked against their deadline.
HISTORY_EXPIRE_INTERVAL = 1.0
# End of the registration burst (end of MOTD, or no MOTD): ISUPPORT is known by then.
_BURST_END = frozenset({"376", "422"})


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
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", priority=True, show=False)]

    def __init__(self, options: ClientOptions) -> None:
        super().__init__()
        self.options = options
        self.config_dir = options.config_dir or config_dir()
        self.state = ClientState(options.nick, options.host or "server")
        self.batches = BatchCollector()
        self.history = self._make_fetcher()
        self.connection: Connection | None = None
        self.chat_screen: ChatScreen | None = None
        self.server_label = ""
        self.conn_state = "idle"
        self.conn_detail = ""
        self.lag: float | None = None
        self._pending_join: str | None = None
        self._first_rooms: list[str] = []
        self._flush_pending = False
        self._last_flush = 0.0

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

    def _make_fetcher(self) -> HistoryFetcher:
        opts = self.options
        return HistoryFetcher(self.state, page=opts.history_page, timeout=opts.history_timeout)

    def on_mount(self) -> None:
        self.set_interval(HISTORY_EXPIRE_INTERVAL, self._expire_history)
        opts = self.options
        if opts.host:
            self.start_chat(opts.host, opts.port, opts.nick, opts.password, opts.rooms)
        else:
            self.push_screen(ConnectScreen())

    # --- starting and stopping ------------------------------------------------------------

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
        self.state = ClientState(nick, host)
        self.batches = BatchCollector()
        self.history = self._make_fetcher()
        self.server_label = f"{host}:{port}"
        self._first_rooms = [normalise_room(r) for r in rooms]
        if self._first_rooms:
            self._pending_join = self._first_rooms[0]
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
        if isinstance(self.screen, ConnectScreen):
            self.switch_screen(self.chat_screen)
        else:
            self.push_screen(self.chat_screen)
        self.connection.start()

    async def action_quit(self) -> None:
        """Ctrl+Q: say goodbye to the server, then exit."""
        await self._quit("Leaving")

    async def _quit(self, reason: str) -> None:
        if self.connection is not None:
            await self.connection.close(reason)
        self.exit(0)

    # --- connection events -> model -> screen ---------------------------------------------

    def _on_connection_event(self, event: Event) -> None:
        state = self.state
        if isinstance(event, Received):
            item = self.batches.feed(event.message)
            if isinstance(item, Batch):
                self._on_batch(item)
            elif item is not None:
                self._on_server_line(item)
        elif isinstance(event, Registered):
            state.nick = event.nick
            state.echo_message = "echo-message" in event.caps
            self.batches.reset()
            self.history.configure(event.caps)
            rooms = state.joined_rooms() or self._first_rooms
            state.info(f"Connected to {self.server_label} as {event.nick}", SERVER_KEY)
            for message in join_messages(rooms):
                self.send(message)
        elif isinstance(event, StateChanged):
            self._state_changed(event)
        elif isinstance(event, LagMeasured):
            self.lag = event.seconds
        elif isinstance(event, Notice):
            state.info(event.text, SERVER_KEY, error=event.error)
        self._schedule_flush()

    def _on_server_line(self, msg: Message, label: str | None = None) -> None:
        """One server line (unbatched, or from a batch that is not history)."""
        state = self.state
        if msg.command == "FAIL" and msg.param(0) == "CHATHISTORY":
            follow = self.history.failed(msg, label)
            if follow is not None:
                self._send_all(follow)
                return
        state.handle(msg)
        if msg.command == "JOIN" and state.is_mine(msg.nick):
            buf = state.buffer(msg.param(0))
            if buf is not None:
                self._send_all(self.history.joined(buf))
            pending = self._pending_join
            if pending and casefold(msg.param(0)) == casefold(pending):
                self._pending_join = None
                state.set_active(casefold(msg.param(0)))
        elif msg.command in _BURST_END:
            self._send_all(self.history.reconnected())
        self._fetch_opened()

    def _on_batch(self, batch: Batch, label: str | None = None) -> None:
        """A finished batch: history to the fetcher; the lines of any other kind (a
        labeled response, a netsplit) are handled one by one, in order."""
        label = batch.label or label
        if batch.type in HISTORY_BATCH_TYPES:
            self._send_all(self.history.batch(batch, label))
            return
        if batch.type in TARGETS_BATCH_TYPES:
            self.history.targets(batch)
            self._fetch_opened()
            return
        for item in batch.items:
            if isinstance(item, Batch):
                self._on_batch(item, label)
            else:
                self._on_server_line(item, label)

    def _fetch_opened(self) -> None:
        """New private windows get their conversation's history."""
        state = self.state
        if not state.opened:
            return
        opened, state.opened = state.opened, []
        if self.connection is None or not self.connection.connected:
            return  # fetched after the reconnect (HistoryFetcher.reconnected)
        for buf in opened:
            if buf.kind is BufferKind.QUERY and state.buffers.get(buf.key) is buf:
                self._send_all(self.history.opened(buf))

    def _send_all(self, messages: list[Message]) -> None:
        for message in messages:
            self.send(message)

    def _expire_history(self) -> None:
        self.history.expire()
        if self.state.dirty_entries:
            self._schedule_flush()

    def load_older(self, key: str) -> None:
        """The user reached the top of buffer ``key``'s log: fetch older lines."""
        if self.connection is None or not self.connection.connected:
            return  # asked again when the user next reaches the top
        self._send_all(self.history.older(key))
        self._schedule_flush()

    def _state_changed(self, event: StateChanged) -> None:
        previous = self.conn_state
        self.conn_state = str(event.state)
        self.conn_detail = ""
        state = self.state
        if event.state is ConnState.WAITING:
            retry = f"; retrying in {event.retry_in:.0f} s" if event.retry_in is not None else ""
            self.conn_detail = f"retry in {event.retry_in:.0f} s" if event.retry_in else ""
            if previous == ConnState.CONNECTED:
                state.disconnected(event.reason + retry)
                self.history.disconnected()
                self.batches.reset()
                self.lag = None
            else:
                state.info(f"Could not connect: {event.reason}{retry}", SERVER_KEY, error=True)
        elif event.state is ConnState.CLOSED and event.reason != "closed":
            state.info(f"Disconnected for good: {event.reason}", error=True)
            self.notify(event.reason, title="Disconnected", severity="error", markup=False)
        elif event.state is ConnState.CONNECTING:
            state.info(f"Connecting to {self.server_label}…", SERVER_KEY)

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
        self._pending_join = room

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
            self.push_screen(HelpScreen())

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
        self._fetch_opened()
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
