"""Flood control: a token bucket per connection, with fake lag before disconnection;
and a sliding-window limit on failed logins and account registrations."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque


class FloodGuard:
    """Token bucket with fake lag: a burst, then ``rate`` lines/s; too much owed lag kills.

    ``delay`` says how long to hold the next line; None means the client has
    already sent more than ``max_lag`` seconds' worth and is flooding.
    """

    def __init__(self, burst: int, rate: float, max_lag: float, enabled: bool = True) -> None:
        self.burst, self.rate, self.max_lag, self.enabled = burst, rate, max_lag, enabled
        self.tokens = float(burst)
        self.last: float | None = None

    def delay(self, now: float, queued: int = 1) -> float | None:
        """Seconds to wait before handling the next line, given ``queued`` lines received."""
        if not self.enabled:
            return 0.0
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= 1
        if self.tokens >= 0:
            return 0.0
        wait = -self.tokens / self.rate
        if wait + (queued - 1) / self.rate > self.max_lag:
            return None
        return wait


class LoginLimiter:
    """At most ``limit`` events per key in any ``window`` seconds (failed logins by
    account and by address; account registrations by address).

    Thread-safe. Memory is bounded: at most ``max_keys`` keys are tracked, and the
    oldest are forgotten first (an attacker who cycles through more keys than that
    gains nothing: each key still needs ``limit`` failures to be slowed).
    """

    def __init__(self, limit: int, window: float, max_keys: int = 10_000) -> None:
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait(self, key: str, now: float | None = None) -> float:
        """Seconds until ``key`` may try again (0: now)."""
        if self.limit <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            events = self._events.get(key)
            if not events:
                return 0.0
            while events and now - events[0] >= self.window:
                events.popleft()
            if len(events) < self.limit:
                return 0.0
            return self.window - (now - events[0])

    def record(self, key: str, now: float | None = None) -> None:
        """One more event for ``key``."""
        if self.limit <= 0:
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            events = self._events.get(key)
            if events is None:
                events = self._events[key] = deque(maxlen=self.limit)
                while len(self._events) > self.max_keys:
                    self._events.popitem(last=False)
            else:
                self._events.move_to_end(key)
            events.append(now)
