"""Modal screens: the paste confirmation and the help."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from chatroom.client.formatting import strip_formatting

__all__ = ["ConfirmScreen", "HelpScreen", "key_help", "key_label"]

# Key names as the help writes them, where capitalising the name is not enough.
_KEY_NAMES = {"pageup": "PageUp", "pagedown": "PageDown", "escape": "Esc"}


def key_label(keys: Iterable[str]) -> str:
    """Textual key names as people write them; several keys with the same modifiers
    become a range.

    >>> key_label(["ctrl+n", "alt+right"]), key_label(["pageup", "pagedown"])
    ('Ctrl+N / Alt+Right', 'PageUp / PageDown')
    >>> key_label(f"alt+{n}" for n in range(1, 10))
    'Alt+1..9'
    """
    parsed = [key.split("+") for key in keys]
    names = [_KEY_NAMES.get(k[-1], k[-1].capitalize()) for k in parsed]
    modifiers = ["".join(m.capitalize() + "+" for m in k[:-1]) for k in parsed]
    if len(parsed) > 2 and len(set(modifiers)) == 1:
        return f"{modifiers[0]}{names[0]}..{names[-1]}"
    return " / ".join(m + n for m, n in zip(modifiers, names, strict=True))


def key_help(bindings: Iterable[BindingType]) -> list[tuple[str, str]]:
    """(keys, what they do) for the help, from the bindings that have a description.

    Keys bound to one action share a row, and so do the bindings of one
    :class:`Binding.Group` (under the group's description).
    """
    rows: dict[object, tuple[list[str], str]] = {}
    for binding in bindings:
        if not isinstance(binding, Binding):
            continue
        what = binding.group.description if binding.group else binding.description
        if what:
            keys, _ = rows.setdefault(binding.group or binding, ([], what))
            keys.extend(binding.key.split(","))
    return [(key_label(keys), what) for keys, what in rows.values()]


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
    """Commands and keys, generated from the command table and the key bindings
    (see :func:`key_help`) so it never drifts."""

    BINDINGS = [Binding("escape,q,f1", "close", "Close")]

    def __init__(self, keys: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        from chatroom.client.commands import COMMANDS

        text = Text(end="")
        text.append("chatroom help\n\n", Style(bold=True))
        text.append("Type a message and press Enter to send it to the window you are in.\n")
        text.append("Mentions of your nick and private messages light up the room list.\n\n")
        text.append("Commands\n", Style(bold=True, underline=True))
        for command in COMMANDS.values():
            text.append(f"  {command.usage:<29}", Style(color="#5fafd7", bold=True))
            text.append(f"{command.summary}\n")
        text.append("\nKeys\n", Style(bold=True, underline=True))
        for key, what in self.keys:
            text.append(f"  {key:<24}", Style(color="#d7af5f", bold=True))
            text.append(f"{what}\n")
        text.append("\nPress Esc to close.", Style(dim=True))
        with VerticalScroll(id="help"):
            yield Static(text)

    def action_close(self) -> None:
        """Back to the chat."""
        self.dismiss(None)
