"""The chat screen's side panels and bars: room list, member list, topic, status, who is
typing, and the reply being written."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual import events
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static

from chatroom.client.formatting import irc_to_text, nick_colour, strip_formatting
from chatroom.client.model import Buffer, BufferKind, typing_text
from chatroom.client.state import ClientState
from chatroom.client.widgets.log import IDENT_MARKS
from chatroom.protocol import casefold

__all__ = [
    "PRESENCE_DOTS",
    "MemberList",
    "ReplyBar",
    "RoomList",
    "StatusLine",
    "TopicBar",
    "TypingLine",
]

_HEADER = Style(dim=True, bold=True)
_ACTIVE = Style(reverse=True, bold=True)
_UNREAD = Style(bold=True)
_MENTION = Style(color="#ff5f5f", bold=True)
_DIM = Style(dim=True)
# Beside a private conversation in the PEOPLE list: its peer's presence (MONITOR, and
# away from the rooms' member lists); nothing while unknown.
PRESENCE_DOTS: dict[str, tuple[str, Style]] = {
    "online": ("● ", Style(color="#5faf5f", bold=True)),
    "away": ("● ", Style(color="#d7af5f", bold=True)),
    "offline": ("○ ", Style(color="#6c6c6c", dim=True)),
}


class RoomList(Widget):
    """Rooms and private conversations with unread/mention counts; click to switch."""

    DEFAULT_CSS = """
    RoomList { height: auto; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    @dataclass
    class Selected(Message):
        """The user clicked a buffer in the list."""

        key: str

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._text = Text()
        self._keys: list[str | None] = []
        self._presence: Callable[[str], str] | None = None

    def update(self, state: ClientState, presence: Callable[[str], str] | None = None) -> None:
        """Rebuild from the model (cheap: one line per buffer). ``presence(nick)``:
        online, away, offline or unknown, for the dots beside private conversations."""
        self._presence = presence
        text = Text(end="")
        keys: list[str | None] = []
        section = None
        for number, buf in enumerate(state.ordered(), 1):
            heading = {
                BufferKind.SERVER: "SERVER",
                BufferKind.CHANNEL: "ROOMS",
                BufferKind.QUERY: "PEOPLE",
            }[buf.kind]
            if heading != section:
                if section is not None:
                    text.append("\n")
                    keys.append(None)
                text.append(heading + "\n", _HEADER)
                keys.append(None)
                section = heading
            text.append_text(self._line(buf, number, buf.key == state.active))
            text.append("\n")
            keys.append(buf.key)
        text.rstrip()
        text.no_wrap = True
        text.overflow = "ellipsis"
        self._text, self._keys = text, keys
        self.refresh(layout=True)

    def _line(self, buf: Buffer, number: int, active: bool) -> Text:
        dot = PRESENCE_DOTS.get(self._presence(buf.name)) if self._presence else None
        name = strip_formatting(buf.name)
        if buf.kind is BufferKind.CHANNEL and not buf.joined:
            name = f"({name})"
        line = Text(f"{number:>2} ", _DIM, end="")
        name_style = _ACTIVE if active else _UNREAD if buf.unread else Style()
        if buf.kind is BufferKind.QUERY:
            name_style += Style(color=nick_colour(buf.name))
        if buf.kind is BufferKind.QUERY and dot is not None:
            line.append(*dot)
        line.append(name, name_style)
        if buf.mentions:
            line.append(f" @{buf.mentions}", _MENTION)
        if buf.unread:
            line.append(f" {buf.unread}", _UNREAD)
        return line

    def render(self) -> Text:
        return self._text

    def get_content_height(self, container, viewport, width: int) -> int:  # type: ignore[override]
        return max(1, len(self._keys))

    def on_click(self, event: events.Click) -> None:
        y = event.y
        if 0 <= y < len(self._keys) and self._keys[y] is not None:
            self.post_message(self.Selected(self._keys[y]))


class MemberList(Widget):
    """Members of the shown room: ops, then voiced, then the rest, each A-Z."""

    DEFAULT_CSS = """
    MemberList { height: auto; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._text = Text()
        self._lines = 1

    def update(self, state: ClientState, buf: Buffer) -> None:
        """Rebuild from ``buf``'s members."""
        text = Text(end="")
        if buf.kind is BufferKind.CHANNEL:
            members = buf.sorted_members(state.prefix_chars)
            text.append(f"{len(members)} {'person' if len(members) == 1 else 'people'}\n", _HEADER)
            for m in members:
                # Prefix characters are the server's (ISUPPORT PREFIX): peer text too.
                prefix = strip_formatting(m.prefixes[:1]) or " "
                text.append(prefix, Style(color="#5faf5f", bold=True))
                # away-notify: people who are away are greyed out.
                style = Style(color=nick_colour(m.nick), dim=m.away or None, italic=m.away or None)
                text.append(strip_formatting(m.nick), style)
                _mark(text, state, m.nick)
        elif buf.kind is BufferKind.QUERY:
            text.append("Private chat\n", _HEADER)
            text.append(" " + strip_formatting(buf.name), Style(color=nick_colour(buf.name)))
            _mark(text, state, buf.name)
        text.rstrip()
        text.no_wrap = True
        text.overflow = "ellipsis"
        self._text = text
        self._lines = text.plain.count("\n") + 1
        self.refresh(layout=True)

    @property
    def plain(self) -> str:
        """The list as text (for tests)."""
        return self._text.plain

    def render(self) -> Text:
        return self._text

    def get_content_height(self, container, viewport, width: int) -> int:  # type: ignore[override]
        return self._lines


def _mark(text: Text, state: ClientState, nick: str) -> None:
    """The end of a member's line: their login mark now (see model.Ident), if any."""
    mark = IDENT_MARKS.get(state.identity(nick))
    if mark:
        text.append(" ")
        text.append(*mark)
    text.append("\n")


class TopicBar(Static):
    """The shown room's topic, rendered safely (IRC formatting as styles)."""

    def show(self, buf: Buffer) -> None:
        """Show ``buf``'s topic (or its name and what it is)."""
        text = Text(end="", no_wrap=True, overflow="ellipsis")
        text.append(strip_formatting(buf.name), Style(bold=True))
        text.append("  ")
        if buf.kind is BufferKind.CHANNEL:
            if buf.topic:
                text.append_text(irc_to_text(buf.topic))
            else:
                text.append("no topic set (/topic TEXT sets one)", _DIM)
        elif buf.kind is BufferKind.QUERY:
            text.append("private conversation", _DIM)
        else:
            text.append("server messages", _DIM)
        self.update(text)


class StatusLine(Static):
    """Server, nick, connection state, lag."""

    def show(
        self,
        *,
        server: str,
        nick: str,
        state: str,
        lag: float | None,
        away: bool,
        detail: str = "",
        account: str | None = None,
        accounts: bool = False,
    ) -> None:
        """Redraw with these values (``account``: ours, if logged in; ``accounts``: the
        server has accounts, so "not logged in" is worth saying)."""
        colour = {"connected": "#5faf5f", "waiting": "#ff5f5f", "closed": "#ff5f5f"}.get(
            state, "#d7af5f"
        )
        text = Text(end="", no_wrap=True, overflow="ellipsis")
        text.append(" ● ", Style(color=colour, bold=True))
        text.append(state, Style(color=colour))
        if detail:
            text.append(f" ({detail})", _DIM)
        text.append("  │  ", _DIM)
        text.append(strip_formatting(server))
        text.append("  │  ", _DIM)
        text.append(strip_formatting(nick), Style(bold=True, color=nick_colour(nick)))
        if account:
            text.append(" ✓", Style(color="#5faf5f", bold=True))
            if casefold(account) != casefold(nick):  # logged in to another name
                text.append(" " + strip_formatting(account), Style(color="#5faf5f"))
        elif accounts:
            text.append(" (not logged in)", _DIM)
        if away:
            text.append(" (away)", _DIM)
        text.append("  │  ", _DIM)
        text.append("lag " + ("?" if lag is None else f"{lag * 1000:.0f} ms"), _DIM)
        self.update(text)


class TypingLine(Static):
    """One line under the log: who is typing in the shown window (nicks as plain text)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, markup=False)
        self.text = ""

    def show(self, nicks: list[str]) -> None:
        """Say that ``nicks`` are typing (none: an empty line)."""
        text = typing_text([strip_formatting(n) for n in nicks])
        if text != self.text:
            self.text = text
            self.update(Text(text, _DIM, end="", no_wrap=True, overflow="ellipsis"))


class ReplyBar(Static):
    """Above the input while writing a reply: whom and what it answers."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, markup=False)
        self.text = ""

    def show(self, quote: str) -> None:
        """``quote``: 'alice: first words…' of the message answered ("": no reply)."""
        self.text = f"replying to {strip_formatting(quote)}" if quote else ""
        text = Text(end="", no_wrap=True, overflow="ellipsis")
        if quote:
            text.append("↪ " + self.text, Style(color="#5fafd7"))
            text.append("  (Esc cancels)", _DIM)
        self.update(text)
        self.display = bool(quote)
