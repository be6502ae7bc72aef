"""The message log: a line-API scroll view that renders only what is on screen.

A room's backlog can hold 10,000 lines and grow by 1,000 a second, so the log keeps
pre-wrapped rows (``Strip``s) per buffer, adds rows only for new entries, and draws
just the visible ones in :meth:`render_line`. Switching rooms reuses the cached rows.

History changes more than the end: older lines arrive at the top, missed ones in the
middle, echoes confirm lines in place. Any such change (``Buffer.version``) rebuilds
the row index (cheap: heights only) and keeps the line the user was reading where it
was on screen. Two rows are not messages: a header saying whether older history is
loading or complete, and the divider before the first unread line.

A message may take extra rows: a reply quotes its parent in a row above it, and
reactions gather in a row under it. Web addresses (http and https only) in messages are
links: a click posts :class:`MessageLog.LinkClicked`; the address is carried in the
style's meta as data, never read as markup or as an action string.

Links into the server's file host are attachments (:mod:`chatroom.client.attachments`):
a message that is only such a link is drawn as ``📎 NAME · SIZE · TYPE`` on one row;
one that says more gets a row like that under it for each. Size and type come from the
file host when it answered; until then the name alone.

Selection: :meth:`MessageLog.select_last` picks the newest message (the input's Up
when it is empty); Up and Down move the selection, Escape leaves it, and ``r``, ``e``,
``c``, ``d`` and Enter post :class:`MessageLog.Act` for the screen to reply, react,
copy, delete or download (an attachment).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rich.cells import cell_len
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from chatroom.client.attachments import Attachment, Attachments, attachment_line
from chatroom.client.formatting import irc_to_text, nick_colour, strip_formatting
from chatroom.client.model import (
    BACKLOG_TRIM,
    CHAT_KINDS,
    DELETED_TEXT,
    Buffer,
    Entry,
    EntryKind,
    HistoryState,
    Ident,
)

__all__ = [
    "DIVIDER_TEXT",
    "HEADER_TEXT",
    "IDENT_MARKS",
    "NICK_WIDTH",
    "Marker",
    "MessageLog",
    "entry_attachments",
    "entry_height",
    "find_urls",
    "render_entry",
]

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
_PENDING_STYLE = Style(dim=True)
_DIVIDER_STYLE = Style(color="#ff5f5f")
_HEADER_STYLE = Style(dim=True, italic=True)
_QUOTE_STYLE = Style(color="#8a8a8a", italic=True)
_DELETED_STYLE = Style(color="#8a8a8a", italic=True)
_REACTION_STYLE = Style(color="#bcbcbc")
_OWN_REACTION_STYLE = Style(color="#ffd75f", bold=True, bgcolor="#3a3a5f")
_LINK_STYLE = Style(color="#5fafff", underline=True)
_ATTACHMENT_STYLE = Style(color="#87afd7")
# Attachment rows under one message, at most (a message may list many links).
MAX_ATTACHMENT_ROWS = 3
# The selected message's rows (post-applied: it wins over the log's background).
_SELECTED_STYLE = Style(bgcolor="#303850")
QUOTE_MARK = "↪ "
# A reply whose parent is not loaded (older than the history we have).
EARLIER_MESSAGE = "(earlier message)"
# http(s) addresses in a message; what ends a sentence is not part of them.
_URL_RE = re.compile(r"https?://[^\s<>\"'`\x00-\x1f\x7f]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?*"
# Shown after our line when the server never echoed it (echo-message).
FAILED_SUFFIX = " ✗ not delivered"
DIVIDER_TEXT = "new messages"
# The header row, by the buffer's history state (none: no header).
HEADER_TEXT = {
    HistoryState.MORE: "↑ scroll up for older messages",
    HistoryState.LOADING: "loading older messages…",
    HistoryState.COMPLETE: "beginning of history",
    HistoryState.UNAVAILABLE: "older history unavailable",
    HistoryState.FULL: "older messages are not kept in this window",
}
# Beside a nick: logged in (to the nick's own account, or a nick no account we know
# of is called), or "?": the nick is an account seen logged in this session, but
# whoever has it now is not logged in to it (see model.Ident). One cell each.
IDENT_MARKS: dict[Ident, tuple[str, Style]] = {
    Ident.VERIFIED: ("✓", Style(color="#5faf5f", bold=True)),
    Ident.UNVERIFIED: ("?", Style(color="#d7af5f", bold=True)),
}
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


def _fit_nick(nick: str, width: int = NICK_WIDTH) -> str:
    nick = strip_formatting(nick)
    return nick if len(nick) <= width else nick[: width - 1] + "+"


def _nick_label(prefix: Text, label: str, style: Style, entry: Entry) -> None:
    """``label`` right-aligned in the nick column, with the sender's mark after it."""
    mark = IDENT_MARKS.get(entry.ident)
    width = NICK_WIDTH - (1 if mark else 0)
    label = _fit_nick(label, width)
    prefix.append(" " * (width - len(label)))
    prefix.append(label, style)
    if mark:
        prefix.append(*mark)


def _prefix(entry: Entry) -> Text:
    """Time and nick column: 'HH:MM        alice │ '."""
    prefix = Text(entry.time.strftime(TIME_FORMAT) + " ", style=_TIME_STYLE, end="")
    kind = entry.kind
    nick = entry.nick or ""
    if kind is EntryKind.MESSAGE:
        style = Style(color=nick_colour(nick), bold=entry.own or entry.mention)
        if entry.mention:
            style += Style(reverse=True)
        _nick_label(prefix, nick, style, entry)
    elif kind is EntryKind.ACTION:
        prefix.append("*".rjust(NICK_WIDTH), Style(color=nick_colour(nick), bold=True))
    elif kind is EntryKind.NOTICE:
        _nick_label(prefix, f"-{nick}-", _NOTICE_STYLE, entry)
    else:
        marker, style = _MARKERS.get(kind, ("--", _SYSTEM_STYLE))
        prefix.append(marker.rjust(NICK_WIDTH), style)
    prefix.append(_SEP, _SEP_STYLE)
    return prefix


def find_urls(text: str) -> list[tuple[int, int]]:
    """Where the http(s) addresses are in ``text``: (start, end) pairs.

    >>> s = "see https://example.com/a_(b). or (http://x.org/p), not ftp://y"
    >>> [s[a:b] for a, b in find_urls(s)]
    ['https://example.com/a_(b)', 'http://x.org/p']
    """
    if "://" not in text:
        return []
    found = []
    for match in _URL_RE.finditer(text):
        start, end = match.span()
        while end > start:
            last = text[end - 1]
            if last in _URL_TRAILING or (last == ")" and "(" not in text[start : end - 1]):
                end -= 1
            else:
                break
        if end - start > len("https://"):
            found.append((start, end))
    return found


def link_style(url: str) -> Style:
    """A link's look, and its click: the action and its argument as data (a tuple in
    the style's meta), so no part of the address is ever parsed as an action."""
    return _LINK_STYLE + Style.from_meta({"@click": ("open_link", (url,))})


def _link_urls(text: Text) -> Text:
    for start, end in find_urls(text.plain):
        text.stylize(link_style(text.plain[start:end]), start, end)
    return text


def _body(entry: Entry) -> Text:
    if entry.deleted:
        return Text(DELETED_TEXT, _DELETED_STYLE, end="")
    body = _link_urls(_plain_body(entry))
    if entry.pending:
        body.stylize(_PENDING_STYLE)
    elif entry.failed:
        body.append(FAILED_SUFFIX, _ERROR_STYLE)
    return body


def _lines_text(raw: str, base: Style | str) -> Text:
    """A message's text; a multiline message keeps its line breaks (each line is
    sanitised on its own, as the sanitiser takes newlines out)."""
    if "\n" not in raw:
        return irc_to_text(raw, base)
    return Text("\n", end="").join(irc_to_text(line, base) for line in raw.split("\n"))


def _plain_body(entry: Entry) -> Text:
    kind = entry.kind
    if kind is EntryKind.MESSAGE:
        return _lines_text(entry.text, _MENTION_STYLE if entry.mention else "")
    if kind is EntryKind.ACTION:
        nick = entry.nick or ""
        body = Text(strip_formatting(nick), Style(color=nick_colour(nick), italic=True), end="")
        mark = IDENT_MARKS.get(entry.ident)
        if mark:
            body.append(*mark)
        body.append(" ")
        body.append_text(irc_to_text(entry.text, Style(italic=True)))
        if entry.mention:
            body.stylize(_MENTION_STYLE)
        return body
    if kind is EntryKind.NOTICE:
        return _lines_text(entry.text, _MENTION_STYLE if entry.mention else "")
    if kind in _MARKERS:
        return Text(strip_formatting(entry.text), _MARKERS[kind][1], end="")
    return Text(strip_formatting(entry.text), _SYSTEM_STYLE, end="")


def _quote_text(entry: Entry) -> Text:
    """The row above a reply: its parent's sender and first words, or that it is older."""
    quote = strip_formatting(entry.quote) if entry.quote else EARLIER_MESSAGE
    return Text(QUOTE_MARK + quote, _QUOTE_STYLE, end="")


def _reactions_text(entry: Entry) -> Text:
    """The row under a message: '👍 3  🎉 1', ours highlighted."""
    text = Text(end="")
    for i, reaction in enumerate(entry.reactions):
        if i:
            text.append("  ")
        style = _OWN_REACTION_STYLE if reaction.mine else _REACTION_STYLE
        text.append(f"{strip_formatting(reaction.emoji)} {reaction.count}", style)
    return text


def entry_attachments(entry: Entry, attachments: Attachments | None) -> list[Attachment]:
    """The links of ``entry`` into the file host (at most MAX_ATTACHMENT_ROWS)."""
    if (
        attachments is None
        or not attachments.filehost
        or entry.deleted
        or entry.kind not in CHAT_KINDS
        or "/files/" not in entry.text
    ):
        return []
    text = strip_formatting(entry.text)
    found: list[Attachment] = []
    for start, end in find_urls(text):
        attachment = attachments.find(text[start:end])
        if attachment is not None and attachment not in found:
            found.append(attachment)
            if len(found) == MAX_ATTACHMENT_ROWS:
                break
    return found


def _attachment_text(attachment: Attachment, attachments: Attachments) -> Text:
    """``📎 NAME · SIZE · TYPE``; the name is a link (a click opens it in the browser)."""
    line = attachment_line(attachment, attachments.meta(attachment.url))
    text = Text(line, _ATTACHMENT_STYLE, end="")
    start = line.index(attachment.name)
    text.stylize(link_style(attachment.url), start, start + len(attachment.name))
    return text


def _only_attachment(entry: Entry, found: list[Attachment]) -> bool:
    """The message is one attachment's link and nothing else (what /upload sends);
    a /me keeps its words (its nick is in them), with the attachment under them."""
    if len(found) != 1 or entry.kind is EntryKind.ACTION:
        return False
    return strip_formatting(entry.text).strip() == found[0].url


def _extra_rows(text: Text, indent: int, width: int, console: Console) -> list[Strip]:
    """A quote or reactions row, in the text column (cut to fit: one row)."""
    avail = max(1, width - indent)
    text.truncate(avail, overflow="ellipsis")
    pad = Segment(" " * indent) if indent < width else Segment("")
    return [Strip([pad, *text.render(console)], min(width, indent + text.cell_len))]


def render_entry(
    entry: Entry, width: int, console: Console, attachments: Attachments | None = None
) -> list[Strip]:
    """One backlog entry as rows of at most ``width`` cells, wrapped with a hanging
    indent; a reply's quote above it, its attachments and reactions under it.
    ``attachments``: the file host's links and what is known of them (None: none)."""
    found = entry_attachments(entry, attachments)
    if found and attachments is not None and _only_attachment(entry, found):
        rows = [_render_attachment(entry, _attachment_text(found[0], attachments), width, console)]
        found = []
    else:
        rows = _render_main(entry, width, console)
    if entry.reply_to or entry.reactions or found:
        indent = PREFIX_WIDTH if width - PREFIX_WIDTH >= MIN_TEXT_WIDTH else 0
        if entry.reply_to:
            rows[:0] = _extra_rows(_quote_text(entry), indent, width, console)
        for attachment in found:
            assert attachments is not None
            text = _attachment_text(attachment, attachments)
            rows += _extra_rows(text, indent, width, console)
        if entry.reactions:
            rows += _extra_rows(_reactions_text(entry), indent, width, console)
    return rows


def _render_attachment(entry: Entry, body: Text, width: int, console: Console) -> Strip:
    """A message that is one attachment: one row whatever the width (cut to fit), so its
    height does not change when the file host's answer makes the line longer."""
    if entry.pending:
        body.stylize(_PENDING_STYLE)
    elif entry.failed:
        body.append(FAILED_SUFFIX, _ERROR_STYLE)
    line = _prefix(entry) + body
    line.truncate(max(1, width), overflow="ellipsis")
    return Strip(line.render(console), line.cell_len)


def _render_main(entry: Entry, width: int, console: Console) -> list[Strip]:
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
    if entry.deleted:
        return DELETED_TEXT
    suffix = FAILED_SUFFIX if entry.failed else ""
    if entry.kind is EntryKind.ACTION:
        mark = IDENT_MARKS[entry.ident][0] if entry.ident in IDENT_MARKS else ""
        nick = strip_formatting(entry.nick or "") + mark
        return nick + " " + strip_formatting(entry.text) + suffix
    if "\n" in entry.text:  # a multiline message: its rows are counted by rendering
        return "\n"
    return strip_formatting(entry.text) + suffix


@dataclass(frozen=True, slots=True)
class Marker:
    """A row that is not a message: the unread divider, or the history header."""

    text: str
    style: Style
    rule: bool  # drawn as a rule across the width (the divider)


def render_marker(marker: Marker, width: int, console: Console) -> Strip:
    """A marker as one row: centred text, on a rule for the divider."""
    label = f" {marker.text} " if marker.rule else marker.text
    fill = "─" if marker.rule else " "
    text = Text(label.center(max(width, len(label)), fill)[:width], marker.style, end="")
    return Strip(text.render(console), text.cell_len)


# The prefix is fixed-width: 'HH:MM ' + nick column + separator.
PREFIX_WIDTH = len("00:00 ") + NICK_WIDTH + len(_SEP)


def entry_height(entry: Entry, width: int) -> int:
    """Rows ``entry`` takes at ``width``; 0 means "render it to know" (it wraps)."""
    if width - PREFIX_WIDTH < MIN_TEXT_WIDTH or entry.reply_to or entry.reactions:
        return 0
    plain = _body_plain(entry)
    if "\n" not in plain and cell_len(plain) <= width - PREFIX_WIDTH:
        return 1
    return 0


Row = Entry | Marker


@dataclass(eq=False)
class _Rows:
    """The rows of one buffer at one width: each row's item, and its strip once drawn.

    Strips are made lazily in :meth:`MessageLog.render_line`, so a 10,000-line
    backlog costs a cheap height pass, and only the rows on screen are drawn.
    ``entry_count`` buffer entries are laid out; appends continue from there as long
    as the buffer's ``version`` is the one laid out.
    """

    width: int
    generation: int
    version: int = -1
    items: list[Row] = field(default_factory=list)  # what each row shows
    parts: list[int] = field(default_factory=list)  # which of its item's rows
    strips: list[Strip | None] = field(default_factory=list)
    first_row: dict[int, int] = field(default_factory=dict)  # entry seq -> its first row
    # Heights of wrapped entries (known only by drawing them), kept across rebuilds.
    heights: dict[int, tuple[Entry, int]] = field(default_factory=dict)
    entry_count: int = 0
    at_end: bool = True
    # Where the view was: (seq of the top line, its first row minus the top row).
    anchor: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.strips)

    def clear(self) -> None:
        self.items.clear()
        self.parts.clear()
        self.strips.clear()
        self.first_row.clear()
        self.entry_count = 0


class MessageLog(ScrollView, can_focus=True):
    """Shows one :class:`Buffer` at a time; call :meth:`sync` after the buffer changes."""

    DEFAULT_CSS = """
    MessageLog {
        overflow-x: hidden;
        overflow-y: scroll;
        scrollbar-size-vertical: 1;
    }
    """

    # Only while a message is selected (see check_action); the help lists them.
    BINDINGS = [
        Binding("r", "act('reply')", "reply to the selected message", show=False),
        Binding("e", "act('react')", "react to the selected message (emoji picker)", show=False),
        Binding("c", "act('copy')", "copy the selected message's text", show=False),
        Binding("d", "act('delete')", "delete the selected message", show=False),
        Binding("enter", "act('open')", "download the selected attachment", show=False),
        Binding("escape", "leave_selection", "leave the selection", show=False),
    ]

    @dataclass
    class NeedOlder(Message):
        """The user reached the top of a buffer that may have older history."""

        key: str

    @dataclass
    class Act(Message):
        """The user asked to ``action`` (reply, react, copy, delete, open) the selected line."""

        action: str
        entry: Entry

    @dataclass
    class SelectionEnded(Message):
        """The selection ended (Escape, Down past the newest line, a window switch, or
        typing): the input should have the focus again, with ``typed`` added to it."""

        typed: str = ""
        seq: int | None = None  # the line that was selected

    @dataclass
    class LinkClicked(Message):
        """A web address in a message was clicked (an http or https URL)."""

        url: str

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.buffer: Buffer | None = None
        self._rows: dict[int, _Rows] = {}  # by id(buffer)
        self._current: _Rows | None = None
        self._style: Style | None = None
        self.selected: int | None = None  # the selected line's seq
        # The file host's links and what is known of them (the screen hands the app's).
        self.attachments: Attachments | None = None

    # --- public ---------------------------------------------------------------------------

    def show(self, buffer: Buffer) -> None:
        """Display ``buffer``, remembering where we were in the previous one.

        A buffer left at its end opens at its end (new lines keep it there), with the
        unread divider above the new lines, as IRC clients do.
        """
        if self._current is not None:
            self._current.at_end = self.is_vertical_scroll_end
            self._current.anchor = self._top_anchor()
        if buffer is not self.buffer:
            self.leave_selection()
        self.buffer = buffer
        self._current = None
        self.sync()
        self.refresh()

    def forget(self, buffer: Buffer) -> None:
        """Drop cached rows of a closed buffer."""
        self._rows.pop(id(buffer), None)

    def redraw_all(self) -> None:
        """Lay every buffer out again when shown (the file host changed: which links
        are attachments changed with it)."""
        self._rows.clear()
        self._current = None
        self.sync()

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

    def top_entry(self) -> Entry | None:
        """The first message line on screen (what the user is reading)."""
        anchor = self._top_anchor()
        if anchor is None or self._current is None:
            return None
        item = self._current.items[self._current.first_row[anchor[0]]]
        return item if isinstance(item, Entry) else None

    # --- selection -----------------------------------------------------------------------

    def selected_entry(self) -> Entry | None:
        """The selected line, as it is now (reactions and deletions change it)."""
        buffer = self.buffer
        if self.selected is None or buffer is None:
            return None
        index = buffer.index_of(self.selected)
        return buffer.entries[index] if index is not None else None

    def select(self, seq: int) -> None:
        """Select line ``seq`` and scroll it into view (a search result jumped to)."""
        self._select(seq)

    def select_last(self) -> bool:
        """Select the newest message; False when there is none."""
        buffer = self.buffer
        if buffer is None:
            return False
        found = self._chat_line(len(buffer.entries), -1)
        if found is None:
            return False
        self._select(buffer.entries[found].seq)
        return True

    def move_selection(self, step: int) -> None:
        """The previous (-1) or next (+1) message; past the newest one the selection ends."""
        buffer = self.buffer
        index = buffer.index_of(self.selected) if buffer and self.selected is not None else None
        if buffer is None or index is None:
            self.leave_selection()
            return
        found = self._chat_line(index, step)
        if found is not None:
            self._select(buffer.entries[found].seq)
        elif step > 0:
            self.leave_selection()
        else:
            self.scroll_home(animate=False, immediate=True)
            self.check_top()  # the oldest one loaded: ask for older lines

    def leave_selection(self, typed: str = "") -> None:
        """No message selected any more (the screen gives the input the focus, and
        what was ``typed``)."""
        if self.selected is None:
            return
        seq, self.selected = self.selected, None
        self.refresh()
        self.post_message(self.SelectionEnded(typed, seq))

    def _chat_line(self, start: int, step: int) -> int | None:
        """The index of the next conversation line from ``start`` (exclusive)."""
        assert self.buffer is not None
        entries = self.buffer.entries
        index = start + step
        while 0 <= index < len(entries):
            if entries[index].kind in CHAT_KINDS:
                return index
            index += step
        return None

    def _select(self, seq: int) -> None:
        self.selected = seq
        self.sync()
        rows = self._current
        if rows is not None and seq in rows.first_row:
            first = rows.first_row[seq]
            last = first
            while last + 1 < len(rows) and rows.parts[last + 1] == last + 1 - first:
                last += 1
            top, height = round(self.scroll_y), max(1, self.scrollable_content_region.height)
            if first < top:
                self.scroll_to(y=first, animate=False, immediate=True)
            elif last >= top + height:
                self.scroll_to(y=max(0, last - height + 1), animate=False, immediate=True)
        self.refresh()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("act", "leave_selection"):
            return self.selected is not None
        return True

    def on_key(self, event: events.Key) -> None:
        # Typing while a message is selected (a key that is not one of its actions)
        # goes back to the input: no key is dead.
        typed = event.character if event.is_printable else None
        if self.selected is not None and typed and event.key not in _SELECTION_KEYS:
            event.stop()
            event.prevent_default()
            self.leave_selection(typed)

    def action_act(self, action: str) -> None:
        """r, e, c, d, Enter on the selected line: the screen does it."""
        entry = self.selected_entry()
        if entry is not None:
            self.post_message(self.Act(action, entry))

    def action_leave_selection(self) -> None:
        """Escape: back to the input."""
        self.leave_selection()

    def action_open_link(self, url: str) -> None:
        """A link was clicked: only web addresses are passed on."""
        if isinstance(url, str) and find_urls(url) == [(0, len(url))]:
            self.post_message(self.LinkClicked(url))

    def check_top(self) -> None:
        """At the top of a buffer that may have older history: ask for it."""
        buffer = self.buffer
        if buffer is not None and buffer.history is HistoryState.MORE and round(self.scroll_y) == 0:
            self.post_message(self.NeedOlder(buffer.key))

    def sync(self) -> None:
        """Account for what changed in the buffer; keep the view pinned or anchored."""
        buffer = self.buffer
        width = self.scrollable_content_region.width
        if buffer is None or width <= 0:
            return
        rows = self._rows.get(id(buffer))
        was_current = rows is not None and self._current is rows
        if was_current:
            at_end, anchor = self.is_vertical_scroll_end, self._top_anchor()
        elif rows is not None:
            at_end, anchor = rows.at_end, rows.anchor
        else:
            at_end, anchor = True, None
        if rows is None or rows.width != width or rows.generation != buffer.generation:
            heights = rows.heights if rows is not None and rows.width == width else {}
            rows = _Rows(width, buffer.generation, heights=heights)
            self._rows[id(buffer)] = rows
        self._current = rows
        rebuild = rows.version != buffer.version
        if not rebuild and buffer.touched:
            rebuild = not self._redraw_touched(rows, buffer)
        buffer.touched.clear()
        if rebuild:
            self._layout(rows, buffer)
            changed = True
        else:
            changed = self._append(rows, buffer)
        if self.selected is not None and self.selected not in rows.first_row:
            self.leave_selection()  # its line scrolled away or was cleared
        if not changed and was_current:
            return
        self.virtual_size = Size(width, len(rows))
        if at_end:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        elif anchor is not None and anchor[0] in rows.first_row and (rebuild or not was_current):
            y = max(0, rows.first_row[anchor[0]] - anchor[1])
            self.scroll_to(y=y, animate=False, immediate=True)
        self.refresh()
        if len(rows) <= self.scrollable_content_region.height:
            self.check_top()  # nothing to scroll: fill the screen with older lines

    # --- layout ---------------------------------------------------------------------------

    def _top_anchor(self) -> tuple[int, int] | None:
        """The first message row at or below the top of the view, and its offset."""
        rows = self._current
        if rows is None:
            return None
        top = round(self.scroll_y)
        for index in range(top, min(len(rows), top + max(1, self.size.height))):
            item = rows.items[index]
            if isinstance(item, Entry):
                return item.seq, rows.first_row[item.seq] - top
        return None

    def _height(self, rows: _Rows, entry: Entry) -> tuple[int, list[Strip] | None]:
        """Rows ``entry`` takes (and its strips, when measuring meant drawing them).

        Heights are remembered per line, so a rebuild after history arrives costs a
        dictionary lookup per line, not a measurement.
        """
        known = rows.heights.get(entry.seq)
        if known is not None and known[0] is entry:
            return known[1], None
        found = "/files/" in entry.text and entry_attachments(entry, self.attachments)
        height = 0 if found else entry_height(entry, rows.width)
        strips = None
        if not height:
            strips = self._draw(entry, rows.width)
            height = len(strips)
        rows.heights[entry.seq] = (entry, height)
        return height, strips

    def _add_entries(self, rows: _Rows, entries: list[Entry], divider: int | None) -> None:
        """Rows for ``entries`` at the end (the hot loop of appends and rebuilds)."""
        items, parts, strips, first_row = rows.items, rows.parts, rows.strips, rows.first_row
        heights = rows.heights
        for entry in entries:
            seq = entry.seq
            if seq == divider:
                items.append(Marker(DIVIDER_TEXT, _DIVIDER_STYLE, True))
                parts.append(0)
                strips.append(None)
            first_row[seq] = len(items)
            known = heights.get(seq)
            if known is not None and known[0] is entry and known[1] == 1:
                items.append(entry)
                parts.append(0)
                strips.append(None)
                continue
            height, drawn = self._height(rows, entry)
            items.extend([entry] * height)
            parts.extend(range(height))
            strips.extend(drawn if drawn is not None else [None] * height)

    def _layout(self, rows: _Rows, buffer: Buffer) -> None:
        """Lay out every row again (history arrived, lines were dropped, markers moved)."""
        rows.clear()
        header = HEADER_TEXT.get(buffer.history)
        if header is not None:
            rows.items.append(Marker(header, _HEADER_STYLE, False))
            rows.parts.append(0)
            rows.strips.append(None)
        self._add_entries(rows, buffer.entries, buffer.divider_seq)
        rows.entry_count = len(buffer.entries)
        rows.version = buffer.version
        if len(rows.heights) > 2 * len(buffer.entries) + BACKLOG_TRIM:
            live = {e.seq for e in buffer.entries}
            rows.heights = {k: v for k, v in rows.heights.items() if k in live}

    def _append(self, rows: _Rows, buffer: Buffer) -> bool:
        """Rows for entries appended since the last sync; False when there were none."""
        entries = buffer.entries
        if rows.entry_count >= len(entries):
            return False
        self._add_entries(rows, entries[rows.entry_count :], buffer.divider_seq)
        rows.entry_count = len(entries)
        return True

    def _redraw_touched(self, rows: _Rows, buffer: Buffer) -> bool:
        """Redraw lines changed in place; False when one changed height (relayout)."""
        for seq in buffer.touched:
            first = rows.first_row.get(seq)
            index = buffer.index_of(seq)
            if first is None or index is None:
                continue  # not laid out yet (the append pass adds it) or gone
            entry = buffer.entries[index]
            old = 1
            while first + old < len(rows) and rows.parts[first + old] == old:
                old += 1
            if self._height(rows, entry)[0] != old:
                return False
            for row in range(first, first + old):
                rows.items[row] = entry
                rows.strips[row] = None
        self.refresh()
        return True

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

    def _draw(self, item: Row, width: int) -> list[Strip]:
        """An item's rows, padded to the full width on the log's background."""
        style = self._base_style()
        console = self.app.console
        if isinstance(item, Marker):
            strips = [render_marker(item, width, console)]
        else:
            strips = render_entry(item, width, console, self.attachments)
        return [strip.crop_extend(0, width, style).apply_style(style) for strip in strips]

    def _row(self, index: int) -> Strip:
        rows = self._current
        assert rows is not None
        strip = rows.strips[index]
        if strip is None:
            drawn = self._draw(rows.items[index], rows.width)
            first = index - rows.parts[index]
            for offset, part in enumerate(drawn):
                if first + offset < len(rows) and rows.parts[first + offset] == offset:
                    rows.strips[first + offset] = part
            strip = drawn[min(rows.parts[index], len(drawn) - 1)]
        return strip

    # --- events ---------------------------------------------------------------------------

    def on_resize(self) -> None:
        at_end = self.is_vertical_scroll_end
        self.sync()
        if at_end:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if round(new_value) == 0 and round(old_value) != 0:
            self.check_top()

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        # Already at the top, the wheel doesn't move the view: nothing else would ask.
        self.check_top()

    # The same for the keys that scroll up while the log has focus; while a message is
    # selected, Up and Down move the selection instead.
    def action_scroll_up(self) -> None:
        if self.selected is not None:
            self.move_selection(-1)
            return
        super().action_scroll_up()
        self.check_top()

    def action_scroll_down(self) -> None:
        if self.selected is not None:
            self.move_selection(1)
            return
        super().action_scroll_down()

    def action_page_up(self) -> None:
        super().action_page_up()
        self.check_top()

    def action_scroll_home(self) -> None:
        super().action_scroll_home()
        self.check_top()

    def render_line(self, y: int) -> Strip:
        rows = self._current
        index = round(self.scroll_y) + y
        if rows is None or not 0 <= index < len(rows):
            return Strip.blank(self.scrollable_content_region.width, self._base_style())
        strip = self._row(index)
        item = rows.items[index]
        if self.selected is not None and isinstance(item, Entry) and item.seq == self.selected:
            segments = Segment.apply_style(strip, post_style=_SELECTED_STYLE)
            strip = Strip(segments, strip.cell_length)
        return strip


# Keys a selected message answers to; any other printable key goes to the input.
_SELECTION_KEYS = frozenset(
    key
    for binding in MessageLog.BINDINGS
    if isinstance(binding, Binding)
    for key in binding.key.split(",")
)
