"""The connect screen: server, nick, account, TLS, the servers announced on this
network (live) and the servers used recently.

The TLS switch follows a simple rule unless the user flips it: on for port 6697, off
for 6667 (in the port field, or typed after the host: ``lan:6667``), as it was last
time for a recent server, and on for a server found on the network that offers TLS.
Flipping it moves the port between the two standard ones. ``ircs://host`` (or
``irc://``) in the server field says it too. With nothing to go by, it is on, port
6697: chatroom servers offer TLS unless told not to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Input, Label, OptionList, Static, Switch
from textual.widgets.option_list import Option

from chatroom.client.config import (
    PLAIN_PORT,
    TLS_PORT,
    RecentServer,
    load_recent,
    parse_server,
)
from chatroom.client.connection import DEFAULT_PORT
from chatroom.client.formatting import strip_formatting
from chatroom.client.widgets.lan import LanServers, ServerBrowser
from chatroom.protocol import casefold, is_valid_nick

__all__ = ["ConnectDetails", "ConnectScreen"]

# Placeholders of the account password field: what leaving it empty means.
_PASSWORD_HINT = "optional"
_REMEMBERED_HINT = "(remembered)"
# Beside the switch (one line), and its tooltip (the whole rule).
TLS_LABEL = f"TLS, encrypted (on for port {TLS_PORT}, off for {PLAIN_PORT})"
TLS_HELP = (
    f"TLS encrypts the connection. It is on for port {TLS_PORT}, off for {PLAIN_PORT} "
    "(in the port field or after the host), as it was last time for a recent server, and "
    "on for a server found on this network that offers it; ircs:// in the server field "
    "turns it on. The first time, you are shown the server's certificate fingerprint to "
    "check."
)


def typed_port(text: str) -> int | None:
    """The port typed after the host in the server field (None: none, or a scheme
    decides).

    >>> typed_port("lan:6667"), typed_port("[::1]:7000"), typed_port("lan"), typed_port("lan:")
    (6667, 7000, None, None)
    >>> typed_port("ircs://lan:6667"), typed_port("fd00::1")
    (None, None)
    """
    if "://" in text:
        return None
    try:
        _, port, _ = parse_server(text, 0)
    except ValueError:
        return None
    return port or None


@dataclass(frozen=True)
class ConnectDetails:
    """Where to connect and as whom: what the connect screen starts with and answers.

    ``password`` is the server's (PASS). ``account`` (empty: the nick) and
    ``account_password`` log in; no account password means "the remembered one, if
    any". ``register``: create the account first. ``remember``: keep the password
    once it worked. ``forget``: the user turned "remember" off for an account whose
    password is remembered: forget it. ``tls``: connect with TLS.
    ``expected_fingerprint``: the certificate fingerprint the server announced on the
    network (discovery), shown beside the real one when the user is asked to trust it.
    """

    host: str
    port: int = DEFAULT_PORT
    nick: str = ""
    password: str | None = None
    account: str = ""
    account_password: str | None = None
    register: bool = False
    remember: bool = False
    forget: bool = False
    tls: bool = False
    expected_fingerprint: str | None = None


# (host, port, account) -> True when a password is remembered for it.
Remembered = Callable[[str, int, str], bool]


class ConnectScreen(Screen[ConnectDetails]):
    """Asks where to connect; Enter in any field (or a recent server) dismisses the
    screen with the :class:`ConnectDetails` chosen. ``config_dir`` has the recent list;
    ``remembered`` says whether a password is remembered for a server and account;
    ``discovery`` finds the servers on the network while the screen is shown (None:
    not looking)."""

    BINDINGS = [Binding("escape", "app.quit", "Quit", show=False)]

    def __init__(
        self,
        defaults: ConnectDetails,
        config_dir: Path,
        remembered: Remembered | None = None,
        discovery: ServerBrowser | None = None,
    ) -> None:
        super().__init__()
        self.defaults = defaults
        self.config_dir = config_dir
        self.remembered = remembered
        self.discovery = discovery
        self._recent: list[RecentServer] = []
        # (host, port, account) whose password is remembered, as last filled in.
        self._known: tuple[str, int, str] | None = None
        # The port and TLS switch as last made to agree (see _port_changed): a change
        # we made ourselves must not move the other one back.
        self._synced_port = str(defaults.port)
        self._synced_tls = defaults.tls
        # The port typed after the host as last acted on (see _host_changed).
        self._host_port: int | None = None
        # What the server found on the network announced, and for which (host, port):
        # a server typed in afterwards is another one, with nothing announced.
        self._expected_fingerprint = defaults.expected_fingerprint
        self._expected_for = (defaults.host, defaults.port)

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
                yield Label("Port", classes="second")
                yield Input(
                    str(opts.port), placeholder=str(DEFAULT_PORT), id="port", type="integer"
                )
            with Horizontal(classes="field"):
                yield Label("Nick")
                yield Input(opts.nick, placeholder="your name in the chat", id="nick")
                yield Label("Server pw", classes="second")
                yield Input(
                    opts.password or "",
                    placeholder="if it has one",
                    password=True,
                    id="password",
                )
            with Horizontal(classes="field"):
                yield Label("Account")
                yield Input(opts.account, placeholder="your nick", id="account")
                yield Label("Password", classes="second")
                yield Input(
                    opts.account_password or "",
                    placeholder=_PASSWORD_HINT,
                    password=True,
                    id="account-password",
                )
            with Horizontal(classes="field switches"):
                yield Switch(opts.tls, id="tls", tooltip=TLS_HELP)
                yield Label(TLS_LABEL, classes="switch-label", id="tls-help")
            with Horizontal(classes="field switches"):
                yield Switch(opts.register, id="register")
                yield Label("register this account", classes="switch-label")
                yield Switch(opts.remember, id="remember")
                yield Label("remember password", classes="switch-label")
            yield Static("", id="connect-error")
            yield Button("Connect", variant="primary", id="connect")
            yield LanServers(self.discovery, id="lan-servers")
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

    def _set_tls(self, port: str, tls: bool) -> None:
        """Set the port and the switch together (their Changed events then do nothing)."""
        self._synced_port, self._synced_tls = port, tls
        self.query_one("#port", Input).value = port
        self.query_one("#tls", Switch).value = tls

    # Both handlers read the widgets, not the event: a Changed event may be older than
    # the value (one we set ourselves since), and acting on it would undo the newer one.

    @on(Input.Changed, "#port")
    def _port_changed(self) -> None:
        """Port 6697 turns TLS on, 6667 off; other ports leave the switch alone."""
        port = self.query_one("#port", Input).value
        if port == self._synced_port:
            return
        tls = self.query_one("#tls", Switch).value
        if port == str(TLS_PORT):
            tls = True
        elif port == str(PLAIN_PORT):
            tls = False
        self._set_tls(port, tls)

    @on(Input.Changed, "#host")
    def _host_changed(self) -> None:
        """A port typed after the host follows the port rule too (once per change of
        that port, so the switch can still be flipped afterwards)."""
        port = typed_port(self.query_one("#host", Input).value)
        if port == self._host_port:
            return
        self._host_port = port
        if port in (TLS_PORT, PLAIN_PORT):
            self.query_one("#tls", Switch).value = port == TLS_PORT

    @on(Switch.Changed, "#tls")
    def _tls_changed(self) -> None:
        """Flipping TLS moves a standard port to the other standard one."""
        tls = self.query_one("#tls", Switch).value
        if tls == self._synced_tls:
            return
        port = self.query_one("#port", Input).value
        if tls and port == str(PLAIN_PORT):
            port = str(TLS_PORT)
        elif not tls and port == str(TLS_PORT):
            port = str(PLAIN_PORT)
        self._set_tls(port, tls)

    def choose(
        self, host: str, port: int, *, tls: bool = True, fingerprint: str | None = None
    ) -> None:
        """Fill in a server found some other way (discovery): its address, TLS, and the
        certificate fingerprint it announced, shown beside the real one if we ask (while
        the host and port are still the ones chosen)."""
        self.query_one("#host", Input).value = host
        self._set_tls(str(port), tls)
        self._expected_fingerprint = fingerprint
        self._expected_for = (host, port)

    def _fill(self, server: RecentServer) -> None:
        self.query_one("#host", Input).value = server.host
        self._set_tls(str(server.port), server.tls)
        self._expected_fingerprint = None
        self.query_one("#nick", Input).value = server.nick
        self.query_one("#account", Input).value = server.account
        where = (server.host, server.port, casefold(server.account or server.nick))
        known = self.remembered is not None and self.remembered(*where)
        self._known = where if known else None
        password = self.query_one("#account-password", Input)
        password.value = ""
        password.placeholder = _REMEMBERED_HINT if known else _PASSWORD_HINT
        self.query_one("#remember", Switch).value = known

    @on(LanServers.Chosen)
    def _lan_chosen(self, event: LanServers.Chosen) -> None:
        """A server found on the network: fill in where it is (TLS when it offers it)
        and what it announced; the nick and account stay for the user to check."""
        server = event.server
        self.choose(
            server.host, server.port, tls=server.prefers_tls, fingerprint=server.fingerprint
        )
        self.query_one("#connect-error", Static).update("")
        self.query_one("#nick", Input).focus()

    @on(OptionList.OptionSelected, "#recent")
    def _recent_chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self._fill(self._recent[int(event.option.id)])
            self.connect()

    @on(Input.Submitted)
    @on(Button.Pressed, "#connect")
    def _go(self) -> None:
        self.connect()

    def _error(self, text: str, field: str) -> None:
        self.query_one("#connect-error", Static).update(
            Text(strip_formatting(text), style="bold red")
        )
        self.query_one(field).focus()

    def connect(self) -> None:
        """Validate the fields and answer with them, or say what is wrong."""
        text = self.query_one("#host", Input).value
        tls = self.query_one("#tls", Switch).value
        try:
            if "://" in text:  # ircs://host (or irc://): TLS or not, and its own port
                host, port, scheme_tls = parse_server(text)
            else:
                default = int(self.query_one("#port", Input).value or DEFAULT_PORT)
                host, port, scheme_tls = parse_server(text, default)
        except ValueError as exc:
            self._error(f"Server: {exc}", "#host")
            return
        if scheme_tls is not None:
            tls = scheme_tls
        nick = self.query_one("#nick", Input).value.strip()
        if not is_valid_nick(nick):
            self._error(
                "Nick: letters, digits and -[]\\`_^{|}, not starting with a digit or -", "#nick"
            )
            return
        account = self.query_one("#account", Input).value.strip()
        if " " in account:
            self._error("Account: one word, no spaces", "#account")
            return
        account_password = self.query_one("#account-password", Input).value or None
        register = self.query_one("#register", Switch).value
        remember = self.query_one("#remember", Switch).value
        forget = not remember and self._known == (host, port, casefold(account or nick))
        if register and not account_password:
            self._error("Register: choose a password for the new account", "#account-password")
            return
        self.dismiss(
            ConnectDetails(
                host,
                port,
                nick,
                self.query_one("#password", Input).value or None,
                account=account,
                account_password=account_password,
                register=register,
                remember=remember,
                forget=forget,
                tls=tls,
                expected_fingerprint=(
                    self._expected_fingerprint if (host, port) == self._expected_for else None
                ),
            )
        )
