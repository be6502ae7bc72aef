"""The message log: a line-API scroll view that renders only what is on screen.

A room's backlog can hold 10,000 lines and grow by 1,000 a second, so the log keeps
pre-wrapped rows (``Strip``s) per buffer, adds rows only for new entries, and draws
just the visible ones in :meth:`render_line`. Switching rooms reuses the cached rows.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

from rich.cells import cell_len
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from chatroom.client.formatting import irc_to_text, nick_colour, strip_formatting
from chatroom.client.state import Buffer, Entry, EntryKind, iter_entries

__all__ = ["NICK_WIDTH", "MessageLog", "entry_height", "render_entry"]

# Width of the right-aligned nick column; longer nicks are cut with a '+'.
NICK_WIDTH = 12
# Below this many columns for the text, don't indent continuation lines.
MIN_TEXT_WIDTH = 20
TIME_FORMAT = "%H:%M"

_TIME_STYLE = Style(dim=True)
_SEP = " │ "
_SEP_STYLE = Style(dim=True)
_SYSTEM_STYLE = Style(dim=True)
_INFO_STYLE = Style(color="#8a8a8a")
_ERROR_STYLE = Style(color="#ff5f5f", bold=True)
_NOTICE_STYLE = Style(color="#d7af5f")
_TOPIC_STYLE = Style(color="#5fafaf")
_MENTION_STYLE = Style(bold=True, color="#ffd75f")
_MARKERS = {
    EntryKind.JOIN: ("-->", Style(color="#5faf5f", dim=True)),
    EntryKind.PART: ("<--", Style(color="#af5f5f", dim=True)),
    EntryKind.QUIT: ("<--", Style(color="#af5f5f", dim=True)),
    EntryKind.KICK: ("<--", Style(color="#ff5f5f", dim=True)),
    EntryKind.NICK: ("--", _SYSTEM_STYLE),
    EntryKind.MODE: ("--", _SYSTEM_STYLE),
    EntryKind.TOPIC: ("--", _TOPIC_STYLE),
    EntryKind.INFO: ("--", _INFO_STYLE),
    EntryKind.ERROR: ("!!", _ERROR_STYLE),
}


def _fit_nick(nick: str) -> str:
    nick = strip_formatting(nick)
    return nick if len(nick) <= NICK_WIDTH else nick[: NICK_WIDTH - 1] + "+"


def _prefix(entry: Entry) -> Text:
    """Time and nick column: 'HH:MM        alice │ '."""
    prefix = Text(entry.time.strftime(TIME_FORMAT) + " ", style=_TIME_STYLE, end="")
    kind = entry.kind
    nick = entry.nick or ""
    if kind is EntryKind.MESSAGE:
        label = _fit_nick(nick)
        style = Style(color=nick_colour(nick), bold=entry.own or entry.mention)
        if entry.mention:
            style += Style(reverse=True)
        prefix.append(" " * (NICK_WIDTH - len(label)))
        prefix.append(label, style)
    elif kind is EntryKind.ACTION:
        prefix.append("*".rjust(NICK_WIDTH), Style(color=nick_colour(nick), bold=True))
    elif kind is EntryKind.NOTICE:
        label = _fit_nick(f"-{nick}-")
        prefix.append(label.rjust(NICK_WIDTH), _NOTICE_STYLE)
    else:
        marker, style = _MARKERS.get(kind, ("--", _SYSTEM_STYLE))
        prefix.append(marker.rjust(NICK_WIDTH), style)
    prefix.append(_SEP, _SEP_STYLE)
    return prefix


def _body(entry: Entry) -> Text:
    kind = entry.kind
    if kind is EntryKind.MESSAGE:
        return irc_to_text(entry.text, _MENTION_STYLE if entry.mention else "")
    if kind is EntryKind.ACTION:
        nick = entry.nick or ""
        body = Text(strip_formatting(nick), Style(color=nick_colour(nick), italic=True), end="")
        body.append(" ")
        body.append_text(irc_to_text(entry.text, Style(italic=True)))
        if entry.mention:
            body.stylize(_MENTION_STYLE)
        return body
    if kind is EntryKind.NOTICE:
        return irc_to_text(entry.text, _MENTION_STYLE if entry.mention else "")
    if kind in _MARKERS:
        return Text(strip_formatting(entry.text), _MARKERS[kind][1], end="")
    return Text(strip_formatting(entry.text), _SYSTEM_STYLE, end="")


def render_entry(entry: Entry, width: int, console: Console) -> list[Strip]:
    """One backlog entry as rows of at most ``width`` cells, wrapped with a hanging indent."""
    prefix = _prefix(entry)
    body = _body(entry)
    indent = prefix.cell_len
    avail = width - indent
    if avail < MIN_TEXT_WIDTH:
        whole = prefix + body
        lines = whole.wrap(console, max(1, width), overflow="fold") if width > 0 else [whole]
        return [Strip(line.render(console), line.cell_len) for line in lines]
    if body.cell_len <= avail and "\n" not in body.plain:
        line = prefix + body
        return [Strip(line.render(console), line.cell_len)]
    body.end = ""
    rows: list[Strip] = []
    pad = Segment(" " * indent)
    for i, part in enumerate(body.wrap(console, avail, overflow="fold")):
        part.rstrip_end(avail)
        if i == 0:
            line = prefix + part
            rows.append(Strip(line.render(console), line.cell_len))
        else:
            segments = [pad, *part.render(console)]
            rows.append(Strip(segments, indent + part.cell_len))
    return rows


def _body_plain(entry: Entry) -> str:
    """The body's text as :func:`_body` will show it, without building styles."""
    if entry.kind is EntryKind.ACTION:
        return strip_formatting(entry.nick or "") + " " + strip_formatting(entry.text)
    return strip_formatting(entry.text)


# The prefix is fixed-width: 'HH:MM ' + nick column + separator.
PREFIX_WIDTH = len("00:00 ") + NICK_WIDTH + len(_SEP)


def entry_height(entry: Entry, width: int) -> int:
    """Rows ``entry`` takes at ``width``; 0 means "render it to know" (it wraps)."""
    if width - PREFIX_WIDTH < MIN_TEXT_WIDTH:
        return 0
    plain = _body_plain(entry)
    if "\n" not in plain and cell_len(plain) <= width - PREFIX_WIDTH:
        return 1
    return 0


@dataclass(eq=False)
class _Rows:
    """The rows of one buffer at one width: each row's entry, and its strip once drawn.

    Strips are made lazily in :meth:`MessageLog.render_line`, so a 10,000-line
    backlog costs a cheap height pass, and only the rows on screen are drawn.
    """

    width: int
    generation: int
    entries: list[Entry] = field(default_factory=list)  # the entry of every row
    parts: list[int] = field(default_factory=list)  # which of its entry's rows
    strips: list[Strip | None] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    last_seq: int = 0
    at_end: bool = True
    scroll_y: int = 0

    def __len__(self) -> int:
        return len(self.strips)

    def drop_front(self, count: int) -> None:
        del self.entries[:count], self.parts[:count], self.strips[:count], self.seqs[:count]


class MessageLog(ScrollView, can_focus=True):
    """Shows one :class:`Buffer` at a time; call :meth:`sync` after the buffer grows."""

    DEFAULT_CSS = """
    MessageLog {
        overflow-x: hidden;
        overflow-y: scroll;
        scrollbar-size-vertical: 1;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.buffer: Buffer | None = None
        self._rows: dict[int, _Rows] = {}  # by id(buffer)
        self._current: _Rows | None = None
        self._style: Style | None = None

    # --- public ---------------------------------------------------------------------------

    def show(self, buffer: Buffer) -> None:
        """Display ``buffer``, remembering where we were in the previous one."""
        if self._current is not None:
            self._current.at_end = self.is_vertical_scroll_end
            self._current.scroll_y = round(self.scroll_y)
        self.buffer = buffer
        self._current = None
        self.sync()
        rows = self._current
        if rows is not None:
            if rows.at_end:
                self.scroll_end(animate=False, immediate=True, x_axis=False)
            else:
                self.scroll_to(y=rows.scroll_y, animate=False, immediate=True)
        self.refresh()

    def forget(self, buffer: Buffer) -> None:
        """Drop cached rows of a closed buffer."""
        self._rows.pop(id(buffer), None)

    @property
    def row_count(self) -> int:
        """Rows in the current view (for tests and the benchmark)."""
        return len(self._current) if self._current else 0

    def visible_text(self) -> str:
        """The plain text of the rows on screen (what a user can read now)."""
        if self._current is None:
            return ""
        top = round(self.scroll_y)
        count = min(self.size.height, len(self._current) - top)
        return "\n".join(self._row(top + y).text.rstrip() for y in range(max(0, count)))

    def sync(self) -> None:
        """Account for entries added to (or dropped from) the buffer; keep the view pinned."""
        buffer = self.buffer
        width = self.scrollable_content_region.width
        if buffer is None or width <= 0:
            return
        rows = self._current or self._rows.get(id(buffer))
        if rows is None or rows.width != width or rows.generation != buffer.generation:
            old = rows
            rows = _Rows(width, buffer.generation)
            if old is not None:
                rows.at_end, rows.scroll_y = old.at_end, old.scroll_y
            self._rows[id(buffer)] = rows
        was_current = self._current is rows
        self._current = rows
        at_end = self.is_vertical_scroll_end if was_current else rows.at_end
        # Drop rows whose entries fell out of the bounded backlog.
        removed = 0
        if buffer.entries and rows.seqs and rows.seqs[0] < buffer.entries[0].seq:
            removed = bisect_left(rows.seqs, buffer.entries[0].seq)
            rows.drop_front(removed)
        elif not buffer.entries and len(rows):
            removed = len(rows)
            rows.drop_front(removed)
        added = 0
        for entry in iter_entries(buffer, rows.last_seq):
            height = entry_height(entry, width)
            if height:
                strips: list[Strip | None] = [None]
            else:
                strips = list(self._draw(entry, width))
                height = len(strips)
            rows.strips.extend(strips)
            rows.entries.extend([entry] * height)
            rows.parts.extend(range(height))
            rows.seqs.extend([entry.seq] * height)
            rows.last_seq = entry.seq
            added += height
        if not added and not removed and was_current:
            return
        self.virtual_size = Size(width, len(rows))
        if was_current and at_end:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        elif was_current and removed:
            self.scroll_to(y=max(0, self.scroll_y - removed), animate=False, immediate=True)
        self.refresh()

    # --- rendering ------------------------------------------------------------------------

    def _base_style(self) -> Style:
        if self._style is None:
            self._style = self.rich_style
        return self._style

    def notify_style_update(self) -> None:
        super().notify_style_update()
        style = self.rich_style
        if style != self._style:
            # New colours (theme change): redraw rows lazily with the new background.
            self._style = style
            for rows in self._rows.values():
                rows.strips = [None] * len(rows)
            self.refresh()

    def _draw(self, entry: Entry, width: int) -> list[Strip]:
        """An entry's rows, padded to the full width on the log's background."""
        style = self._base_style()
        return [
            strip.crop_extend(0, width, style).apply_style(style)
            for strip in render_entry(entry, width, self.app.console)
        ]

    def _row(self, index: int) -> Strip:
        rows = self._current
        assert rows is not None
        strip = rows.strips[index]
        if strip is None:
            drawn = self._draw(rows.entries[index], rows.width)
            first = index - rows.parts[index]
            for offset, part in enumerate(drawn):
                if first + offset < len(rows):
                    rows.strips[first + offset] = part
            strip = drawn[min(rows.parts[index], len(drawn) - 1)]
        return strip

    def on_resize(self) -> None:
        at_end = self.is_vertical_scroll_end
        self.sync()
        if at_end:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def render_line(self, y: int) -> Strip:
        rows = self._current
        index = round(self.scroll_y) + y
        if rows is None or not 0 <= index < len(rows):
            return Strip.blank(self.scrollable_content_region.width, self._base_style())
        return self._row(index)
