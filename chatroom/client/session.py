"""The client's IRC logic without I/O: Messages and connection events in, Messages out.

A :class:`ClientSession` owns the model (:class:`~chatroom.client.state.ClientState`),
the :class:`~chatroom.client.history.BatchCollector` and the
:class:`~chatroom.client.history.HistoryFetcher`. The app hands it every event of the
connection (:meth:`ClientSession.on_event`; a line from the server is
:meth:`ClientSession.receive`) and sends the Messages it returns; the model changes in
place and the app repaints what its ``dirty`` sets name. Like h11: no sockets, no
asyncio, no widgets, so it is tested by feeding it Messages.

Every line goes through the batch collector first: history batches go to the fetcher,
everything else to the model, one line at a time. The fetcher is told when we join a
room, open a private window, reach the top of a log or reconnect, and answers with
CHATHISTORY requests, which come back from here to be sent.

It also tells the shown window that the user is typing (:meth:`ClientSession.typing`,
through :class:`~chatroom.client.actions.TypingNotifier`), where the server speaks
message-tags.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from chatroom.client import multiline
from chatroom.client.actions import TypingNotifier
from chatroom.client.events import (
    ConnState,
    Event,
    LagMeasured,
    Notice,
    Received,
    Registered,
    StateChanged,
)
from chatroom.client.handlers import WHOX_QUERY
from chatroom.client.history import (
    HISTORY_BATCH_TYPES,
    HISTORY_PAGE,
    HISTORY_REQUEST_TIMEOUT,
    TARGETS_BATCH_TYPES,
    Batch,
    BatchCollector,
    HistoryFetcher,
)
from chatroom.client.model import SERVER_KEY, BufferKind
from chatroom.client.presence import Presence
from chatroom.client.search import SEARCH_BATCH_TYPE, ServerSearch
from chatroom.client.state import ClientState
from chatroom.protocol import Cap, Message, Numeric, casefold

__all__ = ["ClientSession", "join_messages"]

# End of the registration burst (end of MOTD, or no MOTD): ISUPPORT is known by then.
_BURST_END = frozenset({Numeric.RPL_ENDOFMOTD, Numeric.ERR_NOMOTD})
# MONITOR's status replies (730-733): presence.py keeps what they say.
_MONITOR_REPLIES = frozenset({"730", "731", "732", "733"})
# Lines that may change someone's away state (away-notify, a WHOX row).
_AWAY_CHANGES = frozenset({"AWAY", "354"})
# Any of these means the server has accounts (the status line says if we are logged in).
_ACCOUNT_CAPS = frozenset({Cap.SASL, Cap.ACCOUNT_NOTIFY, Cap.ACCOUNT_REGISTRATION})


def join_messages(rooms: Iterable[str], keys: dict[str, str] | None = None) -> list[Message]:
    """JOIN lines for ``rooms``, one per room (servers cap the targets per JOIN).

    >>> [str(m) for m in join_messages(["#lan", "#Games"], {"#games": "pw"})]
    ['JOIN #lan', 'JOIN #Games pw']
    """
    keys = keys or {}
    out = []
    for room in rooms:
        key = keys.get(casefold(room))
        out.append(Message.of("JOIN", room, key) if key else Message.of("JOIN", room))
    return out


class ClientSession:
    """One user's view of one server, across reconnects.

    ``server_name`` names the server buffer until the server says its own name;
    ``label`` (``host:port``) is how lines and the status line speak of the server.
    ``rooms`` are joined on the first registration (the first one is shown once
    joined); later registrations rejoin the rooms we are in. ``link``, ``link_detail``
    and ``lag`` are the connection as the status line shows it.
    """

    def __init__(
        self,
        nick: str,
        server_name: str = "server",
        *,
        label: str = "",
        rooms: Iterable[str] = (),
        history_page: int = HISTORY_PAGE,
        history_timeout: float = HISTORY_REQUEST_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = ClientState(nick, server_name, clock=clock)
        self.typing_notifier = TypingNotifier(clock=clock)
        self.batches = BatchCollector()
        self.history = HistoryFetcher(
            self.state, page=history_page, timeout=history_timeout, clock=clock
        )
        self.search = ServerSearch()
        self.presence = Presence()
        self.label = label or server_name
        self.link = ConnState.IDLE
        self.link_detail = ""
        self.lag: float | None = None
        self.caps: frozenset[str] = frozenset()
        self._first_rooms = list(rooms)
        self._pending_join: str | None = self._first_rooms[0] if self._first_rooms else None

    @property
    def connected(self) -> bool:
        """True while registered (lines we return can be sent)."""
        return self.link is ConnState.CONNECTED

    # --- the connection -------------------------------------------------------------------

    def on_event(self, event: Event) -> list[Message]:
        """Anything the connection reports; returns the lines to send."""
        if isinstance(event, Received):
            return self.receive(event.message)
        if isinstance(event, Registered):
            return self.on_connected(event.nick, event.caps)
        if isinstance(event, StateChanged):
            self.on_link(event)
        elif isinstance(event, LagMeasured):
            self.lag = event.seconds
        elif isinstance(event, Notice):
            self.state.info(event.text, None if event.active else SERVER_KEY, error=event.error)
        return []

    def on_connected(self, nick: str, caps: frozenset[str]) -> list[Message]:
        """Registered as ``nick`` with ``caps``: JOINs for our rooms (or the first ones)."""
        state = self.state
        account = state.account  # from a 900 before 001, under the nick we asked for
        state.nick = nick
        if account and not state.account:
            state.set_account(nick, account)
        self.caps = caps
        state.echo_message = Cap.ECHO_MESSAGE in caps
        state.account_tag = Cap.ACCOUNT_TAG in caps
        state.accounts_supported = state.accounts_supported or bool(_ACCOUNT_CAPS & caps)
        self.batches.reset()
        self.history.configure(caps)
        self.search.configure(caps)
        self.presence.reset()
        rooms = state.joined_rooms() or self._first_rooms
        state.info(f"Connected to {self.label} as {nick}", SERVER_KEY)
        return join_messages(rooms)

    def on_disconnected(self, reason: str) -> None:
        """The registered link dropped (we will reconnect): what was in flight is lost."""
        self.state.disconnected(reason)
        self.history.disconnected()
        self.batches.reset()
        self.typing_notifier.reset()
        self.lag = None

    def on_link(self, event: StateChanged) -> None:
        """The connection moved to another state: tell the user, and forget what died."""
        previous, self.link = self.link, event.state
        self.link_detail = ""
        state = self.state
        if event.state is ConnState.WAITING:
            retry = f"; retrying in {event.retry_in:.0f} s" if event.retry_in is not None else ""
            self.link_detail = f"retry in {event.retry_in:.0f} s" if event.retry_in else ""
            if previous is ConnState.CONNECTED:
                self.on_disconnected(event.reason + retry)
            else:
                state.info(f"Could not connect: {event.reason}{retry}", SERVER_KEY, error=True)
        elif event.state is ConnState.CLOSED and event.reason != "closed":
            state.info(f"Disconnected for good: {event.reason}", error=True)
        elif event.state is ConnState.CONNECTING:
            state.info(f"Connecting to {self.label}…", SERVER_KEY)

    # --- lines from the server ----------------------------------------------------------------

    def receive(self, msg: Message) -> list[Message]:
        """One line from the server: into a batch, or into the model now."""
        item = self.batches.feed(msg)
        out: list[Message] = []
        if isinstance(item, Batch):
            self._batch(item, None, out)
        elif item is not None:
            self._line(item, None, out)
        return out

    def _line(self, msg: Message, label: str | None, out: list[Message]) -> None:
        """One server line (unbatched, or from a batch that is not history)."""
        state = self.state
        command = msg.command
        if command == "FAIL" and msg.param(0) == "SEARCH":
            self.search.failed(msg)
            return
        if self.presence.line(msg) or command in _AWAY_CHANGES:
            state.dirty_list = True  # the PEOPLE list's presence dots
        if command in _MONITOR_REPLIES:
            return  # shown as dots, not as lines
        if command == "FAIL" and msg.param(0) == "CHATHISTORY":
            follow = self.history.failed(msg, label)
            if follow is not None:
                out += follow
                return
        state.handle(msg)
        if command == "JOIN" and state.is_mine(msg.nick):
            room = msg.param(0)
            buf = state.buffer(room)
            if buf is not None:
                out += self.history.joined(buf)
                if state.whox and Cap.ACCOUNT_NOTIFY in self.caps:
                    # Who is logged in now; account-notify keeps it true from here on.
                    out.append(Message.of("WHO", buf.name, WHOX_QUERY))
            pending = self._pending_join
            if pending and casefold(room) == casefold(pending):
                self._pending_join = None
                state.set_active(casefold(room))
        elif command in _BURST_END:
            out += self.history.reconnected()
            out += self.monitor()
        elif command == "NICK":
            out += self.monitor()  # a private window follows its peer's new nick
        if state.opened:
            out += self.fetch_opened()

    def _batch(self, batch: Batch, label: str | None, out: list[Message]) -> None:
        """A finished batch: history to the fetcher; the lines of any other kind (a
        labeled response, a netsplit) are handled one by one, in order."""
        label = batch.label or label
        if batch.type in HISTORY_BATCH_TYPES:
            out += self.history.batch(batch, label)
            return
        if batch.type == SEARCH_BATCH_TYPE:
            self.search.batch(batch, self.state.chat_parts)
            return
        if batch.type in TARGETS_BATCH_TYPES:
            self.history.targets(batch)
            out += self.fetch_opened()
            return
        if batch.type == multiline.BATCH_TYPE:
            folded = multiline.combine(batch.source, batch.tags, batch.messages)
            if folded is not None:
                self._line(folded, label, out)
            return
        for item in batch.items:
            if isinstance(item, Batch):
                self._batch(item, label, out)
            else:
                self._line(item, label, out)

    # --- what the user does -------------------------------------------------------------------

    def typing(self, text: str) -> list[Message]:
        """The input line now holds ``text``: tell the shown window we are typing (or
        stopped), where that can be told: a room we are in or a private conversation,
        on a server with message-tags."""
        buf = self.state.active_buffer
        told = (
            self.connected
            and Cap.MESSAGE_TAGS in self.caps
            and (buf.kind is BufferKind.QUERY or (buf.kind is BufferKind.CHANNEL and buf.joined))
        )
        return self.typing_notifier.update(buf.name if told else None, text)

    def typing_sent(self) -> list[Message]:
        """The user sent the line: no longer typing."""
        return self.typing_notifier.sent() if self.connected else []

    def expect_join(self, room: str) -> None:
        """Show ``room`` once the server says we joined it."""
        self._pending_join = room

    def fetch_opened(self) -> list[Message]:
        """History requests for private windows opened since the last call (by a
        message, a command or a TARGETS answer); while offline, none: the reconnect
        fetches them (:meth:`HistoryFetcher.reconnected`)."""
        state = self.state
        if not state.opened:
            return []
        opened, state.opened = state.opened, []
        if not self.connected:
            return []
        out: list[Message] = []
        for buf in opened:
            if buf.kind is BufferKind.QUERY and state.buffers.get(buf.key) is buf:
                out += self.history.opened(buf)
        return out + self.monitor()

    def monitor(self) -> list[Message]:
        """MONITOR lines so the server watches the people of our private windows
        (none when it has no MONITOR, or while offline: registering sends them)."""
        if not self.connected:
            return []
        queries = (b.name for b in self.state.buffers.values() if b.kind is BufferKind.QUERY)
        return self.presence.sync(queries)

    def search_server(self, target: str, text: str) -> list[Message]:
        """Ask the server to search ``target``'s history for ``text`` (soju.im/search);
        nothing when it cannot. Answers gather in :attr:`search`."""
        return self.search.request(target, text) if self.connected else []

    def around(self, key: str, msgid: str) -> list[Message]:
        """Fetch the lines around message ``msgid`` of buffer ``key`` (a search result
        not loaded yet)."""
        return self.history.around(key, msgid) if self.connected else []

    def older(self, key: str) -> list[Message]:
        """The user reached the top of buffer ``key``'s log: ask for older lines."""
        if not self.connected:
            return []  # asked again when the user next reaches the top
        return self.history.older(key)

    def expire(self) -> None:
        """Give up on history requests past their deadline (call now and then)."""
        self.history.expire()
