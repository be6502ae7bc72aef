"""Hostile HTTP on the web port: every case gets a clear status code (or a clean close),
memory stays bounded, nothing is logged as a server error, and the chat goes on."""

from __future__ import annotations

import os
import socket
import time
import tracemalloc
from pathlib import Path

import pytest

from tests.conftest import IRCClient, ServerFixture
from tests.server.test_files import (
    PASSWORD,
    account,
    basic,
    partial,
    request,
    stored,
    upload,
    web,  # noqa: F401 - a fixture
)

__all__ = ["PASSWORD"]


pytestmark = pytest.mark.usefixtures("no_errors_logged")


@pytest.fixture
def hostile(web, clients) -> tuple[ServerFixture, IRCClient]:  # noqa: F811 - fixtures
    """A server with short HTTP timeouts, an account, and a chat client in a room."""
    fx = web(http_header_timeout=0.5, http_body_timeout=0.5, http_idle_timeout=0.5)
    account(fx, clients, "alice")
    watcher = clients(fx, "watcher")
    return fx, watcher


def chat_alive(c: IRCClient) -> None:
    """The chat answers at once, whatever the web port is going through."""
    started = time.monotonic()
    c.send("PING :still-here")
    assert c.expect("PONG", where=lambda m: m.params[-1] == "still-here", timeout=2)
    assert time.monotonic() - started < 1.0


def raw(fx: ServerFixture) -> socket.socket:
    assert fx.server is not None and fx.server.http_port is not None
    s = socket.create_connection(("127.0.0.1", fx.server.http_port), timeout=5)
    return s


def read_all(s: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything until the server closes (or the timeout)."""
    s.settimeout(timeout)
    out = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = s.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            break
        if not data:
            break
        out += data
    return bytes(out)


def status_of(response: bytes) -> int:
    line = response.split(b"\r\n", 1)[0]
    assert line.startswith(b"HTTP/1.1 "), response[:200]
    return int(line.split()[1])


# --- headers ------------------------------------------------------------------------------


def test_slow_headers_get_408_within_the_header_timeout(hostile) -> None:
    fx, watcher = hostile
    s = raw(fx)
    started = time.monotonic()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    for _ in range(20):  # one byte every 0.1 s: each recv succeeds, the deadline does not move
        try:
            s.sendall(b"X")
        except OSError:
            break
        time.sleep(0.1)
    response = read_all(s)
    assert status_of(response) == 408
    assert time.monotonic() - started < 3.0
    s.close()
    chat_alive(watcher)


def test_huge_headers_get_431_and_memory_stays_bounded(hostile) -> None:
    fx, watcher = hostile
    s = raw(fx)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
    sent = 0
    try:
        while sent < 4 << 20:  # up to 4 MiB of a header that never ends
            s.sendall(b"a" * 65536)
            sent += 65536
    except OSError:
        pass  # the server answered and closed: it stopped reading long ago
    response = read_all(s)
    assert status_of(response) == 431
    assert b"at most 16384 bytes" in response
    assert sent < 4 << 20 or response  # it never needed all of it
    s.close()
    chat_alive(watcher)


def test_too_many_header_lines_get_431(hostile) -> None:
    fx, watcher = hostile
    s = raw(fx)
    s.sendall(b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n")
    assert status_of(read_all(s)) == 431
    s.close()
    chat_alive(watcher)


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x01\x02garbage\r\n\r\n",
        b"NICK alice\r\nUSER a 0 * :a\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /upload HTTP/1.1\r\nContent-Length: a lot\r\n\r\n",
    ],
    ids=["binary", "irc", "no-target", "bad-version", "bad-length"],
)
def test_garbage_gets_a_4xx_or_5xx_status_and_a_close(hostile, data) -> None:
    fx, watcher = hostile
    s = raw(fx)
    s.sendall(data)
    response = read_all(s)
    assert response == b"" or 400 <= status_of(response) < 600
    s.close()
    chat_alive(watcher)


def test_tls_garbage_on_the_web_port_is_closed_quietly(web, clients, tmp_path: Path) -> None:  # noqa: F811
    fx = web(tls=True, tls_port=0, tls_dir=str(tmp_path / "tls"), tls_handshake_timeout=0.5)
    watcher = clients(fx, "watcher")
    s = raw(fx)
    s.sendall(b"\x16\x03\x01\x00\x05hello-not-a-client-hello" * 3)
    response = read_all(s)
    assert response == b"" or response[0] == 0x15  # closed, perhaps after a TLS alert
    s.close()
    stalled = raw(fx)
    stalled.sendall(b"\x16")  # a handshake that never comes
    started = time.monotonic()
    read_all(stalled, timeout=5)
    assert time.monotonic() - started < 3.0
    stalled.close()
    chat_alive(watcher)


def client_hello() -> bytes:
    """The first flight of a real TLS client, as bytes to send by hand."""
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_a_dripped_tls_handshake_is_cut_at_one_deadline(web, clients, tmp_path: Path) -> None:  # noqa: F811
    fx = web(tls=True, tls_port=0, tls_dir=str(tmp_path / "tls"), tls_handshake_timeout=0.5)
    watcher = clients(fx, "watcher")
    hello = client_hello()
    s = raw(fx)
    started = time.monotonic()
    closed_after = None
    for byte in hello:  # one byte every 0.05 s: each read succeeds, the deadline holds
        try:
            s.sendall(bytes([byte]))
        except OSError:
            closed_after = time.monotonic() - started
            break
        time.sleep(0.05)
        if time.monotonic() - started > 5:
            break
    if closed_after is None:  # the close shows on the next read
        read_all(s, timeout=3)
        closed_after = time.monotonic() - started
    s.close()
    assert closed_after < 3.0, f"held for {closed_after:.1f} s"
    chat_alive(watcher)


# --- bodies -------------------------------------------------------------------------------


def upload_head(length: int, extra: str = "") -> bytes:
    return (
        f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
        f"Authorization: {basic('alice')}\r\nContent-Type: text/plain\r\n"
        f'Content-Disposition: attachment; filename="a.txt"\r\n{extra}\r\n'
    ).encode()


def test_a_body_shorter_than_announced_is_400_and_nothing_is_kept(hostile) -> None:
    fx, watcher = hostile
    s = raw(fx)
    s.sendall(upload_head(10_000) + b"x" * 100)
    s.shutdown(socket.SHUT_WR)
    response = read_all(s)
    assert status_of(response) == 400
    assert b"shorter than its Content-Length" in response
    s.close()
    assert stored(fx) == [] and partial(fx) == []
    chat_alive(watcher)


def test_a_stalled_body_is_408_and_nothing_is_kept(hostile) -> None:
    fx, watcher = hostile
    s = raw(fx)
    s.sendall(upload_head(10_000) + b"x" * 100)
    response = read_all(s)  # no more bytes: the body timeout (0.5 s) ends it
    assert status_of(response) == 408
    s.close()
    assert stored(fx) == [] and partial(fx) == []
    chat_alive(watcher)


def test_a_body_longer_than_announced_keeps_only_what_was_announced(hostile) -> None:
    fx, watcher = hostile
    s = raw(fx)
    s.sendall(upload_head(10) + b"0123456789" + b"EXTRA BYTES THAT ARE NO REQUEST\r\n\r\n")
    response = read_all(s)
    first, _, rest = response.partition(b"\r\n\r\n")
    assert status_of(response) == 201
    assert b" 400 " in rest.split(b"\r\n", 2)[1] or b"HTTP/1.1 400" in rest
    s.close()
    location = next(h for h in first.split(b"\r\n") if h.lower().startswith(b"location:"))
    path = "/" + location.split(b"/", 3)[3].decode()
    assert request(fx, "GET", path).body == b"0123456789"
    chat_alive(watcher)


def test_a_multipart_file_over_the_limit_is_413_while_streaming(web, clients) -> None:  # noqa: F811
    fx = web(file_max_bytes=1000)
    account(fx, clients, "alice")
    body = (
        b'--b\r\nContent-Disposition: form-data; name="f"; filename="big"\r\n\r\n'
        + b"x" * 5000
        + b"\r\n--b--\r\n"
    )
    reply = request(
        fx,
        "POST",
        "/upload",
        body,
        {"Content-Type": "multipart/form-data; boundary=b", "Authorization": basic("alice")},
    )
    assert reply.status == 413
    assert stored(fx) == [] and partial(fx) == []


def test_an_unannounced_or_chunked_body_is_411(hostile) -> None:
    fx, watcher = hostile
    s = raw(fx)
    s.sendall(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    )
    assert status_of(read_all(s)) == 411
    s.close()
    s = raw(fx)
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(read_all(s)) == 411
    s.close()
    chat_alive(watcher)


def test_an_upload_streams_to_disk_in_bounded_memory(web, clients) -> None:  # noqa: F811
    fx = web()
    account(fx, clients, "alice")
    size = 16 << 20
    data = os.urandom(size)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        s = raw(fx)
        s.sendall(upload_head(size))
        view = memoryview(data)
        for i in range(0, size, 1 << 20):
            s.sendall(view[i : i + (1 << 20)])
        response = read_all(s, timeout=20)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    s.close()
    assert status_of(response) == 201
    # the test's own 1 MiB slices are not copies; the server holds a few 64 KiB pieces
    assert peak < 4 << 20, f"peak {peak / 2**20:.1f} MiB for a {size >> 20} MiB upload"


# --- paths --------------------------------------------------------------------------------


TRAVERSALS = [
    "/../../etc/passwd",
    "/files/../../../etc/passwd",
    "/files/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/files/..%5c..%5cetc%5cpasswd",
    "/files/AAAAAAAAAAAAAAAAAAAAAA/../../../etc/passwd",
    "//etc/passwd",
    "/files/%00",
    "/files/AAAAAAAAAAAAAAAAAAAAA%00",
    "/files/....//....//etc/passwd",
    "/files/.partial",
    "/files/.partial/x",
    "http://evil.example/../../etc/passwd",
    "/files/~root",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/files/" + "A" * 5000,
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_in_any_form_finds_nothing(hostile, path: str) -> None:
    fx, _ = hostile
    s = raw(fx)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    response = read_all(s)
    s.close()
    assert status_of(response) in (400, 404, 414, 431)
    assert b"root:" not in response


def test_a_real_files_description_is_not_downloadable(hostile) -> None:
    fx, _ = hostile
    url = upload(fx, b"bytes", auth=basic("alice")).headers["Location"]
    file_id = url.split("/")[4]
    assert request(fx, "GET", f"/files/{file_id}.json").status == 404
    assert request(fx, "GET", f"/files/{file_id}/anything-at-all").body == b"bytes"


@pytest.mark.parametrize("method, status", [("PUT", 405), ("DELETE", 405), ("BREW", 501)])
def test_other_methods(hostile, method: str, status: int) -> None:
    fx, _ = hostile
    assert request(fx, method, "/upload").status == status


# --- connections --------------------------------------------------------------------------


def test_too_many_connections_get_503_at_once_and_the_chat_goes_on(web, clients) -> None:  # noqa: F811
    fx = web(http_max_connections=3, http_header_timeout=10, http_idle_timeout=10)
    watcher = clients(fx, "watcher")
    held = [raw(fx) for _ in range(3)]
    try:
        time.sleep(0.2)  # the three are accepted and waiting for their requests
        started = time.monotonic()
        extra = raw(fx)
        extra.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = read_all(extra)
        extra.close()
        assert status_of(response) == 503
        assert b"Retry-After: 5" in response
        assert time.monotonic() - started < 1.0
        chat_alive(watcher)
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 5
    while True:  # the slots come back once the server sees the closes
        reply = request(fx, "GET", "/no-such-page")
        if reply.status == 404 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert reply.status == 404
