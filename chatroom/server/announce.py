"""LAN announcement: the server's DNS-SD records over mDNS, with python-zeroconf's threaded API.

One :class:`Announcer` per server. :meth:`Announcer.start` opens the mDNS sockets and
returns at once; probing and the first announcements (about 2 s) run on zeroconf's own
thread. :meth:`Announcer.stop` sends the goodbye packets and closes, within a bound.
Neither ever raises: a LAN without multicast must not stop a chat server, so failures
are logged as warnings and the server goes on unannounced.

What is published (RFC 6763 names; ``ircs-u`` is RFC 7194's)::

    <instance>._irc._tcp.local.     SRV HOST.local.:6667  TXT name network version fp tls=6697
    <instance>._ircs-u._tcp.local.  SRV HOST.local.:6697  TXT name network version fp plain=6667

Each record names the other port, so a client that sees one knows both. The instance
name is the server name (dots become dashes, since a dot would split the DNS label),
plus a port when it is not the standard one (6667, 6697), so two servers on one
machine never share a name; zeroconf's probing appends ``-2``, ``-3``... when a server
on another machine already uses it. (Two servers on one machine with the same name and
ports cannot exist: the ports would clash. Probing alone is not enough on one machine,
since the defending reply is unicast to a port that several sockets share.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import logging
import os
import re
import socket
import threading
import unicodedata
from collections.abc import Callable
from typing import Any

from zeroconf import IPVersion, ServiceInfo, Zeroconf

log = logging.getLogger(__name__)

# RFC 6763 service types; "ircs-u" is the TLS-from-the-first-byte IRC port of RFC 7194.
IRC_SERVICE = "_irc._tcp.local."
IRCS_SERVICE = "_ircs-u._tcp.local."

# TXT keys. Both records carry all of them but the one naming their own port.
TXT_NAME = "name"
TXT_NETWORK = "network"
TXT_VERSION = "version"
TXT_FINGERPRINT = "fp"  # "sha256:AB:CD:..." as `openssl x509 -fingerprint -sha256` prints
TXT_TLS_PORT = "tls"  # on the _irc record
TXT_PLAIN_PORT = "plain"  # on the _ircs-u record
FINGERPRINT_PREFIX = "sha256:"

# A DNS label is at most 63 bytes (RFC 1035 §2.3.4; RFC 6763 §4.1.1 for instance names).
# Leave room for a port suffix and for the "-NN" zeroconf appends on a collision.
MAX_INSTANCE_BYTES = 63 - 6 - 4
# The ports of RFC 7194 (6697) and of common practice (6667): no suffix on the name.
STANDARD_PORTS = (6667, 6697)
# One TXT string is at most 255 bytes, "key=" included (RFC 6763 §6.1).
MAX_TXT_VALUE_BYTES = 200
# Seconds stop() may spend on goodbyes (three packets 125 ms apart) and on closing.
STOP_TIMEOUT = 2.0
# Seconds start() waits for zeroconf's socket thread to come up when it must build it on a
# helper thread (start() called from inside an asyncio loop).
START_TIMEOUT = 5.0

# Set (to anything but "" or "0") to keep every mDNS socket shut, whatever the settings:
# the test suite sets it so that no test multicasts on this machine's real network.
NO_MDNS_ENV = "CHATROOM_NO_MDNS"

_HEX_PAIRS = re.compile(r"^[0-9A-F]{64}$")


def normalize_fingerprint(text: str) -> str | None:
    """The SHA-256 fingerprint in the form openssl prints, or None if ``text`` is not one.

    >>> normalize_fingerprint("sha256 Fingerprint=ab:cd" + ":ef" * 30)
    'AB:CD:EF:EF:EF:EF:EF:EF:EF:EF:EF:EF:EF:EF:EF:EF:EF:EF:EF:EF:EF:EF:EF:EF:EF:EF:EF:EF:EF:EF:EF:EF'
    >>> normalize_fingerprint("sha256:" + "00" * 32) == ":".join(["00"] * 32)
    True
    >>> normalize_fingerprint("AB:CD") is None
    True
    """
    body = text.strip()
    if "=" in body:  # "sha256 Fingerprint=AB:..." (openssl x509 -fingerprint)
        body = body.split("=", 1)[1]
    if body.lower().startswith(FINGERPRINT_PREFIX):
        body = body[len(FINGERPRINT_PREFIX) :]
    digits = body.replace(":", "").strip().upper()
    if not _HEX_PAIRS.match(digits):
        return None
    return ":".join(digits[i : i + 2] for i in range(0, 64, 2))


def instance_name(server_name: str, ports: tuple[int | None, int | None] = STANDARD_PORTS) -> str:
    """A DNS-SD instance name (one label) from the server name and ``(plain, tls)`` ports.

    >>> instance_name("irc.example.org"), instance_name("irc.example.org", (6667, None))
    ('irc-example-org', 'irc-example-org')
    >>> instance_name("irc.example.org", (7000, 6697)), instance_name("a", (None, 7001))
    ('irc-example-org-7000', 'a-7001')
    >>> instance_name("\\x00\\x1b"), len(instance_name("é" * 100).encode())
    ('chatroom', 52)
    """
    cleaned = "".join(
        "-" if ch == "." else ch
        for ch in server_name
        if not unicodedata.category(ch).startswith("C")
    ).strip(" -")
    encoded = cleaned.encode("utf-8")[:MAX_INSTANCE_BYTES]
    name = encoded.decode("utf-8", "ignore").strip(" -") or "chatroom"
    nonstandard = [
        p for p, usual in zip(ports, STANDARD_PORTS, strict=True) if p not in (None, usual)
    ]
    if nonstandard:
        name += f"-{nonstandard[0]}"
    return name


def _txt_value(text: str) -> str:
    """``text`` cut to what one TXT string holds, on a character boundary."""
    return text.encode("utf-8")[:MAX_TXT_VALUE_BYTES].decode("utf-8", "ignore")


def _mdns_host_name(name: str | None) -> str:
    """``HOST.local.`` for this machine (the name its certificate also carries)."""
    label = (name or socket.gethostname()).split(".")[0]
    label = re.sub(r"[^A-Za-z0-9-]", "-", label).strip("-")[:63] or "chatroom"
    return f"{label}.local."


def _valid_port(port: int | None) -> bool:
    return port is not None and 0 < port < 65536


class Announcer:
    """Announce one server on the LAN; ``start()`` and ``stop()`` never raise.

    ``host_addresses`` are what the A/AAAA records say (the addresses other machines
    reach the server on); ``interfaces`` limits where mDNS is spoken (None: every
    interface zeroconf finds; ``["127.0.0.1"]`` in tests).
    """

    def __init__(
        self,
        server_name: str,
        network: str,
        version: str,
        host_addresses: list[str],
        plain_port: int | None,
        tls_port: int | None,
        fingerprint: str | None,
        interfaces: list[str] | None = None,
        *,
        host_name: str | None = None,
    ) -> None:
        self.server_name = server_name
        self.network = network
        self.version = version
        self.host_addresses = list(host_addresses)
        self.plain_port = plain_port
        self.tls_port = tls_port
        self.fingerprint = fingerprint
        self.interfaces = None if interfaces is None else list(interfaces)
        self.host_name = _mdns_host_name(host_name)
        self._lock = threading.Lock()  # guards the fields below: start/stop from any thread
        self._zc: Zeroconf | None = None
        self._infos: list[ServiceInfo] = []
        self._registering: concurrent.futures.Future[None] | None = None
        self._stopped = False

    # -- what is published -------------------------------------------------------------

    def _addresses(self) -> list[str]:
        out = []
        for text in self.host_addresses:
            try:
                addr = ipaddress.ip_address(text)
            except ValueError:
                log.warning("LAN announcement: %r is not an IP address; left out", text)
                continue
            if addr.is_unspecified or addr.is_multicast:
                continue
            out.append(str(addr))
        return list(dict.fromkeys(out))

    def _properties(self) -> dict[str, str]:
        props = {
            TXT_NAME: _txt_value(self.server_name),
            TXT_NETWORK: _txt_value(self.network),
            TXT_VERSION: _txt_value(self.version),
        }
        if self.fingerprint is not None:
            fp = normalize_fingerprint(self.fingerprint)
            if fp is None:
                log.warning(
                    "LAN announcement: fingerprint %r is not a SHA-256 one; left out",
                    self.fingerprint,
                )
            else:
                props[TXT_FINGERPRINT] = FINGERPRINT_PREFIX + fp
        return props

    def service_infos(self) -> list[ServiceInfo]:
        """The records start() registers: ``_irc`` then ``_ircs-u``, for the ports set."""
        addresses = self._addresses()
        if not addresses:
            return []
        plain = self.plain_port if _valid_port(self.plain_port) else None
        tls = self.tls_port if _valid_port(self.tls_port) else None
        instance = instance_name(self.server_name, (plain, tls))
        infos = []
        for service, port, other_key, other_port in (
            (IRC_SERVICE, plain, TXT_TLS_PORT, tls),
            (IRCS_SERVICE, tls, TXT_PLAIN_PORT, plain),
        ):
            if port is None:
                continue
            props = self._properties()
            if other_port is not None:
                props[other_key] = str(other_port)
            infos.append(
                ServiceInfo(
                    service,
                    f"{instance}.{service}",
                    port=port,
                    properties=props,
                    server=self.host_name,
                    parsed_addresses=addresses,
                )
            )
        return infos

    @property
    def names(self) -> list[str]:
        """The full service names registered (after any renaming on a collision)."""
        with self._lock:
            return [info.name for info in self._infos]

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> bool:
        """Open the mDNS sockets and begin announcing; True if under way.

        False (with a warning logged, or an info line when there is nothing to announce)
        when the announcement cannot be made; the caller carries on either way.
        """
        with self._lock:
            if self._stopped:
                return False
            if self._zc is not None:
                return True
            if os.environ.get(NO_MDNS_ENV, "") not in ("", "0"):
                log.info("not announcing on the LAN: %s is set", NO_MDNS_ENV)
                return False
            try:
                infos = self.service_infos()
            except Exception as e:  # a name zeroconf rejects, and the like
                log.warning("not announcing on the LAN: %s", e)
                return False
            if not infos:
                log.info("not announcing on the LAN: no LAN address or no port to announce")
                return False
            try:
                zc = _new_zeroconf(self.interfaces)
            except Exception as e:  # no multicast route, no such address, no IPv6...
                log.warning("not announcing on the LAN (mDNS unavailable: %s)", e)
                return False
            assert zc.loop is not None
            self._zc = zc
            self._infos = infos
            self._registering = asyncio.run_coroutine_threadsafe(_register(zc, infos), zc.loop)
            self._registering.add_done_callback(lambda future: _log_outcome(future, infos))
            return True

    def wait_announced(self, timeout: float = 5.0) -> bool:
        """Block until the records are announced (True) or failed/timed out (False)."""
        with self._lock:
            future = self._registering
        if future is None:
            return False
        try:
            future.result(timeout)
        except BaseException:  # cancelled, failed, timed out: all "not announced"
            return False
        return True

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Withdraw the records (goodbye packets) and close; bounded, idempotent."""
        with self._lock:
            self._stopped = True
            zc, self._zc = self._zc, None
            future, self._registering = self._registering, None
        if zc is None:
            return
        assert zc.loop is not None
        if future is not None and not future.done():
            future.cancel()  # still probing: nothing was announced that needs a goodbye
        try:
            asyncio.run_coroutine_threadsafe(zc.async_unregister_all_services(), zc.loop).result(
                timeout
            )
        except Exception as e:
            log.warning("LAN announcement: goodbye packets not all sent: %s", e)
        try:
            zc.close()  # joins zeroconf's thread
        except Exception as e:
            log.warning("LAN announcement: closing mDNS failed: %s", e)
        log.info("LAN announcement withdrawn")


def _log_outcome(future: concurrent.futures.Future[None], infos: list[ServiceInfo]) -> None:
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:
        log.warning("announcing on the LAN failed: %s", str(error) or type(error).__name__)
        return
    log.info(
        "announced on the LAN as %s", ", ".join(f"{info.name} port {info.port}" for info in infos)
    )


async def _register(zc: Zeroconf, infos: list[ServiceInfo]) -> None:
    """Probe and announce every record at once (each takes about 2 s)."""

    async def one(info: ServiceInfo) -> None:
        broadcast = await zc.async_register_service(info, allow_name_change=True)
        await broadcast

    await asyncio.gather(*(one(info) for info in infos))


def _new_zeroconf(interfaces: list[str] | None) -> Zeroconf:
    """A Zeroconf on its own thread and loop, even when called from inside an asyncio loop
    (where zeroconf would otherwise attach to that loop and our blocking calls deadlock)."""
    kwargs: dict[str, Any] = {}
    if interfaces is not None:
        kwargs["interfaces"] = interfaces
        if any(":" in address for address in interfaces):
            kwargs["ip_version"] = IPVersion.All
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return Zeroconf(**kwargs)
    return _on_helper_thread(lambda: Zeroconf(**kwargs))


def _on_helper_thread(make: Callable[[], Zeroconf]) -> Zeroconf:
    """``make()`` on a short-lived thread with no event loop, bounded by START_TIMEOUT."""
    lock = threading.Lock()
    result: list[Zeroconf | BaseException] = []
    abandoned = False

    def run() -> None:
        try:
            made: Zeroconf | BaseException = make()
        except BaseException as e:
            made = e
        with lock:
            if not abandoned:
                result.append(made)
                return
        if isinstance(made, Zeroconf):
            made.close()  # start() gave up waiting: leave no thread behind

    helper = threading.Thread(target=run, name="announce-setup", daemon=True)
    helper.start()
    helper.join(START_TIMEOUT)
    with lock:
        if not result:
            abandoned = True
            raise TimeoutError("mDNS set-up did not finish in time")
    made = result[0]
    if isinstance(made, BaseException):
        raise made
    return made


__all__ = [
    "IRCS_SERVICE",
    "IRC_SERVICE",
    "NO_MDNS_ENV",
    "Announcer",
    "instance_name",
    "normalize_fingerprint",
]
