"""LAN discovery: chatroom servers found over mDNS/DNS-SD, with python-zeroconf's asyncio API.

The server side is :mod:`chatroom.server.announce`: each server publishes an
``_irc._tcp`` record for its plaintext port and an ``_ircs-u._tcp`` one for TLS, each
naming the other port in its TXT. Here the two are merged into one
:class:`DiscoveredServer`.

Everything in a record is what anyone on the LAN chose to say: ports are checked,
text is cleaned and cut, fingerprints must parse, and a record that does not make
sense is dropped, never an exception. The pure part (:func:`parse_record`,
:func:`merge_records`, :func:`format_servers`) touches no network.

Inside the Textual loop use :class:`Discovery` (``await start(on_change)`` ...
``await stop()``); for ``chatroom-client --discover``, :func:`discover`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

log = logging.getLogger(__name__)

# The same names chatroom.server.announce publishes (a test checks they agree).
IRC_SERVICE = "_irc._tcp.local."
IRCS_SERVICE = "_ircs-u._tcp.local."
SERVICE_TYPES = (IRC_SERVICE, IRCS_SERVICE)
TXT_NAME = "name"
TXT_NETWORK = "network"
TXT_VERSION = "version"
TXT_FINGERPRINT = "fp"
TXT_TLS_PORT = "tls"
TXT_PLAIN_PORT = "plain"
FINGERPRINT_PREFIX = "sha256:"

# Longest name, network or version kept (characters): ample for a server name, short
# enough that a hostile record cannot push a list row off the screen.
MAX_TEXT = 64
# At most this many servers listed, records remembered and lookups in flight: a LAN
# flooded with announcements costs a bounded amount of memory and traffic.
MAX_SERVERS = 64
MAX_RECORDS = 256
MAX_LOOKUPS = 16
# How long one lookup (SRV, TXT, addresses) may wait for answers, in milliseconds;
# python-zeroconf's own default.
LOOKUP_TIMEOUT_MS = 3000
# Seconds stop() may spend closing the sockets and cancelling lookups.
STOP_TIMEOUT = 2.0
# Seconds `chatroom-client --discover` listens (the "servers found in 3 s").
DISCOVER_SECONDS = 3.0

# Set (to anything but "" or "0") to keep every mDNS socket shut: start() then raises
# DiscoveryError. The test suite sets it so that no test multicasts on the real network.
NO_MDNS_ENV = "CHATROOM_NO_MDNS"

_HEX64 = re.compile(r"^[0-9A-F]{64}$")
_DIGITS = re.compile(r"^[0-9]{1,5}$")


class DiscoveryError(Exception):
    """mDNS cannot run here (no multicast route, no such interface...)."""


@dataclass(frozen=True)
class DiscoveredServer:
    """One server on the LAN, its ``_irc`` and ``_ircs-u`` records merged.

    ``fingerprint`` is the announced certificate SHA-256 in the form openssl prints
    (``AB:CD:...``), or None; it is a claim, to show beside the real one, not a proof.
    """

    name: str
    host: str  # an IP address: IPv4 when the server has one
    plain_port: int | None
    tls_port: int | None
    fingerprint: str | None
    network: str | None
    version: str | None

    @property
    def prefers_tls(self) -> bool:
        return self.tls_port is not None

    @property
    def port(self) -> int:
        """The port to connect to: TLS when offered."""
        port = self.tls_port if self.tls_port is not None else self.plain_port
        assert port is not None  # a record always has its own port
        return port

    @property
    def url(self) -> str:
        """``ircs://host:port`` (or ``irc://`` without TLS), IPv6 in brackets.

        >>> DiscoveredServer("a", "fd00::1", 6667, 6697, None, None, None).url
        'ircs://[fd00::1]:6697'
        """
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'ircs' if self.prefers_tls else 'irc'}://{host}:{self.port}"


@dataclass(frozen=True)
class ServiceRecord:
    """One ``_irc`` or ``_ircs-u`` record, checked; the unit :func:`merge_records` joins."""

    service_type: str
    service_name: str
    target: str  # the SRV target host name, casefolded: the same for both records of a server
    host: str
    plain_port: int | None
    tls_port: int | None
    name: str
    fingerprint: str | None
    network: str | None
    version: str | None

    @property
    def is_tls(self) -> bool:
        return self.service_type == IRCS_SERVICE


def clean_text(raw: bytes | str | None, limit: int = MAX_TEXT) -> str | None:
    """Printable text from an untrusted value: control characters dropped, whitespace
    runs made one space, cut to ``limit`` characters; None when nothing is left.

    >>> clean_text(b"chat\\x1b[31m  room\\xff"), clean_text(b"\\x00\\n"), clean_text("x" * 99, 3)
    ('chat[31m room\ufffd', None, 'xxx')
    """
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = "".join(" " if ch.isspace() else ch for ch in text[: limit * 4])
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("C"))
    text = " ".join(text.split())[:limit].strip()
    return text or None


def parse_port(raw: bytes | str | None) -> int | None:
    """A TCP port from a TXT value, or None unless it is plain digits in 1..65535.

    >>> [parse_port(v) for v in (b"6697", b"0", b"65536", b"-1", b" 7", b"6e3", None)]
    [6697, None, None, None, None, None, None]
    """
    if raw is None:
        return None
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
    if not _DIGITS.match(text):
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


def parse_fingerprint(raw: bytes | str | None) -> str | None:
    """``AB:CD:...`` from a TXT ``fp`` value ``sha256:AB:CD:...`` (colons optional).

    >>> parse_fingerprint(b"sha256:" + b"ab" * 32) == ":".join(["AB"] * 32)
    True
    >>> parse_fingerprint(b"md5:" + b"ab" * 16), parse_fingerprint(b"sha256:zz")
    (None, None)
    """
    if raw is None:
        return None
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
    if len(text) > 200 or not text.lower().startswith(FINGERPRINT_PREFIX):
        return None
    digits = text[len(FINGERPRINT_PREFIX) :].replace(":", "").upper()
    if not _HEX64.match(digits):
        return None
    return ":".join(digits[i : i + 2] for i in range(0, 64, 2))


def pick_address(addresses: Iterable[str]) -> str | None:
    """The address to show and connect to: the first usable IPv4, else a routable IPv6,
    else a link-local one (with its ``%scope``).

    >>> pick_address(["fe80::1%2", "fd00::5", "0.0.0.0", "192.168.1.20"])
    '192.168.1.20'
    >>> pick_address(["fe80::1%2", "fd00::5"]), pick_address(["fe80::1%2"]), pick_address([])
    ('fd00::5', 'fe80::1%2', None)
    """
    ranked: list[tuple[int, str]] = []
    for text in addresses:
        try:
            addr = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            continue
        if addr.is_unspecified or addr.is_multicast or str(addr) == "255.255.255.255":
            continue
        rank = 0 if addr.version == 4 else 2 if addr.is_link_local else 1
        ranked.append((rank, text))
    return min(ranked, key=lambda r: r[0])[1] if ranked else None


def parse_record(
    service_type: str,
    service_name: str,
    target: str | None,
    port: int | None,
    addresses: Iterable[str],
    properties: Mapping[bytes, bytes | None],
) -> ServiceRecord | None:
    """One record checked, or None when it is unusable (no port, no address, wrong type).

    TXT keys are case-insensitive and only the first of a repeated key counts
    (RFC 6763 §6.4).
    """
    if service_type not in SERVICE_TYPES or port is None or not 0 < port < 65536:
        return None
    host = pick_address(addresses)
    if host is None:
        return None
    txt: dict[str, bytes | None] = {}
    for key, value in list(properties.items())[:64]:
        folded = key.decode("ascii", "replace").lower()
        txt.setdefault(folded, value)
    instance = (
        service_name[: -len(service_type) - 1]
        if service_name.endswith("." + service_type)
        else service_name
    )
    name = clean_text(txt.get(TXT_NAME)) or clean_text(instance) or host
    is_tls = service_type == IRCS_SERVICE
    other = parse_port(txt.get(TXT_PLAIN_PORT if is_tls else TXT_TLS_PORT))
    return ServiceRecord(
        service_type=service_type,
        service_name=service_name,
        target=(target or "").casefold()[:255],
        host=host,
        plain_port=other if is_tls else port,
        tls_port=port if is_tls else other,
        name=name,
        fingerprint=parse_fingerprint(txt.get(TXT_FINGERPRINT)),
        network=clean_text(txt.get(TXT_NETWORK)),
        version=clean_text(txt.get(TXT_VERSION)),
    )


def merge_records(records: Iterable[ServiceRecord]) -> list[DiscoveredServer]:
    """One entry per server, sorted by name: an ``_irc`` and an ``_ircs-u`` record merge
    when they have the same SRV target, agree on both ports and on the fingerprint.
    Where both say something, the TLS record wins. At most MAX_SERVERS entries.
    """
    groups: dict[tuple[str, int | None, int | None, str | None], list[ServiceRecord]] = {}
    for record in records:
        key = (record.target, record.plain_port, record.tls_port, record.fingerprint)
        groups.setdefault(key, []).append(record)
    servers = []
    for group in groups.values():
        group.sort(key=lambda r: (not r.is_tls, r.service_name))  # TLS first, then stable
        first = group[0]
        servers.append(
            DiscoveredServer(
                name=first.name,
                host=first.host,
                plain_port=first.plain_port,
                tls_port=first.tls_port,
                fingerprint=first.fingerprint,
                network=next((r.network for r in group if r.network), None),
                version=next((r.version for r in group if r.version), None),
            )
        )
    servers.sort(key=lambda s: (s.name.casefold(), s.host, s.plain_port or 0, s.tls_port or 0))
    return servers[:MAX_SERVERS]


def format_servers(servers: Iterable[DiscoveredServer]) -> str:
    """One line per server, columns aligned: name, address, ports, fingerprint.

    >>> print(format_servers([
    ...     DiscoveredServer("lan", "192.168.1.20", 6667, 6697, "AB:CD", "LAN", "v1"),
    ...     DiscoveredServer("old box", "10.0.0.7", 6667, None, None, None, None),
    ... ]))
    lan      192.168.1.20  tls=6697 plain=6667  sha256:AB:CD
    old box  10.0.0.7      plain=6667           -
    >>> format_servers([])
    'no chatroom servers found on this network'
    """
    rows = []
    for s in servers:
        ports = " ".join(
            f"{label}={port}"
            for label, port in (("tls", s.tls_port), ("plain", s.plain_port))
            if port is not None
        )
        fp = FINGERPRINT_PREFIX + s.fingerprint if s.fingerprint else "-"
        rows.append((s.name, s.host, ports, fp))
    if not rows:
        return "no chatroom servers found on this network"
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    )


class Discovery:
    """A live list of the servers on the LAN, kept inside a running asyncio loop.

    ``on_change`` is called (in the loop) with the whole new list each time it changes.
    """

    def __init__(self, interfaces: list[str] | None = None) -> None:
        self.interfaces = None if interfaces is None else list(interfaces)
        self.servers: list[DiscoveredServer] = []
        self._records: dict[tuple[str, str], ServiceRecord] = {}  # keyed by (type, name)
        self._lookups: dict[tuple[str, str], asyncio.Task[None]] = {}  # same key
        self._on_change: Callable[[list[DiscoveredServer]], None] | None = None
        self._aiozc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None

    async def start(self, on_change: Callable[[list[DiscoveredServer]], None]) -> None:
        """Open the mDNS sockets and browse; raises DiscoveryError when mDNS cannot run."""
        if self._aiozc is not None:
            return
        if os.environ.get(NO_MDNS_ENV, "") not in ("", "0"):
            raise DiscoveryError(f"mDNS is off ({NO_MDNS_ENV} is set)")
        self._on_change = on_change
        kwargs: dict[str, Any] = {}
        if self.interfaces is not None:
            kwargs["interfaces"] = self.interfaces
            if any(":" in address for address in self.interfaces):
                kwargs["ip_version"] = IPVersion.All
        try:
            self._aiozc = AsyncZeroconf(**kwargs)
        except Exception as e:  # OSError mostly; zeroconf raises a few of its own
            raise DiscoveryError(f"mDNS unavailable: {e}") from e
        try:
            self._browser = AsyncServiceBrowser(
                self._aiozc.zeroconf, list(SERVICE_TYPES), handlers=[self._on_service_change]
            )
        except Exception as e:
            await self.stop()
            raise DiscoveryError(f"cannot browse: {e}") from e

    async def stop(self) -> None:
        """Stop browsing and close the sockets; bounded, idempotent. Keeps ``servers``."""
        aiozc, self._aiozc = self._aiozc, None
        browser, self._browser = self._browser, None
        lookups = list(self._lookups.values())
        self._lookups.clear()
        for task in lookups:
            task.cancel()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await asyncio.gather(*lookups, return_exceptions=True)
                if browser is not None:
                    await browser.async_cancel()
                if aiozc is not None:
                    await aiozc.async_close()
        except Exception as e:  # TimeoutError included: the sockets close with the process
            log.warning("discovery: closing mDNS failed: %s", str(e) or type(e).__name__)

    # -- zeroconf callbacks (run in the loop) --------------------------------------------

    def _on_service_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        key = (service_type, name)
        if state_change is ServiceStateChange.Removed:
            task = self._lookups.pop(key, None)
            if task is not None:
                task.cancel()
            if self._records.pop(key, None) is not None:
                self._publish()
            return
        stale = self._lookups.pop(key, None)
        if stale is not None:
            stale.cancel()  # it may have read the records from before this change
        if len(self._lookups) >= MAX_LOOKUPS or (
            key not in self._records and len(self._records) >= MAX_RECORDS
        ):
            # Flooded: this one waits for its next announcement (an Updated event).
            log.debug("discovery: too many services; %s ignored", name)
            return
        task = asyncio.get_running_loop().create_task(self._look_up(zeroconf, service_type, name))
        self._lookups[key] = task

    async def _look_up(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        key = (service_type, name)
        try:
            info = AsyncServiceInfo(service_type, name)
            if not await info.async_request(zeroconf, LOOKUP_TIMEOUT_MS):
                return
            record = parse_record(
                service_type,
                name,
                info.server,
                info.port,
                info.parsed_scoped_addresses(IPVersion.All),
                info.properties,
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a record zeroconf itself chokes on: skip it
            log.debug("discovery: lookup of %r failed: %s", name, e)
            return
        finally:
            if self._lookups.get(key) is asyncio.current_task():
                del self._lookups[key]
        if self._aiozc is None:
            return  # stopped meanwhile
        if record is None:
            changed = self._records.pop(key, None) is not None
        else:
            changed = self._records.get(key) != record
            self._records[key] = record
        if changed:
            self._publish()

    def _publish(self) -> None:
        servers = merge_records(self._records.values())
        if servers == self.servers:
            return
        self.servers = servers
        if self._on_change is None:
            return
        try:
            self._on_change(list(servers))
        except Exception:  # the UI's bug must not stop discovery
            log.exception("discovery: on_change failed")


async def discover(
    timeout: float = DISCOVER_SECONDS, interfaces: list[str] | None = None
) -> list[DiscoveredServer]:
    """The servers heard from within ``timeout`` seconds; raises DiscoveryError."""
    discovery = Discovery(interfaces)
    await discovery.start(lambda _servers: None)
    try:
        await asyncio.sleep(timeout)
        return list(discovery.servers)
    finally:
        with contextlib.suppress(Exception):
            await discovery.stop()


__all__ = [
    "NO_MDNS_ENV",
    "DiscoveredServer",
    "Discovery",
    "DiscoveryError",
    "discover",
    "format_servers",
    "merge_records",
    "parse_record",
]
