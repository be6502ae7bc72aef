"""The chat screen: room list, topic, message log, members, status line and input.

And what is done to messages picked in the log (Up in an empty input): reply (a bar
above the input says to what; the next line sent carries ``+reply``), react (the emoji
picker), copy, delete (after a confirmation), and Enter downloads an attachment. Each
says plainly when the server cannot do it. The line under the log says who is typing.

Files: a bar above the input shows an upload or download as it runs (Escape cancels
it); pasting the path of a file asks whether to upload it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Input

from chatroom.client.actions import (
    delete_problem,
    react_problem,
    redact_message,
    reply_problem,
    reply_tags,
)
from chatroom.client.commands import CommandError, complete, react, redact_input
from chatroom.client.formatting import strip_formatting
from chatroom.client.model import BufferKind, Entry, quote_of
from chatroom.client.screens.dialogs import ConfirmScreen, ReactScreen
from chatroom.client.screens.search import SearchScreen
from chatroom.client.search import SearchHit
from chatroom.client.transfer import human_size
from chatroom.client.widgets.chat_input import ChatInput
from chatroom.client.widgets.draft import DraftLines
from chatroom.client.widgets.log import MessageLog, entry_attachments
from chatroom.client.widgets.panels import (
    MemberList,
    ReplyBar,
    RoomList,
    StatusLine,
    TopicBar,
    TypingLine,
)
from chatroom.client.widgets.transfer_bar import TransferBar

if TYPE_CHECKING:
    from chatroom.client.app import ChatApp

__all__ = ["PASTE_CONFIRM_LINES", "ChatScreen", "Reply"]

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


@dataclass(frozen=True)
class Reply:
    """The message the next line answers: in buffer ``key``, ``msgid``, and its quote."""

    key: str
    msgid: str
    quote: str


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
        Binding("escape", "cancel_transfer", "cancel the upload or download", show=False),
        Binding("escape", "cancel_reply", "cancel the reply being written", show=False),
        Binding("ctrl+f", "search", "search this window's messages", show=False, priority=True),
    ]

    app: ChatApp
    ready = False  # set once the widgets exist; flushes before that are no-ops
    reply: Reply | None = None
    # The message selected when the user started typing from the selection: the line
    # being typed (a /react) is about it. (buffer key, seq); cleared when it is sent.
    typed_from: tuple[str, int] | None = None
    # A search result being loaded (CHATHISTORY AROUND): (buffer key, msgid); selected
    # once its line arrives.
    jump_to: tuple[str, str] | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with VerticalScroll(id="rooms-pane"):
                yield RoomList(id="rooms")
            with Vertical(id="center"):
                yield TopicBar(id="topic")
                yield MessageLog(id="log")
                yield TypingLine(id="typing")
            with VerticalScroll(id="members-pane"):
                yield MemberList(id="members")
        yield StatusLine(id="status")
        yield ReplyBar(id="reply")
        yield DraftLines(id="draft")
        yield TransferBar(id="transfer")
        yield ChatInput(placeholder="Type a message, or /help", id="input")

    def on_mount(self) -> None:
        chat_input = self.query_one(ChatInput)
        chat_input.completer = self._complete
        chat_input.focus()
        self.query_one(MessageLog).attachments = self.app.attachments
        self.query_one(ReplyBar).show("")
        self.query_one(DraftLines).show([])
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
            if self.reply is not None and self.reply.key != buf.key:
                self.cancel_reply()
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
            self.query_one(RoomList).update(state, self._presence)
        state.dirty_entries.clear()
        state.dirty_members.clear()
        state.dirty_list = False
        typing = state.typing_nicks(buf) if buf.kind is not BufferKind.SERVER else []
        self.query_one(TypingLine).show(typing)
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
        if self.jump_to is not None and self.jump_to[0] == buf.key:
            self._jump_when_loaded(buf.key, self.jump_to[1])
        self.update_status()

    def _presence(self, nick: str) -> str:
        return self.app.session.presence.status(nick, self.app.state.buffers)

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

    def action_search(self) -> None:
        """Ctrl+F: the search panel for the shown window."""
        buf = self.app.state.active_buffer
        target = buf.name
        self.jump_to = None  # a jump still loading is given up

        def ask(text: str) -> bool:
            return self.app.search_server(target, text)

        def chosen(hit: SearchHit | None) -> None:
            if hit is not None and self.app.state.buffers.get(buf.key) is buf:
                self.jump(buf.key, hit)
            elif self.is_current:
                self.query_one(ChatInput).focus()

        self.app.push_screen(SearchScreen(buf, ask, can_ask=self.app.can_search()), chosen)

    def jump(self, key: str, hit: SearchHit) -> None:
        """Show a search result: select its line, loading the history around it first
        when it is not loaded."""
        if key != self.app.state.active:
            self.app.switch_to(key)
        buf = self.app.state.active_buffer
        if hit.seq is not None and buf.index_of(hit.seq) is not None:
            self._select(hit.seq)
        elif hit.msgid and buf.find(hit.msgid) is not None:
            self._jump_when_loaded(key, hit.msgid)
        elif hit.msgid and self.app.load_around(key, hit.msgid):
            self.jump_to = (key, hit.msgid)
        else:
            self.refuse("That message is not loaded, and the server cannot load it now")

    def _jump_when_loaded(self, key: str, msgid: str) -> None:
        buf = self.app.state.buffers.get(key)
        index = buf.find(msgid) if buf is not None else None
        if buf is not None and index is not None:
            self.jump_to = None
            self._select(buf.entries[index].seq)

    def _select(self, seq: int) -> None:
        log = self.query_one(MessageLog)
        log.select(seq)
        log.focus()

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
        reply = self.reply
        tags = reply_tags(reply.msgid) if reply and reply.key == self.app.state.active else None
        sent = self.app.submit(line, tags=tags)
        self.typed_from = None
        if sent and tags:
            self.cancel_reply()

    @on(Input.Changed, "#input")
    def _changed(self, event: Input.Changed) -> None:
        self.app.typing(event.value)

    @on(ChatInput.DraftLinesChanged)
    def _draft_lines(self, event: ChatInput.DraftLinesChanged) -> None:
        self.query_one(DraftLines).show(event.lines)

    @on(ChatInput.PastedLines)
    def _pasted(self, event: ChatInput.PastedLines) -> None:
        lines = event.lines
        if event.typed or len(lines) <= PASTE_CONFIRM_LINES:
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

    @on(ChatInput.PastedFile)
    def _pasted_file(self, event: ChatInput.PastedFile) -> None:
        """A pasted path of a file: upload it? (No: it is pasted as text after all.)"""
        chat_input, path = event.input, event.path
        try:
            size = human_size(path.stat().st_size)
        except OSError:
            size = ""
        if not self.app.state.filehost or not size:
            chat_input.paste_text(event.text)
            return

        def answer(upload: bool | None) -> None:
            if not upload:
                chat_input.paste_text(event.text)
            else:
                try:
                    self.app.upload(str(path))
                except CommandError as exc:
                    self.refuse(str(exc))
            chat_input.focus()

        question = f"Upload {path.name} ({size}) to {self.app.state.active_buffer.name}?"
        self.app.push_screen(ConfirmScreen(question, yes="Upload"), answer)

    @on(MessageLog.NeedOlder)
    def _need_older(self, event: MessageLog.NeedOlder) -> None:
        self.app.load_older(event.key)

    @on(RoomList.Selected)
    def _room_clicked(self, event: RoomList.Selected) -> None:
        self.app.switch_to(event.key)
        self.query_one(ChatInput).focus()

    def _complete(self, word: str, at_start: bool) -> list[str]:
        return complete(self.app.state, word, at_start)

    # --- selection and what is done to the selected message ---------------------------------

    @on(ChatInput.SelectMessage)
    def _select_message(self) -> None:
        log = self.query_one(MessageLog)
        if log.select_last():
            log.focus()
        else:
            self.app.bell()

    @on(MessageLog.SelectionEnded)
    def _selection_ended(self, event: MessageLog.SelectionEnded) -> None:
        chat_input = self.query_one(ChatInput)
        if event.typed:
            log = self.query_one(MessageLog)
            if event.seq is not None and log.buffer is not None:
                self.typed_from = (log.buffer.key, event.seq)
            chat_input.insert_text_at_cursor(event.typed)
        if self.is_current:
            chat_input.focus()

    def selected_entry(self) -> Entry | None:
        """The message selected in the log, or the one the line being typed started
        from (a ``/react`` typed right after selecting a message is about it)."""
        log = self.query_one(MessageLog)
        buf = self.app.state.active_buffer
        if log.buffer is not buf:
            return None
        entry = log.selected_entry()
        if entry is None and self.typed_from is not None and self.typed_from[0] == buf.key:
            index = buf.index_of(self.typed_from[1])
            entry = buf.entries[index] if index is not None else None
        return entry

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        if isinstance(event.widget, ChatInput):
            self.query_one(MessageLog).leave_selection()  # clicked back into the input

    @on(MessageLog.LinkClicked)
    def _link_clicked(self, event: MessageLog.LinkClicked) -> None:
        self.app.open_link(event.url)

    @on(MessageLog.Act)
    def _act(self, event: MessageLog.Act) -> None:
        log = self.query_one(MessageLog)
        entry = log.selected_entry() or event.entry
        {
            "reply": self._reply,
            "react": self._react,
            "copy": self._copy,
            "delete": self._delete,
            "open": self._open,
        }[event.action](entry)

    def refuse(self, text: str) -> None:
        """Say why something cannot be done: a line in the log and a toast."""
        self.app.state.info(text, error=True)
        self.app.notify(text, severity="warning", timeout=TOAST_TIMEOUT)
        self.flush()

    def _reply(self, entry: Entry) -> None:
        problem = reply_problem(self.app.server_caps(), entry)
        if problem is not None:
            self.refuse(problem)
            return
        self.reply = Reply(self.app.state.active, entry.msgid, quote_of(entry))
        self.query_one(ReplyBar).show(self.reply.quote)
        self.query_one(MessageLog).leave_selection()
        self.query_one(ChatInput).focus()

    def cancel_reply(self) -> None:
        """Forget the reply being written."""
        self.reply = None
        self.query_one(ReplyBar).show("")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_reply":
            return self.reply is not None
        if action == "cancel_transfer":
            return self.app.transfer_running
        return True

    def action_cancel_transfer(self) -> None:
        """Escape while a file goes up or comes down: stop it."""
        self.app.cancel_transfer()

    def _open(self, entry: Entry) -> None:
        """Enter on a message: download its attachment."""
        found = entry_attachments(entry, self.app.attachments)
        if not found:
            self.refuse("That message has no attachment to download")
            return
        log = self.query_one(MessageLog)
        log.leave_selection()
        try:
            self.app.download(found[0])
        except CommandError as exc:
            self.refuse(str(exc))

    def action_cancel_reply(self) -> None:
        """Escape while writing a reply: a plain message again."""
        self.cancel_reply()

    def _react(self, entry: Entry) -> None:
        problem = react_problem(self.app.server_caps(), entry)
        if problem is not None:
            self.refuse(problem)
            return
        buf = self.app.state.active_buffer

        def chosen(emoji: str | None) -> None:
            if not emoji:
                return
            try:
                react(self.app, buf, entry, emoji)
            except CommandError as exc:
                self.refuse(str(exc))
            self.app.flush()

        self.app.push_screen(ReactScreen(quote_of(entry)), chosen)

    def _copy(self, entry: Entry) -> None:
        if entry.deleted:
            self.refuse("That message was deleted")
            return
        text = strip_formatting(entry.text)
        self.app.copy_to_clipboard(text)
        self.app.notify(f"Copied: {text[:TOAST_TEXT_CHARS]}", timeout=TOAST_TIMEOUT)

    def _delete(self, entry: Entry) -> None:
        state = self.app.state
        buf = state.active_buffer
        problem = delete_problem(state, self.app.server_caps(), buf, entry)
        if problem is not None:
            self.refuse(problem)
            return

        def answer(yes: bool | None) -> None:
            if yes and not self.app.send(redact_message(buf, entry)):
                self.refuse("Not connected to the server; the message was not deleted")

        question = f"Delete this message for everyone? ({quote_of(entry)})"
        self.app.push_screen(ConfirmScreen(question, yes="Delete"), answer)
