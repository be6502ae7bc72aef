"""Flood control: a token bucket per connection, with fake lag before disconnection."""

from __future__ import annotations


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
