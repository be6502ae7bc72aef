"""Client settings on disk: the recent-servers list, ``client.toml``, and the defaults
for a first run. (Remembered passwords are :mod:`chatroom.client.passwords`' business.)"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from chatroom.protocol import is_valid_nick

__all__ = [
    "CONFIG_DIR_ENV",
    "DOWNLOADS_DIR_ENV",
    "MAX_RECENT",
    "SETTINGS_FILE",
    "ClientSettings",
    "RecentServer",
    "config_dir",
    "default_nick",
    "downloads_dir",
    "load_recent",
    "load_settings",
    "parse_address",
    "parse_server",
    "remember_server",
    "tls_by_default",
]

# Overrides the per-user config directory (tests and screenshots use a temp dir).
CONFIG_DIR_ENV = "CHATROOM_CONFIG_DIR"
# Overrides where downloaded files go (tests use a temp dir); --downloads beats it.
DOWNLOADS_DIR_ENV = "CHATROOM_DOWNLOADS_DIR"
RECENT_FILE = "recent_servers.json"
SETTINGS_FILE = "client.toml"
# Servers shown on the connect screen, newest first.
MAX_RECENT = 8
# The standard ports (RFC 7194: 6697 for IRC over TLS).
PLAIN_PORT = 6667
TLS_PORT = 6697
SCHEMES = {"irc": False, "ircs": True}
# Nick used when the login name can't be made into a valid one.
FALLBACK_NICK = "guest"
DEFAULT_NICK_LEN = 9


@dataclass(frozen=True)
class RecentServer:
    """A server the user connected to, and the account used there (if any).
    Passwords are never written here (see :mod:`chatroom.client.passwords`).
    ``tls``: the connection used TLS (the connect screen's switch follows it)."""

    host: str
    port: int
    nick: str
    account: str = ""
    tls: bool = False

    @property
    def label(self) -> str:
        """'nick @ host:port', and 'TLS' after it when it used TLS."""
        return f"{self.nick} @ {self.host}:{self.port}" + (" TLS" if self.tls else "")


def config_dir() -> Path:
    """Where the client keeps its files (``$CHATROOM_CONFIG_DIR`` or the OS's place)."""
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_config_dir("chatroom", appauthor=False))


def load_recent(directory: Path | None = None) -> list[RecentServer]:
    """Recent servers, newest first; a missing or damaged file is an empty list."""
    path = (directory or config_dir()) / RECENT_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    out: list[RecentServer] = []
    for item in raw if isinstance(raw, list) else []:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            out.append(
                RecentServer(
                    str(item["host"]),
                    int(item["port"]),
                    str(item["nick"]),
                    str(item.get("account") or ""),
                    item.get("tls") is True,
                )
            )
    return out[:MAX_RECENT]


def remember_server(server: RecentServer, directory: Path | None = None) -> None:
    """Put ``server`` first in the recent list (best effort: a read-only home is fine)."""
    directory = directory or config_dir()
    recent = [s for s in load_recent(directory) if (s.host, s.port) != (server.host, server.port)]
    recent.insert(0, server)
    with contextlib.suppress(OSError):
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (RECENT_FILE + ".tmp")
        tmp.write_text(json.dumps([asdict(s) for s in recent[:MAX_RECENT]], indent=1))
        tmp.replace(directory / RECENT_FILE)


@dataclass(frozen=True)
class ClientSettings:
    """``client.toml`` in the config directory; every key optional.

    ``allow_plain_sasl``: send the account password as it is (SASL PLAIN, or NickServ
    on a server without SASL) over a link that is neither TLS nor loopback. Off by
    default: anyone on the network path could read it. (``--allow-plain-sasl``.)
    ``use_keyring``: remember passwords in the OS keyring when there is one (else in
    a file only you can read). (``--no-keyring`` turns it off.)
    ``downloads``: where attachments are saved ('': the OS's downloads folder).
    (``--downloads DIR``.)
    """

    allow_plain_sasl: bool = False
    use_keyring: bool = True
    downloads: str = ""


def load_settings(directory: Path | None = None) -> ClientSettings:
    """``client.toml``; missing, damaged or mistyped values keep their defaults."""
    path = (directory or config_dir()) / SETTINGS_FILE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ClientSettings()
    kinds = {f.name: type(f.default) for f in fields(ClientSettings)}
    values = {k: v for k, v in raw.items() if k in kinds and type(v) is kinds[k]}
    return ClientSettings(**values)


def downloads_dir(given: Path | None = None, settings: ClientSettings | None = None) -> Path:
    """Where downloads go: ``given`` (``--downloads``), else ``$CHATROOM_DOWNLOADS_DIR``,
    else ``downloads`` in ``client.toml``, else the OS's downloads folder."""
    if given is not None:
        return given.expanduser()
    override = os.environ.get(DOWNLOADS_DIR_ENV)
    if override:
        return Path(override).expanduser()
    if settings is not None and settings.downloads:
        return Path(settings.downloads).expanduser()
    import platformdirs

    return Path(platformdirs.user_downloads_dir())


def default_nick() -> str:
    """The login name made into a valid IRC nick (``guest`` when that fails)."""
    try:
        login = getpass.getuser()
    except (OSError, KeyError):
        login = ""
    nick = re.sub(r"[^A-Za-z0-9\[\]\\`_^{|}-]", "", login)[:DEFAULT_NICK_LEN]
    return nick if is_valid_nick(nick) else FALLBACK_NICK


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` into (host, port); ValueError if bad.

    >>> parse_address("lan.local:6697", 6667), parse_address("10.0.0.5", 6667)
    (('lan.local', 6697), ('10.0.0.5', 6667))
    >>> parse_address("[::1]:7000", 6667)
    ('::1', 7000)
    """
    text = text.strip()
    if not text:
        raise ValueError("no host given")
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text)
    if not host:
        raise ValueError("no host given")
    return host, port


def tls_by_default(port: int) -> bool:
    """Whether to use TLS when the user did not say: on for port 6697, off otherwise.

    >>> tls_by_default(6697), tls_by_default(6667), tls_by_default(7000)
    (True, False, False)
    """
    return port == TLS_PORT


def parse_server(text: str, default_port: int | None = None) -> tuple[str, int, bool | None]:
    """A server as typed: ``ircs://host[:port]`` (TLS), ``irc://host[:port]``
    (plaintext) or ``host[:port]`` (TLS not said: None). Without a port,
    ``default_port``, else the scheme's: 6697 for ircs, 6667 otherwise. ValueError if
    it is none of these.

    >>> parse_server("ircs://chat.lan"), parse_server("irc://[::1]:7000/")
    (('chat.lan', 6697, True), ('::1', 7000, False))
    >>> parse_server("chat.lan:6697")
    ('chat.lan', 6697, None)
    """
    text = text.strip()
    tls: bool | None = None
    scheme, sep, rest = text.partition("://")
    if sep:
        if scheme.lower() not in SCHEMES:
            raise ValueError(f"{scheme}:// is not irc:// or ircs://")
        tls = SCHEMES[scheme.lower()]
        text = rest.rstrip("/")
        if "/" in text:
            raise ValueError("a server address has no path (rooms go in --join)")
    if default_port is None:
        default_port = TLS_PORT if tls else PLAIN_PORT
    host, port = parse_address(text, default_port)
    return host, port, tls


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{text!r} is not a port number (1-65535)")
    return int(text)
