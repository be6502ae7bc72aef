"""Bounded per-client send queues, drained by one writer thread for all sockets.

Why one writer: a sender must never block on a receiver, and a thread per client
for writing measured 2-4x slower than one ``selectors`` loop (DESIGN.md). Any
thread may call :meth:`Outbox.send`; it appends to a bounded buffer and wakes the
writer only when that buffer goes from empty to non-empty. The writer coalesces
everything queued for a socket into as few ``send`` calls as the kernel allows.

Sockets stay in blocking mode for their reader thread; the writer passes
``MSG_DONTWAIT`` so its sends never block. The writer also owns closing: it
flushes, half-closes, and closes the descriptor only once the reader is done, so
no descriptor is closed under a thread still using it.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import threading
import time
from collections import deque

log = logging.getLogger(__name__)

# How many bytes one send() may take at most: more than any socket buffer holds.
_MAX_SEND = 1 << 20


class Outbox:
    """One client's bounded output queue (the SendQ). Thread-safe; never blocks."""

    __slots__ = (
        "_chunks",
        "_lock",
        "_pending",
        "_scheduled",
        "_writer",
        "close_reason",
        "closing",
        "deadline",
        "fin_sent",
        "limit",
        "reader_done",
        "registered",
        "size",
        "sock",
    )

    def __init__(self, sock: socket.socket, writer: Writer, limit: int) -> None:
        self.sock = sock
        self.limit = limit
        self._writer = writer
        self._lock = threading.Lock()
        self._chunks: list[bytes] = []
        self._pending = b""  # bytes taken from _chunks that the kernel has not accepted yet
        self.size = 0  # bytes queued in all: len(_pending) + sum(len(_chunks))
        self._scheduled = False  # in the writer's ready queue or waiting for EVENT_WRITE
        self.registered = False  # registered with the writer's selector for EVENT_WRITE
        self.closing = False
        self.close_reason: str | None = None
        self.deadline = 0.0
        self.fin_sent = False
        self.reader_done = False

    def send(self, data: bytes) -> None:
        """Queue ``data``; on SendQ overflow the client is dropped, the caller carries on."""
        with self._lock:
            if self.closing:
                return
            if self.size + len(data) > self.limit:
                self._overflow()
                return
            self._chunks.append(data)
            self.size += len(data)
            if self._scheduled:
                return
            self._scheduled = True
        self._writer.schedule(self)

    def _overflow(self) -> None:
        # lock held: drop what is queued; the kernel buffer is full, so the ERROR
        # line is a best effort.
        # (_pending belongs to the writer, which may be sending it right now)
        self._chunks = [b"ERROR :Closing Link: (SendQ exceeded)\r\n"]
        self.size = len(self._pending) + len(self._chunks[0])
        self.closing = True
        self.close_reason = "SendQ exceeded"
        self.deadline = time.monotonic()
        if not self._scheduled:
            self._scheduled = True
            self._writer.schedule(self)
        self._writer.track_closing(self)

    def close(self, reason: str, linger: float | None = None) -> None:
        """Flush what is queued (for at most ``linger`` seconds), then end the connection."""
        with self._lock:
            if self.closing:
                return
            self.closing = True
            self.close_reason = reason
            self.deadline = time.monotonic() + (
                self._writer.close_linger if linger is None else linger
            )
            already = self._scheduled
            self._scheduled = True
        if not already:
            self._writer.schedule(self)
        self._writer.track_closing(self)

    def reader_finished(self) -> None:
        """The reader thread no longer touches the socket: the writer may close it."""
        with self._lock:
            self.reader_done = True
            if not self.closing:
                self.closing = True
                self.deadline = time.monotonic() + self._writer.close_linger
            already = self._scheduled
            self._scheduled = True
        if not already:
            self._writer.schedule(self)
        self._writer.track_closing(self)

    # --- writer side (only the writer thread calls these) -------------------------------

    def _take(self) -> bytes:
        # Only the writer touches _pending, so the join happens outside the lock:
        # producers appending to this client never wait for it.
        if self._pending:
            return self._pending
        with self._lock:
            chunks = self._chunks
            self._chunks = []
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._pending = data
        return data

    def _sent(self, n: int) -> bool:
        """Account for ``n`` bytes sent; True when nothing is left to send."""
        if n:
            self._pending = self._pending[n:]
        with self._lock:
            self.size -= n
            if self._pending or self._chunks:
                return False
            if not self.closing:
                self._scheduled = False
            return True


class Writer:
    """The one thread that writes to every client socket; owned by the server."""

    def __init__(self, close_linger: float = 5.0) -> None:
        self.close_linger = close_linger
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._ready: deque[Outbox] = deque()
        self._closing_new: deque[Outbox] = deque()
        self._closing: set[Outbox] = set()
        self._sleeping = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="chatroom-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop, close every socket it still holds, release the selector."""
        self._stop = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout)
        for ob in list(self._closing) + list(self._closing_new):
            self._close_fd(ob)
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def schedule(self, ob: Outbox) -> None:
        self._ready.append(ob)
        if self._sleeping:
            self._wake()

    def track_closing(self, ob: Outbox) -> None:
        self._closing_new.append(ob)
        self._wake()

    def _wake(self) -> None:
        self._sleeping = False
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # pipe full: the writer is certainly going to wake

    # --- the loop ----------------------------------------------------------------------

    def _run(self) -> None:
        select = self._selector.select
        ready = self._ready
        while not self._stop:
            self._sleeping = True
            timeout = 0.0 if ready else (0.2 if self._closing or self._closing_new else None)
            try:
                events = select(timeout)
            except OSError:  # pragma: no cover - a closed fd raced with select
                log.exception("writer select failed")
                events = []
            self._sleeping = False
            for key, _mask in events:
                ob = key.data
                if ob is None:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                else:
                    self._flush(ob)
            while ready:
                ob = ready.popleft()
                if not ob.registered:
                    self._flush(ob)
            if self._closing_new or self._closing:
                self._reap()

    def _flush(self, ob: Outbox) -> None:
        sock = ob.sock
        while True:
            data = ob._take()
            if not data:
                done = ob._sent(0)
                break
            try:
                n = sock.send(data[:_MAX_SEND], socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                # peer gone: drop the output; the reader sees the error and cleans up
                with ob._lock:
                    ob._chunks, ob._pending, ob.size = [], b"", 0
                    ob.closing = True
                    ob.close_reason = ob.close_reason or "Write error"
                    ob.deadline = 0.0
                self._closing.add(ob)
                self._unregister(ob)
                return
            done = ob._sent(n)
            if done or n < len(data):
                break
        if done:
            self._unregister(ob)
        elif not ob.registered:
            try:
                self._selector.register(sock, selectors.EVENT_WRITE, ob)
                ob.registered = True
            except (ValueError, KeyError, OSError):
                log.debug("could not watch a socket for writing", exc_info=True)

    def _unregister(self, ob: Outbox) -> None:
        if ob.registered:
            ob.registered = False
            try:
                self._selector.unregister(ob.sock)
            except (KeyError, ValueError, OSError):
                pass

    def _reap(self) -> None:
        """Move closing connections along: flushed or late -> FIN; reader done -> close."""
        while self._closing_new:
            self._closing.add(self._closing_new.popleft())
        now = time.monotonic()
        for ob in list(self._closing):
            if not ob.fin_sent:
                flushed = ob.size == 0
                if flushed or now >= ob.deadline:
                    ob.fin_sent = True
                    # after a SendQ overflow or a timeout, cut both ways at once so the
                    # reader thread wakes up; otherwise a graceful FIN after the data
                    how = socket.SHUT_WR if flushed else socket.SHUT_RDWR
                    _shutdown(ob.sock, how)
                    ob.deadline = now + self.close_linger
                continue
            if ob.reader_done:
                self._close_fd(ob)
            elif now >= ob.deadline:
                _shutdown(ob.sock, socket.SHUT_RD)  # wakes a reader the peer left hanging
                ob.deadline = now + self.close_linger

    def _close_fd(self, ob: Outbox) -> None:
        self._unregister(ob)
        self._closing.discard(ob)
        try:
            ob.sock.close()
        except OSError:
            pass


def _shutdown(sock: socket.socket, how: int) -> None:
    try:
        sock.shutdown(how)
    except OSError:
        pass
