"""The web port: a ThreadingHTTPServer beside the chat ports, owned by ChatServer.

One thread per HTTP connection, like the chat: the standard library's server is enough
for a LAN's uploads and a front page, and it keeps the process free of a second event
loop. What the standard library leaves open is closed here:

- the request line and headers are read straight from the socket against one deadline
  and one size limit (``http_header_timeout``, ``http_max_header_bytes``), so a slow or
  endless header holds one thread for a bounded time and a bounded number of bytes;
- connections are counted: past ``http_max_connections`` a newcomer gets 503 from the
  accept loop itself, without a thread;
- bodies are streamed to disk in pieces with a timeout per piece, never held whole;
- every error is a status code with a one-line text/plain reason; an exception in a
  handler is logged with its traceback and the client gets 500 and nothing more.

The same port serves HTTPS with the chat's certificate: the first byte of a connection
says which (22 is a TLS handshake record). Plain HTTP from another machine is sent to
HTTPS when the clear-text chat port is restricted (``plaintext`` loopback or off).
"""

from __future__ import annotations

import base64
import binascii
import email.message
import email.utils
import io
import ipaddress
import logging
import re
import socket
import socketserver
import ssl
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from chatroom.server.config import VERSION
from chatroom.server.registry import is_loopback
from chatroom.server.web.bodies import (
    CHUNK,
    MULTIPART_OVERHEAD,
    Body,
    BodyError,
    HeadTimeout,
    HeadTooLarge,
    SocketReader,
    byte_range,
    content_disposition,
    disposition_filename,
    receive_multipart,
)
from chatroom.server.web.files import ID_PATTERN, FileStore, UploadRefused

if TYPE_CHECKING:
    from chatroom.server.server import ChatServer

log = logging.getLogger(__name__)

# A TLS download is sent in pieces this large (plain text uses the kernel's sendfile).
TLS_SEND_PIECE = 256 * 1024
# How long, and how much, a closing connection reads and drops of what the peer is
# still sending, so that it reads our answer instead of a reset (finish()).
LINGER_SECONDS = 1.0
LINGER_BYTES = 1 << 20
# How long the accept loop spends telling a refused connection why (503).
REFUSAL_SEND_TIMEOUT = 0.2
# Headers on every answer: nothing we send is to be sniffed, framed or referred.
COMMON_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
# Everything that is not the front page: no scripts, no styles, nothing loaded.
STRICT_CSP = "default-src 'none'; sandbox; frame-ancestors 'none'"
# Types a browser could run or render as a document: served as bytes to download.
ACTIVE_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/javascript",
        "application/javascript",
        "application/ecmascript",
        "text/ecmascript",
        "application/x-shockwave-flash",
        "application/pdf",
    }
)
# Types shown in the browser rather than saved: images and plain text, nothing else.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "text/plain"})
# Methods answered 404 or 405 as the path says; any other gets 501.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "OPTIONS", "PUT", "DELETE", "PATCH"})
_FILE_PATH = re.compile(r"/files/([^/]+)(?:/[^/]*)?")
_HOST = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+))(?::\d{1,5})?")


class _Writer:
    """wfile: every write whole (sendall), like socketserver's own writer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def write(self, data: bytes) -> int:
        self.sock.sendall(data)
        return len(data)

    def flush(self) -> None:
        pass


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class WebServer(ThreadingHTTPServer):
    """The web port of ``chat``: started and stopped by it."""

    daemon_threads = True
    block_on_close = False  # stop() shuts down and joins the connections itself
    allow_reuse_address = True

    def __init__(self, chat: ChatServer, files: FileStore | None) -> None:
        self.chat = chat
        self.files = files
        config = chat.config
        self.tls_context: ssl.SSLContext | None = chat.tls.context if chat.tls else None
        self.address_family = _family(config.host)
        self.request_queue_size = config.listen_backlog
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._conn_threads: set[threading.Thread] = set()
        self.refused_total = 0  # connections turned away at the limit (503)
        super().__init__((config.host, config.http_port), WebHandler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6 and self.chat.config.host in ("::", ""):
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        socketserver.TCPServer.server_bind(self)  # not HTTPServer's: no getfqdn() lookup
        self.server_name = self.chat.config.server_name
        self.server_port = self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            full = len(self._conns) >= self.chat.config.http_max_connections
            if not full and not self.chat.stopping.is_set():
                self._conns.add(request)
                t = threading.Thread(
                    target=self._run,
                    args=(request, client_address),
                    name=f"chatroom-web-{client_address[0]}:{client_address[1]}",
                    daemon=True,
                )
                self._conn_threads.add(t)
                t.start()
                return
            self.refused_total += 1
        self._refuse(request)

    def _refuse(self, request: socket.socket) -> None:
        """503 in clear (even to a TLS client: it cannot read it, but it gets a close),
        from the accept loop, so a flood of connections costs no threads."""
        body = b"503 Service Unavailable: too many connections, try again shortly\n"
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 5\r\nConnection: close\r\n\r\n"
        )
        try:
            request.settimeout(REFUSAL_SEND_TIMEOUT)
            request.sendall(head.encode() + body)
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            request.close()

    def _run(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            log.exception("web: connection from %s failed", client_address[0])
        finally:
            with self._lock:
                self._conns.discard(request)
                self._conn_threads.discard(threading.current_thread())
            try:
                request.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("web: error on connection from %s", client_address[0])

    def close_connections(self, timeout: float) -> None:
        """After the accept loop stopped: cut every open connection and join its
        thread (bounded by ``timeout``)."""
        with self._lock:
            sockets = list(self._conns)
            threads = list(self._conn_threads)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        left = [t for t in threads if t.is_alive()]
        if left:
            log.warning("web: %d connection threads did not stop in time", len(left))


class WebHandler(BaseHTTPRequestHandler):
    """One HTTP connection: requests one after another (keep-alive), each bounded."""

    server: WebServer
    protocol_version = "HTTP/1.1"
    # what a request that cannot be parsed is answered in (with a status line)
    default_request_version = "HTTP/1.1"
    server_version = VERSION
    sys_version = ""
    # parse_request reads headers with the standard library's parser, from the head
    # already read and bounded here; its own limits (100 headers) still hold
    rfile: io.BytesIO  # type: ignore[assignment]

    # --- connection ------------------------------------------------------------------------

    def setup(self) -> None:
        self.config = self.server.chat.config
        self.client_host = self.client_address[0].removeprefix("::ffff:")
        self.tls = False
        self.served = 0
        sock: socket.socket = self.request
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        context = self.server.tls_context
        if context is not None and self._starts_tls(sock):
            sock = self._handshake(sock, context)  # type: ignore[assignment]
        self.connection = sock
        self.reader = SocketReader(sock)
        self.wfile = _Writer(sock)  # type: ignore[assignment]
        self.rfile = io.BytesIO()

    def _starts_tls(self, sock: socket.socket) -> bool:
        sock.settimeout(self.config.http_header_timeout)
        try:
            first = sock.recv(1, socket.MSG_PEEK)
        except OSError:
            return False
        return first == b"\x16"

    def _handshake(self, sock: socket.socket, context: ssl.SSLContext) -> ssl.SSLSocket | None:
        wrapped = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        # one deadline for the whole handshake: CPython's do_handshake counts the
        # timeout from its start, however the peer drips its bytes (tested)
        wrapped.settimeout(self.config.tls_handshake_timeout)
        try:
            wrapped.do_handshake()
        except (OSError, ssl.SSLError) as e:
            log.debug("web: TLS handshake from %s failed: %s", self.client_host, e)
            self.close_connection = True
            self.handshake_failed = True
            return wrapped
        self.tls = True
        return wrapped

    def handle(self) -> None:
        if getattr(self, "handshake_failed", False):
            return
        self.close_connection = False
        while not self.close_connection and not self.server.chat.stopping.is_set():
            self.handle_one_request()

    def finish(self) -> None:
        """Close gently (WebServer._run closes the socket): a peer still sending a body
        we refused would get a reset instead of our answer if we closed at once, so
        stop writing and read what comes for a moment, as Apache's lingering close."""
        sock = self.connection
        try:
            if self.tls:
                sock.settimeout(LINGER_SECONDS)
                sock = sock.unwrap()  # type: ignore[attr-defined]
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            left = LINGER_BYTES
            while left > 0 and (wait := deadline - time.monotonic()) > 0:
                sock.settimeout(wait)
                data = sock.recv(CHUNK)
                if not data:
                    break
                left -= len(data)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            # a TLS wrapper took the descriptor from the accepted socket (which
            # WebServer._run closes in vain): it, or what unwrap() gave back, owns it now
            for owner in {id(sock): sock, id(self.connection): self.connection}.values():
                if owner is not self.request:
                    owner.close()

    def handle_one_request(self) -> None:
        cfg = self.config
        self.request_version = "HTTP/1.1"  # until parsed: errors go out with a status line
        self.command = None  # type: ignore[assignment]
        self.requestline = ""
        self.expecting = self._answered = False
        try:
            head = self.reader.head(
                cfg.http_idle_timeout if self.served else cfg.http_header_timeout,
                cfg.http_header_timeout,
                cfg.http_max_header_bytes,
            )
        except HeadTooLarge:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, self._too_large_head())
            return
        except HeadTimeout:
            self.send_error(HTTPStatus.REQUEST_TIMEOUT, "the request took too long to arrive")
            return
        if head is None:
            self.close_connection = True
            return
        if len(head) > cfg.http_max_header_bytes:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, self._too_large_head())
            return
        line, _, rest = head.partition(b"\n")
        self.raw_requestline = line + b"\n"
        self.rfile = io.BytesIO(rest)
        self.served += 1
        try:
            if not self.parse_request():  # it answered the error itself
                self.close_connection = True
                return
        except Exception:  # the parser's own limits (header count, say), in any form
            self.send_error(HTTPStatus.BAD_REQUEST, "malformed request headers")
            return
        try:
            self.route()
        except (BrokenPipeError, ConnectionResetError, TimeoutError, ssl.SSLError):
            self.close_connection = True  # the peer went away mid-answer
        except Exception:
            log.exception("web: %s %s from %s failed", self.command, self.path, self.client_host)
            self.close_connection = True
            if not self._answered:
                try:
                    self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error (logged)")
                except OSError:
                    pass

    def _too_large_head(self) -> str:
        return f"request headers too large: at most {self.config.http_max_header_bytes} bytes"

    def handle_expect_100(self) -> bool:
        """Answer 100 Continue only once the upload is accepted (do_POST): a refused
        one then never sends its body."""
        self.expecting = True
        return True

    # --- answers ---------------------------------------------------------------------------

    def send_response(self, code: int, message: str | None = None) -> None:
        self._answered = True
        super().send_response(code, message)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A short text/plain reason instead of the standard library's HTML page, and
        the connection closes: what remains of the request is not worth reading."""
        self.close_connection = True
        phrase = HTTPStatus(code).phrase
        reason = message or phrase
        body = f"{int(code)} {phrase}: {reason}\n" if message else f"{int(code)} {phrase}\n"
        self.answer(
            int(code),
            body.encode("utf-8"),
            "text/plain; charset=utf-8",
            extra=[("Connection", "close")],
        )

    def answer(
        self,
        code: int,
        body: bytes,
        content_type: str,
        *,
        extra: list[tuple[str, str]] | None = None,
        csp: str = STRICT_CSP,
    ) -> None:
        """Status, headers and (except for HEAD) the body."""
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", csp)
        for name, value in COMMON_HEADERS:
            self.send_header(name, value)
        for name, value in extra or ():
            self.send_header(name, value)
        if self.close_connection and not _has(extra, "Connection"):
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)

    def version_string(self) -> str:
        return VERSION

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("web: %s %s", self.client_host, format % args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug('web: %s "%s" %s', self.client_host, self.requestline, code)

    # --- routes ------------------------------------------------------------------------------

    def route(self) -> None:
        path = urlsplit(self.path).path
        method = self.command
        if method not in HTTP_METHODS:
            self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"{method} is not a method here")
            return
        if self._needs_tls():
            return
        if path == "/":
            if self._only(("GET", "HEAD")):
                self._front_page()
        elif path == "/metrics":
            if self._only(("GET", "HEAD")):
                self._metrics()
        elif path == "/upload" and self.server.files is not None:
            if method == "OPTIONS":
                self.answer(
                    204,
                    b"",
                    "text/plain; charset=utf-8",
                    extra=[("Allow", "OPTIONS, POST"), ("Accept-Post", "*/*")],
                )
            elif self._only(("OPTIONS", "POST")):
                self._upload()
        elif (match := _FILE_PATH.fullmatch(path)) and self.server.files is not None:
            if self._only(("GET", "HEAD")):
                self._download(match.group(1))
        else:
            self.send_error(HTTPStatus.NOT_FOUND, "no such page or file")

    def _only(self, methods: tuple[str, ...]) -> bool:
        if self.command in methods:
            return True
        self.close_connection = True
        self.answer(
            405,
            f"405 Method Not Allowed: use {' or '.join(methods)}\n".encode(),
            "text/plain; charset=utf-8",
            extra=[("Allow", ", ".join(methods))],
        )
        return False

    def _needs_tls(self) -> bool:
        """Clear text from another machine when the chat restricts clear text: to
        HTTPS (a browser follows; an upload is refused, its password unsent... almost)."""
        if self.tls or self.server.tls_context is None:
            return False
        if self.config.plaintext == "on" or is_loopback(self.client_host):
            return False
        if self.command in ("GET", "HEAD"):
            target = f"https://{_url_host(self.host())}:{self.server.port}{self.path}"
            self.close_connection = True
            self.answer(
                301,
                f"301 Moved Permanently: {target}\n".encode(),
                "text/plain; charset=utf-8",
                extra=[("Location", target)],
            )
        else:
            self.send_error(HTTPStatus.FORBIDDEN, "use HTTPS: this server takes no clear text")
        return True

    def host(self) -> str:
        """The host the client used to reach us (Host header, if it is a plain host
        name or address), else our own address on this connection; no port, no []."""
        headers = getattr(self, "headers", None)
        header = headers.get("Host", "") if headers is not None else ""
        match = _HOST.fullmatch(header.strip())
        if match:
            return match.group(1) or match.group(2)
        return local_host(self.connection)

    def base_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{_url_host(self.host())}:{self.server.port}"

    def _front_page(self) -> None:
        from chatroom.server.web import frontpage

        body = frontpage.render(self.server.chat, self.host())
        self.answer(
            200,
            body,
            "text/html; charset=utf-8",
            csp=frontpage.CSP,
            extra=[("Cache-Control", "no-store")],
        )

    def _metrics(self) -> None:
        from chatroom.server.web import metrics

        body = metrics.render(self.server.chat)
        self.answer(
            200,
            body,
            "text/plain; version=0.0.4; charset=utf-8",
            extra=[("Cache-Control", "no-store")],
        )

    # --- the file host ---------------------------------------------------------------------

    def _account(self) -> str | None:
        """The account HTTP Basic names, if its password is right; else answered
        (401, or 429 after too many failures) and None."""
        from chatroom.server.commands.accounts import verify_login, wait_for_login

        challenge = [("WWW-Authenticate", 'Basic realm="chatroom", charset="UTF-8"')]
        header = self.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            self.close_connection = True
            self.answer(
                401,
                b"401 Unauthorized: log in with your chat account (HTTP Basic)\n",
                "text/plain; charset=utf-8",
                extra=challenge,
            )
            return None
        try:
            account, sep, password = (
                base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            account, sep, password = "", "", ""
        if not sep or not account:
            self.send_error(HTTPStatus.BAD_REQUEST, "malformed Authorization header")
            return None
        registry = self.server.chat.registry
        wait = wait_for_login(registry, self.client_host, account)
        if wait > 0:
            self._too_many(wait, "too many failed logins")
            return None
        found = verify_login(registry, self.client_host, account, password)
        if isinstance(found, str):
            self.close_connection = True
            self.answer(
                401,
                f"401 Unauthorized: {found}\n".encode(),
                "text/plain; charset=utf-8",
                extra=challenge,
            )
            return None
        return found.name

    def _too_many(self, wait: float, why: str) -> None:
        self.close_connection = True
        seconds = int(wait) + 1
        self.answer(
            429,
            f"429 Too Many Requests: {why}; try again in {seconds} s\n".encode(),
            "text/plain; charset=utf-8",
            extra=[("Retry-After", str(seconds))],
        )

    def _upload(self) -> None:
        files = self.server.files
        assert files is not None
        if "Transfer-Encoding" in self.headers:
            self.send_error(
                HTTPStatus.LENGTH_REQUIRED, "send the file with a Content-Length (not chunked)"
            )
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self.send_error(HTTPStatus.LENGTH_REQUIRED, "a Content-Length is required")
            return
        if not length_text.strip().isdigit():
            self.send_error(HTTPStatus.BAD_REQUEST, "Content-Length is not a number")
            return
        length = int(length_text)
        kind = email.message.Message()
        kind["Content-Type"] = self.headers.get("Content-Type", "application/octet-stream")
        multipart = kind.get_content_type() == "multipart/form-data"
        account = self._account()
        if account is None:
            return
        limit = files.config.file_max_bytes + (MULTIPART_OVERHEAD if multipart else 0)
        if length > limit:
            self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, files.too_large())
            return
        try:
            upload = files.begin(account, min(length, files.config.file_max_bytes))
        except UploadRefused as e:
            if e.retry_after is not None:
                self._too_many(e.retry_after, e.reason)
            else:
                self.send_error(e.status, e.reason)
            return
        if self.expecting:
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = Body(self.reader, length, self.config.http_body_timeout)
        try:
            if multipart:
                name, content_type = receive_multipart(body, kind.get_param("boundary"), upload)
            else:
                name, content_type = self._receive_raw(body, upload)
            info = upload.commit(name, content_type)
        except (BodyError, UploadRefused) as e:
            upload.abort()
            self.send_error(e.status, e.reason)
            return
        except BaseException:
            upload.abort()
            raise
        url = f"{self.base_url()}/files/{info.id}/{quote(info.name)}"
        log.info(
            "web: %s uploaded %s (%d bytes, %s) as %s",
            account,
            info.name,
            info.size,
            info.content_type,
            info.id,
        )
        self.answer(
            201, (url + "\n").encode(), "text/plain; charset=utf-8", extra=[("Location", url)]
        )

    def _receive_raw(self, body: Body, upload: Any) -> tuple[str | None, str | None]:
        while data := body.read():
            upload.write(data)
        return (
            disposition_filename(self.headers.get("Content-Disposition", "")),
            self.headers.get("Content-Type"),
        )

    def _download(self, file_id: str) -> None:
        files = self.server.files
        assert files is not None
        found = files.get(file_id) if ID_PATTERN.fullmatch(file_id) else None
        if found is None:
            self.send_error(HTTPStatus.NOT_FOUND, "no such file (it may have expired)")
            return
        info, path = found
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:  # swept between the lookup and now
            self.send_error(HTTPStatus.NOT_FOUND, "no such file (it may have expired)")
            return
        with f:
            served = info.content_type
            if served in ACTIVE_TYPES or served.startswith("multipart/"):
                served = "application/octet-stream"
            how = "inline" if served in INLINE_TYPES else "attachment"
            if served.startswith("text/"):
                served += "; charset=utf-8"
            wanted = byte_range(self.headers.get("Range"), info.size)
            if wanted == "unsatisfiable":
                self.close_connection = True
                self.answer(
                    416,
                    f"416 Range Not Satisfiable: the file has {info.size} bytes\n".encode(),
                    "text/plain; charset=utf-8",
                    extra=[("Content-Range", f"bytes */{info.size}")],
                )
                return
            start, end = wanted or (0, info.size)
            self.send_response(206 if wanted else 200)
            self.send_header("Content-Type", served)
            self.send_header("Content-Length", str(end - start))
            if wanted:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{info.size}")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Disposition", content_disposition(how, info.name))
            self.send_header("Content-Security-Policy", STRICT_CSP)
            self.send_header("Cache-Control", "private, max-age=86400, immutable")
            for name, value in COMMON_HEADERS:
                self.send_header(name, value)
            self.end_headers()
            if self.command == "HEAD" or start == end:
                return
            self.connection.settimeout(self.config.http_body_timeout)
            if isinstance(self.connection, ssl.SSLSocket):
                # SSLSocket.sendfile falls back to 8 KiB sends (no kernel sendfile under
                # TLS): larger pieces make HTTPS downloads about half again as fast
                piece = bytearray(TLS_SEND_PIECE)
                f.seek(start)
                left = end - start
                while left > 0 and (n := f.readinto(piece)):
                    n = min(n, left)
                    self.connection.sendall(memoryview(piece)[:n])
                    left -= n
            else:
                self.connection.sendfile(f, start, end - start)


def _has(headers: list[tuple[str, str]] | None, name: str) -> bool:
    return any(n.lower() == name.lower() for n, _ in headers or ())


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def local_host(sock: socket.socket) -> str:
    """Our own address on a connection (what the peer reached): without ``::ffff:``."""
    try:
        host = sock.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    host = host.split("%")[0].removeprefix("::ffff:")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "127.0.0.1"
    return host


def filehost_url(sock: socket.socket, port: int, tls: bool) -> str:
    """The upload URL for an IRC connection on ``sock``: the address it reached us on
    (so it works from wherever the client is), https when the chat is TLS."""
    return f"{'https' if tls else 'http'}://{_url_host(local_host(sock))}:{port}/upload"
