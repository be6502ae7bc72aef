"""The Textual app: wires the connection to the session and the session to the screens.

Build it with :func:`make_app` so the command line, the tests, the benchmark and the
screenshot script all run the same thing.

Every event of the :class:`~chatroom.client.connection.Connection` goes to the
:class:`~chatroom.client.session.ClientSession`, which changes the model and returns the
lines to send (CHATHISTORY requests, JOINs); the app sends them and schedules a repaint,
at most every :data:`FLUSH_INTERVAL`. The screens read the model; what the user types
goes through :mod:`chatroom.client.commands`, with the app as its
:class:`~chatroom.client.commands.CommandTarget`.

Accounts: the connection logs in with the credentials the connect screen (or
``--account`` and a remembered password) gave; when the user asked to remember the
password, the app stores it (:mod:`chatroom.client.passwords`) once the server accepted
it (a :class:`~chatroom.client.events.LoggedIn` event).

TLS: the connection asks the app about a certificate it sees for the first time
(:meth:`ChatApp.ask_trust` shows :class:`~chatroom.client.screens.dialogs.TrustScreen`
and waits for the answer without blocking anything), keeps trusted fingerprints in the
config directory (:class:`~chatroom.client.trust.KnownServers`), and reports a changed
certificate with a :class:`~chatroom.client.events.TrustRefused` event, which the app
shows with :class:`~chatroom.client.screens.dialogs.TrustRefusedScreen`.

Files (``soju.im/FILEHOST``): ``/upload`` (or a pasted path) sends a file to the
server's file host (:mod:`chatroom.client.transfer`) with the account's password and
then its link to the window; links into the file host are drawn as attachments, whose
size and type a HEAD request tells (:mod:`chatroom.client.attachments`); Enter on one
downloads it into the downloads folder, and an image is then shown in the terminal
(:mod:`chatroom.client.screens.preview`, when ``textual-image`` is installed) or offered
to the system viewer. One transfer runs at a time, shown above the input; Escape
cancels it.

LAN discovery: while the connect screen is shown, a browser made by the ``discovery``
factory (:class:`~chatroom.client.discovery.Discovery` unless a test gives a fake)
lists the servers announced on the network; a server chosen there carries the
fingerprint it announced to the trust question.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import webbrowser
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.notifications import SeverityLevel

from chatroom.client import multiline, readmarkers
from chatroom.client.auth import AUTH_TIMEOUT, SERVICES, Credentials
from chatroom.client.commands import CommandError, normalise_room, run_input, say
from chatroom.client.config import (
    PLAIN_PORT,
    TLS_PORT,
    RecentServer,
    config_dir,
    default_nick,
    downloads_dir,
    load_settings,
    remember_server,
    tls_by_default,
)
from chatroom.client.connection import (
    BACKOFF_BASE,
    DEFAULT_PORT,
    LAG_INTERVAL,
    Connection,
    ConnectionSettings,
    ConnState,
    Event,
    StateChanged,
)
from chatroom.client.discovery import Discovery
from chatroom.client.events import LoggedIn, TrustRefused
from chatroom.client.filehost import NO_OPEN_ENV, FileHost, Opener, open_file
from chatroom.client.formatting import strip_formatting
from chatroom.client.history import HISTORY_PAGE, HISTORY_REQUEST_TIMEOUT
from chatroom.client.model import SERVER_KEY, Entry
from chatroom.client.passwords import Passwords, open_passwords
from chatroom.client.readmarkers import ReadMarkers
from chatroom.client.screens.chat import ChatScreen
from chatroom.client.screens.connect import ConnectDetails, ConnectScreen
from chatroom.client.screens.dialogs import (
    HelpScreen,
    TrustRefusedScreen,
    TrustScreen,
    key_help,
)
from chatroom.client.screens.search import SearchScreen
from chatroom.client.session import ClientSession
from chatroom.client.state import ClientState
from chatroom.client.trust import KnownServers, TrustQuestion, normalise_fingerprint
from chatroom.client.widgets.chat_input import ChatInput
from chatroom.client.widgets.lan import BrowserFactory
from chatroom.client.widgets.log import MessageLog, find_urls
from chatroom.protocol import Cap, Message, UnserializableMessage, casefold

__all__ = ["FLUSH_INTERVAL", "NO_OPEN_ENV", "ChatApp", "ClientOptions", "make_app", "open_file"]

# The screen is repainted from the model at most this often (50 Hz): at 1,000
# messages a second each repaint carries ~20 lines instead of doing 1,000 repaints.
FLUSH_INTERVAL = 0.02
# Pause between the lines of a multi-line paste, so servers' flood control keeps us.
PASTE_LINE_INTERVAL = 0.05
# How often history requests are checked against their deadline.
HISTORY_EXPIRE_INTERVAL = 1.0
# How often typing notices are checked for expiry (they last 6 s: a late half second
# is not noticed).
TYPING_EXPIRE_INTERVAL = 0.5


@dataclass(frozen=True)
class ClientOptions:
    """Everything the command line (or a test) can say about how to start.

    ``account`` (None: the nick) logs in with ``account_password``, or with its
    remembered password (``--account``); ``register`` and ``remember`` are the connect
    screen's switches. ``allow_plain_sasl`` and ``use_keyring`` add to ``client.toml``.
    ``tls`` (None: on for port 6697 only, see :func:`~chatroom.client.config.tls_by_default`);
    ``trust_fingerprint`` (normalised): the only certificate to accept, without asking;
    ``expected_fingerprint``: the one the server announced (discovery), shown when asking.
    ``discovery`` makes the connect screen's LAN browser (None: do not look).
    ``downloads_dir``: where attachments are saved (None: see
    :func:`~chatroom.client.config.downloads_dir`); ``opener`` shows a downloaded file
    in the system's viewer (None, or ``$CHATROOM_NO_OPEN`` set: never).
    """

    host: str | None = None
    port: int = DEFAULT_PORT
    nick: str = field(default_factory=default_nick)
    rooms: tuple[str, ...] = ()
    password: str | None = None
    account: str | None = None
    account_password: str | None = None
    register: bool = False
    remember: bool = False
    allow_plain_sasl: bool = False
    use_keyring: bool = True
    tls: bool | None = None
    trust_fingerprint: str | None = None
    expected_fingerprint: str | None = None
    discovery: BrowserFactory | None = Discovery
    auth_timeout: float = AUTH_TIMEOUT
    config_dir: Path | None = None
    lag_interval: float = LAG_INTERVAL
    backoff_base: float = BACKOFF_BASE
    history_page: int = HISTORY_PAGE
    history_timeout: float = HISTORY_REQUEST_TIMEOUT
    downloads_dir: Path | None = None
    opener: Opener | None = open_file


class ChatApp(FileHost, App[int]):
    """chatroom-client. Implements :class:`~chatroom.client.commands.CommandTarget`."""

    CSS_PATH = "chatroom.tcss"
    TITLE = "chatroom"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [Binding("ctrl+q", "quit", "quit", priority=True, show=False)]

    def __init__(self, options: ClientOptions) -> None:
        super().__init__()
        self.options = options
        self.config_dir = options.config_dir or config_dir()
        settings = load_settings(self.config_dir)
        self.allow_plain_sasl = options.allow_plain_sasl or settings.allow_plain_sasl
        self.use_keyring = options.use_keyring and settings.use_keyring
        self._passwords: Passwords | None = None
        # The account named at connect (None: the nick), and whether to remember its
        # password once it works (and which one was stored last).
        self._account: str | None = None
        self._remember = False
        self._remembered: tuple[str, str] | None = None
        self.session = self._make_session(options.host or "server")
        self.connection: Connection | None = None
        self.chat_screen: ChatScreen | None = None
        self.known_servers = KnownServers(self.config_dir)
        self._flush_pending = False
        self._last_flush = 0.0
        self.read_markers = ReadMarkers()
        self.init_files(downloads_dir(options.downloads_dir, settings), options.opener)

    @property
    def state(self) -> ClientState:
        """The model the screens show (the session's)."""
        return self.session.state

    @property
    def passwords(self) -> Passwords:
        """Remembered passwords (opened on first use: the keyring is slow to find)."""
        if self._passwords is None:
            self._passwords = open_passwords(self.config_dir, use_keyring=self.use_keyring)
        return self._passwords

    @property
    def conn_state(self) -> str:
        """The connection's state, in words: idle, connecting, connected, waiting..."""
        return str(self.session.link)

    @property
    def lag(self) -> float | None:
        """The last measured round trip to the server, in seconds."""
        return self.session.lag

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """A toast. Its text is often a peer's (a reason from the server, a mention), so
        every toast goes through the log's sanitiser: no terminal controls (a title
        change, a cleared screen) and no IRC codes; and it is not read as markup
        unless a caller that wrote all of it asks for that with ``markup=True``.
        """
        super().notify(
            strip_formatting(message),
            title=strip_formatting(title),
            severity=severity,
            timeout=timeout,
            markup=markup,
        )

    def _make_session(
        self, host: str, label: str = "", rooms: list[str] | None = None
    ) -> ClientSession:
        opts = self.options
        return ClientSession(
            opts.nick,
            host,
            label=label,
            rooms=rooms or (),
            history_page=opts.history_page,
            history_timeout=opts.history_timeout,
        )

    def on_mount(self) -> None:
        self.set_interval(HISTORY_EXPIRE_INTERVAL, self._expire_history)
        self.set_interval(TYPING_EXPIRE_INTERVAL, self._expire_typing)
        self.set_interval(readmarkers.MARK_INTERVAL / 2, self._send_held_markers)
        opts = self.options
        if opts.host:
            self.start_chat(
                opts.host,
                opts.port,
                opts.nick,
                opts.password,
                opts.rooms,
                account=opts.account,
                account_password=opts.account_password,
                register=opts.register,
                remember=opts.remember,
                tls=opts.tls,
                expected_fingerprint=opts.expected_fingerprint,
            )
        else:
            tls = tls_by_default(opts.port) if opts.tls is None else opts.tls
            defaults = ConnectDetails(
                "", opts.port, opts.nick, opts.password, opts.account or "", tls=tls
            )
            browser = opts.discovery() if opts.discovery is not None else None
            screen = ConnectScreen(defaults, self.config_dir, self._has_password, browser)
            self.push_screen(screen, self._connect_chosen)

    # --- starting and stopping ------------------------------------------------------------

    def _has_password(self, host: str, port: int, account: str) -> bool:
        return self.passwords.get(host, port, account) is not None

    def _connect_chosen(self, details: ConnectDetails | None) -> None:
        """The connect screen's answer."""
        if details is None:
            return
        if details.forget:  # "remember password" turned off: forget it now
            self.passwords.delete(details.host, details.port, details.account or details.nick)
        self.start_chat(
            details.host,
            details.port,
            details.nick,
            details.password,
            account=details.account or None,
            account_password=details.account_password,
            register=details.register,
            remember=details.remember,
            tls=details.tls,
            expected_fingerprint=details.expected_fingerprint,
        )

    def start_chat(
        self,
        host: str,
        port: int,
        nick: str,
        password: str | None = None,
        rooms: tuple[str, ...] = (),
        *,
        account: str | None = None,
        account_password: str | None = None,
        register: bool = False,
        remember: bool = False,
        tls: bool | None = None,
        expected_fingerprint: str | None = None,
    ) -> None:
        """Show the chat screen and connect (reconnecting by itself from then on).

        ``account`` (None: the nick) logs in with ``account_password``, or with its
        remembered password when none is given; ``register`` creates it first.
        ``remember``: store the password once the server accepted it. ``tls`` (None:
        on for port 6697 only); ``expected_fingerprint``: the certificate fingerprint
        the server announced on the network (a hint shown when asking, not proof).
        """
        tls = tls_by_default(port) if tls is None else tls
        if expected_fingerprint is not None:
            try:
                expected_fingerprint = normalise_fingerprint(expected_fingerprint)
            except ValueError:
                expected_fingerprint = None  # a hint we cannot read is no hint
        remember_server(RecentServer(host, port, nick, account or "", tls), self.config_dir)
        self.options = replace(self.options, host=host, port=port, nick=nick, password=password)
        self.session = self._make_session(
            # "(TLS)": the status line and "Connected to" say the link is encrypted.
            host,
            f"{host}:{port}" + (" (TLS)" if tls else ""),
            [normalise_room(r) for r in rooms],
        )
        self._account, self._remember, self._remembered = account, remember, None
        login = account or nick
        if account_password is None and not register and (account or remember):
            account_password = self.passwords.get(host, port, login)
            if account_password is not None:
                self._remember = True
                self._remembered = (login, account_password)
            elif account:
                self.state.info(
                    f"No password remembered for {login} on {host}:{port}; /login PASSWORD logs in",
                    SERVER_KEY,
                )
        if self._passwords is not None and self._passwords.file.fixed_mode:
            self.state.info(
                f"{self.passwords.file.path} was readable by other users; it is private "
                "now, but consider changing the passwords in it",
                SERVER_KEY,
                error=True,
            )
            self.passwords.file.fixed_mode = False
        credentials = Credentials(login, account_password, register) if account_password else None
        settings = ConnectionSettings(
            host=host,
            port=port,
            nick=nick,
            password=password,
            credentials=credentials,
            allow_plain_sasl=self.allow_plain_sasl,
            tls=tls,
            trust_fingerprint=self.options.trust_fingerprint,
            expected_fingerprint=expected_fingerprint,
            auth_timeout=self.options.auth_timeout,
            lag_interval=self.options.lag_interval,
            backoff_base=self.options.backoff_base,
        )
        self.connection = Connection(
            settings,
            self._on_connection_event,
            ask_trust=self.ask_trust,
            known=self.known_servers,
        )
        self.chat_screen = ChatScreen()
        self.push_screen(self.chat_screen)
        self.connection.start()

    async def action_quit(self) -> None:
        """Ctrl+Q: say goodbye to the server, then exit."""
        await self._quit("Leaving")

    async def _quit(self, reason: str) -> None:
        if self.connection is not None:
            await self.connection.close(reason)
        self.exit(0)

    # --- connection -> session -> screen ----------------------------------------------------

    def _on_connection_event(self, event: Event) -> None:
        if isinstance(event, LoggedIn):
            self._remember_password()
        elif isinstance(event, TrustRefused):
            self.push_screen(TrustRefusedScreen(event))
        self._send_all(self.session.on_event(event))
        if self.session.search.answers:
            self._search_answered()
        filehost = self.state.filehost
        if filehost is not None and filehost != self.attachments.filehost:
            self._filehost_changed(filehost)
        if (
            isinstance(event, StateChanged)
            and event.state is ConnState.CLOSED
            and event.reason != "closed"
            and not isinstance(self.screen, TrustRefusedScreen)  # it says it all
        ):
            self.notify(event.reason, title="Disconnected", severity="error", markup=False)
        self._schedule_flush()

    async def ask_trust(self, question: TrustQuestion) -> bool:
        """First contact with a certificate no authority vouches for: ask the user
        (a modal dialog) and wait for the answer, on the loop, blocking nothing."""
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def answered(trusted: bool | None) -> None:
            if not answer.done():
                answer.set_result(bool(trusted))

        screen = TrustScreen(question)
        self.push_screen(screen, answered)
        try:
            return await answer
        finally:
            if answer.cancelled() and screen.is_active:  # the connection closed meanwhile
                with contextlib.suppress(Exception):
                    screen.dismiss(False)

    def _remember_password(self) -> None:
        """The server accepted our credentials: store the password if asked to."""
        connection = self.connection
        creds = connection.auth.credentials if connection is not None else None
        if not self._remember or creds is None:
            return
        if self._remembered == (creds.account, creds.password):
            return  # stored already (a reconnect logging in again)
        host, port = self.options.host or "", self.options.port
        try:
            self.passwords.set(host, port, creds.account, creds.password)
        except OSError as exc:
            self.state.info(f"Could not remember the password: {exc}", SERVER_KEY, error=True)
            return
        self._remembered = (creds.account, creds.password)
        self.state.info(
            f"The password of {creds.account} is remembered in {self.passwords.where}",
            SERVER_KEY,
        )

    def _send_all(self, messages: list[Message]) -> None:
        for message in messages:
            self.send(message)

    def _expire_history(self) -> None:
        self.session.expire()
        if self.state.dirty_entries:
            self._schedule_flush()

    def _expire_typing(self) -> None:
        if self.state.expire_typing():
            self._schedule_flush()

    def _search_answered(self) -> None:
        """Hand the server's search results to the search panel (if still open)."""
        screen = self.screen
        if isinstance(screen, SearchScreen):
            for answer in self.session.search.take(screen.buf.name):
                screen.answered(answer)
        else:
            self.session.search.take("")

    def can_search(self) -> bool:
        """Whether the server can search history (soju.im/search) now."""
        return self.session.connected and self.session.search.enabled

    def search_server(self, target: str, text: str) -> bool:
        """Ask the server to search ``target`` for ``text``; False when it cannot."""
        messages = self.session.search_server(target, text)
        self._send_all(messages)
        return bool(messages)

    def load_around(self, key: str, msgid: str) -> bool:
        """Fetch the history around message ``msgid`` of buffer ``key``; False when
        that cannot be asked now."""
        messages = self.session.around(key, msgid)
        self._send_all(messages)
        self._schedule_flush()
        return bool(messages)

    def load_older(self, key: str) -> None:
        """The user reached the top of buffer ``key``'s log: fetch older lines."""
        self._send_all(self.session.older(key))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_pending:
            return
        self._flush_pending = True
        delay = self._last_flush + FLUSH_INTERVAL - time.monotonic()
        if delay > 0:
            self.set_timer(delay, self.flush)
        else:
            self.call_later(self.flush)

    def flush(self) -> None:
        """Paint what changed in the model (the chat screen may be under a dialog)."""
        self._flush_pending = False
        self._last_flush = time.monotonic()
        if self._answered:
            self._redraw_attachments()
        if self.chat_screen is not None:
            # NoMatches: the app is shutting down and the screen's widgets are gone.
            with contextlib.suppress(NoMatches):
                self.chat_screen.flush()
                self._mark_read()

    def _mark_read(self) -> None:
        """The shown window, scrolled to its end, is read: tell the server (draft/read-marker)."""
        screen = self.chat_screen
        if readmarkers.CAP not in self.server_caps() or screen is None or not screen.ready:
            return
        log = screen.query_one(MessageLog)
        buf = self.state.active_buffer
        if screen.is_active and log.buffer is buf and log.is_vertical_scroll_end:
            self._send_all(self.read_markers.read(buf, time.monotonic()))

    def _send_held_markers(self) -> None:
        if readmarkers.CAP in self.server_caps():
            self._send_all(self.read_markers.due(time.monotonic()))

    # --- CommandTarget ----------------------------------------------------------------------

    def send(self, message: Message) -> bool:
        """Send a line to the server; False while not connected."""
        if self.connection is None or not self.connection.connected:
            return False
        return self.connection.send(message)

    def switch_to(self, key: str) -> None:
        """Show buffer ``key`` and mark it read."""
        self.state.set_active(key)
        if self.chat_screen is not None:
            self.chat_screen.refresh_all()

    def expect_join(self, room: str) -> None:
        """Switch to ``room`` once the server says we joined it."""
        self.session.expect_join(room)

    def close_buffer(self, key: str) -> None:
        """Forget a buffer and its cached rows."""
        buf = self.state.close(key)
        self._send_all(self.session.monitor())  # no longer watching a closed query's peer
        if buf is not None and self.chat_screen is not None and self.chat_screen.ready:
            self.chat_screen.query_one(MessageLog).forget(buf)
            self.chat_screen.refresh_all()

    def show_help(self) -> None:
        """Open the help screen."""
        if not isinstance(self.screen, HelpScreen):
            bindings = [*ChatInput.BINDINGS, *MessageLog.BINDINGS, *ChatScreen.BINDINGS]
            keys = key_help([*bindings, *self.BINDINGS])
            self.push_screen(HelpScreen(keys))

    def quit(self, reason: str) -> None:
        """/quit: leave the server and exit."""
        self.run_worker(self._quit(reason), exclusive=True, group="quit")

    def reconnect(self) -> None:
        """/reconnect: drop the link (if any) and connect again now."""
        if self.connection is None:
            return
        self.state.info("Reconnecting…", SERVER_KEY)
        if self.connection.connected:
            self.connection.drop()
        self.connection.reconnect_now()

    def _registered_connection(self) -> Connection:
        connection = self.connection
        if connection is None or not connection.connected:
            raise CommandError(
                "Not connected to the server; wait for the reconnect (or /reconnect)"
            )
        return connection

    def default_account(self) -> str:
        """The account logged in with (or named at connect), else the nick."""
        creds = self.connection.auth.credentials if self.connection is not None else None
        return creds.account if creds is not None else self._account or self.state.nick

    def remembered_password(self, account: str) -> str | None:
        """The password remembered for ``account`` on this server."""
        return self.passwords.get(self.options.host or "", self.options.port, account)

    def login(self, credentials: Credentials) -> None:
        """/login: SASL when the server has it, else NickServ."""
        self._registered_connection().login(credentials)

    def register_account(self, credentials: Credentials) -> None:
        """/register: REGISTER when the server has it, else NickServ's (the nick)."""
        connection = self._registered_connection()
        nickserv = Cap.ACCOUNT_REGISTRATION not in connection.caps
        if nickserv and casefold(credentials.account) != casefold(self.state.nick):
            raise CommandError(
                f"This server registers accounts through {SERVICES}, which registers the "
                f"nick you use: /nick {credentials.account} first, or /register PASSWORD"
            )
        connection.register(credentials)

    def logout(self) -> None:
        """/logout: NickServ LOGOUT; no more logging in on reconnect."""
        self._registered_connection().logout()

    def server_caps(self) -> frozenset[str]:
        """The capabilities the server acknowledged (none while not connected)."""
        return self.session.caps if self.session.connected else frozenset()

    def selected_entry(self) -> Entry | None:
        """The message selected in the shown window's log, if any."""
        screen = self.chat_screen
        return screen.selected_entry() if screen is not None and screen.ready else None

    def open_link(self, url: str) -> None:
        """Open a web address from a message in the system's browser (in a thread:
        finding and starting a browser can take a while)."""
        if find_urls(url) != [(0, len(url))]:
            return  # only a whole http(s) address
        self.run_worker(lambda: webbrowser.open(url), thread=True, group="browser")

    # --- user input -----------------------------------------------------------------------

    def submit(self, line: str, *, tags: Mapping[str, str] | None = None) -> bool:
        """A line from the input: run it, and show any mistake as a line in the log.
        ``tags``: client tags for text (a reply's). True when text was sent."""
        self._send_all(self.session.typing_sent())
        sent = False
        try:
            sent = run_input(self, line, tags=tags)
        except CommandError as exc:
            self.state.info(str(exc), error=True)
        except UnserializableMessage as exc:
            self.state.info(f"Can't send that: {exc}", error=True)
        self._send_all(self.session.fetch_opened())
        self._schedule_flush()
        return sent

    def typing(self, text: str) -> None:
        """The input line changed: tell the shown window that we type (or stopped)."""
        self._send_all(self.session.typing(text))

    def submit_lines(self, lines: list[str]) -> None:
        """Pasted (or Shift+Enter) lines: sent as text (not commands) to the shown
        window, as one message where the server takes multiline ones, else one by one."""
        target = self.state.active_buffer.name
        caps = self.server_caps()
        if len(lines) > 1 and multiline.CAP in caps and Cap.BATCH in caps:
            self._send_multiline(target, lines)
            return
        self.run_worker(self._send_lines(target, lines), group="paste")

    def _send_multiline(self, target: str, lines: list[str]) -> None:
        """Several lines as one draft/multiline message; over the server's limits it is
        refused here, with the reason, and nothing is sent."""
        try:
            if self.state.active_buffer.key == SERVER_KEY:
                raise CommandError("Pasted text needs a room or a private conversation")
            offered = self.connection.offered(multiline.CAP) if self.connection else ""
            batch = multiline.batch_lines(target, lines, multiline.limits_of(offered))
            for message in batch:
                if not self.send(message):
                    raise CommandError("Not connected to the server; wait for the reconnect")
            self.state.own_message(target, "\n".join(lines))
        except (CommandError, UnserializableMessage) as exc:
            self.state.info(str(exc), error=True)
        except ValueError as exc:
            self.state.info(f"Not sent: {exc}", error=True)
        self._schedule_flush()

    async def _send_lines(self, target: str, lines: list[str]) -> None:
        for i, line in enumerate(lines):
            if i:
                await asyncio.sleep(PASTE_LINE_INTERVAL)
            try:
                if self.state.active_buffer.key == SERVER_KEY:
                    raise CommandError("Pasted text needs a room or a private conversation")
                say(self, target, line)
            except (CommandError, UnserializableMessage) as exc:
                self.state.info(str(exc), error=True)
                self._schedule_flush()
                return
            self._schedule_flush()


def make_app(
    host: str | None = None,
    port: int | None = None,
    nick: str | None = None,
    rooms: tuple[str, ...] | list[str] = (),
    password: str | None = None,
    *,
    account: str | None = None,
    account_password: str | None = None,
    register: bool = False,
    remember: bool = False,
    allow_plain_sasl: bool = False,
    use_keyring: bool = True,
    tls: bool | None = None,
    trust_fingerprint: str | None = None,
    expected_fingerprint: str | None = None,
    discovery: BrowserFactory | None = Discovery,
    auth_timeout: float = AUTH_TIMEOUT,
    config_dir: Path | None = None,
    lag_interval: float = LAG_INTERVAL,
    backoff_base: float = BACKOFF_BASE,
    history_page: int = HISTORY_PAGE,
    history_timeout: float = HISTORY_REQUEST_TIMEOUT,
    downloads_dir: Path | None = None,
    opener: Opener | None = open_file,
) -> ChatApp:
    """Build the client app: with ``host`` it connects at once, else it asks.

    ``port`` None: 6697 with TLS, 6667 without; TLS not said either: 6667 to a
    ``host``, and 6697 on the connect screen (our servers offer TLS by default).
    ``tls`` None: on for port 6697 only. ``trust_fingerprint`` (any case, colons or
    not): accept only the certificate with this SHA-256 fingerprint, without asking.
    ``discovery``: makes the connect screen's browser of the servers on this network,
    each time that screen is shown (None: it does not look). ``downloads_dir``: where
    attachments are saved; ``opener``: shows a downloaded file in the system's viewer.
    """
    if port is None:
        port = TLS_PORT if (host is None if tls is None else tls) else PLAIN_PORT
    if trust_fingerprint is not None:
        trust_fingerprint = normalise_fingerprint(trust_fingerprint)
    options = ClientOptions(
        host=host,
        port=port,
        nick=nick or default_nick(),
        rooms=tuple(rooms),
        password=password,
        account=account,
        account_password=account_password,
        register=register,
        remember=remember,
        allow_plain_sasl=allow_plain_sasl,
        use_keyring=use_keyring,
        tls=tls,
        trust_fingerprint=trust_fingerprint,
        expected_fingerprint=expected_fingerprint,
        discovery=discovery,
        auth_timeout=auth_timeout,
        config_dir=config_dir,
        lag_interval=lag_interval,
        backoff_base=backoff_base,
        history_page=history_page,
        history_timeout=history_timeout,
        downloads_dir=downloads_dir,
        opener=opener,
    )
    return ChatApp(options)
