"""The search panel (Ctrl+F): find a message in the shown window, then jump to it.

Typing searches the window's loaded lines at once; when the server can search
(``soju.im/search``) it is asked too, :data:`~chatroom.client.search.SEARCH_DEBOUNCE`
after the typing stops, and its results are merged in. Up/Down move through the
results, Enter picks one (the screen dismisses with it), Escape closes. Every part of a
result is peer text, shown as plain text.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from chatroom.client.formatting import nick_colour, strip_formatting
from chatroom.client.model import Buffer
from chatroom.client.search import (
    SEARCH_DEBOUNCE,
    SearchAnswer,
    SearchHit,
    merge,
    search_loaded,
)

__all__ = ["SearchScreen"]

_DIM = Style(dim=True)
# A result shows this much of its message (one row).
RESULT_TEXT_CHARS = 200

AskServer = Callable[[str], bool]


class SearchScreen(ModalScreen[SearchHit | None]):
    """Search ``buf``. ``ask_server(text)`` sends a server search (False: it cannot);
    its answers come to :meth:`answered`. Dismisses with the chosen hit, or None."""

    BINDINGS = [
        Binding("escape", "close", "close the search", show=False),
        Binding("down", "move(1)", "next result", show=False, priority=True),
        Binding("up", "move(-1)", "previous result", show=False, priority=True),
    ]

    def __init__(self, buf: Buffer, ask_server: AskServer, *, can_ask: bool) -> None:
        super().__init__()
        self.buf = buf
        self.ask_server = ask_server
        self.can_ask = can_ask
        self.text = ""
        self.hits: list[SearchHit] = []
        self._loaded: list[SearchHit] = []
        self._found: list[SearchHit] = []
        self._waiting = False
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="search-dialog"):
            yield Label(Text("Search " + strip_formatting(self.buf.name), Style(bold=True)))
            yield Input(placeholder="words to find", id="search-input")
            yield OptionList(id="search-results")
            yield Label("", id="search-status", markup=False)

    def on_mount(self) -> None:
        self.query_one("#search-input", Input).focus()
        self._show()

    # --- searching ---------------------------------------------------------------------

    @on(Input.Changed, "#search-input")
    def _changed(self, event: Input.Changed) -> None:
        self.text = event.value
        self._loaded = search_loaded(self.buf, self.text)
        self._found = []
        self._waiting = False
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self.can_ask and self.text.strip():
            self._waiting = True
            self._timer = self.set_timer(SEARCH_DEBOUNCE, self._ask)
        self._show()

    def _ask(self) -> None:
        self._timer = None
        if not self.ask_server(self.text):
            self._waiting = False
            self._show()

    def answered(self, answer: SearchAnswer) -> None:
        """The server's answer to a search (stale ones, for other words, are dropped)."""
        if answer.text.strip() != self.text.strip():
            return
        self._waiting = False
        if answer.error:
            self.notify(f"Server search failed: {answer.error}", severity="warning")
        self._found = list(answer.hits)
        self._show()

    def _show(self) -> None:
        # A server hit already loaded (found by msgid) jumps like a loaded one.
        found = [
            SearchHit(h.time, h.nick, h.text, h.msgid, self._loaded_seq(h.msgid))
            for h in self._found
        ]
        self.hits = merge(self._loaded, found)
        results = self.query_one("#search-results", OptionList)
        results.clear_options()
        results.add_options([Option(self._row(hit)) for hit in self.hits])
        if self.hits:
            results.highlighted = 0
        status = f"{len(self.hits)} found" if self.text.strip() else "Type to search"
        if self._waiting:
            status += "; asking the server…"
        elif not self.can_ask:
            status += " in the loaded messages"
        status += "  (↑/↓, Enter jumps, Esc closes)"
        self.query_one("#search-status", Label).update(Text(status, _DIM))

    def _loaded_seq(self, msgid: str) -> int | None:
        index = self.buf.find(msgid)
        return self.buf.entries[index].seq if index is not None else None

    @staticmethod
    def _row(hit: SearchHit) -> Text:
        row = Text(no_wrap=True, overflow="ellipsis", end="")
        row.append(hit.time.astimezone().strftime("%Y-%m-%d %H:%M "), _DIM)
        nick = strip_formatting(hit.nick)
        row.append(nick, Style(color=nick_colour(nick), bold=True))
        row.append(": ")
        row.append(strip_formatting(hit.text)[:RESULT_TEXT_CHARS])
        if hit.seq is None:
            row.append("  (older)", _DIM)
        return row

    # --- keys ----------------------------------------------------------------------------

    def action_move(self, step: int) -> None:
        """Up/Down: the previous/next result (typing stays in the input)."""
        results = self.query_one("#search-results", OptionList)
        if step > 0:
            results.action_cursor_down()
        else:
            results.action_cursor_up()

    @on(Input.Submitted, "#search-input")
    def _submitted(self) -> None:
        self._pick(self.query_one("#search-results", OptionList).highlighted)

    @on(OptionList.OptionSelected, "#search-results")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self._pick(event.option_index)

    def _pick(self, index: int | None) -> None:
        if index is not None and 0 <= index < len(self.hits):
            self.dismiss(self.hits[index])
        else:
            self.app.bell()

    def action_close(self) -> None:
        """Escape."""
        self.dismiss(None)
