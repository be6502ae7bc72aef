"""The input line: history on up/down, Tab completion, multi-line paste.

Up in an empty input does not recall a line: it asks to select the newest message
(:class:`ChatInput.SelectMessage`); Ctrl+Up recalls from an empty input too.

Pasting one line that is the path of an existing file (``/...``, ``~/...`` or a
``file://`` address, as file managers copy them) asks to upload it
(:class:`ChatInput.PastedFile`) instead of pasting it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input

__all__ = ["HISTORY_SIZE", "ChatInput", "Completion", "pasted_file"]

# Lines remembered for up/down (per session, across rooms, like irssi).
HISTORY_SIZE = 500
# Lines one message may have when typed with Shift+Enter (servers take about 40-100).
MAX_DRAFT_LINES = 100
# Up and Down share a row in the help.
_HISTORY = Binding.Group("previous / next line you sent (Up in an empty input: pick a message)")
_RECALL = Binding.Group("previous / next line you sent, from an empty input too")


def pasted_file(text: str) -> Path | None:
    """The existing regular file a pasted line names, if it names one: an absolute
    path, ``~/...``, or a ``file://`` address (quotes around it are dropped).

    >>> pasted_file("/etc/passwd") == Path("/etc/passwd"), pasted_file("etc/passwd")
    (True, None)
    >>> pasted_file("'/etc'"), pasted_file("hello /etc/passwd")
    (None, None)
    """
    line = text.strip()
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "'\"":
        line = line[1:-1]
    if line.startswith("file://"):
        parts = urlsplit(line)
        if parts.netloc not in ("", "localhost"):
            return None
        line = unquote(parts.path)
    if not line.startswith(("/", "~/")) or "\0" in line or "\n" in line:
        return None
    path = Path(line).expanduser()
    try:
        return path if os.path.isfile(path) else None
    except (OSError, ValueError):
        return None


@dataclass
class Completion:
    """An in-progress Tab cycle: which word is being completed and the choices."""

    before: str  # text before the word
    after: str  # text after the cursor
    choices: list[str]
    index: int = 0


# (word, at_line_start) -> candidates, best first
Completer = Callable[[str, bool], list[str]]


class ChatInput(Input):
    """An Input that remembers sent lines, completes with Tab and accepts pasted lines."""

    # Input's own keys (editing) still apply; these are the ones the help lists.
    BINDINGS = [
        Binding("enter", "submit", "send the line", show=False),
        Binding("up", "history(-1)", "previous line you sent", show=False, group=_HISTORY),
        Binding("down", "history(1)", "next line you sent", show=False, group=_HISTORY),
        Binding("ctrl+up", "history(-1, True)", "previous line", show=False, group=_RECALL),
        Binding("ctrl+down", "history(1, True)", "next line", show=False, group=_RECALL),
        Binding(
            "tab", "complete", "complete a nick, /command or #room (again: next choice)", show=False
        ),
        Binding("shift+enter,ctrl+j", "newline", "new line in the message", show=False),
    ]

    @dataclass
    class PastedLines(Message):
        """Several lines were pasted; the screen sends them (after asking, if many)."""

        input: ChatInput
        lines: list[str]
        typed: bool = False  # written with Shift+Enter (not pasted): no need to ask

    @dataclass
    class DraftLinesChanged(Message):
        """The lines written above the input (Shift+Enter) changed: show them."""

        input: ChatInput
        lines: list[str]

    @dataclass
    class SelectMessage(Message):
        """Up in an empty input: select the newest message of the log."""

    @dataclass
    class PastedFile(Message):
        """One line naming an existing file was pasted: the screen offers to upload it,
        and pastes ``text`` after all (:meth:`ChatInput.paste_text`) if not."""

        input: ChatInput
        text: str
        path: Path

    def __init__(self, *, placeholder: str = "", id: str | None = None) -> None:
        super().__init__(placeholder=placeholder, id=id, select_on_focus=False)
        self.history: list[str] = []
        self._history_index = 0
        self._draft = ""
        self.completer: Completer | None = None
        self._completion: Completion | None = None
        self._completing = False
        # Lines of a multiline message written so far (Shift+Enter), above this one.
        self.draft_lines: list[str] = []

    # --- history ------------------------------------------------------------------------

    def remember(self, line: str) -> None:
        """Add a sent line to the history (not twice in a row)."""
        if line and (not self.history or self.history[-1] != line):
            self.history.append(line)
            del self.history[:-HISTORY_SIZE]
        self._history_index = len(self.history)
        self._draft = ""

    def action_history(self, step: int, recall: bool = False) -> None:
        """Walk the history; walking past the newest line restores what was typed.
        Up in an empty input selects a message instead (``recall``: walk anyway)."""
        if step < 0 and not self.value and not recall:
            self.post_message(self.SelectMessage())
            return
        if not self.history:
            return
        if self._history_index == len(self.history):
            self._draft = self.value
        index = min(max(self._history_index + step, 0), len(self.history))
        if index == self._history_index:
            return
        self._history_index = index
        self._set_value(self.history[index] if index < len(self.history) else self._draft)

    def _set_value(self, value: str) -> None:
        self._completing = True
        self.value = value
        self.cursor_position = len(value)
        self._completing = False

    # --- completion -----------------------------------------------------------------------

    def action_complete(self) -> None:
        """Complete the word before the cursor; Tab again cycles through the choices."""
        comp = self._completion
        if comp is not None and self.value == self._completed_value(comp):
            comp.index = (comp.index + 1) % len(comp.choices)
        else:
            comp = self._start_completion()
            if comp is None:
                return
        self._completion = comp
        value = self._completed_value(comp)
        self._completing = True
        self.value = value
        self.cursor_position = len(value) - len(comp.after)
        self._completing = False

    def _start_completion(self) -> Completion | None:
        if self.completer is None:
            return None
        cursor = self.cursor_position
        text, after = self.value[:cursor], self.value[cursor:]
        start = text.rfind(" ") + 1
        word = text[start:]
        at_start = start == 0
        choices = self.completer(word, at_start)
        if not choices:
            self.app.bell()
            return None
        return Completion(text[:start], after, choices)

    def _completed_value(self, comp: Completion) -> str:
        choice = comp.choices[comp.index]
        # Addressing someone at the start of a line: "alice: ".
        addressing = not comp.before and not choice.startswith(("/", "#", "&"))
        suffix = ": " if addressing else " "
        if comp.after.startswith(" "):
            suffix = suffix.rstrip()
        return comp.before + choice + suffix + comp.after

    def watch_value(self, value: str) -> None:
        if not self._completing:
            self._completion = None

    # --- several lines (Shift+Enter, Ctrl+J) ---------------------------------------------

    def action_newline(self) -> None:
        """Start a new line of the same message; the ones above are shown over the input."""
        if len(self.draft_lines) >= MAX_DRAFT_LINES:
            self.app.bell()
            return
        cursor = self.cursor_position
        self.draft_lines.append(self.value[:cursor])
        self._set_value(self.value[cursor:])
        self.cursor_position = 0
        self.post_message(self.DraftLinesChanged(self, list(self.draft_lines)))

    async def action_submit(self) -> None:
        """Enter: the line, or the message of several lines (sent like a paste)."""
        if not self.draft_lines:
            await super().action_submit()
            return
        lines = [*self.draft_lines, self.value]
        self.draft_lines = []
        self._set_value("")
        self.post_message(self.DraftLinesChanged(self, []))
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if lines:
            self.post_message(self.PastedLines(self, lines, typed=True))

    def action_delete_left(self) -> None:
        """Backspace at the start of a line joins it to the line above."""
        if self.draft_lines and self.selection.is_empty and self.cursor_position == 0:
            above = self.draft_lines.pop()
            self._set_value(above + self.value)
            self.cursor_position = len(above)
            self.post_message(self.DraftLinesChanged(self, list(self.draft_lines)))
            return
        super().action_delete_left()

    # --- paste ----------------------------------------------------------------------------

    def paste_text(self, text: str) -> None:
        """Paste ``text`` (its first line) as Input's own paste does."""
        line = text.splitlines()[0] if text else ""
        if self.selection.is_empty:
            self.insert_text_at_cursor(line)
        else:
            self.replace(line, *self.selection)

    def _on_paste(self, event: events.Paste) -> None:
        text = event.text.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")
        if "\n" not in text:
            path = pasted_file(text) if not self.draft_lines else None
            if path is not None:
                event.stop()
                event.prevent_default()
                self.post_message(self.PastedFile(self, text, path))
                return
            # Textual calls each class's handler down the MRO unless the default is
            # prevented: without this, Input's handler would paste the line again.
            event.prevent_default()
            super()._on_paste(event)
            return
        event.stop()
        event.prevent_default()
        cursor = self.cursor_position
        combined = self.value[:cursor] + text + self.value[cursor:]
        lines = [line for line in combined.split("\n") if line.strip()]
        if self.draft_lines:  # pasted into a message of several lines: its lines come first
            lines[:0] = [line for line in self.draft_lines if line.strip()]
            self.draft_lines = []
            self.post_message(self.DraftLinesChanged(self, []))
        self._set_value("")
        self.post_message(self.PastedLines(self, lines))
