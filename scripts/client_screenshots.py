"""Make the README's SVG screenshots from the real client against a real server.

Starts our server (or ngircd with ``--server ngircd``) on a free loopback port,
scripts a few users into a busy room, runs the app headless with the same
``make_app`` users get, and saves:

  screenshots/connect.svg   the connect screen, with a remembered server
  screenshots/chat.svg      a busy room: history from before we joined, people, a topic,
                            a /me, a mention, the unread divider, unread counts
  screenshots/help.svg      the help screen
  screenshots/conversation.svg  a reply, reactions, a deleted message, someone typing
  screenshots/files.svg     attachments (a picture and a text file another user uploaded
                            to the file host) and an upload of ours under way

files.svg always comes from our server (the file host is ours), started apart with its
web port, files and database in a temporary directory. The app always runs with a
temporary config dir and downloads dir, no keyring and no file viewer.

Usage: python3 scripts/client_screenshots.py [--server chatroom|ngircd] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import struct
import sys
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "client"))

from ngircd_proc import free_port, start_server, stop_server  # noqa: E402

from chatroom.client import transfer  # noqa: E402
from chatroom.client.app import NO_OPEN_ENV, make_app  # noqa: E402
from chatroom.client.config import DOWNLOADS_DIR_ENV, RecentServer, remember_server  # noqa: E402
from chatroom.client.discovery import DiscoveredServer  # noqa: E402
from chatroom.client.passwords import NO_KEYRING_ENV  # noqa: E402
from chatroom.client.scripted import ScriptedUser  # noqa: E402
from chatroom.client.widgets.log import MessageLog  # noqa: E402
from chatroom.client.widgets.transfer_bar import TransferBar  # noqa: E402
from chatroom.protocol import Message  # noqa: E402

SERVER_ARGS = ("--name", "lan.chatroom", "--log-level", "WARNING")

SIZE = (120, 34)
# Bound every wait: a broken server must not hang the script.
WAIT = 15.0


async def until(pilot, predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await pilot.pause(0.05)


class ShownServers:
    """Stands in for LAN discovery on the connect screen (the script sends no mDNS):
    the server another machine would see announced."""

    async def start(self, on_change) -> None:
        fp = ":".join(f"{b:02X}" for b in bytes(range(0x3A, 0x5A)))
        on_change([DiscoveredServer("lan.chatroom", "192.168.1.20", 6667, 6697, fp, "LAN", None)])

    async def stop(self) -> None:
        pass


async def connect_screen(out: Path, port: int, config: Path) -> None:
    remember_server(RecentServer("127.0.0.1", port, "alice"), config)
    remember_server(RecentServer("chat.lan", 6667, "alice"), config)
    app = make_app(nick="alice", config_dir=config, discovery=ShownServers)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.pause(0.3)
        app.save_screenshot(str(out / "connect.svg"))


async def chat_and_help(out: Path, port: int, config: Path) -> None:
    host = "127.0.0.1"
    bob = await ScriptedUser(host, port, "bob").connect()
    carol = await ScriptedUser(host, port, "carol").connect()
    dave = await ScriptedUser(host, port, "dave").connect()
    erin = await ScriptedUser(host, port, "erin").connect()
    users = [bob, carol, dave, erin]
    try:
        # bob and carol have accounts (a check mark beside their nicks); dave and erin not
        for user in (bob, carol):
            user.say("NickServ", "REGISTER lanparty2026")
            await user.sync()
        await bob.join("#lan")  # first in: bob is the room's operator
        bob.send(Message.of("TOPIC", "#lan", "LAN party \x02tonight\x02 at 8 — bring snacks"))
        await bob.join("#games")
        for user in (carol, dave, erin):
            await user.join("#lan")
        await bob.sync()
        bob.send(Message.of("MODE", "#lan", "+v", "carol"))
        await bob.sync()
        # Said before alice arrives: her client fetches it as history on join.
        carol.say("#lan", "morning! who is coming tonight?")
        await carol.sync()
        dave.say("#lan", "me, bringing the spare monitor")
        await dave.sync()
        app = make_app(
            host,
            port,
            "alice",
            ("lan", "games"),
            config_dir=config,
            account="alice",
            account_password="alicepass2026",
            register=True,
            discovery=None,
        )
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(pilot, lambda: app.state.active == "#lan", "alice in #lan")
            await until(pilot, lambda: len(app.state.buffer("#lan").members) == 5, "members")
            lan = app.state.buffer("#lan")
            await until(pilot, lambda: len(lan.entries) > 2 and lan.entries[0].history, "history")
            script = [
                (bob, "hi alice! the switch is set up by the window"),
                (carol, "I brought the long cables this time"),
                (erin, None),
                (dave, "alice: can you host the \x0303minecraft\x03 server again?"),
            ]
            for user, text in script:
                if text is None:
                    user.action("#lan", "is setting up the projector")
                else:
                    user.say("#lan", text)
                await user.sync()
            app.submit("sure, starting it now")
            app.submit("/me plugs in the router")
            await until(pilot, lambda: not lan.pending, "echoes")
            # A look at #games while #lan goes on: back in #lan, the divider shows
            # where the new lines start.
            app.switch_to("#games")
            carol.say("#lan", "\x02bold\x02 plan: pizza first, then games")
            await carol.sync()
            erin.say("#lan", "pizza is ordered, 20 minutes")
            await erin.sync()
            await until(pilot, lambda: lan.unread == 2, "unread #lan")
            app.switch_to("#lan")
            bob.say("#games", "who is up for a round?")
            bob.say("#games", "alice: you in?")
            await bob.sync()
            await until(pilot, lambda: app.state.buffer("#games").unread == 2, "unread #games")
            await pilot.pause(0.5)
            app.save_screenshot(str(out / "chat.svg"))
            app.show_help()
            await pilot.pause(0.5)
            app.save_screenshot(str(out / "help.svg"))
            await app.connection.close()
    finally:
        await asyncio.gather(*(u.quit() for u in users), return_exceptions=True)


# What the scripted users of the conversation screenshot negotiate: tags and echoes,
# so they learn the msgids they reply to, react to and delete.
TAG_CAPS = frozenset(
    {"server-time", "message-tags", "echo-message", "batch", "draft/message-redaction"}
)


async def conversation(out: Path, port: int, config: Path) -> None:
    host = "127.0.0.1"
    names = ("bob", "carol", "dave", "erin")
    bob, carol, dave, erin = [
        await ScriptedUser(host, port, n, caps=TAG_CAPS).connect() for n in names
    ]
    users = [bob, carol, dave, erin]

    async def said(user: ScriptedUser, text: str) -> str:
        """Say ``text`` in #party; its msgid, from the echo."""
        mark = len(user.messages)
        user.say("#party", text)
        echo = await user.wait_for(
            lambda m: m.command == "PRIVMSG" and m.params[-1] == text, start=mark
        )
        return echo.tags["msgid"]

    try:
        for user in users:
            await user.join("#party")
        app = make_app(host, port, "alice", ("party",), config_dir=config, discovery=None)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(pilot, lambda: app.state.active == "#party", "alice in #party")
            room = app.state.buffer("#party")
            await until(pilot, lambda: len(room.members) == 5, "members")
            question = await said(carol, "who brings the pizza tonight?")
            answer = "me! two margheritas and a veggie"
            dave.send(Message("PRIVMSG", ("#party", answer), None, {"+reply": question}))
            await dave.sync()
            for user, emoji in ((bob, "👍"), (erin, "👍"), (bob, "🎉")):
                tags = {"+draft/react": emoji, "+draft/reply": question}
                user.send(Message("TAGMSG", ("#party",), None, tags))
                await user.sync()
            oops = await said(erin, "the wifi password is hunter2")
            erin.send(Message.of("REDACT", "#party", oops, "wrong room"))
            await erin.sync()
            await said(erin, "sorry, wrong window")
            app.submit("great, I'll bring drinks")
            await until(pilot, lambda: not room.pending, "echo")
            dave.send(Message("TAGMSG", ("#party",), None, {"+typing": "active"}))
            await dave.sync()
            await pilot.pause(0.8)
            app.save_screenshot(str(out / "conversation.svg"))
            await app.connection.close()
    finally:
        await asyncio.gather(*(u.quit() for u in users), return_exceptions=True)


FILE_PASSWORD = "lanparty2026"
FILEHOST_TOKEN = "soju.im/FILEHOST="
# alice's upload in files.svg: a 12 MiB video, held at 5 MiB while the screenshot is taken
UPLOAD_NAME = "tournament final.mp4"
UPLOAD_SIZE = 12 << 20
UPLOAD_HELD_AT = 5 << 20
# Each piece of it waits this long (a slow disk, as tests/client/test_upload.py makes
# one): longer than the bar's REDRAW_INTERVAL, so the bar shows the byte it stopped at.
UPLOAD_PIECE_DELAY = 0.12


def picture(width: int = 400, height: int = 300) -> bytes:
    """A PNG (always the same bytes: seeded noise), for the attachment to have a size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    noise = random.Random(2026)
    rows = b"".join(b"\x00" + noise.randbytes(width * 3) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def post_file(url: str, data: bytes, name: str, kind: str, account: str, password: str) -> str:
    """An upload as another program makes it (README: POST with HTTP Basic); the link."""
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
    with urllib.request.urlopen(request, timeout=WAIT) as answer:
        if answer.status != 201 or not answer.headers["Location"]:
            raise SystemExit(f"uploading {name}: {answer.status} without a link")
        return answer.headers["Location"]


def filehost_of(user: ScriptedUser) -> str:
    """Where ``user`` uploads: the soju.im/FILEHOST token of the server's ISUPPORT."""
    for message in user.messages:
        if message.command == "005":
            for token in message.params[1:-1]:
                if token.startswith(FILEHOST_TOKEN):
                    return token.removeprefix(FILEHOST_TOKEN)
    raise SystemExit("the server announced no soju.im/FILEHOST")


async def files(out: Path, tmp: Path) -> None:
    """files.svg, from our server with its web port: bob (an account, registered over
    IRC) uploads a picture and a text file by HTTP and posts their links, which alice's
    app shows as attachments; then alice's own upload of a video, held part way."""
    http_port = free_port()
    server, port = start_server(
        "chatroom",
        *SERVER_ARGS,
        "--http-port",
        str(http_port),
        "--files-dir",
        str(tmp / "files"),
        "--db",
        str(tmp / "history.sqlite3"),
    )
    host = "127.0.0.1"
    users: list[ScriptedUser] = []
    real_read = transfer._read_chunk
    held, release = asyncio.Event(), asyncio.Event()

    async def slow_read(file, size: int) -> bytes:
        await asyncio.sleep(UPLOAD_PIECE_DELAY)
        if file.tell() >= UPLOAD_HELD_AT:
            held.set()
            await release.wait()
        return await real_read(file, size)

    try:
        bob, carol, dave = [
            await ScriptedUser(host, port, n).connect() for n in ("bob", "carol", "dave")
        ]
        users += [bob, carol, dave]
        mark = len(bob.messages)
        bob.send(Message.of("REGISTER", "bob", "*", FILE_PASSWORD))
        answer = await bob.wait_for(lambda m: m.command in ("REGISTER", "FAIL"), start=mark)
        if answer.command != "REGISTER" or answer.param(0) != "SUCCESS":
            raise SystemExit(f"bob's account was not registered: {answer}")
        await bob.join("#lan")
        bob.send(Message.of("TOPIC", "#lan", "LAN party photos and leftovers"))
        for user in (carol, dave):
            await user.join("#lan")
        await bob.sync()
        carol.say("#lan", "did anyone take pictures last night?")
        await carol.sync()
        video = tmp / UPLOAD_NAME
        with open(video, "wb") as blank:
            blank.truncate(UPLOAD_SIZE)
        app = make_app(
            host,
            port,
            "alice",
            ("lan",),
            config_dir=tmp / "config",
            account="alice",
            account_password=FILE_PASSWORD,
            register=True,
            discovery=None,
            downloads_dir=tmp / "downloads",
            opener=None,
        )
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(pilot, lambda: app.state.active == "#lan", "alice in #lan")
            await until(pilot, lambda: len(app.state.buffer("#lan").members) == 4, "members")
            await until(pilot, lambda: app.state.account == "alice", "alice logged in")
            await until(pilot, lambda: app.state.filehost is not None, "FILEHOST")
            upload = filehost_of(bob)
            bob.say("#lan", "yes! the pizza, before and after")
            await bob.sync()
            uploads = [
                ("pizza.png", picture(), "image/png"),
                ("leftovers.txt", b"2 slices margherita\n1 veggie\n6 cans of cola\n", "text/plain"),
            ]
            for name, data, kind in uploads:
                link = await asyncio.to_thread(
                    post_file, upload, data, name, kind, "bob", FILE_PASSWORD
                )
                bob.say("#lan", link)
                await bob.sync()
            dave.say("#lan", "who has the recording of the final?")
            await dave.sync()
            log = app.screen.query_one(MessageLog)
            for name, data, kind in uploads:
                shown = f"📎 {name} · {transfer.human_size(len(data))} · {kind}"
                await until(pilot, lambda shown=shown: shown in log.visible_text(), shown)
            app.submit("me, uploading it now")
            transfer._read_chunk = slow_read  # only for this scene: see the finally
            app.submit(f"/upload {video}")
            bar = app.screen.query_one(TransferBar)
            await until(
                pilot, lambda: held.is_set() and bar.done == UPLOAD_HELD_AT, "the upload held"
            )
            await pilot.pause(0.5)
            app.save_screenshot(str(out / "files.svg"))
            await pilot.press("escape")  # cancelled: the file host keeps nothing of it
            await until(pilot, lambda: not app.transfer_running, "the upload cancelled")
            await app.connection.close()
    finally:
        transfer._read_chunk = real_read
        release.set()
        await asyncio.gather(*(u.quit() for u in users), return_exceptions=True)
        stop_server(server)


async def run(out: Path, port: int) -> None:
    with tempfile.TemporaryDirectory(prefix="chatroom-screenshots-") as tmp:
        # Whatever a scene does, nothing of the user's: downloads in the temporary
        # directory, no file viewer, no keyring (each app has a config dir in it too).
        os.environ[DOWNLOADS_DIR_ENV] = str(Path(tmp) / "downloads")
        os.environ[NO_OPEN_ENV] = "1"
        os.environ[NO_KEYRING_ENV] = "1"
        await connect_screen(out, port, Path(tmp) / "connect")
        await chat_and_help(out, port, Path(tmp) / "chat")
        await conversation(out, port, Path(tmp) / "conversation")
        (Path(tmp) / "files").mkdir()
        await files(out, Path(tmp) / "files")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=["chatroom", "ngircd"], default="chatroom")
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    os.environ["CHATROOM_NO_MDNS"] = "1"  # nothing on the LAN from a script
    server, port = start_server(args.server, *SERVER_ARGS)
    try:
        asyncio.run(run(args.out, port))
    finally:
        stop_server(server)
    for name in ("connect", "chat", "help", "conversation", "files"):
        print(args.out / f"{name}.svg")


if __name__ == "__main__":
    main()
