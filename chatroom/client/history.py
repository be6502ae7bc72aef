"""IRCv3 batches and chathistory on the client: what to ask for, and where answers go.

Sans-IO like :mod:`chatroom.client.state`, and driven by :mod:`chatroom.client.session`.
:class:`BatchCollector` groups the lines of ``BATCH +ref ... BATCH -ref`` (nested ones
too) and hands back whole batches.
:class:`HistoryFetcher` turns events (we joined a room, a private window opened, the
user reached the top of a log, we reconnected, a batch or a FAIL arrived) into
``CHATHISTORY`` Messages to send, and puts what comes back into the model:

- joining a room we know nothing about: ``LATEST <room> * N``, inserted before our
  JOIN line; lines that also arrived live are dropped by msgid;
- joining a room we have lines from (a reconnect, /part then /join): ``AFTER <room>
  msgid=<newest seen>`` pages forward until caught up, filling the gap before the JOIN;
- the top of a log: ``BEFORE <target> msgid=<oldest seen> N``, prepended;
- after a reconnect, ``TARGETS`` since we lost the link: private conversations that
  went on meanwhile open their windows (and fetch their lines);
- one request per buffer at a time; each has a deadline.

With ``draft/event-playback`` a batch also carries events: reactions (TAGMSG) are
gathered under the lines they answer, wherever those are.

Requests carry a ``label`` when the server has labeled-response, so a ``FAIL`` finds
its request even when it does not name the target.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from chatroom.client import multiline
from chatroom.client.model import (
    BACKLOG_LINES,
    Buffer,
    BufferKind,
    Entry,
    HistoryState,
    parse_time,
)
from chatroom.client.state import ClientState
from chatroom.protocol import Cap, Message, casefold

__all__ = [
    "GAP_FILL_MAX_PAGES",
    "HISTORY_CAPS",
    "HISTORY_PAGE",
    "HISTORY_REQUEST_TIMEOUT",
    "MAX_BATCH_LINES",
    "MAX_OPEN_BATCHES",
    "Batch",
    "BatchCollector",
    "HistoryFetcher",
]

# Lines asked for per request (joins, scroll-back, gap pages): a few screens' worth.
# The server's ISUPPORT CHATHISTORY caps it further.
HISTORY_PAGE = 100
# A reconnect's gap is filled at most this many pages deep (1,000 lines at 100 a page);
# beyond that a line in the log says some were not loaded.
GAP_FILL_MAX_PAGES = 10
# A request unanswered for this long is given up (the user can scroll up again).
HISTORY_REQUEST_TIMEOUT = 15.0
# Bounds on what a (misbehaving) server can make us hold: lines per batch (the rest
# are dropped) and batches open at once (more are ignored). Our requests are smaller.
MAX_BATCH_LINES = 5_000
MAX_OPEN_BATCHES = 16
# The capability of chathistory, by either name (the draft's, and the ratified one).
HISTORY_CAPS = frozenset({Cap.DRAFT_CHATHISTORY, Cap.CHATHISTORY})
# Batch types (not capabilities, though two are spelled alike) of history answers.
HISTORY_BATCH_TYPES = frozenset({"chathistory", "draft/chathistory"})
TARGETS_BATCH_TYPES = frozenset({"draft/chathistory-targets", "chathistory-targets"})
# TARGETS after a reconnect: conversations active from this long before we noticed the
# link was gone (the server may have kept delivering to the dead socket for a while,
# and its clock is not ours), at most this many of them.
TARGETS_MARGIN = timedelta(minutes=5)
TARGETS_LIMIT = 50
LABEL_PREFIX = "hist"
# Lines asked for around a search result being jumped to.
AROUND_PAGE = 50
AROUND_GAP_TEXT = "Some messages between these and the newer ones are not loaded"
# A millisecond: timestamp selectors are widened by one so that a line sharing the
# boundary's millisecond is not lost (msgid de-duplication drops the extra copy).
_MS = timedelta(milliseconds=1)


@dataclass(eq=False)
class Batch:
    """One IRCv3 batch: its type and parameters, and its lines and nested batches."""

    ref: str
    type: str
    params: tuple[str, ...] = ()
    label: str | None = None
    items: list[Message | Batch] = field(default_factory=list)
    parent: Batch | None = None
    lines: int = 0
    # The opening BATCH line's source and tags (a multiline message's msgid and time).
    source: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def messages(self) -> list[Message]:
        """The batch's own lines (not those of nested batches)."""
        return [item for item in self.items if isinstance(item, Message)]

    @property
    def chat_messages(self) -> list[Message]:
        """The batch's own lines, a nested ``draft/multiline`` batch as one message."""
        out: list[Message] = []
        for item in self.items:
            if isinstance(item, Message):
                out.append(item)
            elif item.type == multiline.BATCH_TYPE:
                folded = multiline.combine(item.source, item.tags, item.messages)
                if folded is not None:
                    out.append(folded)
        return out


class BatchCollector:
    """Groups batched lines; :meth:`feed` returns a line, a finished batch, or None."""

    def __init__(self) -> None:
        self._open: dict[str, Batch] = {}

    def reset(self) -> None:
        """Forget unfinished batches (the connection is gone)."""
        self._open.clear()

    def feed(self, msg: Message) -> Message | Batch | None:
        """The line itself when not batched; a top-level batch when this line ends it;
        None while a batch is being collected (or for a line we drop)."""
        parent = self._open.get(msg.tags["batch"]) if "batch" in msg.tags else None
        if msg.command == "BATCH" and msg.params:
            ref = msg.params[0]
            if ref.startswith("+") and len(ref) > 1:
                if len(self._open) < MAX_OPEN_BATCHES:
                    batch = Batch(ref[1:], msg.param(1), msg.params[2:], msg.tags.get("label"))
                    batch.parent = parent
                    batch.source, batch.tags = msg.source, msg.tags
                    self._open[batch.ref] = batch
                    if parent is not None:
                        parent.items.append(batch)
                return None
            if ref.startswith("-"):
                done = self._open.pop(ref[1:], None)
                return done if done is not None and done.parent is None else None
        if parent is None:
            return msg
        if parent.lines < MAX_BATCH_LINES:
            parent.lines += 1
            parent.items.append(msg)
        return None


class Kind(StrEnum):
    """The CHATHISTORY subcommands we use."""

    LATEST = "LATEST"
    BEFORE = "BEFORE"
    AFTER = "AFTER"
    AROUND = "AROUND"


@dataclass
class _Request:
    key: str  # the buffer's key
    target: str  # as sent
    kind: Kind
    selector: str
    limit: int
    after_seq: int | None  # insert after this line; None: at the top
    label: str
    deadline: float
    fallback: str | None = None  # a timestamp selector to try if the msgid one fails
    pages: int = 1

    def message(self, labels: bool) -> Message:
        tags = {"label": self.label} if labels else None
        return Message.of(
            "CHATHISTORY", self.kind.value, self.target, self.selector, str(self.limit), tags=tags
        )


def timestamp_selector(when: datetime) -> str:
    """``timestamp=YYYY-MM-DDThh:mm:ss.sssZ`` (UTC, milliseconds) for CHATHISTORY.

    >>> timestamp_selector(datetime(2024, 1, 2, 3, 4, 5, 678900, tzinfo=UTC))
    'timestamp=2024-01-02T03:04:05.678Z'
    """
    utc = when.astimezone(UTC)
    return f"timestamp={utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


class HistoryFetcher:
    """Plans CHATHISTORY requests and files the answers into a :class:`ClientState`."""

    def __init__(
        self,
        state: ClientState,
        *,
        page: int = HISTORY_PAGE,
        timeout: float = HISTORY_REQUEST_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self.page = page
        self.timeout = timeout
        self.clock = clock
        self.enabled = False
        self.labels = False
        self._requests: dict[str, _Request] = {}  # by buffer key: one each at most
        self._labels = itertools.count(1)
        self._caught_up = False  # reconnected() ran for this connection
        self._late: set[str] = set()  # buffers whose request expired: drop its answer
        self._offline_since: datetime | None = None  # when the link dropped

    # --- connection ----------------------------------------------------------------------

    def configure(self, caps: frozenset[str]) -> None:
        """A new connection with these capabilities (history needs batch, too)."""
        self.enabled = bool(caps & HISTORY_CAPS) and Cap.BATCH in caps
        self.labels = Cap.LABELED_RESPONSE in caps
        self._requests.clear()
        self._late.clear()
        self._caught_up = False
        for buf in self.state.buffers.values():
            if buf.kind is BufferKind.SERVER:
                continue
            if not self.enabled:
                self._set(buf, HistoryState.NONE)
            elif buf.history in (HistoryState.NONE, HistoryState.LOADING, HistoryState.UNAVAILABLE):
                self._set(buf, HistoryState.MORE)

    def disconnected(self) -> None:
        """The link dropped: requests in flight will never be answered."""
        if self.enabled and self._offline_since is None:
            self._offline_since = datetime.now(UTC)
        for request in self._requests.values():
            buf = self.state.buffers.get(request.key)
            if buf is not None and buf.history is HistoryState.LOADING:
                self._set(buf, HistoryState.MORE)
        self._requests.clear()

    @property
    def limit(self) -> int:
        """Lines per request: our page, or less if the server's ISUPPORT says so."""
        server = self.state.chathistory_limit
        return min(self.page, server) if server else self.page

    def in_flight(self, key: str) -> bool:
        """Whether buffer ``key`` has a request out."""
        return key in self._requests

    # --- events -----------------------------------------------------------------------------

    def joined(self, buf: Buffer) -> list[Message]:
        """We joined ``buf`` (our JOIN line is its last): fetch its history, or the gap."""
        if not self.enabled or buf.kind is not BufferKind.CHANNEL or buf.key in self._requests:
            return []
        if buf.history is HistoryState.NONE:
            self._set(buf, HistoryState.MORE)
        join_index = len(buf.entries) - 1
        after = buf.entries[join_index - 1].seq if join_index > 0 else None
        return self._catch_up(buf, buf.newest_reference(max(0, join_index)), after)

    def opened(self, buf: Buffer) -> list[Message]:
        """A private window opened: fetch the conversation's recent history."""
        if not self.enabled or buf.kind is not BufferKind.QUERY or buf.key in self._requests:
            return []
        self._set(buf, HistoryState.LOADING)
        return self._send(buf, Kind.LATEST, "*", None)

    def reconnected(self) -> list[Message]:
        """Registered again (end of MOTD, ISUPPORT known): fill private windows' gaps.

        Rooms catch up when their JOIN comes back (:meth:`joined`).
        """
        out: list[Message] = []
        if not self.enabled or self._caught_up:
            return out  # a later /motd ends with 376 too
        self._caught_up = True
        since, self._offline_since = self._offline_since, None
        if since is not None:
            label = {"label": f"{LABEL_PREFIX}{next(self._labels)}"} if self.labels else None
            window = (since - TARGETS_MARGIN, datetime.now(UTC) + TARGETS_MARGIN)
            out.append(
                Message.of(
                    "CHATHISTORY",
                    "TARGETS",
                    *(timestamp_selector(t) for t in window),
                    str(TARGETS_LIMIT),
                    tags=label,
                )
            )
        for buf in list(self.state.buffers.values()):
            if buf.kind is BufferKind.QUERY and buf.key not in self._requests:
                last = buf.entries[-1].seq if buf.entries else None
                out += self._catch_up(buf, buf.newest_reference(), last)
        return out

    def older(self, key: str) -> list[Message]:
        """The user reached the top of ``key``: ask for the page before its oldest line."""
        buf = self.state.buffers.get(key)
        if (
            not self.enabled
            or buf is None
            or buf.history is not HistoryState.MORE
            or key in self._requests
            or (buf.kind is BufferKind.CHANNEL and not buf.joined)  # the server would refuse
        ):
            return []
        if len(buf.entries) >= BACKLOG_LINES:
            self._set(buf, HistoryState.FULL)
            return []
        self._set(buf, HistoryState.LOADING)
        oldest = buf.oldest_reference()
        if oldest is None:
            return self._send(buf, Kind.LATEST, "*", None)
        stamp = timestamp_selector(oldest.time + _MS)
        selector = self._msgid_selector(oldest) or stamp
        return self._send(
            buf, Kind.BEFORE, selector, None, fallback=stamp if selector != stamp else None
        )

    def around(self, key: str, msgid: str) -> list[Message]:
        """Lines around message ``msgid`` (a search result older than what is loaded),
        put at the top of ``key``: the lines between them and the loaded ones are not
        fetched (a note says so); scrolling up continues from them."""
        buf = self.state.buffers.get(key)
        if not self.enabled or buf is None or key in self._requests or not msgid:
            return []
        if buf.kind is BufferKind.CHANNEL and not buf.joined:
            return []
        self._send(buf, Kind.AROUND, f"msgid={msgid}", None)
        request = self._requests[buf.key]
        request.limit = min(request.limit, AROUND_PAGE)
        return [request.message(self.labels)]

    def batch(self, batch: Batch, label: str | None = None) -> list[Message]:
        """A ``chathistory`` batch arrived: file it, and ask for the next page if needed."""
        target = batch.params[0] if batch.params else ""
        label = label or batch.label
        request = self._find(label, (target,))
        if request is None:
            late = casefold(target) in self._late or (label or "").startswith(LABEL_PREFIX)
            self._late.discard(casefold(target))
            if late:
                return []  # the answer to a request we gave up on: its place is unknown
            # Not ours (a server's or bouncer's playback on join): old lines for the
            # end of that buffer, de-duplicated like the rest.
            buf = self.state.buffer(target)
            if buf is not None and buf.kind is not BufferKind.SERVER:
                last = buf.entries[-1].seq if buf.entries else None
                self.state.insert_history(buf, self._entries(buf, batch), last)
                self.state.history_events(buf, batch.messages)
            return []
        del self._requests[request.key]
        buf = self.state.buffers.get(request.key)
        if buf is None:
            return []  # closed meanwhile
        received = len(batch.chat_messages)
        result = self.state.insert_history(buf, self._entries(buf, batch), request.after_seq)
        self.state.history_events(buf, batch.messages)
        self.state.dirty_entries.add(buf.key)
        full_page = received >= request.limit
        if request.kind is Kind.AROUND:
            self._set(buf, HistoryState.MORE)
            if result.added and not result.duplicates and result.last_seq is not None:
                self._gap_note(buf, result.last_seq, AROUND_GAP_TEXT)
            return []
        if request.kind is not Kind.AFTER:
            self._set(buf, HistoryState.MORE if full_page else HistoryState.COMPLETE)
            return []
        if not full_page or result.duplicates:
            return []  # caught up: the gap is filled
        if request.pages >= GAP_FILL_MAX_PAGES:
            self._gap_note(buf, result.last_seq, "Some messages missed while away were not loaded")
            return []
        last = next(
            (m.tags["msgid"] for m in reversed(batch.chat_messages) if "msgid" in m.tags), None
        )
        if last is None:
            return []
        after = result.last_seq if result.last_seq is not None else request.after_seq
        return self._send(buf, Kind.AFTER, f"msgid={last}", after, pages=request.pages + 1)

    def targets(self, batch: Batch) -> None:
        """``CHATHISTORY TARGETS`` answered: open windows for private conversations we
        don't have (the session then fetches their history, as for any new window).

        The server names a conversation by the nicks its lines were sent under: after
        bob became bobby it still lists ``bob`` for the lines before. Those are in the
        window we renamed to bobby, so a conversation whose last line is no newer than
        the nick change opens nothing; one that went on later (someone else took the
        nick) does.
        """
        state = self.state
        for msg in batch.messages:
            if msg.command != "CHATHISTORY" or msg.param(0) != "TARGETS":
                continue
            name = msg.param(1)
            if not name or state.is_channel(name) or state.is_mine(name):
                continue
            if state.buffer(name) is not None:
                continue
            # the time of its latest line, bare or as a selector (servers differ)
            latest = parse_time({"time": msg.param(2).removeprefix("timestamp=")})
            if state.renamed_since(name, latest):
                continue
            state.open(name, BufferKind.QUERY)

    def failed(self, msg: Message, label: str | None = None) -> list[Message] | None:
        """``FAIL CHATHISTORY ...``: retry by timestamp, or give up on that buffer.

        None when the FAIL is not about one of our requests (show it as it is).
        """
        request = self._find(label or msg.tags.get("label"), msg.params[2:-1])
        if request is None:
            return None
        del self._requests[request.key]
        buf = self.state.buffers.get(request.key)
        if buf is None:
            return []
        if request.fallback is not None:
            return self._send(buf, request.kind, request.fallback, request.after_seq)
        reason = msg.param(-1)
        if request.kind is Kind.AFTER:
            self._gap_note(buf, request.after_seq, f"Could not load missed messages: {reason}")
        else:
            self._set(buf, HistoryState.UNAVAILABLE)
            self.state.info(f"History of {buf.name} is unavailable: {reason}", buf.key)
        return []

    def expire(self) -> None:
        """Give up on requests past their deadline (call now and then)."""
        now = self.clock()
        for key, request in list(self._requests.items()):
            if now < request.deadline:
                continue
            del self._requests[key]
            self._late.add(key)
            buf = self.state.buffers.get(key)
            if buf is None:
                continue
            if buf.history is HistoryState.LOADING:
                self._set(buf, HistoryState.MORE)
            self.state.info(
                f"No answer to the history request for {buf.name} "
                f"within {self.timeout:.0f} s; scroll up to try again",
                buf.key,
                error=True,
            )

    # --- helpers ------------------------------------------------------------------------------

    def _catch_up(self, buf: Buffer, newest: Entry | None, after: int | None) -> list[Message]:
        """Lines after ``newest`` (the gap), or the latest page when we have none."""
        if newest is None:
            self._set(buf, HistoryState.LOADING)
            return self._send(buf, Kind.LATEST, "*", after)
        stamp = timestamp_selector(newest.time - _MS)
        selector = self._msgid_selector(newest) or stamp
        return self._send(
            buf, Kind.AFTER, selector, after, fallback=stamp if selector != stamp else None
        )

    def _msgid_selector(self, entry: Entry) -> str | None:
        types = self.state.msgreftypes
        if entry.msgid and (not types or "msgid" in types):
            return f"msgid={entry.msgid}"
        return None

    def _send(
        self,
        buf: Buffer,
        kind: Kind,
        selector: str,
        after_seq: int | None,
        *,
        fallback: str | None = None,
        pages: int = 1,
    ) -> list[Message]:
        request = _Request(
            buf.key,
            buf.name,
            kind,
            selector,
            self.limit,
            after_seq,
            f"{LABEL_PREFIX}{next(self._labels)}",
            self.clock() + self.timeout,
            fallback,
            pages,
        )
        self._requests[buf.key] = request
        return [request.message(self.labels)]

    def _find(self, label: str | None, names: tuple[str, ...]) -> _Request | None:
        """The request a reply belongs to: by label, else by a target it names."""
        if label is not None:
            found = next((r for r in self._requests.values() if r.label == label), None)
            if found is not None or self.labels:
                return found
        for name in names:
            request = self._requests.get(casefold(name))
            if request is not None:
                return request
        return None

    def _entries(self, buf: Buffer, batch: Batch) -> list[Entry]:
        entries = (self.state.history_entry(buf, m) for m in batch.chat_messages)
        return [e for e in entries if e is not None]

    def _set(self, buf: Buffer, history: HistoryState) -> None:
        if buf.history is not history:
            buf.set_history(history)
            self.state.dirty_entries.add(buf.key)

    def _gap_note(self, buf: Buffer, after_seq: int | None, text: str) -> None:
        """An info line where the gap is (after ``after_seq``), not at the end."""
        self.state.note(buf, text, after_seq)
