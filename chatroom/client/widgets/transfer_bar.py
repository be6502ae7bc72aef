"""Above the input while a file goes up or comes down: its name, a progress bar, the bytes."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from chatroom.client.formatting import strip_formatting
from chatroom.client.transfer import human_size

__all__ = ["REDRAW_INTERVAL", "TransferBar"]

# The bar is redrawn at most this often: a loopback download reports thousands of
# chunks a second, and the eye needs ten.
REDRAW_INTERVAL = 0.1


class TransferBar(Horizontal):
    """Hidden until :meth:`start`; :meth:`show_progress` moves it, :meth:`stop` hides it."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.what = ""  # "Uploading cat.png": what tests and users read
        self.done = 0
        self.total: int | None = None
        self._shown_at = 0.0

    def compose(self) -> ComposeResult:
        yield Label(id="transfer-what", markup=False)
        yield ProgressBar(id="transfer-bar", show_eta=False)
        yield Label(id="transfer-bytes", markup=False)

    def on_mount(self) -> None:
        self.display = False

    def start(self, verb: str, name: str, total: int | None) -> None:
        """Show the bar for ``verb`` (Uploading, Downloading) of the file ``name``."""
        self.what = f"{verb} {strip_formatting(name)}"
        self.done, self.total = 0, total
        self.query_one("#transfer-what", Label).update(Text(self.what + "  (Esc cancels)"))
        self.query_one(ProgressBar).update(total=total, progress=0)
        self._shown_at = 0.0
        self._show_bytes()
        self.display = True

    def show_progress(self, done: int, total: int | None) -> None:
        """``done`` bytes of ``total`` moved (redrawn at most every REDRAW_INTERVAL)."""
        self.done, self.total = done, total
        now = time.monotonic()
        if now - self._shown_at < REDRAW_INTERVAL and done != total:
            return
        self._shown_at = now
        self.query_one(ProgressBar).update(total=total, progress=done)
        self._show_bytes()

    def _show_bytes(self) -> None:
        text = human_size(self.done)
        if self.total is not None:
            text += f" of {human_size(self.total)}"
        self.query_one("#transfer-bytes", Label).update(Text(text))

    def stop(self) -> None:
        """The transfer is over: hide the bar."""
        self.what = ""
        self.display = False
