"""The connect screen: host, port, nick, password, and the servers used recently."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from chatroom.client.config import RecentServer, load_recent, parse_address
from chatroom.client.connection import DEFAULT_PORT
from chatroom.client.formatting import strip_formatting
from chatroom.protocol import is_valid_nick

__all__ = ["ConnectDetails", "ConnectScreen"]


@dataclass(frozen=True)
class ConnectDetails:
    """Where to connect and as whom: what the connect screen starts with and answers."""

    host: str
    port: int = DEFAULT_PORT
    nick: str = ""
    password: str | None = None


class ConnectScreen(Screen[ConnectDetails]):
    """Asks where to connect; Enter in any field (or a recent server) dismisses the
    screen with the :class:`ConnectDetails` chosen. ``config_dir`` has the recent list."""

    BINDINGS = [Binding("escape", "app.quit", "Quit", show=False)]

    def __init__(self, defaults: ConnectDetails, config_dir: Path) -> None:
        super().__init__()
        self.defaults = defaults
        self.config_dir = config_dir
        self._recent: list[RecentServer] = []

    def compose(self) -> ComposeResult:
        opts = self.defaults
        with Vertical(id="connect-box"):
            yield Static(Text("chatroom", style="bold"), id="connect-title")
            yield Static(
                Text("Chat with people on your network. Where is the server?", style="dim"),
                id="connect-intro",
            )
            with Horizontal(classes="field"):
                yield Label("Server")
                yield Input(opts.host, placeholder="host name or IP address", id="host")
            with Horizontal(classes="field"):
                yield Label("Port")
                yield Input(
                    str(opts.port), placeholder=str(DEFAULT_PORT), id="port", type="integer"
                )
            with Horizontal(classes="field"):
                yield Label("Nick")
                yield Input(opts.nick, placeholder="your name in the chat", id="nick")
            with Horizontal(classes="field"):
                yield Label("Password")
                yield Input(
                    opts.password or "",
                    placeholder="only if the server has one",
                    password=True,
                    id="password",
                )
            yield Static("", id="connect-error")
            yield Button("Connect", variant="primary", id="connect")
            yield Label("Recent servers", id="recent-title")
            yield OptionList(id="recent")

    def on_mount(self) -> None:
        self._recent = load_recent(self.config_dir)
        recent = self.query_one("#recent", OptionList)
        if self._recent:
            recent.add_options(
                [
                    Option(Text(strip_formatting(s.label)), id=str(i))
                    for i, s in enumerate(self._recent)
                ]
            )
        else:
            recent.add_option(Option(Text("none yet", style="dim"), disabled=True))
        if not self.query_one("#host", Input).value and self._recent:
            self._fill(self._recent[0])
        self.query_one("#host", Input).focus()

    def _fill(self, server: RecentServer) -> None:
        self.query_one("#host", Input).value = server.host
        self.query_one("#port", Input).value = str(server.port)
        self.query_one("#nick", Input).value = server.nick

    @on(OptionList.OptionSelected, "#recent")
    def _recent_chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self._fill(self._recent[int(event.option.id)])
            self.connect()

    @on(Input.Submitted)
    @on(Button.Pressed, "#connect")
    def _go(self) -> None:
        self.connect()

    def connect(self) -> None:
        """Validate the fields and answer with them, or say what is wrong."""
        error = self.query_one("#connect-error", Static)
        try:
            host, port = parse_address(
                self.query_one("#host", Input).value,
                int(self.query_one("#port", Input).value or DEFAULT_PORT),
            )
        except ValueError as exc:
            error.update(Text(strip_formatting(f"Server: {exc}"), style="bold red"))
            self.query_one("#host", Input).focus()
            return
        nick = self.query_one("#nick", Input).value.strip()
        if not is_valid_nick(nick):
            error.update(
                Text(
                    "Nick: letters, digits and -[]\\`_^{|}, not starting with a digit or -",
                    style="bold red",
                )
            )
            self.query_one("#nick", Input).focus()
            return
        password = self.query_one("#password", Input).value or None
        self.dismiss(ConnectDetails(host, port, nick, password))
