"""Reading HTTP requests off a socket, bounded: a head against one deadline and one size
limit, a body in pieces of a known length, the first file of a multipart/form-data body,
the file names that Content-Disposition carries, and the one byte range a Range asks.

The standard library's readers block per recv() with no overall deadline (a slow drip
of bytes holds a thread for ever) and its multipart parsing went with the cgi module;
these are the few pieces the web port needs, each with its limit.
"""

from __future__ import annotations

import email.message
import email.utils
import socket
import ssl
import time
from typing import Any
from urllib.parse import quote

# How much one recv() may take; also the piece an upload is written in.
CHUNK = 64 * 1024
# A multipart body may carry this much beside its file (boundaries, part headers,
# small fields) within the file size limit's allowance.
MULTIPART_OVERHEAD = 64 * 1024
# The headers of one part of a multipart body.
PART_HEADER_MAX = 8 * 1024


class HeadTooLarge(Exception):
    pass


class HeadTimeout(Exception):
    pass


class BodyError(Exception):
    """The request body ended early, stalled or was malformed: a status and reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class SocketReader:
    """Reads a connection with deadlines: a request's head, then its body in pieces."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def head(self, first_wait: float, timeout: float, limit: int) -> bytes | None:
        """The request line and headers (through the empty line); None if the peer
        closed (or stayed silent for ``first_wait``) before sending anything."""
        deadline: float | None = None
        while True:
            end = self._head_end()
            if end >= 0:
                head = bytes(self.buffer[:end])
                del self.buffer[:end]
                return head
            if len(self.buffer) > limit:
                raise HeadTooLarge
            if deadline is None and self.buffer:
                deadline = time.monotonic() + timeout
            if deadline is None:
                self.sock.settimeout(first_wait)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HeadTimeout
                self.sock.settimeout(left)
            try:
                data = self.sock.recv(CHUNK)
            except TimeoutError:
                if deadline is None:
                    return None  # idle: a kept-alive connection nobody uses
                raise HeadTimeout from None
            except (OSError, ssl.SSLError):
                return None
            if not data:
                if self.buffer:
                    raise HeadTimeout  # cut off mid-head: nothing to answer
                return None
            if deadline is None:
                deadline = time.monotonic() + timeout
            self.buffer += data

    def _head_end(self) -> int:
        crlf = self.buffer.find(b"\r\n\r\n")
        lf = self.buffer.find(b"\n\n")
        ends = [i + n for i, n in ((crlf, 4), (lf, 2)) if i >= 0]
        return min(ends) if ends else -1

    def read(self, n: int, timeout: float) -> bytes:
        """Up to ``n`` bytes (at least one, unless the peer closed: b'')."""
        if self.buffer:
            data = bytes(self.buffer[:n])
            del self.buffer[:n]
            return data
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(min(n, CHUNK))
        except TimeoutError:
            raise BodyError(408, "the upload stalled: no data for too long") from None
        except (OSError, ssl.SSLError):
            return b""


class Body:
    """A request body of a known length, read in pieces, never past its end."""

    def __init__(self, reader: SocketReader, length: int, timeout: float) -> None:
        self.reader = reader
        self.left = length
        self.timeout = timeout

    def read(self, n: int = CHUNK) -> bytes:
        if self.left <= 0:
            return b""
        data = self.reader.read(min(n, self.left), self.timeout)
        if not data:
            raise BodyError(400, "the body is shorter than its Content-Length")
        self.left -= len(data)
        return data


def content_disposition(how: str, name: str) -> str:
    """RFC 6266: an ASCII fallback name and the exact one in UTF-8.

    >>> content_disposition("inline", 'caf\\u00e9 "1".png')
    'inline; filename="caf_ _1_.png"; filename*=UTF-8\\'\\'caf%C3%A9%20%221%22.png'
    """
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"{how}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def receive_multipart(body: Body, boundary: str | None, upload: Any) -> tuple[str, str | None]:
    """Stream the first file of a multipart/form-data body (RFC 7578) into ``upload``;
    (its file name, its Content-Type). Other fields are read and dropped. BodyError 400
    for anything malformed."""
    if not boundary or len(boundary) > 70 or not boundary.isascii():
        raise BodyError(400, "bad multipart: no usable boundary")
    delimiter = b"--" + boundary.encode("ascii")
    stream = _Lines(body)
    # the preamble, then the first delimiter line
    while True:
        line = stream.line(PART_HEADER_MAX)
        if line.rstrip(b"\r\n") == delimiter:
            break
    while True:
        headers = stream.part_headers()
        disposition = email.message.Message()
        disposition["Content-Disposition"] = headers.get("content-disposition", "")
        filename = disposition.get_param("filename", header="content-disposition")
        name = disposition_filename(headers.get("content-disposition", ""))
        if filename is not None:
            end = stream.copy_until(b"\r\n" + delimiter, upload.write)
            if end == b"--":
                return name or "file", headers.get("content-type")
            # a later part may follow; the file is what was asked for: done
            return name or "file", headers.get("content-type")
        end = stream.copy_until(b"\r\n" + delimiter, _Limited(MULTIPART_OVERHEAD).write)
        if end == b"--":
            raise BodyError(400, "bad multipart: no file in it")


class _Limited:
    """A sink for multipart fields that are not the file: bounded, then refused."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def write(self, data: bytes) -> None:
        self.left -= len(data)
        if self.left < 0:
            raise BodyError(400, "bad multipart: a field other than the file is too large")


class _Lines:
    """The multipart reader over a Body: lines for headers, runs of bytes for content."""

    def __init__(self, body: Body) -> None:
        self.body = body
        self.buf = bytearray()

    def _fill(self) -> bool:
        data = self.body.read()
        if not data:
            return False
        self.buf += data
        return True

    def line(self, limit: int) -> bytes:
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                line = bytes(self.buf[: end + 1])
                del self.buf[: end + 1]
                return line
            if len(self.buf) > limit:
                raise BodyError(400, "bad multipart: a line too long where headers belong")
            if not self._fill():
                raise BodyError(400, "bad multipart: the body ends before its boundary")

    def part_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        size = 0
        while True:
            line = self.line(PART_HEADER_MAX)
            size += len(line)
            if size > PART_HEADER_MAX:
                raise BodyError(400, "bad multipart: part headers too large")
            text = line.rstrip(b"\r\n")
            if not text:
                return headers
            name, sep, value = text.decode("utf-8", "replace").partition(":")
            if not sep:
                raise BodyError(400, "bad multipart: a part header without a colon")
            headers[name.strip().lower()] = value.strip()

    def copy_until(self, delimiter: bytes, write: Any) -> bytes:
        """Hand ``write`` everything before ``delimiter``; the two bytes after it
        (``--`` at the end of the body, else the line end before the next part)."""
        keep = len(delimiter) - 1
        while True:
            at = self.buf.find(delimiter)
            if at >= 0:
                if at:
                    write(bytes(self.buf[:at]))
                del self.buf[: at + len(delimiter)]
                while len(self.buf) < 2 and self._fill():
                    pass
                tail = bytes(self.buf[:2])
                del self.buf[:2]
                return tail
            if len(self.buf) > keep:
                write(bytes(self.buf[:-keep]))
                del self.buf[:-keep]
            if not self._fill():
                raise BodyError(400, "bad multipart: the body ends before its boundary")


def disposition_filename(header: str) -> str | None:
    """The file name a Content-Disposition gives: ``filename*`` (RFC 5987, exact) over
    ``filename`` (an ASCII fallback, or raw UTF-8), as RFC 6266 says.

    >>> disposition_filename("attachment; filename=cafe.png; filename*=UTF-8''caf%C3%A9.png")
    'caf\u00e9.png'
    >>> disposition_filename('attachment; filename="h\u00c3\u00a9.txt"'), disposition_filename("")
    ('h\u00e9.txt', None)
    """
    parsed = email.message.Message()
    parsed["Content-Disposition"] = header
    plain = None
    for key, value in parsed.get_params([], header="content-disposition")[1:]:
        if key.lower() != "filename":
            continue
        if isinstance(value, tuple):  # the filename*= form, decoded by its charset
            return email.utils.collapse_rfc2231_value(value)
        plain = plain or _utf8(email.utils.unquote(value))
    return plain


def _utf8(text: str | None) -> str | None:
    """Header text arrives decoded as Latin-1 (http.client); clients put UTF-8 bytes in
    a quoted filename: read them as such when they are.

    >>> _utf8("h\u00c3\u00a9llo.txt"), _utf8("caf\u00e9")
    ('h\u00e9llo.txt', 'caf\u00e9')
    """
    if text is None:
        return None
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """The one byte range a ``Range`` header asks for, as (start, end) with end
    exclusive; None for the whole file (no header, several ranges, or a form we do not
    serve: RFC 9110 lets a server ignore Range); "unsatisfiable" past the end (416).
    Browsers seek in videos and curl -C resumes with this.

    >>> byte_range("bytes=0-99", 1000), byte_range("bytes=900-", 1000)
    ((0, 100), (900, 1000))
    >>> byte_range("bytes=-100", 1000), byte_range("bytes=990-2000", 1000)
    ((900, 1000), (990, 1000))
    >>> byte_range("bytes=1000-", 1000), byte_range("bytes=0-1,5-9", 1000), byte_range(None, 9)
    ('unsatisfiable', None, None)
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()):
        return None
    if not first.isdigit():  # the last N bytes
        if not last.isdigit() or int(last) == 0:
            return "unsatisfiable" if last.isdigit() else None
        return max(0, size - int(last)), size
    start = int(first)
    if last and not last.isdigit():
        return None
    end = min(int(last) + 1, size) if last else size
    if start >= size:
        return "unsatisfiable"
    if end <= start:
        return None  # last before first: invalid, so ignored
    return start, end
