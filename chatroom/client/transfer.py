"""The client of the server's file host (``soju.im/FILEHOST``): upload, HEAD and download.

A small HTTP/1.1 client on asyncio streams, one request per connection
(``Connection: close``). The file host is the chat server's own web port, so three
requests are all we need; a library (httpx, aiohttp) would be a new dependency for
them, and the standard library's :mod:`http.client` blocks. Everything is streamed:
a file goes up and comes down in :data:`CHUNK` pieces, never whole in memory; only a
refusal's short text/plain reason is read into memory, and at most
:data:`MAX_ERROR_BODY` bytes of it.

Bounds: the response head (status line and headers) is at most
:data:`MAX_HEADER_BYTES`; connecting, and every read and write after it, gives up
after ``timeout`` seconds without progress (:data:`STALL_TIMEOUT`).

TLS (:class:`TlsTrust`): an ``https`` file host is trusted when its certificate has the
fingerprint of the chat server's certificate (the server presents the same one on both
ports), or else when it validates against the system's authorities and the host name.
Any other certificate is refused with both fingerprints
(:class:`CertificateRefused`). A plain ``http`` address is refused when the chat link
is TLS: the file host must not be the weaker way in.

Cancelling a transfer (:class:`asyncio.CancelledError`) closes its socket at once and
removes the partial download.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import mimetypes
import os
import re
import ssl
import tempfile
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, unquote, unquote_to_bytes, urljoin, urlsplit

from chatroom.client.connection import open_stream, tls_contexts
from chatroom.client.trust import fingerprint_of

__all__ = [
    "CHUNK",
    "MAX_ERROR_BODY",
    "MAX_HEADER_BYTES",
    "STALL_TIMEOUT",
    "CertificateRefused",
    "FileMeta",
    "Progress",
    "TlsTrust",
    "TransferError",
    "content_disposition",
    "download",
    "filename_of",
    "head",
    "human_size",
    "safe_filename",
    "upload",
]

# One read from the file or the socket: big enough that a 50 MiB file is a few hundred
# steps (each read of the file is a hop to a thread), small enough to keep memory flat.
CHUNK = 256 * 1024
# The response's status line and headers together (the server's own limit for
# requests, http_max_header_bytes, is 16 KiB too).
MAX_HEADER_BYTES = 16 * 1024
# Headers in one response: the file host sends about ten.
MAX_HEADERS = 64
# A refusal's body (a one-line reason): read at most this much of it.
MAX_ERROR_BODY = 4096
# A reason shown to the user is cut to this many characters.
MAX_REASON_CHARS = 300
# No byte moved for this long (connecting included): the transfer has failed. The
# server's own http_body_timeout is 30 s.
STALL_TIMEOUT = 30.0
# How long closing a TLS link to the file host may take.
CLOSE_TIMEOUT = 2.0
# A file name on disk: most file systems allow 255 bytes.
MAX_NAME_BYTES = 255
# An extension longer than this is not one (kept when a long name is cut).
MAX_EXTENSION_CHARS = 16
# Tries at "name (N).ext" before giving up on finding a free name.
MAX_NAME_TRIES = 1000
# When a download's name says nothing usable.
FALLBACK_NAME = "download"
USER_AGENT = "chatroom-client"

# (bytes done, bytes in all or None when unknown): called as a transfer moves.
Progress = Callable[[int, int | None], None]


class TransferError(Exception):
    """A transfer failed; ``str()`` says why in words. ``status``: the HTTP status, when
    the server answered (its one-line reason is in the text)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CertificateRefused(TransferError):
    """The file host's certificate is not the chat server's, and no authority vouches
    for it. ``trusted`` is None when the chat link has no fingerprint to compare with."""

    def __init__(self, address: str, presented: str, trusted: str | None, why: str = "") -> None:
        if trusted is not None:
            text = (
                f"the file host {address} presented a certificate with SHA-256 {presented}, "
                f"not the {trusted} of the chat server: refused"
            )
        else:
            text = (
                f"the file host {address} presented a certificate (SHA-256 {presented}) that "
                f"no authority vouches for{f' ({why})' if why else ''}: refused"
            )
        super().__init__(text)
        self.presented = presented
        self.trusted = trusted


@dataclass(frozen=True, slots=True)
class TlsTrust:
    """How far to trust the file host. ``fingerprint``: the SHA-256 fingerprint of the
    chat server's certificate (normalised, see
    :func:`~chatroom.client.trust.normalise_fingerprint`); ``require_tls``: the chat link
    is TLS, so a plain ``http`` file host is refused."""

    fingerprint: str | None = None
    require_tls: bool = False


@dataclass(frozen=True, slots=True)
class FileMeta:
    """What the file host says of a file before it is downloaded (HEAD)."""

    name: str
    size: int | None
    content_type: str


@dataclass(frozen=True, slots=True)
class _Url:
    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent on the request line

    @property
    def authority(self) -> str:
        """``host:port`` for the Host header and messages (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names
    rest: bytes  # body bytes read together with the head


def _parse_url(url: str) -> _Url:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TransferError(f"{url!r} is not a web address ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise TransferError(f"{url!r} is not an http or https address")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    if any(c in target for c in "\r\n\0 ") or not target.isascii():
        raise TransferError(f"{url!r} is not a web address we can ask for")
    default = 443 if scheme == "https" else 80
    return _Url(scheme, parts.hostname, port or default, target)


# --- names ----------------------------------------------------------------------------------


def safe_filename(name: str) -> str:
    """``name`` as a file name to save under: no path, no leading dots, no control or
    format characters (a right-to-left override would disguise ``gpj.exe``), at most
    :data:`MAX_NAME_BYTES` bytes; ``download`` when nothing is left.

    >>> safe_filename("../../.bashrc"), safe_filename("a\\\\b\\x00c\\u202egpj.exe")
    ('bashrc', 'b_c_gpj.exe')
    >>> safe_filename("..."), safe_filename(" photo.png ")
    ('download', 'photo.png')
    """
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join("_" if unicodedata.category(c) in ("Cc", "Cf") else c for c in name)
    name = name.strip().lstrip(".").strip()
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:  # cut the stem, keep the extension
        stem, dot, ext = name.rpartition(".")
        if not (dot and stem and len(ext) <= MAX_EXTENSION_CHARS):
            stem, dot, ext = name, "", ""
        budget = MAX_NAME_BYTES - len((dot + ext).encode("utf-8"))
        name = stem.encode("utf-8")[:budget].decode("utf-8", "ignore") + dot + ext
    return name or FALLBACK_NAME


def _ascii_fallback(name: str) -> str:
    """``filename=`` for old readers: ASCII, no quotes or backslashes."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    plain = re.sub(r'[^\x20-\x7e]|["\\]', "_", plain).strip()
    return plain or FALLBACK_NAME


def content_disposition(name: str) -> str:
    """The upload's ``Content-Disposition``: an ASCII ``filename=`` for old readers and
    the real name as ``filename*=UTF-8''...`` (RFC 6266, RFC 8187).

    >>> content_disposition("café.png")
    'attachment; filename="cafe.png"; filename*=UTF-8\\'\\'caf%C3%A9.png'
    """
    name = safe_filename(name)
    return (
        f"attachment; filename=\"{_ascii_fallback(name)}\"; filename*=UTF-8''{quote(name, safe='')}"
    )


_DISPOSITION_PARAM = re.compile(
    r';\s*(?P<key>[A-Za-z0-9*_.-]+)\s*=\s*(?P<value>"(?:[^"\\]|\\.)*"|[^;]*)'
)


def filename_of(disposition: str) -> str | None:
    """The file name a ``Content-Disposition`` gives (``filename*`` first), unsanitised.

    >>> filename_of("inline; filename*=UTF-8''%E2%82%AC.txt; filename=\\"e.txt\\"")
    '€.txt'
    >>> filename_of('attachment; filename="a \\\\"b\\\\".png"'), filename_of("inline")
    ('a "b".png', None)
    """
    params: dict[str, str] = {}
    for match in _DISPOSITION_PARAM.finditer(";" + disposition.partition(";")[2]):
        value = match["value"].strip()
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params.setdefault(match["key"].lower(), value)
    extended = params.get("filename*")
    if extended is not None:
        charset, _, rest = extended.partition("'")
        _, _, encoded = rest.partition("'")
        with contextlib.suppress(LookupError, UnicodeDecodeError):
            return unquote_to_bytes(encoded).decode(charset or "utf-8")
    return params.get("filename")


def _name_from_url(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1], errors="replace")


def human_size(size: int) -> str:
    """A byte count as people read it.

    >>> human_size(999), human_size(1536), human_size(1_258_291), human_size(5 << 30)
    ('999 B', '1.5 KiB', '1.2 MiB', '5.0 GiB')
    """
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _free_path(directory: Path, name: str) -> Iterator[Path]:
    """``name``, then ``name (1).ext``, ``name (2).ext``... in ``directory``."""
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension (or only a leading dot, which safe_filename removed)
        stem, dot, ext = name, "", ""
    yield directory / name
    for n in range(1, MAX_NAME_TRIES):
        yield directory / f"{stem} ({n}){dot}{ext}"


def _place(part: Path, directory: Path, name: str) -> Path:
    """Give the finished ``part`` file its name, never replacing a file already there."""
    for candidate in _free_path(directory, name):
        try:
            os.link(part, candidate)  # fails if the name is taken: no race with others
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links
            if candidate.exists():
                continue
            os.replace(part, candidate)
            return candidate
        part.unlink()
        return candidate
    raise TransferError(f"no free name for {name} in {directory}")


# --- the connection ---------------------------------------------------------------------------


async def _open(
    url: _Url, context: ssl.SSLContext | None, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await open_stream(url.host, url.port, context, timeout, CLOSE_TIMEOUT)
    except TimeoutError:
        raise TransferError(f"no answer from the file host {url.authority}") from None
    except ssl.SSLCertVerificationError:
        raise
    except (OSError, ssl.SSLError) as exc:
        raise TransferError(f"cannot reach the file host {url.authority}: {exc}") from None


def _presented(writer: asyncio.StreamWriter) -> str:
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return fingerprint_of(der) if der else "(none)"


async def _connect(
    url: _Url, trust: TlsTrust, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the file host whose certificate (https) we trust."""
    if url.scheme == "http":
        if trust.require_tls:
            raise TransferError(
                f"the file host's address (http://{url.authority}) is not encrypted, but "
                "the chat link is: refused"
            )
        return await _open(url, None, timeout)
    verifying, unverified = await tls_contexts()
    pinned = trust.fingerprint
    if pinned is not None:
        reader, writer = await _open(url, unverified, timeout)
        presented = _presented(writer)
        if presented == pinned:
            return reader, writer
        writer.transport.abort()
    try:
        return await _open(url, verifying, timeout)
    except ssl.SSLCertVerificationError as exc:
        why = exc.verify_message or str(exc.reason or "")
    if pinned is None:  # learn what it presented, to say so
        reader, writer = await _open(url, unverified, timeout)
        presented = _presented(writer)
        writer.transport.abort()
    raise CertificateRefused(url.authority, presented, pinned, why)


def _request(method: str, url: _Url, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {url.target} HTTP/1.1", f"Host: {url.authority}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines += [f"User-Agent: {USER_AGENT}", "Connection: close", "", ""]
    text = "\r\n".join(lines)
    if any(c in v for v in headers.values() for c in "\r\n\0"):
        raise TransferError("a header value would break the request")
    return text.encode("utf-8")


async def _read_head(reader: asyncio.StreamReader, timeout: float | None) -> _Response:
    """The status line and headers (1xx answers skipped), at most MAX_HEADER_BYTES."""
    data = b""
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0 and len(data) > MAX_HEADER_BYTES:
            raise TransferError("the file host's answer has headers over 16 KiB")
        if end < 0:
            chunk = await asyncio.wait_for(reader.read(MAX_HEADER_BYTES), timeout)
            if not chunk:
                raise TransferError("the file host closed the connection without an answer")
            data += chunk
            continue
        if end > MAX_HEADER_BYTES:
            raise TransferError("the file host's answer has headers over 16 KiB")
        head, data = data[:end].decode("latin-1"), data[end + 4 :]
        response = _parse_head(head, data)
        if not 100 <= response.status < 200:
            return response


def _parse_head(head: str, rest: bytes) -> _Response:
    status_line, *header_lines = head.split("\r\n")
    match = re.fullmatch(r"HTTP/1\.[01] (\d{3})(?: (.*))?", status_line)
    if match is None:
        raise TransferError("the file host did not answer in HTTP/1.1")
    if len(header_lines) > MAX_HEADERS:
        raise TransferError(f"the file host's answer has over {MAX_HEADERS} headers")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise TransferError("the file host sent a malformed header")
        key, value = name.lower(), value.strip()
        if key == "content-length" and headers.get(key, value) != value:
            raise TransferError("the file host sent two different Content-Lengths")
        headers.setdefault(key, value)
    return _Response(int(match[1]), match[2] or "", headers, rest)


def _content_length(response: _Response) -> int | None:
    value = response.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise TransferError(f"the file host sent a bad Content-Length ({value[:40]!r})")
    return int(value)


def _readable(text: str) -> str:
    """Peer text made safe for one line: no controls, bounded."""
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cf") else c for c in text)
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


async def _refusal(
    reader: asyncio.StreamReader, response: _Response, what: str, timeout: float
) -> TransferError:
    """A non-success answer as an error carrying the server's one-line reason."""
    body = response.rest[:MAX_ERROR_BODY]
    length = _content_length_or_none(response)
    want = MAX_ERROR_BODY if length is None else min(length, MAX_ERROR_BODY)
    with contextlib.suppress(TimeoutError, OSError, TransferError):
        while len(body) < want:
            chunk = await asyncio.wait_for(reader.read(want - len(body)), timeout)
            if not chunk:
                break
            body += chunk
    content_type = response.headers.get("content-type", "").lower()
    reason = ""
    if content_type.startswith("text/plain") or not content_type:
        lines = body.decode("utf-8", "replace").strip().splitlines()
        reason = _readable(lines[0]) if lines else ""
    reason = reason or _readable(response.reason) or "no reason given"
    retry = response.headers.get("retry-after", "")
    if response.status == 429 and retry.isdigit():
        reason += f" (try again in {retry} s)"
    if not reason.startswith(str(response.status)):  # "413 Payload Too Large: ..." has it
        reason = f"{response.status} {reason}"
    return TransferError(f"{what}: {reason}", response.status)


def _content_length_or_none(response: _Response) -> int | None:
    try:
        return _content_length(response)
    except TransferError:
        return None


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close politely (TLS says goodbye), but never wait long for it."""
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 2.0)
    except (TimeoutError, OSError, ssl.SSLError):
        writer.transport.abort()


# --- the three requests ------------------------------------------------------------------------


async def upload(
    url: str,
    path: Path,
    account: str,
    password: str,
    progress: Progress | None = None,
    *,
    trust: TlsTrust = TlsTrust(),
    timeout: float = STALL_TIMEOUT,
) -> str:
    """Upload the file at ``path`` to the file host at ``url`` as ``account``; the link
    to it (the ``Location`` of the 201 answer). Raises :class:`TransferError` (with the
    server's reason when it refused), :class:`OSError` when the file cannot be read."""
    target = _parse_url(url)
    path = Path(path)
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        credentials = base64.b64encode(f"{account}:{password}".encode()).decode("ascii")
        request = _request(
            "POST",
            target,
            {
                "Authorization": f"Basic {credentials}",
                "Content-Type": content_type,
                "Content-Disposition": content_disposition(path.name),
                "Content-Length": str(size),
            },
        )
        reader, writer = await _connect(target, trust, timeout)
        try:
            response = await _send_file(reader, writer, request, file, size, progress, timeout)
            if response.status != 201:
                raise await _refusal(reader, response, "the upload was refused", timeout)
            location = response.headers.get("location", "")
            link = urljoin(url, location) if location else ""
            if not re.fullmatch(r"https?://[^\s\x00-\x1f\x7f]+", link):
                raise TransferError("the file host did not say where the file went")
            await _close(writer)
            return link
        except BaseException:
            writer.transport.abort()
            raise


async def _read_chunk(file: BinaryIO, size: int) -> bytes:
    """The next piece of the file, read in a thread: a slow disk must not freeze the UI."""
    return await asyncio.to_thread(file.read, size)


async def _send_file(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: bytes,
    file: BinaryIO,
    size: int,
    progress: Progress | None,
    timeout: float,
) -> _Response:
    """Send the request and the file; the answer. The answer is read while sending:
    a server that refuses early (401, 413) says so and stops reading, and then we stop."""
    answer = asyncio.ensure_future(_read_head(reader, None))
    try:
        writer.write(request)
        sent = 0
        while sent < size and not answer.done():
            chunk = await _read_chunk(file, min(CHUNK, size - sent))
            if not chunk:
                raise TransferError(f"{Path(file.name).name} got shorter while it was uploaded")
            writer.write(chunk)
            drained = asyncio.ensure_future(writer.drain())
            done, _ = await asyncio.wait(
                {drained, answer}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                drained.cancel()
                raise TransferError(f"the file host took nothing for {timeout:.0f} s")
            if drained not in done:
                drained.cancel()
                break  # it answered before taking it all
            if drained.exception() is not None:
                break  # it closed: its answer (if any) says why
            sent += len(chunk)
            if progress is not None:
                progress(sent, size)
        try:
            return await asyncio.wait_for(asyncio.shield(answer), timeout)
        except TimeoutError:
            raise TransferError(f"no answer from the file host within {timeout:.0f} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise TransferError(f"the file host dropped the connection: {exc}") from None
    finally:
        if not answer.done():
            answer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await answer


async def head(
    url: str, *, trust: TlsTrust = TlsTrust(), timeout: float = STALL_TIMEOUT
) -> FileMeta:
    """What the file host says of the file at ``url``: name, size and type."""
    target = _parse_url(url)
    reader, writer = await _connect(target, trust, timeout)
    try:
        writer.write(_request("HEAD", target, {}))
        response = await _read_head(reader, timeout)
        if response.status != 200:
            raise TransferError(f"the file host answered {response.status} {response.reason}")
        name = filename_of(response.headers.get("content-disposition", "")) or _name_from_url(url)
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        meta = FileMeta(
            safe_filename(name),
            _content_length(response),
            _readable(content_type) or "application/octet-stream",
        )
    except BaseException:
        writer.transport.abort()
        raise
    await _close(writer)
    return meta


async def download(
    url: str,
    dest_dir: Path,
    progress: Progress | None = None,
    *,
    trust: TlsTrust = TlsTrust(),
    timeout: float = STALL_TIMEOUT,
) -> Path:
    """Download the file at ``url`` into ``dest_dir``; where it was saved.

    The name is the one ``Content-Disposition`` gives (else the address's), made safe
    (:func:`safe_filename`); a name already taken gets `` (1)``. The file is written
    as a ``.part`` file and renamed once complete, so a half file never has the name.
    """
    target = _parse_url(url)
    dest_dir = Path(dest_dir)
    reader, writer = await _connect(target, trust, timeout)
    part: Path | None = None
    try:
        writer.write(_request("GET", target, {}))
        response = await _read_head(reader, timeout)
        if response.status != 200:
            raise await _refusal(reader, response, "the download was refused", timeout)
        if response.headers.get("transfer-encoding", "identity").lower() != "identity":
            raise TransferError("the file host sent an encoding this client does not read")
        total = _content_length(response)
        name = safe_filename(
            filename_of(response.headers.get("content-disposition", "")) or _name_from_url(url)
        )
        await asyncio.to_thread(dest_dir.mkdir, parents=True, exist_ok=True)
        fd, raw_part = tempfile.mkstemp(prefix=f"{name}.", suffix=".part", dir=dest_dir)
        part = Path(raw_part)
        with os.fdopen(fd, "wb") as out:
            got = await _receive(reader, out, response.rest, total, progress, timeout)
        if total is not None and got != total:
            raise TransferError(f"the download ended after {got} of {total} bytes")
        await _close(writer)
        return await asyncio.to_thread(_place, part, dest_dir, name)
    except BaseException:
        writer.transport.abort()
        if part is not None:
            with contextlib.suppress(OSError):
                part.unlink()
        raise


async def _receive(
    reader: asyncio.StreamReader,
    out: BinaryIO,
    first: bytes,
    total: int | None,
    progress: Progress | None,
    timeout: float,
) -> int:
    """Copy the body into ``out``; the bytes received (never more than ``total``)."""
    got = 0
    chunk = first
    while True:
        if total is not None:
            chunk = chunk[: total - got]
        if chunk:
            await asyncio.to_thread(out.write, chunk)
            got += len(chunk)
            if progress is not None:
                progress(got, total)
        if total is not None and got >= total:
            return got
        try:
            chunk = await asyncio.wait_for(reader.read(CHUNK), timeout)
        except TimeoutError:
            raise TransferError(f"the download stalled: nothing for {timeout:.0f} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise TransferError(f"the download broke off: {exc}") from None
        if not chunk:
            return got
