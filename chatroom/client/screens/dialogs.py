"""Modal screens: confirmations, the help, the emoji picker and the TLS trust questions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.style import Style
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Static

from chatroom.client.events import TrustRefused
from chatroom.client.formatting import strip_formatting
from chatroom.client.model import valid_reaction
from chatroom.client.trust import TrustQuestion, forget_command

__all__ = [
    "COMMON_REACTIONS",
    "ConfirmScreen",
    "EmojiRow",
    "HelpScreen",
    "ReactScreen",
    "TrustRefusedScreen",
    "TrustScreen",
    "key_help",
    "key_label",
]

_BOLD = Style(bold=True)
_DIM = Style(dim=True)
_GOOD = Style(color="#5faf5f", bold=True)
_BAD = Style(color="#ff5f5f", bold=True)
_FINGERPRINT = Style(color="#d7af5f", bold=True)
# Where a careful user finds the real fingerprint to compare with.
_WHERE_TO_CHECK = (
    "Ask whoever runs the server for its fingerprint: the server prints it when it "
    "starts, and `chatroom-server fingerprint` prints it again."
)

# The emoji picker's choices, in order (Left/Right/1-8 pick; anything else can be typed).
# All wide emoji (Emoji_Presentation), so terminals and Rich agree on their width.
COMMON_REACTIONS = ("👍", "💖", "😂", "🎉", "😮", "😢", "👀", "✅")

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

    def __init__(self, question: str, yes: str = "Send") -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            # The question may name a room or a nick: peer text, shown safely.
            yield Label(Text(strip_formatting(self.question)), id="question")
            with Horizontal(id="buttons"):
                yield Button(f"{self.yes} (y)", variant="primary", id="yes")
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#yes", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        """Keyboard answer."""
        self.dismiss(yes)


class EmojiRow(Widget, can_focus=True):
    """The picker's row of common reactions: Left/Right move, Enter (or 1-8) picks."""

    DEFAULT_CSS = """
    EmojiRow { height: 1; width: 100%; }
    """

    BINDINGS = [
        Binding("left", "move(-1)", "previous", show=False),
        Binding("right", "move(1)", "next", show=False),
        Binding("enter", "pick", "react", show=False),
    ]

    index: reactive[int] = reactive(0)

    def __init__(self, choices: Sequence[str], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.choices = tuple(choices)

    def render(self) -> Text:
        text = Text(end="")
        for i, emoji in enumerate(self.choices):
            style = Style(reverse=True, bold=True) if i == self.index else Style()
            text.append(f" {emoji} ", style)
            text.append(" ")
        return text

    def action_move(self, step: int) -> None:
        """Left/Right."""
        self.index = (self.index + step) % len(self.choices)

    def action_pick(self) -> None:
        """Enter: react with the highlighted one."""
        screen = self.screen
        if isinstance(screen, ReactScreen):
            screen.dismiss(self.choices[self.index])

    def on_key(self, event: events.Key) -> None:
        if event.character and event.character in "12345678"[: len(self.choices)]:
            event.stop()
            self.index = int(event.character) - 1
            self.action_pick()
        elif event.is_printable and event.character:
            # Typing an emoji (or a word) of one's own: it goes to the field below.
            event.stop()
            field = self.screen.query_one("#react-other", Input)
            field.value += event.character
            field.cursor_position = len(field.value)
            field.focus()

    def on_click(self, event: events.Click) -> None:
        # Each choice takes " x " and a space.
        x = 0
        for i, emoji in enumerate(self.choices):
            width = Text(f" {emoji}  ").cell_len
            if x <= event.x < x + width:
                self.index = i
                self.action_pick()
                return
            x += width


class ReactScreen(ModalScreen[str | None]):
    """The emoji picker: a row of common reactions, or type one. Dismisses with the
    reaction (None: cancelled)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, about: str, choices: Sequence[str] = COMMON_REACTIONS) -> None:
        super().__init__()
        self.about = about
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="react"):
            # About a peer's message: shown as plain text.
            yield Label(Text("React to " + strip_formatting(self.about)), id="question")
            yield EmojiRow(self.choices, id="emoji-row")
            yield Input(
                placeholder="or type one, then Enter", id="react-other", select_on_focus=False
            )
            yield Label(
                Text("←/→ and Enter, or 1-8; Esc cancels", Style(dim=True)), id="react-help"
            )

    def on_mount(self) -> None:
        self.query_one(EmojiRow).focus()

    @on(Input.Submitted, "#react-other")
    def _typed(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if valid_reaction(value):
            self.dismiss(value)
        else:
            self.notify("A reaction is one emoji or one short word", severity="warning")

    def action_cancel(self) -> None:
        """Escape."""
        self.dismiss(None)


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


def _fingerprint_lines(fingerprint: str) -> str:
    """A fingerprint in two halves of 16 bytes, so it fits a dialog and reads in chunks."""
    return fingerprint[:47] + "\n" + fingerprint[48:]


class TrustScreen(ModalScreen[bool]):
    """First contact with a server whose certificate no authority vouches for: its
    fingerprint, the one it announced on the network (if any, and whether they match),
    and "Trust this server?" like ssh. Dismisses with True for Trust.

    Cancel has the focus: trusting is a decision, not something Enter does by habit.
    """

    BINDINGS = [
        Binding("t", "answer(True)", "Trust"),
        Binding("c,escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, question: TrustQuestion) -> None:
        super().__init__()
        self.question = question

    def text(self) -> Text:
        """What the dialog says (every part of it ours or checked: no markup)."""
        q = self.question
        text = Text(end="")
        text.append(f"First connection to {q.address} with TLS.\n\n", _BOLD)
        text.append("Its certificate is not signed by an authority this computer trusts")
        text.append(f" ({q.why})" if q.why else "")
        text.append(
            ", as is usual for a server on your own network. Check that it is the server "
            "you mean by its SHA-256 fingerprint:\n\n"
        )
        text.append(_fingerprint_lines(q.fingerprint) + "\n\n", _FINGERPRINT)
        matches = q.announced_matches
        if matches is True:
            text.append("✓ It matches the fingerprint the server announced on the network", _GOOD)
            text.append(" (a good sign, but anyone on the network can announce).\n\n")
        elif matches is False:
            assert q.announced is not None
            text.append("✗ It does NOT match the fingerprint announced on the network:\n", _BAD)
            text.append(_fingerprint_lines(q.announced) + "\n", _FINGERPRINT)
            text.append("Someone may be pretending to be that server.\n\n", _BAD)
        text.append(_WHERE_TO_CHECK + "\n\n", _DIM)
        text.append("Trust this server? ", _BOLD)
        text.append("Its fingerprint will be remembered for this host and port.")
        return text

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="trust"):
            yield Static(self.text(), id="question")
            with Horizontal(id="buttons"):
                yield Button("Trust (t)", variant="warning", id="trust")
                yield Button("Cancel (c)", variant="primary", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "trust")

    def action_answer(self, trust: bool) -> None:
        """Keyboard answer."""
        self.dismiss(trust)


class TrustRefusedScreen(ModalScreen[None]):
    """The server presented another certificate than the one trusted for it: the
    connection was refused. Both fingerprints, and how to forget the old one when the
    change is known to be right. One button, Close: there is no "continue anyway"."""

    BINDINGS = [Binding("escape,enter", "close", "Close")]

    def __init__(self, refused: TrustRefused) -> None:
        super().__init__()
        self.refused = refused

    def text(self) -> Text:
        """What the screen says."""
        r = self.refused
        text = Text(end="")
        if r.pinned:
            title = f"Refused: {r.address} did not present the expected certificate"
        else:
            title = f"Refused: the certificate of {r.address} has changed"
        text.append(title + "\n\n", _BAD)
        if r.pinned:
            text.append("Expected (--trust-fingerprint):\n", _BOLD)
        else:
            since = f" since {r.trusted_since}" if r.trusted_since else ""
            text.append(f"Trusted{since}:\n", _BOLD)
        text.append(_fingerprint_lines(r.expected) + "\n\n", _FINGERPRINT)
        text.append("Presented now:\n", _BOLD)
        text.append(_fingerprint_lines(r.presented) + "\n\n", _FINGERPRINT)
        text.append(
            "Either the server has a new certificate (reinstalled, or its data directory "
            "was lost), or someone is intercepting the connection. Nothing was sent to it.\n\n"
        )
        text.append(_WHERE_TO_CHECK + "\n\n", _DIM)
        if r.pinned:
            text.append("If the new one is right, run again with it in --trust-fingerprint.")
        else:
            text.append("If the new one is right, forget the old one, then connect again:\n\n")
            text.append("  " + forget_command(r.address), _BOLD)
        return text

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="trust"):
            yield Static(self.text(), id="question")
            with Horizontal(id="buttons"):
                yield Button("Close", variant="error", id="close")

    def on_mount(self) -> None:
        self.query_one("#close", Button).focus()

    @on(Button.Pressed, "#close")
    def _pressed(self) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        """Back to the (closed) chat."""
        self.dismiss(None)
