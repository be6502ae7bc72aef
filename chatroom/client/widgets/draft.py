"""Above the input: the lines of a message being written with Shift+Enter."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.widgets import Static

__all__ = ["SHOWN_LINES", "DraftLines"]

# Lines shown over the input; older ones are summed up in a first row.
SHOWN_LINES = 4
_DIM = Style(dim=True)


class DraftLines(Static):
    """The lines already written of a multiline message (hidden when there are none)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, markup=False)
        self.lines: list[str] = []

    def show(self, lines: list[str]) -> None:
        self.lines = list(lines)
        text = Text(end="", no_wrap=True, overflow="ellipsis")
        hidden = len(lines) - SHOWN_LINES
        if hidden > 0:
            text.append(f"… {hidden} more line{'s' if hidden > 1 else ''} above\n", _DIM)
        text.append("\n".join(lines[-SHOWN_LINES:]))
        self.update(text)
        self.styles.height = min(len(lines), SHOWN_LINES + 1) if lines else 1
        self.display = bool(lines)
