"""An image shown in the terminal (the optional ``textual-image`` library), Escape closes it.

``textual-image`` draws with the terminal's graphics protocol (Kitty's, or Sixel) where
the terminal has one, else with coloured half blocks, which any colour terminal shows.
It asks the terminal about itself when it is first imported, which it cannot do once
Textual reads the keyboard: the command line imports it before the app starts
(:func:`load_image_support`).
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label

from chatroom.client.formatting import strip_formatting

__all__ = ["ImagePreviewScreen", "image_preview_available", "load_image_support"]

_MODULE = "textual_image.widget"


def image_preview_available() -> bool:
    """Whether ``textual-image`` (the ``images`` extra) is installed."""
    try:
        return importlib.util.find_spec("textual_image") is not None
    except (ImportError, ValueError):
        return False


def load_image_support() -> None:
    """Import ``textual-image`` now, before Textual owns the terminal, if it is there."""
    if image_preview_available():
        try:
            importlib.import_module(_MODULE)
        except Exception:  # a broken install must not stop the chat
            pass


class ImagePreviewScreen(ModalScreen[str]):
    """The picture at ``path``; dismisses with "open" when asked for the system viewer."""

    BINDINGS = [
        Binding("escape,q", "dismiss('')", "close the picture"),
        Binding("o", "dismiss('open')", "open it in the system viewer"),
    ]

    def __init__(self, path: Path, name: str, *, can_open: bool = True) -> None:
        super().__init__()
        self.path = path
        self.title_text = strip_formatting(name)
        self.can_open = can_open

    def compose(self) -> ComposeResult:
        image_module = importlib.import_module(_MODULE)
        hint = "Esc closes" + (" · o opens it in the system viewer" if self.can_open else "")
        with Vertical(id="preview-box"):
            yield Label(Text(f"{self.title_text}  ({hint})"), id="preview-title")
            yield image_module.Image(str(self.path), id="preview-image")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "dismiss" and parameters == ("open",):
            return self.can_open
        return True
