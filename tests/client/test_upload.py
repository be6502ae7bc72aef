"""Files in the real client app, driven by Pilot, against the real server's file host
(soju.im/FILEHOST) on 127.0.0.1: /upload and pasted paths, the progress bar and Escape,
attachment lines, Enter to download, the picture preview or the system viewer, and the
refusals a user reads (no file host, no password, a certificate that is not the chat
server's). The other person in the room is a raw IRC socket; downloads go to temporary
directories; no test starts a real file viewer."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import ssl
import struct
import urllib.request
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from client_helpers import log_text, run_client, wait_until
from textual import events

from chatroom.client import filehost as filehost_module
from chatroom.client import transfer
from chatroom.client.app import NO_OPEN_ENV, ChatApp
from chatroom.client.screens.dialogs import ConfirmScreen
from chatroom.client.screens.preview import ImagePreviewScreen
from chatroom.client.widgets.chat_input import ChatInput
from chatroom.client.widgets.log import MessageLog
from chatroom.client.widgets.transfer_bar import TransferBar
from chatroom.protocol import LineBuffer, Message, parse

PASSWORD = "correct-horse-battery"
LINK = re.compile(r"https?://127\.0\.0\.1:\d+/files/[A-Za-z0-9_-]{22}/\S+")


# --- helpers ------------------------------------------------------------------------------


class RawUser:
    """Another person in the room: a bare IRC socket, no client library."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buffer = LineBuffer(1 << 16)
        self.messages: list[Message] = []

    @classmethod
    async def connect(cls, port: int, nick: str, room: str) -> RawUser:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        user = cls(reader, writer)
        user.send(f"NICK {nick}", f"USER {nick} 0 * :{nick}", f"JOIN {room}")
        await user.wait(lambda m: m.command == "366", "end of NAMES")
        return user

    def send(self, *lines: str) -> None:
        self.writer.write("".join(line + "\r\n" for line in lines).encode())

    async def wait(
        self, found: Callable[[Message], bool], what: str, timeout: float = 10.0
    ) -> Message:
        async with asyncio.timeout(timeout):
            while True:
                for message in self.messages:
                    if found(message):
                        return message
                data = await self.reader.read(65536)
                if not data:
                    raise AssertionError(f"connection closed before {what}")
                for line in self.buffer.feed(data):
                    message = parse(line)
                    if message.command == "PING":
                        self.send(f"PONG :{message.param(0)}")
                    self.messages.append(message)

    async def idle(self, seconds: float) -> None:
        """Read whatever arrives for ``seconds``."""
        with pytest.raises(TimeoutError):
            await self.wait(lambda m: False, "nothing", timeout=seconds)

    def links(self) -> list[str]:
        return [
            m.param(1) for m in self.messages if m.command == "PRIVMSG" and "/files/" in m.param(1)
        ]

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)


@asynccontextmanager
async def raw_user(port: int, nick: str = "bob", room: str = "#lan") -> AsyncIterator[RawUser]:
    user = await RawUser.connect(port, nick, room)
    try:
        yield user
    finally:
        await user.close()


def png(width: int = 6, height: int = 4) -> bytes:
    """A small valid PNG (red), made here so the preview has a real picture to open."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def fetch(url: str, context: ssl.SSLContext | None = None) -> bytes:
    """GET with the standard library (not the code under test)."""
    with urllib.request.urlopen(url, timeout=10, context=context) as answer:
        return answer.read()


def post(url: str, data: bytes, name: str, account: str, password: str, kind: str) -> str:
    """An upload with the standard library, as another program would make it; the link."""
    auth = base64.b64encode(f"{account}:{password}".encode()).decode()
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={
            "Authorization": f"Basic {auth}",
            "Content-Type": kind,
            "Content-Disposition": f'attachment; filename="{name}"',
        },
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 201
        return answer.headers["Location"]


async def type_line(pilot, text: str) -> None:
    chat_input = pilot.app.screen.query_one(ChatInput)
    chat_input.value = text
    chat_input.cursor_position = len(text)
    await pilot.press("enter")


def everything(app: ChatApp, key: str = "#lan") -> str:
    """Every line of a window, scrolled out of view or not."""
    buf = app.state.buffer(key)
    return "\n".join(e.text for e in buf.entries) if buf is not None else ""


def file_server(server_factory, tmp_path: Path, **more: object):
    return server_factory(
        http=True, http_port=0, files_dir=str(tmp_path / "files"), accounts=True, **more
    )


@asynccontextmanager
async def alice_logged_in(server, tmp_path: Path, **kwargs: object):
    """alice's app in #lan, her account registered and logged in, the file host known."""
    async with run_client(
        server, tmp_path, "alice", ("lan",), account_password=PASSWORD, register=True, **kwargs
    ) as (app, pilot):
        await wait_until(pilot, lambda: app.state.active == "#lan", what="#lan shown")
        await wait_until(pilot, lambda: app.state.account == "alice", what="logged in")
        await wait_until(pilot, lambda: app.state.filehost is not None, what="FILEHOST")
        yield app, pilot


# --- uploading ------------------------------------------------------------------------------


async def test_upload_sends_a_link_that_downloads_the_same_bytes(server_factory, tmp_path):
    fx = file_server(server_factory, tmp_path)
    data = os.urandom(300 * 1024)
    path = tmp_path / "holiday photo.png"
    path.write_bytes(data)
    async with (
        alice_logged_in(fx, tmp_path) as (app, pilot),
        raw_user(fx.port) as bob,
    ):
        assert app.state.filehost == f"http://127.0.0.1:{fx.server.http_port}/upload"
        await type_line(pilot, f"/upload {path}")
        said = await bob.wait(lambda m: m.command == "PRIVMSG" and "/files/" in m.param(1), "link")
        link = said.param(1)
        assert said.param(0) == "#lan" and said.nick == "alice"
        assert LINK.fullmatch(link) and link.endswith("/holiday%20photo.png")
        assert await asyncio.to_thread(fetch, link) == data  # anyone with the link
        # alice sees her own message as an attachment, size and type from the file host
        await wait_until(
            pilot,
            lambda: "📎 holiday photo.png · 300.0 KiB · image/png" in log_text(app),
            what="attachment line",
        )
        assert link not in log_text(app)
        assert not app.screen.query_one(TransferBar).display  # the bar is gone


async def test_escape_cancels_a_slow_upload_and_no_link_is_sent(
    server_factory, tmp_path, monkeypatch
):
    fx = file_server(server_factory, tmp_path)
    path = tmp_path / "big.bin"
    with open(path, "wb") as out:
        out.truncate(20 << 20)  # 20 MiB

    real_read = transfer._read_chunk

    async def slow_read(file, size: int) -> bytes:  # a slow disk: about 4 s for 20 MiB
        await asyncio.sleep(0.05)
        return await real_read(file, size)

    monkeypatch.setattr(transfer, "_read_chunk", slow_read)
    async with (
        alice_logged_in(fx, tmp_path) as (app, pilot),
        raw_user(fx.port) as bob,
    ):
        await type_line(pilot, f"/upload {path}")
        bar = app.screen.query_one(TransferBar)
        await wait_until(pilot, lambda: bar.display and bar.done > 0, what="upload under way")
        assert bar.what == "Uploading big.bin" and bar.total == 20 << 20
        await pilot.press("escape")
        await wait_until(pilot, lambda: "Upload of big.bin cancelled" in log_text(app))
        assert not bar.display and not app.transfer_running
        assert bar.done < 20 << 20
        await bob.idle(1.0)
        assert bob.links() == []
        assert not any("/files/" in e.text for e in app.state.buffer("#lan").entries)


async def test_a_server_without_a_file_host_says_so(irc_server, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    async with run_client(irc_server, tmp_path, "alice", ("lan",)) as (app, pilot):
        await wait_until(pilot, lambda: app.state.active == "#lan", what="#lan shown")
        await type_line(pilot, f"/upload {path}")
        await wait_until(pilot, lambda: "has no file host" in log_text(app))
        assert "This server has no file host" in log_text(app)
        assert not app.transfer_running


async def test_uploading_without_a_known_password_says_how_to_log_in(server_factory, tmp_path):
    fx = file_server(server_factory, tmp_path)
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    async with alice_logged_in(fx, tmp_path / "first"):
        pass  # the account exists now
    async with run_client(fx, tmp_path, "alice", ("lan",)) as (app, pilot):
        await wait_until(pilot, lambda: app.state.filehost is not None, what="FILEHOST")
        await wait_until(pilot, lambda: app.state.active == "#lan", what="#lan shown")
        # not logged in at all
        await type_line(pilot, f"/upload {path}")
        await wait_until(pilot, lambda: "Uploading needs an account" in log_text(app))
        assert "/login ACCOUNT PASSWORD" in log_text(app)
        # logged in by hand (NickServ), so the client never learnt the password
        await type_line(pilot, f"/msg NickServ IDENTIFY alice {PASSWORD}")
        await wait_until(pilot, lambda: app.state.account == "alice", what="logged in")
        await type_line(pilot, f"/upload {path}")
        await wait_until(pilot, lambda: "which this session does not know" in everything(app))
        assert "/login alice PASSWORD" in everything(app)
        assert not app.transfer_running


async def test_pasting_a_file_path_asks_before_uploading_it(server_factory, tmp_path):
    fx = file_server(server_factory, tmp_path)
    path = tmp_path / "report.txt"
    path.write_text("quarterly numbers\n")
    async with (
        alice_logged_in(fx, tmp_path) as (app, pilot),
        raw_user(fx.port) as bob,
    ):
        chat_input = app.screen.query_one(ChatInput)
        # declined: pasted as text, as before
        chat_input.post_message(events.Paste(str(path)))
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="question")
        assert app.screen.question == "Upload report.txt (18 B) to #lan?"
        await pilot.press("n")
        await wait_until(pilot, lambda: chat_input.value == str(path), what="text pasted")
        chat_input.value = ""
        # a path that is not a file is pasted without a question
        chat_input.post_message(events.Paste(str(tmp_path)))
        await wait_until(pilot, lambda: chat_input.value == str(tmp_path), what="dir pasted")
        chat_input.value = ""
        # accepted: uploaded, and the link goes to the room
        chat_input.post_message(events.Paste(f"'{path}'\n"))
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="question")
        await pilot.press("y")
        said = await bob.wait(lambda m: m.command == "PRIVMSG" and "/files/" in m.param(1), "link")
        assert said.param(1).endswith("/report.txt")
        assert await asyncio.to_thread(fetch, said.param(1)) == b"quarterly numbers\n"
        assert chat_input.value == ""


# --- attachments and downloads ----------------------------------------------------------------


async def test_enter_on_an_attachment_saves_it_and_previews_the_picture(server_factory, tmp_path):
    fx = file_server(server_factory, tmp_path)
    downloads = tmp_path / "downloads"
    picture = png()
    async with (
        alice_logged_in(fx, tmp_path, downloads_dir=downloads) as (app, pilot),
        raw_user(fx.port) as bob,
    ):
        # alice's account uploads with another program; bob posts the link
        link = await asyncio.to_thread(
            post, app.state.filehost, picture, "red square.png", "alice", PASSWORD, "image/png"
        )
        (downloads / "red square.png").parent.mkdir(parents=True)
        (downloads / "red square.png").write_bytes(b"an older file of that name")
        bob.send(f"PRIVMSG #lan :{link}")
        size = f"{len(picture)} B"
        await wait_until(
            pilot,
            lambda: f"📎 red square.png · {size} · image/png" in log_text(app),
            what="attachment line",
        )
        line = next(row for row in log_text(app).splitlines() if "📎" in row)
        assert "bob" in line  # the sender, as usual
        await pilot.press("up")  # select the newest message: bob's
        assert app.screen.query_one(MessageLog).selected_entry().text == link
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ImagePreviewScreen), what="preview")
        saved = downloads / "red square (1).png"
        assert saved.read_bytes() == picture
        assert (downloads / "red square.png").read_bytes() == b"an older file of that name"
        assert not list(downloads.glob("*.part"))
        assert f"Saved red square (1).png in {downloads}" in everything(app)
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, ImagePreviewScreen))


async def test_without_the_preview_a_picture_is_offered_to_the_system_viewer(
    server_factory, tmp_path, monkeypatch
):
    fx = file_server(server_factory, tmp_path)
    downloads = tmp_path / "downloads"
    opened: list[Path] = []
    monkeypatch.delenv(NO_OPEN_ENV)
    monkeypatch.setattr(filehost_module, "image_preview_available", lambda: False)
    async with (
        alice_logged_in(fx, tmp_path, downloads_dir=downloads, opener=opened.append) as (
            app,
            pilot,
        ),
        raw_user(fx.port) as bob,
    ):
        link = await asyncio.to_thread(
            post, app.state.filehost, png(), "dot.png", "alice", PASSWORD, "image/png"
        )
        bob.send(f"PRIVMSG #lan :look {link} !")
        # a link among other words: the message as it is, the attachment under it
        await wait_until(pilot, lambda: "📎 dot.png" in log_text(app), what="attachment row")
        rows = log_text(app).splitlines()
        look = next(i for i, row in enumerate(rows) if "bob" in row and "look" in row)
        assert any("📎 dot.png" in row for row in rows[look + 1 :])  # under the message
        await pilot.press("up", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="question")
        assert app.screen.question == "Open dot.png in the system viewer?"
        await pilot.press("y")
        await wait_until(pilot, lambda: opened == [downloads / "dot.png"], what="opened")


async def test_enter_on_a_message_without_an_attachment_says_so(server_factory, tmp_path):
    fx = file_server(server_factory, tmp_path)
    async with (
        alice_logged_in(fx, tmp_path) as (app, pilot),
        raw_user(fx.port) as bob,
    ):
        # a link that looks like the file host's, on another port: just a link
        bob.send("PRIVMSG #lan :http://127.0.0.1:1/files/AAAAAAAAAAAAAAAAAAAAAA/x.png")
        await wait_until(pilot, lambda: "x.png" in log_text(app), what="bob's line")
        assert "📎" not in log_text(app)
        await pilot.press("up", "enter")
        await wait_until(pilot, lambda: "no attachment to download" in log_text(app))
        assert not app.transfer_running


# --- TLS -------------------------------------------------------------------------------------


def tls_file_server(server_factory, tmp_path: Path, name: str):
    return file_server(
        server_factory, tmp_path / name, tls=True, tls_port=0, tls_dir=str(tmp_path / name)
    )


@asynccontextmanager
async def alice_over_tls(fx, tmp_path: Path):
    class Tls:
        host, port = fx.host, fx.server.tls_port

    async with alice_logged_in(
        Tls, tmp_path, tls=True, trust_fingerprint=fx.server.tls.fingerprint
    ) as running:
        yield running


async def test_over_tls_the_file_host_is_https_with_the_chat_servers_certificate(
    server_factory, tmp_path
):
    fx = tls_file_server(server_factory, tmp_path, "a")
    path = tmp_path / "secret plans.txt"
    path.write_text("TOP SECRET\n")
    async with (
        alice_over_tls(fx, tmp_path) as (app, pilot),
        raw_user(fx.port) as bob,
    ):
        assert app.state.filehost == f"https://127.0.0.1:{fx.server.http_port}/upload"
        await type_line(pilot, f"/upload {path}")
        said = await bob.wait(lambda m: m.command == "PRIVMSG" and "/files/" in m.param(1), "link")
        assert said.param(1).startswith(f"https://127.0.0.1:{fx.server.http_port}/files/")
        context = ssl.create_default_context(cafile=str(fx.server.tls.cert_path))
        assert await asyncio.to_thread(fetch, said.param(1), context) == b"TOP SECRET\n"
        await wait_until(
            pilot,
            lambda: "📎 secret plans.txt · 11 B · text/plain" in log_text(app),
            what="attachment line over https",
        )


async def test_a_file_host_with_another_certificate_is_refused(server_factory, tmp_path):
    ours = tls_file_server(server_factory, tmp_path, "ours")
    other = tls_file_server(server_factory, tmp_path, "other")
    mine, theirs = ours.server.tls.fingerprint, other.server.tls.fingerprint
    assert mine != theirs
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    async with (
        alice_over_tls(ours, tmp_path) as (app, pilot),
        raw_user(ours.port) as bob,
    ):
        # the server points its file host at a machine with another certificate
        app.state.filehost = f"https://127.0.0.1:{other.server.http_port}/upload"
        await type_line(pilot, f"/upload {path}")
        await wait_until(pilot, lambda: "notes.txt was not uploaded" in everything(app))
        text = everything(app)
        assert theirs in text and mine in text and "refused" in text
        await bob.idle(0.5)
        assert bob.links() == []
