"""The file host's HTTP client (chatroom.client.transfer) on real loopback sockets: what
it sends, and what it does with hostile or broken answers (a file name that climbs out
of the downloads folder, huge headers, a stalled or short body, an early refusal, a
cancelled download), against small servers written here, and the real server's limits."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import doctest
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from chatroom.client import attachments, transfer
from chatroom.client.transfer import TlsTrust, TransferError
from chatroom.client.widgets import chat_input

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def http_server(handler: Handler) -> AsyncIterator[str]:
    """A one-purpose HTTP server on 127.0.0.1; yields its base URL."""
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> tuple[str, dict[str, str]]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    request_line, *lines = head.strip().split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    return request_line, headers


def answer(status: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


def test_doctests() -> None:
    for module in (transfer, attachments, chat_input):
        assert doctest.testmod(module).failed == 0


async def test_upload_streams_the_file_with_its_name_type_length_and_credentials(tmp_path):
    data = os.urandom(3 * transfer.CHUNK + 123)
    path = tmp_path / "résumé 2024.pdf"
    path.write_bytes(data)
    seen: dict[str, object] = {}

    async def handler(reader, writer) -> None:
        seen["request"], seen["headers"] = await read_head(reader)
        seen["body"] = await reader.readexactly(int(seen["headers"]["content-length"]))
        link = "http://127.0.0.1:1/files/AAAAAAAAAAAAAAAAAAAAAA/r%C3%A9sum%C3%A9%202024.pdf"
        writer.write(answer("201 Created", {"Location": link, "Content-Length": "0"}))
        await writer.drain()

    progress: list[tuple[int, int | None]] = []
    async with http_server(handler) as base:
        link = await transfer.upload(
            f"{base}/upload", path, "alice", "pä ss", lambda d, t: progress.append((d, t))
        )
    assert link.endswith("/r%C3%A9sum%C3%A9%202024.pdf")
    headers = seen["headers"]
    assert seen["request"] == "POST /upload HTTP/1.1"
    assert seen["body"] == data
    assert headers["content-length"] == str(len(data))
    assert headers["content-type"] == "application/pdf"
    assert headers["content-disposition"] == (
        "attachment; filename=\"resume 2024.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%202024.pdf"
    )
    assert base64.b64decode(headers["authorization"].removeprefix("Basic ")) == (
        "alice:pä ss".encode()
    )
    assert progress[-1] == (len(data), len(data)) and len(progress) == 4  # chunk by chunk


async def test_an_early_refusal_stops_the_upload_and_carries_the_reason(tmp_path):
    path = tmp_path / "huge.bin"
    with open(path, "wb") as out:
        out.truncate(64 << 20)  # 64 MiB: far more than the kernel buffers

    async def handler(reader, writer) -> None:
        await read_head(reader)
        body = b"413 Payload Too Large: files are limited to 50 MiB\n"
        headers = {"Content-Type": "text/plain; charset=utf-8", "Content-Length": str(len(body))}
        writer.write(answer("413 Payload Too Large", headers, body))
        await writer.drain()
        await asyncio.sleep(30)  # and keeps the connection open, reading nothing

    async with http_server(handler) as base:
        with pytest.raises(TransferError) as caught:
            await asyncio.wait_for(
                transfer.upload(f"{base}/upload", path, "alice", "pw", timeout=10), 5
            )
    assert str(caught.value) == (
        "the upload was refused: 413 Payload Too Large: files are limited to 50 MiB"
    )
    assert caught.value.status == 413


async def test_a_hostile_file_name_stays_in_the_downloads_folder(tmp_path):
    body = b"#!/bin/sh\necho pwned\n"
    names = [
        'attachment; filename="../../.bashrc"',
        "attachment; filename*=UTF-8''..%2F..%2F%1B%5B2J%E2%80%AEgpj.sh",
        'attachment; filename="/etc/passwd"',
        'attachment; filename="..."',
    ]

    async def handler(reader, writer) -> None:
        await read_head(reader)
        headers = {"Content-Length": str(len(body)), "Content-Disposition": names.pop(0)}
        writer.write(answer("200 OK", headers, body))
        await writer.drain()

    dest = tmp_path / "downloads"
    async with http_server(handler) as base:
        url = f"{base}/files/AAAAAAAAAAAAAAAAAAAAAA/x"
        saved = [await transfer.download(url, dest) for _ in range(4)]
    assert [p.name for p in saved] == ["bashrc", "_[2J_gpj.sh", "passwd", "download"]
    assert all(p.parent == dest and p.read_bytes() == body for p in saved)
    assert sorted(os.listdir(dest)) == sorted(p.name for p in saved)  # nothing else, no .part


async def test_a_taken_name_gets_a_number(tmp_path):
    async def handler(reader, writer) -> None:
        await read_head(reader)
        headers = {"Content-Length": "2", "Content-Disposition": "inline; filename=a.txt"}
        writer.write(answer("200 OK", headers, b"hi"))
        await writer.drain()

    async with http_server(handler) as base:
        url = f"{base}/files/AAAAAAAAAAAAAAAAAAAAAA/a.txt"
        saved = [(await transfer.download(url, tmp_path)).name for _ in range(3)]
    assert saved == ["a.txt", "a (1).txt", "a (2).txt"]


async def test_headers_over_the_limit_are_refused(tmp_path):
    async def handler(reader, writer) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n" + b"X-Junk: " + b"j" * (64 * 1024) + b"\r\n\r\n")
        await writer.drain()

    async with http_server(handler) as base:
        with pytest.raises(TransferError, match="headers over 16 KiB"):
            await transfer.download(f"{base}/files/AAAAAAAAAAAAAAAAAAAAAA/x", tmp_path)
        with pytest.raises(TransferError, match="headers over 16 KiB"):
            await transfer.head(f"{base}/files/AAAAAAAAAAAAAAAAAAAAAA/x")
    assert os.listdir(tmp_path) == []


async def test_a_stalled_or_short_download_leaves_no_file(tmp_path):
    async def stalls(reader, writer) -> None:
        await read_head(reader)
        writer.write(answer("200 OK", {"Content-Length": "1000"}, b"x" * 100))
        await writer.drain()
        await asyncio.sleep(30)

    async def short(reader, writer) -> None:
        await read_head(reader)
        writer.write(answer("200 OK", {"Content-Length": "1000"}, b"x" * 100))
        await writer.drain()

    url = "/files/AAAAAAAAAAAAAAAAAAAAAA/x"
    async with http_server(stalls) as base:
        with pytest.raises(TransferError, match="stalled"):
            await transfer.download(base + url, tmp_path, timeout=0.3)
    async with http_server(short) as base:
        with pytest.raises(TransferError, match="after 100 of 1000 bytes"):
            await transfer.download(base + url, tmp_path)
    assert os.listdir(tmp_path) == []


async def test_a_cancelled_download_closes_the_socket_and_removes_the_part_file(tmp_path):
    closed = asyncio.Event()

    async def handler(reader, writer) -> None:
        await read_head(reader)
        writer.write(answer("200 OK", {"Content-Length": str(10 << 20)}, b"x" * 65536))
        await writer.drain()
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the client goes
        closed.set()

    got: list[int] = []
    async with http_server(handler) as base:
        url = f"{base}/files/AAAAAAAAAAAAAAAAAAAAAA/x"
        task = asyncio.ensure_future(transfer.download(url, tmp_path, lambda d, t: got.append(d)))
        while not got:
            await asyncio.sleep(0.01)
        assert [p.suffix for p in tmp_path.iterdir()] == [".part"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(closed.wait(), 5)
    assert os.listdir(tmp_path) == []


async def test_a_long_error_body_is_not_read_whole(tmp_path):
    async def handler(reader, writer) -> None:
        await read_head(reader)
        headers = {"Content-Type": "text/plain", "Content-Length": str(50 << 20)}
        writer.write(answer("404 Not Found", headers, b"no such file " + b"z" * 100_000))
        await writer.drain()
        await asyncio.sleep(30)  # the rest never comes: the client must not wait for it

    async with http_server(handler) as base:
        with pytest.raises(TransferError) as caught:
            await transfer.download(f"{base}/files/AAAAAAAAAAAAAAAAAAAAAA/x", tmp_path, timeout=5)
    text = str(caught.value)
    assert text.startswith("the download was refused: 404 no such file zzz")
    assert len(text) < 400 and caught.value.status == 404


async def test_plain_http_is_refused_when_the_chat_link_is_tls(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("a")
    url = "http://127.0.0.1:9/upload"  # never reached: refused before connecting
    trust = TlsTrust(require_tls=True)
    with pytest.raises(TransferError, match="not encrypted, but the chat link is"):
        await transfer.upload(url, path, "alice", "pw", trust=trust)
    with pytest.raises(TransferError, match="not encrypted"):
        await transfer.head("http://127.0.0.1:9/files/AAAAAAAAAAAAAAAAAAAAAA/a", trust=trust)


# --- the real server's limits, as the client reports them -------------------------------------


def register(port: int, account: str, password: str) -> None:
    """Create ``account`` on the server over a bare IRC socket."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"NICK {account}\r\nUSER {account} 0 * :x\r\n".encode())
        sock.sendall(f"REGISTER * * {password}\r\n".encode())
        data = b""
        while b"REGISTER SUCCESS" not in data:
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk


async def test_the_real_servers_refusals_reach_the_user_with_their_reason(server_factory, tmp_path):
    fx = server_factory(
        http=True,
        http_port=0,
        files_dir=str(tmp_path / "files"),
        accounts=True,
        file_max_bytes=1000,
    )
    await asyncio.to_thread(register, fx.port, "alice", "correct-horse-battery")
    url = f"http://127.0.0.1:{fx.server.http_port}/upload"
    small, big = tmp_path / "small.txt", tmp_path / "big.bin"
    small.write_text("ok")
    big.write_bytes(b"x" * 5000)
    with pytest.raises(TransferError) as caught:
        await transfer.upload(url, small, "alice", "wrong password")
    assert caught.value.status == 401
    with pytest.raises(TransferError) as caught:
        await transfer.upload(url, big, "alice", "correct-horse-battery")
    assert caught.value.status == 413 and "1000" in str(caught.value).replace(",", "")
    link = await transfer.upload(url, small, "alice", "correct-horse-battery")
    meta = await transfer.head(link)
    assert meta == transfer.FileMeta("small.txt", 2, "text/plain")
    unknown = re.sub(r"/files/[^/]+/", "/files/" + "B" * 22 + "/", link)
    with pytest.raises(TransferError, match="404"):
        await transfer.head(unknown)


# --- which links are attachments, and what is kept of them (no sockets) ----------------------

FILEHOST = "https://10.0.0.5:8067/upload"
FILE_ID = "AbCdEfGhIjKlMnOpQrStUv"


@pytest.mark.parametrize(
    ("url", "name"),
    [
        (f"https://10.0.0.5:8067/files/{FILE_ID}/cat.png", "cat.png"),
        (f"HTTPS://10.0.0.5:8067/files/{FILE_ID}/caf%C3%A9%20au%20lait.jpg", "café au lait.jpg"),
        (f"https://10.0.0.5:8067/files/{FILE_ID}/%E2%80%AEgnp.exe", "gnp.exe"),  # no bidi tricks
        (f"http://10.0.0.5:8067/files/{FILE_ID}/cat.png", None),  # another scheme
        (f"https://10.0.0.5:8068/files/{FILE_ID}/cat.png", None),  # another port
        (f"https://10.0.0.6:8067/files/{FILE_ID}/cat.png", None),  # another host
        (f"https://10.0.0.5:8067/files/{FILE_ID[:-1]}/cat.png", None),  # not an id
        (f"https://10.0.0.5:8067/files/{FILE_ID}/", None),  # no name
        (f"https://10.0.0.5:8067/files/{FILE_ID}/a/../b", None),
        ("https://10.0.0.5:8067/upload", None),
    ],
)
def test_only_links_into_the_servers_file_host_are_attachments(url: str, name: str | None):
    found = attachments.attachment_of(url, FILEHOST)
    assert (found.name if found else None) == name
    assert attachments.attachment_of(url, None) is None  # no file host: no attachments


def test_each_link_is_asked_about_once_and_what_is_known_is_bounded():
    asked: list[int] = []
    known = attachments.Attachments(limit=3, on_wanted=lambda: asked.append(1))
    known.reset(FILEHOST)
    urls = [f"https://10.0.0.5:8067/files/{FILE_ID}/{n}.txt" for n in range(5)]
    assert known.meta(urls[0]) is None and known.meta(urls[0]) is None
    assert known.take_wanted() == [urls[0]] and known.take_wanted() == []
    assert len(asked) == 1
    meta = transfer.FileMeta("0.txt", 5, "text/plain")
    known.answered(urls[0], meta)
    assert known.meta(urls[0]) == meta
    for url in urls[1:]:
        known.meta(url)
        assert known.take_wanted() == [url]
        known.answered(url, None)  # no answer: the name alone, not asked again
    assert known.meta(urls[4]) is None and known.take_wanted() == []
    assert known.meta(urls[0]) is None and known.take_wanted() == [urls[0]]  # evicted: asked again
    known.reset("https://10.0.0.9:8067/upload")  # another server: nothing carried over
    assert known.find(urls[0]) is None
