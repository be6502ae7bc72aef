"""Which TLS certificates the client trusts: the fingerprints pinned on first use, like ssh.

A server whose certificate validates against the system's certificate authorities and
its host name is trusted without a question. Any other (a LAN server's self-signed one)
is known by the SHA-256 fingerprint of its certificate: the first time, the user is
shown it and asked; once trusted it is kept per ``host:port`` in :data:`KNOWN_FILE` in
the config directory, and a later connection that presents another one is refused,
with both fingerprints and the command that forgets the old one
(:func:`forget_command`). ``--trust-fingerprint`` names the one to accept for a run.

No sockets here: :mod:`chatroom.client.connection` does the handshakes and asks
:func:`judge` what to make of the certificate it got.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = [
    "FILE_MODE",
    "KNOWN_FILE",
    "KnownServers",
    "TrustQuestion",
    "Verdict",
    "fingerprint_of",
    "forget_command",
    "judge",
    "normalise_fingerprint",
    "server_address",
]

KNOWN_FILE = "known_servers.json"
# Owner read/write only: not a secret, but what it says decides whom we talk to.
FILE_MODE = 0o600
DIR_MODE = 0o700
# A SHA-256 digest: 32 bytes, 64 hex digits.
_SHA256_HEX_DIGITS = 64
_SEPARATORS = re.compile(r"[\s:]")


def normalise_fingerprint(text: str) -> str:
    """A SHA-256 fingerprint as ``openssl x509 -fingerprint -sha256`` prints it.

    Colons, spaces, case and a ``sha256:``/``SHA256=`` prefix do not matter; anything
    that is not 64 hex digits is a ValueError.

    >>> normalise_fingerprint("sha256:" + "ab" * 32)[:11]
    'AB:AB:AB:AB'
    >>> normalise_fingerprint("AB:" * 31 + "AB") == normalise_fingerprint("ab" * 32)
    True
    """
    body = text.strip()
    prefix = re.match(r"(?i)sha-?256\s*[:=]?\s*", body)
    if prefix:
        body = body[prefix.end() :]
    digits = _SEPARATORS.sub("", body).upper()
    if len(digits) != _SHA256_HEX_DIGITS or not re.fullmatch(r"[0-9A-F]+", digits):
        raise ValueError(f"{text!r} is not a SHA-256 fingerprint (64 hex digits, colons optional)")
    return ":".join(digits[i : i + 2] for i in range(0, _SHA256_HEX_DIGITS, 2))


def fingerprint_of(der: bytes) -> str:
    """The SHA-256 fingerprint of a certificate (DER), as the server prints its own."""
    from chatroom.server.tls import fingerprint_sha256

    return fingerprint_sha256(der)


def server_address(host: str, port: int) -> str:
    """How a server is named in the trust file and the forget command.

    >>> server_address("Chat.LAN", 6697), server_address("::1", 6697)
    ('chat.lan:6697', '[::1]:6697')
    """
    host = host.strip().lower()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def forget_command(address: str) -> str:
    """The command that forgets the fingerprint trusted for ``address`` (``host:port``)."""
    return f"chatroom-client --forget-fingerprint {address}"


@dataclass(frozen=True, slots=True)
class TrustQuestion:
    """What the user is asked on first contact with a server whose certificate no
    authority vouches for. ``announced``: the fingerprint the server announced on
    the network (discovery), if any: a hint, not proof. ``why``: the reason the
    certificate did not validate, in OpenSSL's words."""

    address: str
    fingerprint: str
    announced: str | None = None
    why: str = ""

    @property
    def announced_matches(self) -> bool | None:
        """None without an announcement; else whether it is the one presented."""
        return None if self.announced is None else self.announced == self.fingerprint


class Verdict(StrEnum):
    """What to do with a certificate that the authorities did not vouch for."""

    ACCEPT = "accept"  # the one trusted (stored, or given with --trust-fingerprint)
    ASK = "ask"  # never seen: ask the user
    REFUSE = "refuse"  # another one than trusted: refuse, never ask


def judge(presented: str, trusted: str | None) -> Verdict:
    """Compare the presented fingerprint with the one trusted for this server (None:
    none yet). A mismatch is refused outright: there is no "continue anyway".

    >>> judge("AA", "AA"), judge("AA", None), judge("AA", "BB")
    (<Verdict.ACCEPT: 'accept'>, <Verdict.ASK: 'ask'>, <Verdict.REFUSE: 'refuse'>)
    """
    if trusted is None:
        return Verdict.ASK
    return Verdict.ACCEPT if presented == trusted else Verdict.REFUSE


@dataclass(frozen=True, slots=True)
class KnownServer:
    """One trusted certificate: its fingerprint and when it was trusted (UTC, ISO 8601)."""

    fingerprint: str
    trusted: str = ""


class KnownServers:
    """``known_servers.json`` in ``directory``: ``host:port`` -> the trusted fingerprint.

    Each change rewrites the whole file through a temporary one (mode 0600) and a
    rename, so a crash leaves the old file or the new one, never half of either. A
    missing or damaged file knows no server (and every server is asked about again).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / KNOWN_FILE

    def _load(self) -> dict[str, KnownServer]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        out: dict[str, KnownServer] = {}
        for address, entry in raw.items() if isinstance(raw, dict) else ():
            with contextlib.suppress(AttributeError, KeyError, TypeError, ValueError):
                out[address] = KnownServer(
                    normalise_fingerprint(entry["sha256"]), str(entry.get("trusted", ""))
                )
        return out

    def _save(self, known: dict[str, KnownServer]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        data = {a: {"sha256": k.fingerprint, "trusted": k.trusted} for a, k in known.items()}
        tmp = self.path.with_name(f"{KNOWN_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            if os.name == "posix":
                os.fchmod(fd, FILE_MODE)  # an old .tmp keeps its mode through O_CREAT
            os.write(fd, json.dumps(data, indent=1, sort_keys=True).encode("utf-8") + b"\n")
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        os.close(fd)
        os.replace(tmp, self.path)

    def get(self, address: str) -> KnownServer | None:
        """What is trusted for ``address`` (``host:port``, see :func:`server_address`)."""
        return self._load().get(address)

    def trust(self, address: str, fingerprint: str) -> None:
        """Trust ``fingerprint`` for ``address`` from now on (OSError if it can't be kept)."""
        known = self._load()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        known[address] = KnownServer(normalise_fingerprint(fingerprint), stamp)
        self._save(known)

    def forget(self, address: str) -> KnownServer | None:
        """Forget what is trusted for ``address``; what was (None: nothing)."""
        known = self._load()
        old = known.pop(address, None)
        if old is not None:
            self._save(known)
        return old
