"""The chat screen: room list, topic, message log, members, status line and input."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Input

from chatroom.client.commands import complete, redact_input
from chatroom.client.formatting import strip_formatting
from chatroom.client.model import BufferKind
from chatroom.client.screens.dialogs import ConfirmScreen
from chatroom.client.widgets.chat_input import ChatInput
from chatroom.client.widgets.log import MessageLog
from chatroom.client.widgets.panels import MemberList, RoomList, StatusLine, TopicBar

if TYPE_CHECKING:
    from chatroom.client.app import ChatApp

__all__ = ["PASTE_CONFIRM_LINES", "ChatScreen"]

# Pastes longer than this many lines ask before sending (issue: "longer than 5 lines").
PASTE_CONFIRM_LINES = 5
# Toasts shown per repaint at most; a flood of mentions shouldn't bury the screen.
MAX_TOASTS_PER_FLUSH = 3
TOAST_TIMEOUT = 6.0
TOAST_TEXT_CHARS = 200
# Below this many columns the member list is hidden and the room list narrows.
NARROW_WIDTH = 100
# Keys that share a row in the help.
_SCROLL = Binding.Group("scroll the messages")
_BY_NUMBER = Binding.Group("window by number")


class ChatScreen(Screen[None]):
    """Everything while connected (or reconnecting). Reads the app's ClientState."""

    # The help screen lists these (and the input's and the app's) with their descriptions.
    BINDINGS = [
        Binding("ctrl+n,alt+right", "cycle(1)", "next window", show=False),
        Binding("ctrl+p,alt+left", "cycle(-1)", "previous window", show=False),
        Binding("alt+a", "next_active", "next window with mentions or unread messages", show=False),
        Binding("pageup", "page(-1)", "scroll up", show=False, group=_SCROLL),
        Binding("pagedown", "page(1)", "scroll down", show=False, group=_SCROLL),
        Binding("f1", "help", "this help", show=False),
        *[
            Binding(f"alt+{n}", f"goto({n})", f"window {n}", show=False, group=_BY_NUMBER)
            for n in range(1, 10)
        ],
        Binding("alt+0", "goto(10)", "window 10", show=False),
    ]

    app: ChatApp
    ready = False  # set once the widgets exist; flushes before that are no-ops

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with VerticalScroll(id="rooms-pane"):
                yield RoomList(id="rooms")
            with Vertical(id="center"):
                yield TopicBar(id="topic")
                yield MessageLog(id="log")
            with VerticalScroll(id="members-pane"):
                yield MemberList(id="members")
        yield StatusLine(id="status")
        yield ChatInput(placeholder="Type a message, or /help", id="input")

    def on_mount(self) -> None:
        chat_input = self.query_one(ChatInput)
        chat_input.completer = self._complete
        chat_input.focus()
        self.ready = True
        self.refresh_all()

    def on_resize(self, event: events.Resize) -> None:
        # Small terminals: the log matters most, so the member list goes first.
        self.set_class(event.size.width < NARROW_WIDTH, "narrow")

    def on_unmount(self) -> None:
        self.ready = False

    # --- painting from the model --------------------------------------------------------

    def refresh_all(self) -> None:
        """Repaint everything from the model (after a switch or on first show)."""
        state = self.app.state
        state.dirty_list = True
        state.dirty_members.add(state.active)
        state.dirty_entries.add(state.active)
        self.flush(switched=True)

    def flush(self, *, switched: bool = False) -> None:
        """Apply what changed in the model since the last flush."""
        if not self.ready:
            return
        state = self.app.state
        buf = state.active_buffer
        log = self.query_one(MessageLog)
        if switched or log.buffer is not buf:
            log.show(buf)
            self.query_one(TopicBar).show(buf)
            self.query_one(MemberList).update(state, buf)
            self.set_class(buf.kind is BufferKind.SERVER, "server-view")
        elif state.active in state.dirty_entries:
            log.sync()
        if state.active in state.dirty_members:
            self.query_one(TopicBar).show(buf)
            self.query_one(MemberList).update(state, buf)
        if state.dirty_list:
            self.query_one(RoomList).update(state)
        state.dirty_entries.clear()
        state.dirty_members.clear()
        state.dirty_list = False
        if state.alerts:
            alerts, state.alerts = state.alerts, []
            for alert in alerts[-MAX_TOASTS_PER_FLUSH:]:
                where = "private message" if alert.key[:1] not in "#&" else alert.buffer_name
                self.app.notify(
                    strip_formatting(alert.text)[:TOAST_TEXT_CHARS],
                    title=f"{alert.nick} ({where})",
                    markup=False,
                    timeout=TOAST_TIMEOUT,
                )
            self.app.bell()
        self.update_status()

    def update_status(self) -> None:
        """Redraw the status line from the app's connection state."""
        session = self.app.session
        self.query_one(StatusLine).show(
            server=session.label,
            nick=session.state.nick,
            state=str(session.link),
            lag=session.lag,
            away=session.state.away,
            detail=session.link_detail,
            account=session.state.account,
            accounts=session.state.accounts_supported,
        )

    # --- actions --------------------------------------------------------------------------

    def action_cycle(self, step: int) -> None:
        """Next/previous window in room-list order."""
        order = [b.key for b in self.app.state.ordered()]
        index = order.index(self.app.state.active) if self.app.state.active in order else 0
        self.app.switch_to(order[(index + step) % len(order)])

    def action_goto(self, number: int) -> None:
        """Alt+N: window N in the room list."""
        order = self.app.state.ordered()
        if 0 < number <= len(order):
            self.app.switch_to(order[number - 1].key)

    def action_next_active(self) -> None:
        """Alt+A: the next window with mentions, else with unread messages."""
        order = self.app.state.ordered()
        for pick in (lambda b: b.mentions, lambda b: b.unread):
            for buf in order:
                if pick(buf) and buf.key != self.app.state.active:
                    self.app.switch_to(buf.key)
                    return

    def action_page(self, direction: int) -> None:
        """PageUp/PageDown scroll the log even while typing."""
        log = self.query_one(MessageLog)
        if direction < 0:
            log.scroll_page_up(animate=False)
            log.check_top()  # already at the top: the scroll alone would not ask
        else:
            log.scroll_page_down(animate=False)

    def action_help(self) -> None:
        """F1: the help screen."""
        self.app.show_help()

    # --- input ----------------------------------------------------------------------------

    @on(Input.Submitted, "#input")
    def _submitted(self, event: Input.Submitted) -> None:
        chat_input = self.query_one(ChatInput)
        line = event.value
        # Passwords (/login, NickServ IDENTIFY...) never go into the history.
        chat_input.remember(redact_input(line, self.app.state.active_buffer.name) or "")
        chat_input.value = ""
        self.app.submit(line)

    @on(ChatInput.PastedLines)
    def _pasted(self, event: ChatInput.PastedLines) -> None:
        lines = event.lines
        if len(lines) <= PASTE_CONFIRM_LINES:
            self.app.submit_lines(lines)
            return

        def answer(send: bool | None) -> None:
            if send:
                self.app.submit_lines(lines)
            else:
                self.app.state.info(f"Paste of {len(lines)} lines not sent")
                self.flush()

        self.app.push_screen(
            ConfirmScreen(f"Send {len(lines)} lines to {self.app.state.active_buffer.name}?"),
            answer,
        )

    @on(MessageLog.NeedOlder)
    def _need_older(self, event: MessageLog.NeedOlder) -> None:
        self.app.load_older(event.key)

    @on(RoomList.Selected)
    def _room_clicked(self, event: RoomList.Selected) -> None:
        self.app.switch_to(event.key)
        self.query_one(ChatInput).focus()

    def _complete(self, word: str, at_start: bool) -> list[str]:
        return complete(self.app.state, word, at_start)
