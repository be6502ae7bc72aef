"""The server's running counters, read by /metrics (web/metrics.py).

Plain ints, so that counting costs the hot path one attribute increment and no lock.
That is only safe when each counter has one writer at a time (``+=`` is a read and a
write, and two threads interleaving them lose updates), so each says who writes it:

- ``messages``: the thread relaying a message, while it holds ``Registry.lock``, which
  it holds anyway to fix the message's place among the room's lines (commands/messages.py,
  commands/multiline.py). Neither the writer nor the store thread can tell a chat
  message from the other lines they carry, and the store thread exists only with history.
- ``deliveries`` and ``sendq_drops``: the writer thread (outbox.py), the one thread that
  hands lines to sockets.
- ``flood_kills``: connection threads, many of them; rare, so behind a lock of its own.

Readers (the HTTP threads) only read: reading an int attribute is atomic.
"""

from __future__ import annotations

import threading
import time


class Stats:
    """Counters since the server started; see the module docstring for who writes each."""

    __slots__ = ("_lock", "deliveries", "flood_kills", "messages", "sendq_drops", "started")

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.messages = 0  # PRIVMSG/NOTICE/TAGMSG accepted for relay (per target)
        self.deliveries = 0  # lines the writer passed to client sockets
        self.sendq_drops = 0  # connections ended for SendQ exceeded
        self.flood_kills = 0  # connections ended for Excess Flood
        self._lock = threading.Lock()

    def flood_kill(self) -> None:
        """One more Excess Flood (any thread)."""
        with self._lock:
            self.flood_kills += 1

    @property
    def uptime(self) -> float:
        """Seconds since the server was made."""
        return time.monotonic() - self.started
