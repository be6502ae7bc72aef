"""Modal screens: the paste confirmation and the help."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from chatroom.client.formatting import strip_formatting

__all__ = ["KEYS", "ConfirmScreen", "HelpScreen"]

KEYS = (
    ("Enter", "send the line"),
    ("Up / Down", "previous / next line you sent"),
    ("Tab", "complete a nick, /command or #room (again: next choice)"),
    ("Ctrl+N / Ctrl+P", "next / previous window"),
    ("Alt+1..9", "window by number"),
    ("Alt+A", "next window with mentions or unread messages"),
    ("PageUp / PageDown", "scroll the messages"),
    ("F1", "this help"),
    ("Ctrl+Q", "quit"),
)


class ConfirmScreen(ModalScreen[bool]):
    """Yes/no question; dismisses with True for yes."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            # The question may name a room or a nick: peer text, shown safely.
            yield Label(Text(strip_formatting(self.question)), id="question")
            with Horizontal(id="buttons"):
                yield Button("Send (y)", variant="primary", id="yes")
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#yes", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        """Keyboard answer."""
        self.dismiss(yes)


class HelpScreen(ModalScreen[None]):
    """Commands and keys, generated from the command table so it never drifts."""

    BINDINGS = [Binding("escape,q,f1", "close", "Close")]

    def compose(self) -> ComposeResult:
        from chatroom.client.commands import COMMANDS

        text = Text(end="")
        text.append("chatroom help\n\n", Style(bold=True))
        text.append("Type a message and press Enter to send it to the window you are in.\n")
        text.append("Mentions of your nick and private messages light up the room list.\n\n")
        text.append("Commands\n", Style(bold=True, underline=True))
        for command in COMMANDS.values():
            text.append(f"  {command.usage:<24}", Style(color="#5fafd7", bold=True))
            text.append(f"{command.summary}\n")
        text.append("\nKeys\n", Style(bold=True, underline=True))
        for key, what in KEYS:
            text.append(f"  {key:<24}", Style(color="#d7af5f", bold=True))
            text.append(f"{what}\n")
        text.append("\nPress Esc to close.", Style(dim=True))
        with VerticalScroll(id="help"):
            yield Static(text)

    def action_close(self) -> None:
        """Back to the chat."""
        self.dismiss(None)
