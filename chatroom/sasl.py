"""Sans-IO SASL mechanics (PLAIN and SCRAM-SHA-256) shared by the server and the client.

RFC 4616 (PLAIN), RFC 5802 (SCRAM) and RFC 7677 (SCRAM-SHA-256), for IRCv3 ``sasl``.
Bytes in, bytes out: nothing here touches a socket, a thread or a database, and the
server keeps only SCRAM credentials (:class:`Credentials`), never a password.

Passwords are prepared with NFKC normalisation only, the same way on both sides
(:func:`make_credentials`, :func:`check_password`, :class:`ScramClient`). Full RFC 4013
SASLprep would also map some spaces and refuse unassigned and bidirectional code
points, so it would reject passwords that users can type; real clients (WeeChat,
irssi) send ASCII, for which NFKC is the identity and the result matches SASLprep.
Usernames are sent as given (UTF-8), and the account store decides how to fold them.

Errors the peer causes raise :class:`SaslError`, whose ``reason`` is for logs and tests
only: the server answers every failure with the same ``904 ERR_SASLFAIL``. Misuse by
our own caller (an iteration count below the minimum, a NUL in a username we are
asked to send) raises :class:`ValueError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto

from chatroom.protocol import casefold

__all__ = [
    "DEFAULT_ITERATIONS",
    "MAX_ITERATIONS",
    "MAX_MESSAGE_BYTES",
    "MIN_ITERATIONS",
    "SALT_BYTES",
    "Credentials",
    "SaslError",
    "ScramClient",
    "ScramServer",
    "check_password",
    "fake_credentials",
    "make_credentials",
    "parse_plain",
    "plain_response",
]

# PBKDF2 rounds for new credentials: well above the RFC 7677 floor, and still only a
# fraction of a second per login or registration on a small LAN server.
DEFAULT_ITERATIONS = 100_000
# RFC 7677 section 4: the iteration count SHOULD be at least 4096.
MIN_ITERATIONS = 4096
# A server asking for more than this makes the client spin for many seconds: refuse it.
MAX_ITERATIONS = 10_000_000
# RFC 5802 section 5.1: the salt is random; 128 bits makes reuse across accounts moot.
SALT_BYTES = 16
# Bound on any one SASL message we parse (IRC AUTHENTICATE reassembles 400-byte chunks);
# a real SCRAM or PLAIN message is a few hundred bytes at most.
MAX_MESSAGE_BYTES = 4096

_HASH = "sha256"
_HASH_BYTES = hashlib.sha256().digest_size
# Random part of a nonce we make: 24 bytes -> 32 URL-safe characters (no ',').
_NONCE_BYTES = 24

# RFC 5802 section 7: printable = %x21-2B / %x2D-7E (visible ASCII except ',').
_PRINTABLE_RE = re.compile(r"[\x21-\x2b\x2d-\x7e]+\Z")
# attr-val of an optional extension: ALPHA "=" value; its value has no ',' once split.
_EXTENSION_RE = re.compile(r"[A-Za-z]=[^\x00]*\Z")
# saslname escapes: '=' may only start "=2C" (',') or "=3D" ('=').
_BAD_ESCAPE_RE = re.compile(r"=(?!2C|3D)")
_ESCAPE_RE = re.compile(r"=2C|=3D")
_UNESCAPES = {"=2C": ",", "=3D": "="}


class SaslError(Exception):
    """The peer broke the SASL exchange or failed to authenticate.

    ``reason`` is a short word for logs and tests ("malformed", "invalid-proof",
    "unknown-user", "bad-nonce", ...); never tell the peer which one it was.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# --- credentials ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the server stores for an account (RFC 5802 section 3): enough to check a
    SCRAM proof or a PLAIN password, not enough to log in as the user."""

    salt: bytes
    iterations: int
    stored_key: bytes  # H(ClientKey)
    server_key: bytes  # HMAC(SaltedPassword, "Server Key")


def _prepare(password: str) -> bytes:
    # The simple SASLprep substitute described in the module docstring.
    return unicodedata.normalize("NFKC", password).encode("utf-8")


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.digest(key, msg, _HASH)


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _salted_password(prepared: bytes, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac(_HASH, prepared, salt, iterations)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def make_credentials(
    password: str, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
) -> Credentials:
    """Derive the stored SCRAM-SHA-256 credentials for ``password`` (a fresh random salt
    unless one is given, for test vectors)."""
    if iterations < MIN_ITERATIONS:
        raise ValueError(f"iterations must be at least {MIN_ITERATIONS}, got {iterations}")
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    elif not salt:
        raise ValueError("salt must not be empty")
    salted = _salted_password(_prepare(password), salt, iterations)
    return Credentials(
        salt=salt,
        iterations=iterations,
        stored_key=_h(_hmac(salted, b"Client Key")),
        server_key=_hmac(salted, b"Server Key"),
    )


def check_password(creds: Credentials, password: str) -> bool:
    """Whether ``password`` matches ``creds`` (for PLAIN): recompute StoredKey, compare
    in constant time."""
    salted = _salted_password(_prepare(password), creds.salt, creds.iterations)
    return hmac.compare_digest(_h(_hmac(salted, b"Client Key")), creds.stored_key)


def fake_credentials(
    username: str, secret: bytes, iterations: int = DEFAULT_ITERATIONS
) -> Credentials:
    """Stand-in credentials for an account that does not exist, so SCRAM's server-first
    message does not reveal which accounts do.

    Deterministic per (casefolded ``username``, ``secret``): asking twice, or as
    "Bob" then "bob", gets the same salt, as a real account keyed by its casefolded
    name would. ``iterations`` must be what real accounts use. The keys are HMAC
    outputs no password derives to, so no proof can match them.
    """
    name = casefold(username).encode("utf-8", "surrogatepass")

    def derive(label: bytes) -> bytes:
        return _hmac(secret, label + b"\0" + name)

    return Credentials(
        salt=derive(b"salt")[:SALT_BYTES],
        iterations=iterations,
        stored_key=derive(b"stored-key"),
        server_key=derive(b"server-key"),
    )


# --- shared parsing -------------------------------------------------------------------


def _decode(message: bytes) -> str:
    """A peer's message as text, bounded and strictly UTF-8."""
    if not isinstance(message, bytes | bytearray | memoryview):
        raise TypeError(f"expected bytes, got {type(message).__name__}")
    if len(message) > MAX_MESSAGE_BYTES:
        raise SaslError("malformed", f"message longer than {MAX_MESSAGE_BYTES} bytes")
    try:
        return bytes(message).decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError("malformed", "not UTF-8") from None


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise SaslError("malformed", f"bad base64 in {what}") from None


def _escape_saslname(name: str) -> str:
    """RFC 5802 section 5.1: ',' and '=' in a name travel as "=2C" and "=3D".

    >>> _escape_saslname("a,b=c")
    'a=2Cb=3Dc'
    """
    return name.replace("=", "=3D").replace(",", "=2C")


def _unescape_saslname(text: str) -> str:
    """Inverse of :func:`_escape_saslname`; any other '=' or an empty name is malformed.

    >>> _unescape_saslname("a=2Cb=3Dc")
    'a,b=c'
    """
    if not text or "\0" in text or _BAD_ESCAPE_RE.search(text):
        raise SaslError("malformed", "bad saslname")
    return _ESCAPE_RE.sub(lambda m: _UNESCAPES[m.group()], text)


def _check_nonce(nonce: str) -> str:
    if not _PRINTABLE_RE.match(nonce):
        raise SaslError("malformed", "nonce is not printable ASCII")
    return nonce


def _check_extensions(attrs: list[str]) -> None:
    """Optional trailing attributes: ignore well-formed ones, but "m=" is reserved and
    RFC 5802 says its presence must fail the exchange."""
    for attr in attrs:
        if attr.startswith("m="):
            raise SaslError("unsupported-extension", "m=")
        if not _EXTENSION_RE.match(attr):
            raise SaslError("malformed", "bad attribute")


def _new_nonce() -> str:
    return secrets.token_urlsafe(_NONCE_BYTES)


def _own_nonce(nonce: str | None) -> str:
    if nonce is None:
        return _new_nonce()
    if not _PRINTABLE_RE.match(nonce):
        raise ValueError("nonce must be printable ASCII without ','")
    return nonce


# --- PLAIN ----------------------------------------------------------------------------


def parse_plain(data: bytes) -> tuple[str, str, str]:
    """Split a PLAIN message (RFC 4616) into ``(authzid, authcid, password)``.

    >>> parse_plain(b"\\0alice\\0s3cret")
    ('', 'alice', 's3cret')
    """
    text = _decode(data)
    parts = text.split("\0")
    if len(parts) != 3:
        raise SaslError("malformed", "PLAIN needs exactly two NULs")
    authzid, authcid, password = parts
    if not authcid or not password:
        raise SaslError("malformed", "empty authcid or password")
    return authzid, authcid, password


def plain_response(authcid: str, password: str, authzid: str = "") -> bytes:
    """A PLAIN message for the client to send.

    >>> plain_response("alice", "s3cret")
    b'\\x00alice\\x00s3cret'
    """
    if not authcid or not password:
        raise ValueError("authcid and password must not be empty")
    if "\0" in authcid + password + authzid:
        raise ValueError("PLAIN cannot carry a NUL")
    return f"{authzid}\0{authcid}\0{password}".encode()


# --- SCRAM-SHA-256 --------------------------------------------------------------------


class _Step(Enum):
    """Where one exchange is; any error moves it to FAILED for good."""

    START = auto()
    FIRST = auto()  # first message handled, final one expected
    DONE = auto()
    FAILED = auto()


class ScramServer:
    """Server side of one SCRAM-SHA-256 exchange (RFC 5802 section 5).

    ``lookup`` maps a username, as the client sent it, to stored credentials or None.
    ``fake_secret`` keys the stand-in credentials of unknown users; keep it stable for
    the server's lifetime so repeated attempts see the same salt; ``fake_iterations``
    is what new accounts get, so the stand-ins look like them. ``nonce`` (the
    server's part of the nonce) is for test vectors only.
    """

    def __init__(
        self,
        lookup: Callable[[str], Credentials | None],
        *,
        fake_secret: bytes,
        fake_iterations: int = DEFAULT_ITERATIONS,
        nonce: str | None = None,
    ) -> None:
        self._lookup = lookup
        self._fake_secret = fake_secret
        self._fake_iterations = fake_iterations
        self._server_nonce = _own_nonce(nonce)
        self._step = _Step.START
        self._creds: Credentials | None = None
        self._unknown = False
        self._gs2_header = b""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self.username = ""
        self.authzid = ""
        self.authenticated = False

    def first(self, client_first: bytes) -> bytes:
        """Take the client-first message; return server-first (``r=,s=,i=``)."""
        self._expect(_Step.START)
        try:
            reply = self._first(client_first)
        except SaslError:
            self._step = _Step.FAILED
            raise
        self._step = _Step.FIRST
        return reply

    def final(self, client_final: bytes) -> bytes:
        """Take the client-final message; return server-final (``v=``) if the proof holds."""
        self._expect(_Step.FIRST)
        try:
            reply = self._final(client_final)
        except SaslError:
            self._step = _Step.FAILED
            raise
        self._step = _Step.DONE
        self.authenticated = True
        return reply

    def _expect(self, step: _Step) -> None:
        if self._step is not step:
            self._step = _Step.FAILED
            raise SaslError("malformed", "message out of order")

    def _first(self, client_first: bytes) -> bytes:
        text = _decode(client_first)
        # gs2-header = gs2-cbind-flag "," [ authzid ] ","
        parts = text.split(",", 2)
        if len(parts) != 3:
            raise SaslError("malformed", "no gs2 header")
        flag, authz, bare = parts
        if flag.startswith("p="):
            raise SaslError("unsupported-extension", "channel binding")
        if flag not in ("n", "y"):
            raise SaslError("malformed", "bad gs2 flag")
        if authz:
            if not authz.startswith("a="):
                raise SaslError("malformed", "bad authzid")
            authzid = _unescape_saslname(authz[2:])
        else:
            authzid = ""
        attrs = bare.split(",")
        if attrs[0].startswith("m="):
            raise SaslError("unsupported-extension", "m=")
        if len(attrs) < 2 or not attrs[0].startswith("n=") or not attrs[1].startswith("r="):
            raise SaslError("malformed", "expected n=...,r=...")
        username = _unescape_saslname(attrs[0][2:])
        client_nonce = _check_nonce(attrs[1][2:])
        _check_extensions(attrs[2:])

        creds = self._lookup(username)
        if creds is None:
            # Same shape of reply as a real account; the exchange fails at final().
            creds = fake_credentials(username, self._fake_secret, self._fake_iterations)
            self._unknown = True
        self._creds = creds
        self.username = username
        self.authzid = authzid
        self._gs2_header = f"{flag},{authz},".encode()
        self._client_first_bare = bare
        self._nonce = client_nonce + self._server_nonce
        self._server_first = f"r={self._nonce},s={_b64(creds.salt)},i={creds.iterations}"
        return self._server_first.encode("ascii")

    def _final(self, client_final: bytes) -> bytes:
        assert self._creds is not None
        text = _decode(client_final)
        # client-final-message = client-final-message-without-proof "," proof
        without_proof, sep, proof_b64 = text.rpartition(",p=")
        if not sep:
            raise SaslError("malformed", "no proof")
        attrs = without_proof.split(",")
        if len(attrs) < 2 or not attrs[0].startswith("c=") or not attrs[1].startswith("r="):
            raise SaslError("malformed", "expected c=...,r=...")
        _check_extensions(attrs[2:])
        if _b64decode(attrs[0][2:], "c=") != self._gs2_header:
            raise SaslError("malformed", "channel binding does not match gs2 header")
        if attrs[1][2:] != self._nonce:
            raise SaslError("bad-nonce")
        proof = _b64decode(proof_b64, "p=")
        if len(proof) != _HASH_BYTES:
            raise SaslError("malformed", "proof has the wrong length")

        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}"
        auth_message_bytes = auth_message.encode()
        client_signature = _hmac(self._creds.stored_key, auth_message_bytes)
        client_key = _xor(proof, client_signature)
        # Always do the comparison, so an unknown user costs the same as a wrong password.
        valid = hmac.compare_digest(_h(client_key), self._creds.stored_key)
        if self._unknown:
            raise SaslError("unknown-user")
        if not valid:
            raise SaslError("invalid-proof")
        server_signature = _hmac(self._creds.server_key, auth_message_bytes)
        return b"v=" + _b64(server_signature).encode("ascii")


class ScramClient:
    """Client side of one SCRAM-SHA-256 exchange (used by chatroom-client).

    ``nonce`` (the client's nonce) is for test vectors only.
    """

    def __init__(self, username: str, password: str, *, nonce: str | None = None) -> None:
        if not username or "\0" in username:
            raise ValueError("username must be non-empty and without NUL")
        self.username = username
        self._password = _prepare(password)
        self._nonce = _own_nonce(nonce)
        self._gs2_header = "n,,"
        self._client_first_bare = f"n={_escape_saslname(username)},r={self._nonce}"
        self._server_signature = b""
        self._step = _Step.START
        self.authenticated = False

    def first(self) -> bytes:
        """The client-first message: ``n,,n=<user>,r=<nonce>``."""
        self._expect(_Step.START)
        self._step = _Step.FIRST
        return (self._gs2_header + self._client_first_bare).encode()

    def final(self, server_first: bytes) -> bytes:
        """Answer the server-first message with the client-final message (with proof)."""
        self._expect(_Step.FIRST)
        try:
            reply = self._final(server_first)
        except SaslError:
            self._step = _Step.FAILED
            raise
        self._step = _Step.DONE
        return reply

    def verify(self, server_final: bytes) -> None:
        """Check that the server knew our credentials too (the ``v=`` signature)."""
        self._expect(_Step.DONE)
        self._step = _Step.FAILED  # one verify per exchange, whatever its outcome
        text = _decode(server_final)
        attr = text.split(",", 1)[0]
        if attr.startswith("e="):
            reason = attr[2:]
            # The server's word goes into logs: keep it a short printable token.
            if not _PRINTABLE_RE.match(reason) or len(reason) > 64:
                raise SaslError("malformed", "bad server error")
            raise SaslError(reason, "server-final error")
        if not attr.startswith("v="):
            raise SaslError("malformed", "expected v=")
        signature = _b64decode(attr[2:], "v=")
        if not hmac.compare_digest(signature, self._server_signature):
            raise SaslError("bad-server-signature")
        self.authenticated = True

    def _expect(self, step: _Step) -> None:
        if self._step is not step:
            self._step = _Step.FAILED
            raise SaslError("malformed", "message out of order")

    def _final(self, server_first: bytes) -> bytes:
        text = _decode(server_first)
        attrs = text.split(",")
        if attrs[0].startswith("m="):
            raise SaslError("unsupported-extension", "m=")
        if (
            len(attrs) < 3
            or not attrs[0].startswith("r=")
            or not attrs[1].startswith("s=")
            or not attrs[2].startswith("i=")
        ):
            raise SaslError("malformed", "expected r=...,s=...,i=...")
        _check_extensions(attrs[3:])
        nonce = _check_nonce(attrs[0][2:])
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise SaslError("bad-nonce")
        salt = _b64decode(attrs[1][2:], "s=")
        if not salt:
            raise SaslError("malformed", "empty salt")
        count = attrs[2][2:]
        if not re.fullmatch(r"[0-9]{1,9}", count) or int(count) > MAX_ITERATIONS:
            raise SaslError("malformed", "bad iteration count")
        iterations = int(count)
        if iterations < MIN_ITERATIONS:
            raise SaslError("weak-iterations", str(iterations))

        salted = _salted_password(self._password, salt, iterations)
        client_key = _hmac(salted, b"Client Key")
        stored_key = _h(client_key)
        without_proof = f"c={_b64(self._gs2_header.encode())},r={nonce}"
        auth_message = f"{self._client_first_bare},{text},{without_proof}".encode()
        proof = _xor(client_key, _hmac(stored_key, auth_message))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={_b64(proof)}".encode("ascii")
