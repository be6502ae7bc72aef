"""Server settings: embedded defaults, a TOML file, then CLI flags, into one frozen Config.

Every limit the server enforces lives here with its default and the reason for it.
README.md's table of settings is written by hand; tests/test_readme.py checks it against
:func:`limits_table`, so a setting cannot go undocumented or show a stale default.
"""

from __future__ import annotations

import tomllib
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from chatroom import protocol, sasl

VERSION = "chatroom-0.1.0"

# The message of the day when none is given (--motd, motd_file), so that a fresh server
# greets people instead of answering 422. {server} and {people} are filled in each time
# it is sent (commands/info.py); an empty MOTD (or None) means none at all: 422.
DEFAULT_MOTD = (
    "Welcome to {server}: group chat for this LAN.\n"
    "{people} here now, you included.\n"
    "/help lists the commands, /list the rooms; /join #name joins a room or makes it."
)


def _default_name() -> str:
    # imported here: session.py imports this module and must not load socket
    import socket

    host = socket.gethostname() or "chatroom"
    # a server name must look like a hostname: no spaces, at least one dot helps clients
    host = "".join(c for c in host if c.isalnum() or c in "-.") or "chatroom"
    return host if "." in host else f"{host}.lan"


# The clear-text port: everywhere the server listens, on loopback only, or not at all.
PLAINTEXT_MODES = ("on", "loopback", "off")


@dataclass(frozen=True)
class Config:
    """All server settings. ``metadata["doc"]`` is the documented meaning of each."""

    host: str = field(default="0.0.0.0", metadata={"doc": "address to listen on; '::' = v4+v6"})
    port: int = field(default=6667, metadata={"doc": "TCP port (IRC's registered port)"})
    announce: bool = field(
        default=True,
        metadata={"doc": "announce the server on the LAN (mDNS/DNS-SD; --no-announce: off)"},
    )
    # --- TLS (tls.py) ------------------------------------------------------------------
    tls: bool = field(default=True, metadata={"doc": "serve TLS on tls_port (--no-tls: off)"})
    # 6697: the IRC-over-TLS port (RFC 7194)
    tls_port: int = field(default=6697, metadata={"doc": "TLS port (0: any free port)"})
    tls_cert: str = field(
        default="", metadata={"doc": "certificate (PEM) to use instead of the self-signed one"}
    )
    tls_key: str = field(default="", metadata={"doc": "its private key (PEM), with tls_cert"})
    tls_dir: str = field(
        default="",
        metadata={"doc": "where the self-signed pair lives ('' = beside db, else the data dir)"},
    )
    plaintext: str = field(
        default="on",
        metadata={"doc": "the clear-text port: on, loopback (127.0.0.1/::1 only) or off"},
    )
    tls_handshake_timeout: float = field(
        default=10.0, metadata={"doc": "seconds a TLS handshake may take before the close"}
    )
    server_name: str = field(default_factory=_default_name, metadata={"doc": "shown in replies"})
    network: str = field(default="chatroom", metadata={"doc": "NETWORK in ISUPPORT"})
    motd: str | None = field(
        default=DEFAULT_MOTD,
        metadata={"doc": "message of the day text (default: a short greeting; '': none)"},
    )
    password: str | None = field(default=None, metadata={"doc": "server password (PASS)"})
    opers: dict[str, str] = field(default_factory=dict, metadata={"doc": "OPER name -> password"})
    log_level: str = field(default="INFO", metadata={"doc": "logging level"})

    # --- line limits -------------------------------------------------------------------
    recvq_bytes: int = field(
        default=protocol.RECVQ_BYTES,
        metadata={"doc": "unterminated input beyond this closes the connection"},
    )
    # 512 KiB: thousands of lines of chat, and room for a full CHATHISTORY reply; a
    # client stuck that far behind is dropped within ~2 s of load (ircload 'slow').
    sendq_bytes: int = field(
        default=1 << 19,
        metadata={"doc": "queued output per client beyond this drops it (SendQ exceeded)"},
    )
    # --- liveness ----------------------------------------------------------------------
    registration_timeout: float = field(
        default=60.0, metadata={"doc": "seconds to finish NICK/USER before being dropped"}
    )
    ping_interval: float = field(
        default=120.0, metadata={"doc": "idle seconds before the server sends PING"}
    )
    ping_timeout: float = field(
        default=60.0, metadata={"doc": "seconds to answer that PING before being dropped"}
    )
    close_linger: float = field(
        default=5.0, metadata={"doc": "seconds to flush a closing connection's output"}
    )
    # --- flood control (token bucket per connection) -----------------------------------
    flood_limit: bool = field(default=True, metadata={"doc": "off: --no-flood-limit"})
    flood_burst: int = field(default=10, metadata={"doc": "lines accepted at once"})
    flood_rate: float = field(default=4.0, metadata={"doc": "lines per second after the burst"})
    flood_max_lag: float = field(
        default=10.0,
        metadata={"doc": "fake lag (s) owed by already-received lines before Excess Flood"},
    )
    # --- names and sizes (advertised in ISUPPORT) -------------------------------------
    nicklen: int = field(default=30, metadata={"doc": "NICKLEN"})
    userlen: int = field(default=16, metadata={"doc": "USERLEN (username part)"})
    channellen: int = field(default=50, metadata={"doc": "CHANNELLEN"})
    topiclen: int = field(default=390, metadata={"doc": "TOPICLEN (longer topics truncated)"})
    kicklen: int = field(default=255, metadata={"doc": "KICKLEN"})
    awaylen: int = field(default=200, metadata={"doc": "AWAYLEN"})
    # Ergo's default; a realname is shown whole in WHO and WHOIS replies
    realnamelen: int = field(
        default=150, metadata={"doc": "longest realname SETNAME accepts, in bytes"}
    )
    keylen: int = field(default=32, metadata={"doc": "KEYLEN (room key)"})
    chanlimit: int = field(default=50, metadata={"doc": "CHANLIMIT: rooms per user (405)"})
    maxtargets: int = field(default=4, metadata={"doc": "targets per PRIVMSG/NOTICE"})
    modes_per_line: int = field(default=4, metadata={"doc": "MODES: parameter modes per MODE"})
    whowas_entries: int = field(default=1000, metadata={"doc": "departed users kept for WHOWAS"})
    masklen: int = field(
        default=128,
        metadata={"doc": "longest wildcard mask (WHO, LIST); a longer one matches nobody"},
    )
    # Ergo's max-list-modes; every mask is matched on each JOIN (and message, for +b)
    listmodes_max: int = field(
        default=100, metadata={"doc": "MAXLIST: masks per room on each of +b, +e, +I (478)"}
    )
    # Ergo's and Solanum's default: a friends list, not a census; each entry is a set
    # membership in the registry, kept while the connection lasts
    monitor_max: int = field(
        default=100, metadata={"doc": "MONITOR: nicks one connection may watch (734 beyond)"}
    )
    # a marker is a row per account and target (a room or a nick): the oldest goes, so
    # MARKREAD on made-up targets cannot grow the database or a connection's memory
    read_markers_max: int = field(
        default=1000,
        metadata={"doc": "read markers kept per account (or per connection without one)"},
    )
    # --- connections -------------------------------------------------------------------
    max_clients: int = field(default=10000, metadata={"doc": "connections in all"})
    max_per_address: int = field(default=10, metadata={"doc": "connections per IP address"})
    exempt_loopback: bool = field(
        default=True, metadata={"doc": "loopback addresses skip the per-address limit"}
    )
    # A storm of 5,000 connections at 2,000/s outran 1,024: the kernel dropped SYNs
    # and those clients retried a second later (registration p99 over 1 s). Linux
    # caps it at net.core.somaxconn (4096 since 5.4).
    listen_backlog: int = field(default=4096, metadata={"doc": "TCP accept queue length"})
    # --- history --------------------------------------------------------------------------
    history: bool = field(default=True, metadata={"doc": "keep room history (--no-history: off)"})
    db: str = field(
        default="",
        metadata={"doc": "SQLite file ('' = history.sqlite3 in the user data dir; ':memory:')"},
    )
    db_sync: str = field(
        default="normal",
        metadata={"doc": "'normal' survives a crash of the server; 'full' also power loss"},
    )
    retention_count: int = field(
        default=100_000, metadata={"doc": "messages kept per room or conversation (0: all)"}
    )
    retention_days: float = field(
        default=365.0, metadata={"doc": "days a message is kept (0: forever)"}
    )
    playback_lines: int = field(
        default=20, metadata={"doc": "history lines sent on JOIN to clients without chathistory"}
    )
    chathistory_max: int = field(
        default=1000, metadata={"doc": "most messages one CHATHISTORY request returns"}
    )
    # soju's limit: a page of results; the client narrows the search or asks again with
    # before= (each costs ~1 ms per 100 results over a million messages)
    search_max: int = field(
        default=100, metadata={"doc": "most messages one SEARCH returns (its limit= default)"}
    )
    # --- multiline messages (IRCv3 draft/multiline; commands/multiline.py) ---------------
    # Ergo's default, and the spec's example: a page of text, relayed as a few KB
    multiline_max_bytes: int = field(
        default=4096,
        metadata={"doc": "draft/multiline max-bytes: text of one multiline message"},
    )
    # Flood control counts a batch's lines like any others: with its defaults a client may
    # send 10 + 4/s * 10 s = 50 lines at once before Excess Flood, and a full batch (its
    # lines and two BATCH lines) must stay well within that. (Ergo's 100 would trip it.)
    multiline_max_lines: int = field(
        default=40, metadata={"doc": "draft/multiline max-lines: lines of one multiline message"}
    )
    multiline_timeout: float = field(
        default=30.0,
        metadata={"doc": "seconds a multiline batch may stay open before it is dropped"},
    )

    # --- accounts (commands/accounts.py) -------------------------------------------------
    accounts: bool = field(
        default=True, metadata={"doc": "built-in accounts: SASL, REGISTER, NickServ, ChanServ"}
    )
    oper_accounts: tuple[str, ...] = field(
        default=(),
        metadata={"doc": "accounts that are server operators when logged in (TOML opers list)"},
    )
    scram_iterations: int = field(
        default=sasl.DEFAULT_ITERATIONS,
        metadata={"doc": "PBKDF2 rounds of a new password (SCRAM-SHA-256; at least 4096)"},
    )
    password_min_length: int = field(
        default=8, metadata={"doc": "shortest password an account may have (WEAK_PASSWORD)"}
    )
    register_before_connect: bool = field(
        default=True, metadata={"doc": "REGISTER allowed before NICK/USER complete"}
    )
    nick_claim_timeout: float = field(
        default=30.0,
        metadata={"doc": "seconds to log in on a registered nick before rename (0: no guard)"},
    )
    guest_prefix: str = field(
        default="Guest", metadata={"doc": "renamed squatters become this plus 5 digits"}
    )
    login_failures: int = field(
        default=5, metadata={"doc": "failed logins per account and per address in a window"}
    )
    login_failure_window: float = field(
        default=60.0, metadata={"doc": "seconds of that window (brute-force limit)"}
    )
    registrations: int = field(
        default=5, metadata={"doc": "accounts registered per address in a window (loopback: any)"}
    )
    registration_window: float = field(default=3600.0, metadata={"doc": "seconds of that window"})

    # --- the web port: file host, front page, /metrics (web/) --------------------------
    http: bool = field(
        default=True,
        metadata={"doc": "serve files, the front page and /metrics over HTTP (--no-http: off)"},
    )
    # 8067: easy to remember beside 6667 and 6697
    http_port: int = field(
        default=8067,
        metadata={"doc": "HTTP port; HTTPS on the same port when TLS is on (0: any free port)"},
    )
    files_dir: str = field(
        default="",
        metadata={"doc": "where uploads live ('' = files/ beside db, else the data dir)"},
    )
    file_max_bytes: int = field(
        default=50 << 20, metadata={"doc": "largest file one upload may be (413 beyond)"}
    )
    file_quota_bytes: int = field(
        default=1 << 30, metadata={"doc": "bytes of files one account may keep (507 beyond)"}
    )
    files_total_bytes: int = field(
        default=10 << 30, metadata={"doc": "bytes of files the server keeps in all (507 beyond)"}
    )
    file_retention_days: float = field(
        default=30.0, metadata={"doc": "days an uploaded file is kept (0: forever)"}
    )
    uploads_per_minute: int = field(
        default=10, metadata={"doc": "uploads one account may start per minute (429 beyond)"}
    )
    # each HTTP connection is a thread: this bounds them (503 beyond, at once)
    http_max_connections: int = field(
        default=64, metadata={"doc": "HTTP connections open at once (503 beyond)"}
    )
    http_header_timeout: float = field(
        default=10.0,
        metadata={"doc": "seconds a request line and headers may take to arrive (408 after)"},
    )
    http_idle_timeout: float = field(
        default=15.0, metadata={"doc": "seconds a kept-alive HTTP connection may sit idle"}
    )
    http_body_timeout: float = field(
        default=30.0, metadata={"doc": "seconds an upload may go without a byte before 408"}
    )
    http_max_header_bytes: int = field(
        default=16384, metadata={"doc": "request line and headers in bytes (431 beyond)"}
    )
    frontpage_refresh: int = field(
        default=30, metadata={"doc": "seconds between the front page's own reloads"}
    )

    def isupport_tokens(self) -> list[str]:
        """The RPL_ISUPPORT (005) tokens, as advertised after registration and on VERSION."""
        return [
            f"AWAYLEN={self.awaylen}",
            "BOT=B",
            "CASEMAPPING=rfc1459",
            f"CHANLIMIT=#:{self.chanlimit}",
            "CHANMODES=beI,k,l,imnst",
            f"CHANNELLEN={self.channellen}",
            "CHANTYPES=#",
            "ELIST=MNU",
            "EXCEPTS",
            *(["EXTBAN=$,a"] if self.accounts else []),
            "INVEX",
            f"KEYLEN={self.keylen}",
            f"KICKLEN={self.kicklen}",
            f"MAXLIST=b:{self.listmodes_max},e:{self.listmodes_max},I:{self.listmodes_max}",
            f"MAXTARGETS={self.maxtargets}",
            f"MODES={self.modes_per_line}",
            f"MONITOR={self.monitor_max}",
            f"NETWORK={self.network}",
            f"NICKLEN={self.nicklen}",
            "PREFIX=(ov)@+",
            "STATUSMSG=@+",
            f"TARGMAX=PRIVMSG:{self.maxtargets},NOTICE:{self.maxtargets},JOIN:,PART:,KICK:,WHOIS:"
            f"{self.maxtargets},NAMES:,LIST:",
            f"TOPICLEN={self.topiclen}",
            f"USERLEN={self.userlen}",
            "UTF8ONLY",
            "WHOX",
            *(
                [f"CHATHISTORY={self.chathistory_max}", "MSGREFTYPES=msgid,timestamp"]
                if self.history
                else []
            ),
        ]

    def check(self) -> None:
        """Raise ValueError for settings that cannot go together."""
        if self.plaintext not in PLAINTEXT_MODES:
            raise ValueError(
                f"plaintext = {self.plaintext!r}: expected one of {', '.join(PLAINTEXT_MODES)}"
            )
        if self.plaintext == "off" and not self.tls:
            raise ValueError("--plaintext off with --no-tls leaves no port to connect to")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("--tls-cert and --tls-key go together: give both, or neither")

    def with_overrides(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied, ignoring those that are None."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_toml(cls, path: str | Path, base: Config | None = None) -> Config:
        """Read a TOML file whose keys are this class's field names (section ``[server]``
        or top level); unknown keys are an error so typos do not pass silently."""
        with open(path, "rb") as f:
            data = tomllib.load(f)
        data = data.get("server", data)
        known = {f.name for f in fields(cls)} | {"motd_file"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown settings {', '.join(unknown)}")
        if isinstance(data.get("opers"), list):  # opers = ["alice"]: accounts, no password
            data["oper_accounts"] = tuple(data.pop("opers"))
        motd_file = data.pop("motd_file", None)
        if motd_file:
            # relative to the config file, wherever the server is started from
            data["motd"] = (Path(path).parent / motd_file).read_text(encoding="utf-8")
        return replace(base or cls(), **data)


def default_db_path() -> Path:
    """Where history lives unless --db says otherwise: the per-user data directory."""
    import platformdirs

    return Path(platformdirs.user_data_dir("chatroom", appauthor=False)) / "history.sqlite3"


def limits_table() -> list[tuple[str, Any, str]]:
    """(name, default, meaning) for every setting, in declaration order: what README's
    table of settings must list (tests/test_readme.py). The default is None where it is
    computed at start (the server name from the host name, the opers)."""
    rows = []
    for f in fields(Config):
        default = f.default if f.default is not MISSING else None
        rows.append((f.name, default, f.metadata.get("doc", "")))
    return rows
