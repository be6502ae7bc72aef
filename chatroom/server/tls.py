"""TLS for the server: the certificate (made on first start, or given), and TLS per connection.

Certificate. Unless ``tls_cert``/``tls_key`` name a real one, the server keeps a
self-signed ECDSA P-256 certificate and its key in ``tls_dir`` (beside the history
database, else the per-user data directory), made on first start and reused after, so
the fingerprint clients pinned stays the same. A key others can read, or a certificate
and key that do not belong together, are refused with an error that says what to do.
:func:`fingerprint_sha256` is what clients compare (``openssl x509 -noout -fingerprint
-sha256`` prints the same hex).

Connections. One OpenSSL connection object must never be used by two threads at once,
and a connection has two: its reader thread (handler.py) and the writer thread that
writes every socket (outbox.py). So the socket stays plain and each TLS connection is
an ``SSLObject`` over two memory BIOs (:class:`TLSStream`), every use of it under the
stream's lock: the reader feeds it received bytes and takes plaintext, the writer gives
it plaintext and takes the records to send. Records come out of the BIO in the order
they were made, whichever thread made them, into one list that only the writer empties,
so they reach the socket in that order. The handshake (:func:`handshake`) runs in the
connection's own thread before anything else uses the socket, with a deadline.

This module imports ``cryptography`` only to make a certificate, so clients can import
:func:`fingerprint_sha256` cheaply.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from chatroom.server.config import Config

log = logging.getLogger("chatroom.server")

# File names of the managed pair in tls_dir.
CERT_FILE = "server-cert.pem"
KEY_FILE = "server-key.pem"
# A made certificate lasts this long: a LAN server should not stop working one day, and
# what clients trust is the pinned fingerprint, not the dates.
VALIDITY_DAYS = 3650
# Clocks on a LAN disagree a little; a certificate made now is valid from a bit earlier.
BACKDATE = timedelta(hours=1)
# The first byte of a TLS record carrying a handshake message (a ClientHello).
TLS_HANDSHAKE_RECORD = 0x16
# Bytes asked of the kernel per recv() during the handshake: a ClientHello fits.
HANDSHAKE_CHUNK = 16384
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\s+.*?-----END CERTIFICATE-----", re.DOTALL)
_DNS_NAME = re.compile(r"\A(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\Z")


class TLSSetupError(Exception):
    """The certificate or key cannot be used; the message says which file and what to do."""


class TLSMaterial(NamedTuple):
    """What the server serves TLS with."""

    cert_path: Path
    key_path: Path
    fingerprint: str  # SHA-256 of the certificate (DER): "AB:CD:..."
    context: ssl.SSLContext


# --- fingerprints -------------------------------------------------------------------------


def fingerprint_sha256(der: bytes) -> str:
    """The SHA-256 fingerprint of a certificate in DER form: uppercase hex in pairs,
    with colons, as ``openssl x509 -noout -fingerprint -sha256`` shows it.

    >>> fingerprint_sha256(b"not really a certificate")[:23]
    'D6:18:22:55:E5:73:9D:55'
    """
    digits = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


def openssl_line(fingerprint: str) -> str:
    """The line ``openssl x509 -noout -fingerprint -sha256`` prints (so spelled by
    OpenSSL 1.1 and LibreSSL; OpenSSL 3 writes the digest's name in lower case).

    >>> openssl_line("AB:CD")
    'SHA256 Fingerprint=AB:CD'
    """
    return f"SHA256 Fingerprint={fingerprint}"


def first_certificate_der(pem: bytes) -> bytes:
    """The DER of the first certificate in a PEM file (the server's own, in a chain)."""
    match = _PEM_CERT.search(pem)
    if match is None:
        raise ValueError("no PEM certificate in it")
    return ssl.PEM_cert_to_DER_cert(match.group().decode("ascii"))


def certificate_fingerprint(path: str | Path) -> str:
    """The fingerprint of the (first) certificate in a PEM file."""
    return fingerprint_sha256(first_certificate_der(Path(path).read_bytes()))


# --- where the certificate lives ----------------------------------------------------------


def resolve_tls_dir(config: Config) -> Path:
    """``tls_dir``; when empty, the directory of the history database if ``db`` names a
    file, else the per-user data directory (where the default database lives)."""
    if config.tls_dir:
        return Path(config.tls_dir).expanduser()
    if config.db and config.db != ":memory:":
        return Path(config.db).expanduser().resolve().parent
    from chatroom.server.config import default_db_path

    return default_db_path().parent


def tls_files(config: Config) -> tuple[Path, Path, bool]:
    """(certificate, key, managed): the given pair, or the managed one in the TLS dir."""
    if config.tls_cert or config.tls_key:
        if not (config.tls_cert and config.tls_key):
            raise TLSSetupError("--tls-cert and --tls-key go together: give both, or neither")
        return Path(config.tls_cert).expanduser(), Path(config.tls_key).expanduser(), False
    directory = resolve_tls_dir(config)
    return directory / CERT_FILE, directory / KEY_FILE, True


def load_or_create(config: Config, *, addresses: Iterable[str] | None = None) -> TLSMaterial:
    """The certificate, key, fingerprint and server context the settings call for.

    The managed pair is made on first start (``addresses``: the IP addresses to name,
    by default this machine's) and reused after. Raises TLSSetupError, saying what to
    do, for a key others may read, a pair half missing, or a certificate and key that
    do not match."""
    cert, key, managed = tls_files(config)
    if managed:
        have_cert, have_key = cert.exists(), key.exists()
        if not have_cert and not have_key:
            make_self_signed(cert, key, *subject_names(addresses))
        elif have_cert != have_key:
            there, missing = (cert, key) if have_cert else (key, cert)
            raise TLSSetupError(
                f"{missing} is missing but {there} is there. Put it back, or move {there}"
                " aside to make a new certificate (clients that pinned the old fingerprint"
                " will then refuse to connect until told the new one)"
            )
    check_key_permissions(key, strict=managed)
    context = server_context(cert, key)
    try:
        fingerprint = certificate_fingerprint(cert)
    except (OSError, ValueError) as e:  # pragma: no cover - load_cert_chain read it already
        raise TLSSetupError(f"cannot read the certificate {cert}: {e}") from None
    return TLSMaterial(cert, key, fingerprint, context)


def check_key_permissions(key: Path, *, strict: bool) -> None:
    """Refuse a private key that others may read: group or others at all for the pair we
    manage (we made it 0600), others for a given one (``root:ssl-cert 0640`` is usual)."""
    try:
        mode = key.stat().st_mode
    except OSError as e:
        raise TLSSetupError(f"cannot read the TLS key {key}: {e.strerror or e}") from None
    loose = mode & (0o077 if strict else 0o007)
    if loose:
        who = (
            "its group and others"
            if loose & 0o070 and loose & 0o007
            else ("its group" if loose & 0o070 else "others")
        )
        raise TLSSetupError(
            f"the TLS key {key} is open to {who} (mode {mode & 0o777:04o}): anyone who can"
            f" read it can pose as this server. Run: chmod 600 {key}"
        )


def _no_passphrase() -> bytes:
    raise TLSSetupError("the TLS key is encrypted with a passphrase: give an unencrypted key")


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context for ``cert``/``key``: TLS 1.2 or newer, no renegotiation."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # client-initiated renegotiation (TLS 1.2) costs the server a handshake per request
    context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    # IRC connections last: resuming sessions saves little, and tickets cost a write each
    context.num_tickets = 0
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except ssl.SSLError as e:
        if "KEY_VALUES_MISMATCH" in str(e):
            raise TLSSetupError(
                f"the TLS certificate {cert} and key {key} do not match (the key is not"
                " the certificate's): give the key that belongs to it"
            ) from None
        raise TLSSetupError(
            f"cannot use the TLS certificate {cert} with the key {key}: {e.reason or e}"
        ) from None
    except OSError as e:
        raise TLSSetupError(
            f"cannot read the TLS certificate {cert} or key {key}: {e.strerror or e}"
        ) from None
    return context


# --- making a certificate -----------------------------------------------------------------


def subject_names(addresses: Iterable[str] | None = None) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) a made certificate names: the host name, ``HOST.local``
    (what mDNS resolves), ``localhost``, loopback, and this machine's addresses."""
    host = socket.gethostname()
    names: list[str] = []
    for name in (host, host.split(".")[0] + ".local", "localhost"):
        if _DNS_NAME.match(name) and name.lower() not in (n.lower() for n in names):
            names.append(name)
    if addresses is None:
        from chatroom.server.server import local_addresses  # the server is loaded by now

        addresses = local_addresses()
    ips: list[str] = []
    for text in ("127.0.0.1", "::1", *addresses):
        try:
            ip = ipaddress.ip_address(text.split("%")[0])
        except ValueError:
            continue
        if ip.is_link_local or ip.is_multicast or ip.is_unspecified:
            continue  # a link-local address needs a scope no certificate can name
        if str(ip) not in ips:
            ips.append(str(ip))
    return names, ips


def make_self_signed(cert_path: Path, key_path: Path, names: list[str], ips: list[str]) -> None:
    """Write a new self-signed ECDSA P-256 certificate (SHA-256, VALIDITY_DAYS) and its
    key; the key file is created 0600, never widened then narrowed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "localhost"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "chatroom"),
        ]
    )
    now = datetime.now(UTC)
    alt = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    directory = key_path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_new(key_path, key_pem, 0o600)
        _write_new(cert_path, cert_pem, 0o644)
    except OSError as e:
        raise TLSSetupError(
            f"cannot write a TLS certificate in {directory}: {e.strerror or e}"
            " (--tls-dir DIR picks another directory)"
        ) from None
    log.info(
        "made a self-signed TLS certificate %s for %s (key %s)",
        cert_path,
        ", ".join(names + ips),
        key_path,
    )


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a new file made with ``mode`` (beside, then renamed into place)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# --- one connection -----------------------------------------------------------------------


class HandshakeFailed(Exception):
    """The peer did not complete a TLS handshake (the reason, for the log)."""


class NotTLS(HandshakeFailed):
    """The peer's first byte is not a TLS handshake record: plain text on the TLS port."""


class TLSStream:
    """One TLS connection over memory BIOs, shared by its reader thread and the writer
    thread, each use under :attr:`lock`. Records the ``SSLObject`` makes, in either
    thread, go into :attr:`records` in the order made; only the writer takes them."""

    __slots__ = ("_incoming", "_obj", "_outgoing", "broken", "lock", "records")

    def __init__(self, obj: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO):
        self._obj = obj
        self._incoming = incoming
        self._outgoing = outgoing
        self.lock = threading.Lock()
        self.records: list[bytes] = []  # made, not yet sent (under the lock)
        self.broken = False  # the peer broke the stream, or we said goodbye: write no more

    @property
    def version(self) -> str:
        return f"{self._obj.version()} {(self._obj.cipher() or ('?',))[0]}"

    def read(self, received: bytes, limit: int) -> tuple[bytes | None, bool]:
        """Reader thread: take in ``received`` (may be empty), return up to ``limit``
        bytes of plaintext, None while a record is incomplete, b"" once the peer said
        close_notify; and whether records were made (the writer must send them)."""
        chunks: list[bytes] = []
        closed = False
        with self.lock:
            incoming, outgoing, obj = self._incoming, self._outgoing, self._obj
            if received:
                incoming.write(received)
            size = 0
            try:
                # each read() gives at most one record: take every whole one there is
                while size < limit:
                    data = obj.read(limit - size)
                    chunks.append(data)
                    size += len(data)
                    if not incoming.pending and not obj.pending():
                        break
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                closed = True
            except ssl.SSLError:
                self.broken = True
                raise
            finally:
                made = bool(outgoing.pending)
                if made:
                    self.records.append(outgoing.read())
        if chunks:
            return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), made
        return (b"" if closed else None), made

    def seal(self, chunks: list[bytes]) -> bytes:
        """Writer thread: encrypt the queued lines (``chunks`` is emptied) and return
        every record made since the last call, in order (b"" if none)."""
        data = (chunks[0] if len(chunks) == 1 else b"".join(chunks)) if chunks else b""
        chunks.clear()
        with self.lock:
            if data and not self.broken:
                try:
                    self._obj.write(data)
                except ssl.SSLError:
                    # the peer broke the stream (its reader has the error and ends it)
                    self.broken = True
            out = self._outgoing.read()  # b"" if it made none
            records = self.records
            if records:  # the reader's come first
                records.append(out)
                out = b"".join(records)
                records.clear()
            return out

    def goodbye(self) -> bytes:
        """Writer thread, at the end: what is still unsent, then close_notify."""
        with self.lock:
            if not self.broken:
                self.broken = True
                try:
                    self._obj.unwrap()
                except ssl.SSLError:
                    pass  # SSLWantReadError: we do not wait for the peer's close_notify
            if self._outgoing.pending:
                self.records.append(self._outgoing.read())
            out = b"".join(self.records)
            self.records.clear()
            return out


def handshake(sock: socket.socket, context: ssl.SSLContext, timeout: float) -> TLSStream:
    """Run the server side of a TLS handshake on ``sock`` (blocking, in the connection's
    thread, before anything else uses the socket), all of it within ``timeout`` seconds.

    Raises NotTLS if the first byte is not a handshake record (nothing read yet: the
    caller may answer in clear), HandshakeFailed, TimeoutError or OSError. Leaves the
    socket in blocking mode."""
    deadline = time.monotonic() + timeout

    def wait() -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        sock.settimeout(left)

    wait()
    first = sock.recv(1, socket.MSG_PEEK)
    if not first:
        raise HandshakeFailed("closed before the handshake")
    if first[0] != TLS_HANDSHAKE_RECORD:
        raise NotTLS(f"first byte {first!r}")
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = context.wrap_bio(incoming, outgoing, server_side=True)
    try:
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    wait()
                    sock.sendall(outgoing.read())
                wait()
                data = sock.recv(HANDSHAKE_CHUNK)
                if not data:
                    raise HandshakeFailed("closed during the handshake") from None
                incoming.write(data)
        if outgoing.pending:
            wait()
            sock.sendall(outgoing.read())
    except ssl.SSLError as e:
        if outgoing.pending:  # the alert that tells the peer why, if the kernel takes it
            try:
                sock.send(outgoing.read(), socket.MSG_DONTWAIT)
            except OSError:
                pass
        raise HandshakeFailed(e.reason or str(e)) from None
    sock.settimeout(None)
    return TLSStream(obj, incoming, outgoing)
