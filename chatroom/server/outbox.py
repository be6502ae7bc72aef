"""Bounded per-client send queues, filled and drained by one writer thread for all sockets.

Why one writer: a sender must never block on a receiver, and a thread per client
for writing measured 2-4x slower than one ``selectors`` loop (DESIGN.md). Any
thread *posts* output to the writer's inbox (a deque: appends are atomic, no lock);
the writer moves it into per-client buffers in posting order, enforces each
client's SendQ, and sends everything queued for a socket in as few ``send`` calls
as the kernel allows. Because every line for every client goes through the one
inbox in order, a room's members see its events in one order, and a client's own
replies never overtake what was relayed to it before.

A fan-out is one inbox entry (the encoded line and the tuple of recipients), so a
sender's cost does not grow with the room; the writer does the per-member appends.
Producers that run ahead of the writer wait (:meth:`Writer.throttle`), which bounds
the inbox and keeps a fast sender from starving the writer of the GIL.

Sockets stay in blocking mode for their reader thread; the writer passes
``MSG_DONTWAIT`` so its sends never block. The writer also owns closing: it
flushes, half-closes, and closes the descriptor only once the reader is done, so no
descriptor is closed under a thread still using it.

An entry the writer cannot handle (a bug where it was posted) is logged with its
traceback, counted (:attr:`Writer.errors`) and skipped; a client whose buffers it
cannot send is dropped. If the loop itself fails anyway, the writer says so at
CRITICAL and calls ``on_death``: the server then stops rather than stay up and mute.

TLS (tls.py) changes one step: where a flush joins a client's queued lines into the
bytes it sends, a TLS client's lines are encrypted instead (:meth:`TLSStream.seal`,
under the stream's lock, shared with the reader thread), and what is sent is every
record made since, in order. Everything else (SendQ, coalescing, closing) is the same;
a plain client pays one ``is None`` test per flush.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, NamedTuple

from chatroom.server.records import Multicast
from chatroom.server.stats import Stats

if TYPE_CHECKING:
    from chatroom.server.tls import TLSStream

log = logging.getLogger(__name__)

# Inbox entries are NamedTuples, told apart by type: records.Multicast (one line for
# many clients; one line for one client is a multicast to one, with the same bytes
# for every variant), and the two below, which only the writer acts on.


class Close(NamedTuple):
    """Flush what is queued for ``outbox`` (for at most ``linger`` s), then end it."""

    outbox: Outbox
    reason: str
    linger: float | None


class ReaderDone(NamedTuple):
    """``outbox``'s reader thread no longer touches the socket: it may be closed."""

    outbox: Outbox


class Flush(NamedTuple):
    """``outbox`` has TLS records to send that its reader thread made (an alert, such as
    the one refusing a renegotiation): flush it even with no line queued. (It passes
    through the history thread like every entry, which keeps nothing out of order.)"""

    outbox: Outbox


# A Multicast made without its Python-level __new__ (tuple's own, in C): half the cost
# of Multicast(...), for every line posted.
_tuple_new = tuple.__new__

# Producers wait once this many entries are waiting for the writer; it bounds the
# memory held between a sender and the per-client SendQs.
INBOX_HIGH_WATER = 4096
# While busy, the writer polls its sockets for writability once every this many passes.
SELECT_EVERY = 8
# Gathering time before a flush, as a multiple of how long the previous flush took,
# and its ceiling (the most latency coalescing may add). 0.3, not 1: with lines coming
# in the store thread's batches, the longer gathering only added latency, and closed
# loops (ircload rooms) delivered 9-14% less at no saving in CPU per message.
FLUSH_DUTY = 0.3
MAX_FLUSH_DELAY = 0.005
# Recipient tuples at least this long are fanned out by variant group (below that a
# plain loop is cheaper than the grouping); how many groupings the writer caches.
GROUP_MIN = 8
GROUP_CACHE_REFS = 100_000
# At most this many bytes go to one send(); more than any socket buffer takes.
_MAX_SEND = 1 << 20
_SENDQ_ERROR = b"ERROR :Closing Link: (SendQ exceeded)\r\n"
_consume = deque(maxlen=0).extend  # runs an iterator to its end in C


class Outbox:
    """One client's output: the ``Sink`` a Session writes to. Only the writer thread
    touches the buffers; other threads only post to the writer."""

    __slots__ = (
        "_variant",
        "chunks",
        "close_reason",
        "closing",
        "deadline",
        "fin_sent",
        "final",
        "limit",
        "linger",
        "pending",
        "reader_done",
        "registered",
        "sock",
        "tls",
        "writer",
    )

    def __init__(
        self, sock: socket.socket, writer: Writer, limit: int, tls: TLSStream | None = None
    ) -> None:
        self.sock = sock
        self.tls = tls  # None: plain text
        self.writer = writer
        self.limit = limit  # the SendQ: what the kernel has not taken, after a flush
        self._variant = 0
        # Lines waiting to be sent. The same list object for the connection's whole
        # life: rooms keep references to it, so a fan-out appends without a lookup.
        self.chunks: list[bytes] = []
        self.pending = b""  # joined from chunks, not yet accepted by the kernel
        self.final: int | None = None  # once closing: how many chunks may still go
        self.registered = False  # watched for EVENT_WRITE
        self.closing = False
        self.close_reason: str | None = None
        self.deadline = 0.0
        self.linger = writer.close_linger  # for each closing phase: flush, then the peer's FIN
        self.fin_sent = False
        self.reader_done = False

    @property
    def variant(self) -> int:
        """Which encoding of a relayed line this client takes (its capabilities)."""
        return self._variant

    @variant.setter
    def variant(self, value: int) -> None:
        self._variant = value
        self.writer.variants_changed()

    @property
    def queued(self) -> int:
        """Bytes waiting for this client (writer thread only)."""
        return len(self.pending) + sum(map(len, self.chunks))

    def send(self, data: bytes) -> None:
        """Queue ``data`` for this client (any thread; never blocks)."""
        self.writer.post(_tuple_new(Multicast, ((self,), (data,) * 6, None, None)))

    def close(self, reason: str, linger: float | None = None) -> None:
        """Flush what is queued (for at most ``linger`` seconds), then end the connection."""
        self.writer.post(Close(self, reason, linger))

    def reader_finished(self) -> None:
        """The reader thread no longer touches the socket: the writer may close it."""
        self.writer.post(ReaderDone(self))

    def records_made(self) -> None:
        """The reader thread made TLS records: the writer must send them (in order)."""
        self.writer.post(Flush(self))


class Inbox:
    """A deque that any thread posts to and one thread drains, with backpressure:
    producers wait (:meth:`throttle`) while it is far behind. Shared by the writer
    and the history store thread."""

    def __init__(self, on_death: Callable[[str], None] | None = None) -> None:
        self._inbox: deque[tuple] = deque()  # Multicast, Close, ReaderDone (store: SaveRoom)
        self._stop = False
        self._room = threading.Condition()
        self._waiting = 0  # producers blocked in throttle()
        self._sleeping = False  # the consumer is blocked: a post must wake it
        # called (from the dying thread) if the consuming loop stops on an exception
        self.on_death = on_death
        self.dead = False

    def post(self, entry: tuple) -> None:
        self._inbox.append(entry)
        if self._sleeping:
            self._wake()

    def post_many(self, entries: Sequence[tuple]) -> None:
        self._inbox.extend(entries)
        if self._sleeping:
            self._wake()

    def multicast(
        self,
        variants: Sequence[bytes],
        outboxes: Sequence[Outbox],
        exclude: object = None,
        record: object = None,
    ) -> None:
        """Send one line to many clients: each gets ``variants[outbox.variant]``.

        ``outboxes`` must not change afterwards (pass a tuple); ``exclude`` is skipped;
        ``record`` is the history row, for the store thread.
        """
        self._inbox.append(_tuple_new(Multicast, (outboxes, variants, exclude, record)))
        if self._sleeping:
            self._wake()

    def _wake(self) -> None:
        """Wake the consuming thread (each consumer has its own way)."""
        raise NotImplementedError

    def throttle(self, timeout: float = 1.0) -> None:
        """Block a producer while the consumer is far behind (call holding no lock)."""
        if len(self._inbox) <= INBOX_HIGH_WATER or self._stop:
            return
        with self._room:
            self._waiting += 1
            try:
                self._room.wait_for(
                    lambda: len(self._inbox) <= INBOX_HIGH_WATER // 2 or self._stop, timeout
                )
            finally:
                self._waiting -= 1

    def _release_producers(self) -> None:
        """Consumer side: wake throttled producers (cheap when there are none)."""
        if self._waiting or self._stop:
            with self._room:
                self._room.notify_all()

    def _died(self, stage: str) -> None:
        """The consuming loop raised (call from its ``except``): nothing posted here
        moves any more. Say so loudly, release whoever waits, and tell the owner."""
        self.dead = True
        self._stop = True  # producers must not wait for a consumer that is gone
        log.critical(
            "%s stopped on an unexpected error: nothing is delivered any more",
            stage,
            exc_info=True,
        )
        with self._room:
            self._room.notify_all()
        if self.on_death is not None:
            try:
                self.on_death(stage)
            except Exception:
                log.exception("handling the end of %s failed", stage)

    @property
    def backlog(self) -> int:
        return len(self._inbox)

    def variants_changed(self) -> None:
        """A client negotiated other capabilities (see Writer)."""


class Writer(Inbox):
    """The one thread that writes to every client socket; owned by the server."""

    def __init__(
        self,
        close_linger: float = 5.0,
        flush_bytes: int = 1 << 16,
        *,
        on_death: Callable[[str], None] | None = None,
        stats: Stats | None = None,
    ) -> None:
        super().__init__(on_death)
        self.close_linger = close_linger
        self.errors = 0  # entries skipped and clients dropped on an internal error
        # deliveries and SendQ drops, counted here: this thread alone writes them
        self.stats = stats if stats is not None else Stats()
        # most bytes of posted lines taken in before a flush: at most what one client
        # may receive between two flushes, so keep it well under the smallest SendQ
        self.flush_bytes = flush_bytes
        self._since_flush = 0
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._closing: set[Outbox] = set()
        self._dirty: set[Outbox] = set()  # have lines to send (or are writable again)
        # recipients tuple -> its members' chunk lists grouped by variant (see _groups)
        self._groups: dict[int, tuple] = {}
        self._group_refs = 0  # recipients referenced by the cached groupings
        self._variant_epoch = 0
        self._thread = threading.Thread(target=self._run, name="chatroom-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop, close every socket it still holds, release the selector."""
        self._stop = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._release_producers()
        while self._inbox:  # late closes and finished readers: their sockets close below
            self._since_flush = 0
            self._drain_inbox()
        for ob in list(self._closing):
            self._close_fd(ob)
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _wake(self) -> None:
        self._sleeping = False
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass  # pipe full: the writer is certainly going to wake

    # --- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException:
            self._died("the writer thread")

    def _loop(self) -> None:
        select = self._selector.select
        inbox = self._inbox
        monotonic = time.monotonic
        passes = 0
        next_flush = 0.0
        while not self._stop:
            # Every select() releases the GIL, and under load the writer then queues
            # behind the reader threads to get it back: so block in select only when
            # there is nothing to take, and while busy poll sockets only now and then.
            events: list = []
            if not inbox:
                if self._dirty:
                    # Waiting to flush: the wait is short and bounded, so new posts need
                    # not wake us (each wake is a pipe write and a GIL hand-off).
                    events = self._select(select, max(0.0, next_flush - monotonic()))
                else:
                    self._sleeping = True
                    if not inbox:
                        events = self._select(select, 0.2 if self._closing else None)
                    self._sleeping = False
            elif self._selector_busy(passes):
                events = self._select(select, 0.0)
            passes += 1
            for key, _mask in events:
                ob = key.data
                if ob is None:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                else:
                    self._dirty.add(ob)
            if inbox:
                self._drain_inbox()
            # Coalesce in proportion to load: after a flush that took D seconds, gather
            # for FLUSH_DUTY * D before the next. A lone line goes out at once; under
            # load each client's lines leave in few send() calls, which is what the
            # kernel charges for (~5 us each on loopback, whatever the size). But no
            # client takes in more than flush_bytes between two chances to send: its
            # SendQ is judged after a flush, and a healthy reader must not look stuck.
            if self._dirty and (monotonic() >= next_flush or self._since_flush >= self.flush_bytes):
                self._since_flush = 0
                started = monotonic()
                self._flush_all()
                ended = monotonic()
                next_flush = ended + min((ended - started) * FLUSH_DUTY, MAX_FLUSH_DELAY)
            elif not self._dirty:
                self._since_flush = 0  # lines for nobody (all excluded): nothing waits
            if self._closing:
                self._reap()
            self._release_producers()

    def _selector_busy(self, passes: int) -> bool:
        """While busy, poll for writable sockets (and the wake pipe) now and then."""
        return passes % SELECT_EVERY == 0 or bool(self._closing)

    def _select(self, select, timeout: float | None) -> list:
        try:
            return select(timeout)
        except OSError:  # pragma: no cover - a closed fd raced with select
            log.exception("writer select failed")
            return []

    def variants_changed(self) -> None:
        self._variant_epoch += 1  # the cached groupings are stale

    def _groups_of(self, outboxes: tuple) -> tuple:
        """``outboxes``' chunk lists grouped by variant, cached per recipients tuple
        (a room's tuple lives until its membership changes)."""
        hit = self._groups.get(id(outboxes))
        if hit is not None and hit[0] is outboxes and hit[1] == self._variant_epoch:
            return hit[2]
        by_variant: dict[int, list[list[bytes]]] = {}
        for ob in outboxes:
            by_variant.setdefault(ob.variant, []).append(ob.chunks)
        groups = tuple((v, tuple(lists)) for v, lists in by_variant.items())
        # Bounded by references held, not entries: every join to a big room makes a
        # new tuple, and a count limit alone could pin thousands of them.
        self._group_refs += len(outboxes)
        if self._group_refs > GROUP_CACHE_REFS:
            self._groups.clear()
            self._group_refs = len(outboxes)
        # the tuple is kept in the entry, so its id() cannot be reused while cached
        self._groups[id(outboxes)] = (outboxes, self._variant_epoch, groups)
        return groups

    def _drain_inbox(self) -> None:
        """Move posted entries into their clients' buffers, in posting order, until the
        inbox is empty or ``flush_bytes`` of lines have come in since the last flush.
        An entry that raises is skipped (logged, counted); the next ones still go."""
        while True:
            try:
                self._drain_entries()
                return
            except Exception:
                self.errors += 1
                log.exception("writer: skipped an entry it could not deliver")

    def _drain_entries(self) -> None:
        """The work of :meth:`_drain_inbox`; raises on a bad entry, which is then gone.

        A fan-out appends the line to every member's list with ``map`` (a loop in C):
        per recipient the writer does no Python work at all. The SendQ is judged when
        flushing, after the kernel has taken what it will."""
        inbox, dirty = self._inbox, self._dirty
        popleft = inbox.popleft
        append = list.append
        consume = _consume
        budget = self.flush_bytes
        multicast = Multicast
        cache = self._groups
        # the recipient tuples fanned out to, each once: they join `dirty` at the end,
        # one set update per room rather than one per line
        touched: dict[int, tuple] = {}
        try:
            while inbox and self._since_flush < budget:
                entry = popleft()
                kind = type(entry)
                if kind is multicast:  # indexed: a tuple subclass unpacks the slow way
                    outboxes, variants, exclude = entry[0], entry[1], entry[2]
                    self._since_flush += len(variants[-1])
                    # an empty encoding: nothing for that variant (a TAGMSG for those
                    # without message-tags)
                    if len(outboxes) < GROUP_MIN:
                        for ob in outboxes:
                            if ob is not exclude and (data := variants[ob.variant]):
                                ob.chunks.append(data)
                                dirty.add(ob)
                        continue
                    hit = cache.get(id(outboxes))
                    # (_groups_of, its cache hit inline: this runs for every line)
                    if hit is not None and hit[0] is outboxes and hit[1] == self._variant_epoch:
                        groups = hit[2]
                    else:
                        groups = self._groups_of(outboxes)
                    for variant, lists in groups:
                        if data := variants[variant]:
                            consume(map(append, lists, repeat(data, len(lists))))
                    if exclude is not None:
                        mine = exclude.chunks  # took it with everyone: take it back
                        data = variants[exclude.variant]
                        if data and mine and mine[-1] is data:
                            mine.pop()
                    touched[id(outboxes)] = outboxes
                    continue
                self._control(entry, kind)
        finally:
            for outboxes in touched.values():
                dirty.update(outboxes)

    def _control(self, entry: tuple, kind: type) -> None:
        """An inbox entry other than a line: a close, a finished reader, TLS records."""
        if kind is Close:
            ob, reason, linger = entry
            if not ob.closing:
                ob.closing = True
                ob.close_reason = reason
                ob.final = len(ob.chunks)  # what was queued before goes; nothing after
                if linger is not None:
                    ob.linger = linger
                ob.deadline = time.monotonic() + ob.linger
                self._closing.add(ob)
                self._dirty.add(ob)
        elif kind is ReaderDone:
            ob = entry.outbox
            ob.reader_done = True
            if not ob.closing:
                ob.closing = True
                ob.final = len(ob.chunks)
                ob.deadline = time.monotonic() + self.close_linger
            self._closing.add(ob)
        elif kind is Flush:
            self._dirty.add(entry.outbox)

    def _overflow(self, ob: Outbox) -> None:
        """SendQ exceeded: drop what is queued, try to say why, cut the connection.
        (A TLS client keeps its ``pending`` records: a stream cut inside a record could
        not carry the ERROR after it.)"""
        self.stats.sendq_drops += 1
        ob.chunks.clear()
        ob.chunks.append(_SENDQ_ERROR)
        ob.final = 1
        ob.closing = True
        ob.close_reason = "SendQ exceeded"
        ob.deadline = 0.0  # no lingering: the next reap cuts it
        self._closing.add(ob)

    def _flush_all(self) -> None:
        """Flush every client with something to send. The usual case (plain text, not
        closing, nothing left over, all of it taken by the kernel at once) is done
        inline: a method call less per client and flush. Anything else goes to
        :meth:`_flush`, which also takes over what the kernel did not take."""
        dirty, self._dirty = self._dirty, set()
        stats = self.stats
        flags = socket.MSG_DONTWAIT
        for ob in dirty:
            try:
                chunks = ob.chunks
                if ob.pending or ob.final is not None or ob.tls is not None or not chunks:
                    self._flush(ob)
                    continue
                # counted before the send, as _flush does: whoever has read a line
                # and then looks at /metrics finds it counted
                stats.deliveries += len(chunks)
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                try:
                    n = ob.sock.send(data, flags) if len(data) <= _MAX_SEND else 0
                except OSError:
                    n = 0  # full, or gone: _flush sends again, and learns which
                if n == len(data):
                    if ob.registered:
                        self._unregister(ob)
                    continue
                ob.pending = data[n:]  # what the kernel did not take: _flush goes on
                self._flush(ob)
            except Exception:
                self.errors += 1
                log.exception("writer: cannot send to a client; dropping it")
                self._abandon(ob)

    def _abandon(self, ob: Outbox) -> None:
        """Give up on a client after an internal error: cut it at the next reap."""
        try:
            ob.pending = b""
            ob.chunks.clear()
            ob.closing = True
            ob.close_reason = ob.close_reason or "Internal error"
            ob.final = 0
            ob.deadline = 0.0
            self._closing.add(ob)
        except Exception:
            log.exception("writer: cannot drop a client")

    def _flush(self, ob: Outbox) -> None:
        """Send as much of ``ob``'s queue as the kernel takes without blocking; what it
        leaves beyond the SendQ limit drops the client."""
        chunks = ob.chunks
        if ob.fin_sent:
            chunks.clear()  # finished: a room may still be appending to it
            return
        if ob.final is not None:
            del chunks[ob.final :]  # nothing after the last line before a close
        sock, tls = ob.sock, ob.tls
        stats = self.stats
        while True:
            data = ob.pending
            if not data:
                stats.deliveries += len(chunks)  # once per flush, not per line
                if tls is not None:
                    data = tls.seal(chunks)  # the lines encrypted, after any other records
                    if not data:
                        break
                elif not chunks:
                    break
                else:
                    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                    chunks.clear()
                if ob.final is not None:
                    ob.final = 0
            try:
                n = sock.send(data[:_MAX_SEND], socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                # the peer is gone: drop its output; its reader sees the error too
                ob.pending = b""
                chunks.clear()
                if not ob.closing:
                    ob.closing = True
                    ob.close_reason = "Write error"
                    ob.final = 0
                    ob.deadline = 0.0
                self._closing.add(ob)
                self._unregister(ob)
                return
            ob.pending = data[n:] if n < len(data) else b""
            if ob.pending:
                if ob.close_reason != "SendQ exceeded" and ob.queued > ob.limit:
                    if tls is None:
                        ob.pending = b""
                    self._overflow(ob)
                    continue  # one try to get the ERROR line out
                if not ob.registered:
                    try:
                        self._selector.register(sock, selectors.EVENT_WRITE, ob)
                        ob.registered = True
                    except (ValueError, KeyError, OSError):
                        log.debug("could not watch a socket for writing", exc_info=True)
                return
        self._unregister(ob)

    def _unregister(self, ob: Outbox) -> None:
        if ob.registered:
            ob.registered = False
            try:
                self._selector.unregister(ob.sock)
            except (KeyError, ValueError, OSError):
                pass

    def _reap(self) -> None:
        """Move closing connections along: flushed or late -> FIN; reader done -> close."""
        now = time.monotonic()
        for ob in list(self._closing):
            try:
                self._reap_one(ob, now)
            except Exception:
                # cut it both ways (its reader wakes up, and its READER_DONE brings it
                # back here to be closed) rather than fail on it at every pass
                self.errors += 1
                log.exception("writer: cannot close a connection; cutting it")
                self._closing.discard(ob)
                try:
                    ob.fin_sent = True
                    _shutdown(ob.sock, socket.SHUT_RDWR)
                except Exception:
                    log.exception("writer: cannot cut a connection")

    def _reap_one(self, ob: Outbox, now: float) -> None:
        if not ob.fin_sent:
            flushed = not ob.pending and not ob.chunks[: ob.final]
            if not (flushed or now >= ob.deadline):
                return
            ob.fin_sent = True
            if flushed and ob.tls is not None:
                _goodbye(ob)
            # a graceful FIN after the last line; after a SendQ overflow or a
            # timeout, cut both ways at once so the reader thread wakes up
            _shutdown(ob.sock, socket.SHUT_WR if flushed else socket.SHUT_RDWR)
            ob.deadline = now + ob.linger
            ob.pending = b""
            ob.chunks.clear()
            self._unregister(ob)
        if ob.reader_done:
            self._close_fd(ob)
        elif now >= ob.deadline:
            _shutdown(ob.sock, socket.SHUT_RD)  # wakes a reader the peer left hanging
            ob.deadline = now + ob.linger

    def _close_fd(self, ob: Outbox) -> None:
        self._unregister(ob)
        self._closing.discard(ob)
        try:
            ob.sock.close()
        except OSError:
            pass


def _goodbye(ob: Outbox) -> None:
    """TLS close_notify before the FIN, if the kernel takes it at once."""
    data = ob.tls.goodbye()  # type: ignore[union-attr]
    if data:
        try:
            ob.sock.send(data, socket.MSG_DONTWAIT)
        except OSError:
            pass


def _shutdown(sock: socket.socket, how: int) -> None:
    try:
        sock.shutdown(how)
    except OSError:
        pass
