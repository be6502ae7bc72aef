"""Accounts in the real client app, driven by Pilot, against a scripted server on
loopback (fake_server.py): logging in with SASL at connect and with /login, registering,
NickServ, marks beside people who are (not) logged in, and remembered passwords."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from client_helpers import TERMINAL_SIZE, log_text, run_client, wait_until
from fake_server import ACCOUNT_CAPS, SERVER_NAME, FakeServer, fake_server
from textual.widgets import Input, Switch

from chatroom.client.app import ChatApp, make_app
from chatroom.client.model import SERVER_KEY
from chatroom.client.screens.connect import ConnectScreen
from chatroom.client.widgets.chat_input import ChatInput
from chatroom.client.widgets.panels import MemberList, StatusLine
from chatroom.protocol import Message

PASSWORD = "correct horse battery"
ME = f":{SERVER_NAME}"


def status(app: ChatApp) -> str:
    return str(app.screen.query_one(StatusLine).render())


def everything_shown(app: ChatApp) -> str:
    """Every line of every window (scrollback included) and the input history."""
    lines = [e.text for buf in app.state.buffers.values() for e in buf.entries]
    lines += app.screen.query_one(ChatInput).history
    return "\n".join([*lines, log_text(app)])


def server_window(app: ChatApp) -> str:
    """The server window's lines, unwrapped."""
    return "\n".join(e.text for e in app.state.buffers[SERVER_KEY].entries)


def sent(server: FakeServer, command: str) -> list[str]:
    return [str(m) for m in server.link.got(command)]


async def type_line(pilot, text: str) -> None:
    chat_input = pilot.app.screen.query_one(ChatInput)
    chat_input.value = text
    chat_input.cursor_position = len(text)
    await pilot.press("enter")


async def connected(app: ChatApp, pilot) -> None:
    await wait_until(pilot, lambda: app.conn_state == "connected", what="registered")


# --- logging in at connect ------------------------------------------------------------


async def test_scram_login_at_connect_shows_in_the_status_line(tmp_path: Path) -> None:
    async with (
        fake_server(caps=ACCOUNT_CAPS, accounts={"alice": PASSWORD}) as server,
        run_client(server, tmp_path, "alice", account_password=PASSWORD) as (app, pilot),
    ):
        await connected(app, pilot)
        await wait_until(pilot, lambda: "alice ✓" in status(app), what="logged in")
        assert "You are now logged in as alice" in log_text(app)
        received = [str(m) for m in server.link.received]
        # Logged in before registration ended: AUTHENTICATE..., then CAP END.
        assert received.index("AUTHENTICATE +") < received.index("CAP END")
        assert sent(server, "AUTHENTICATE")[0] == "AUTHENTICATE SCRAM-SHA-256"
        assert server.link.account == "alice"
        raw = " ".join(sent(server, "AUTHENTICATE"))
        assert PASSWORD not in raw and "Y29ycmVjdCBob3Jz" not in raw  # nor in base64


async def test_failed_login_is_told_and_the_connection_stays(tmp_path: Path) -> None:
    async with (
        fake_server(caps=ACCOUNT_CAPS, accounts={"alice": PASSWORD}) as server,
        run_client(server, tmp_path, "alice", ("lan",), account_password="wrong") as (app, pilot),
    ):
        await wait_until(pilot, lambda: app.state.active == "#lan", what="joined anyway")
        await wait_until(
            pilot,
            lambda: "Could not log in as alice: SASL authentication failed" in server_window(app),
        )
        assert "you are connected without being logged in" in server_window(app)
        await wait_until(pilot, lambda: "(not logged in)" in status(app))
        assert server.link.account is None and sent(server, "CAP")[-1] == "CAP END"


async def test_long_plain_password_goes_in_400_byte_chunks(tmp_path: Path) -> None:
    # NUL alice NUL password: 1 + 5 + 1 + 593 = 600 bytes, 800 in base64: two full
    # chunks, then "+" to say that was all.
    long = "p" * 593
    only_plain = {**ACCOUNT_CAPS, "sasl": "PLAIN"}
    async with (
        fake_server(caps=only_plain, accounts={"alice": long}, mechanisms=("PLAIN",)) as server,
        run_client(server, tmp_path, "alice", account_password=long) as (app, pilot),
    ):
        await wait_until(pilot, lambda: "alice ✓" in status(app), what="logged in with PLAIN")
        lines = sent(server, "AUTHENTICATE")
        assert lines[0] == "AUTHENTICATE PLAIN"
        assert [len(line.split()[1]) for line in lines[1:]] == [400, 400, 1]
        assert lines[-1] == "AUTHENTICATE +"
        assert long not in everything_shown(app)


async def test_plain_is_not_sent_over_a_link_that_is_not_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("chatroom.client.connection.is_loopback", lambda address: False)
    only_plain = {**ACCOUNT_CAPS, "sasl": "PLAIN"}
    async with (
        fake_server(caps=only_plain, accounts={"alice": PASSWORD}) as server,
        run_client(server, tmp_path, "alice", account_password=PASSWORD) as (app, pilot),
    ):
        await connected(app, pilot)
        await wait_until(pilot, lambda: "--allow-plain-sasl" in log_text(app))
        assert "only PLAIN" in log_text(app)
        assert sent(server, "AUTHENTICATE") == [] and server.link.account is None


async def test_a_silent_server_does_not_hang_registration(tmp_path: Path) -> None:
    async with (
        fake_server(caps=ACCOUNT_CAPS, accounts={"alice": PASSWORD}, sasl_silent=True) as server,
        run_client(server, tmp_path, "alice", account_password=PASSWORD, auth_timeout=0.3) as (
            app,
            pilot,
        ),
    ):
        await connected(app, pilot)
        assert sent(server, "AUTHENTICATE")[-1] == "AUTHENTICATE *"
        await wait_until(pilot, lambda: "no answer from the server within" in log_text(app))


# --- registering ----------------------------------------------------------------------


async def test_register_at_connect_then_logged_in(tmp_path: Path) -> None:
    async with (
        fake_server(caps=ACCOUNT_CAPS) as server,
        run_client(server, tmp_path, "alice", account_password=PASSWORD, register=True) as (
            app,
            pilot,
        ),
    ):
        await wait_until(pilot, lambda: "Registered the account alice" in log_text(app))
        await wait_until(pilot, lambda: "alice ✓" in status(app))
        assert sent(server, "REGISTER") == [f"REGISTER alice * :{PASSWORD}"]
        assert server.accounts == {"alice": PASSWORD}
        assert PASSWORD not in everything_shown(app)


async def test_register_an_account_that_exists_says_so(tmp_path: Path) -> None:
    async with (
        fake_server(caps=ACCOUNT_CAPS, accounts={"alice": "theirs"}) as server,
        run_client(server, tmp_path, "alice", account_password=PASSWORD, register=True) as (
            app,
            pilot,
        ),
    ):
        await connected(app, pilot)
        await wait_until(pilot, lambda: "Could not register alice" in log_text(app))
        assert "ACCOUNT_EXISTS" in log_text(app) and "/login" in log_text(app)
        await wait_until(pilot, lambda: "(not logged in)" in status(app))


async def test_register_on_a_server_without_registration_is_explained(tmp_path: Path) -> None:
    no_registration = {k: v for k, v in ACCOUNT_CAPS.items() if k != "draft/account-registration"}
    async with (
        fake_server(caps=no_registration) as server,
        run_client(server, tmp_path, "alice", account_password=PASSWORD, register=True) as (
            app,
            pilot,
        ),
    ):
        await connected(app, pilot)
        await wait_until(pilot, lambda: "does not support registering accounts" in log_text(app))
        assert sent(server, "REGISTER") == [] and sent(server, "AUTHENTICATE") == []


# --- commands -------------------------------------------------------------------------


async def test_slash_login_uses_sasl_and_hides_the_password(tmp_path: Path) -> None:
    async with (
        fake_server(caps=ACCOUNT_CAPS, accounts={"al": PASSWORD}) as server,
        run_client(server, tmp_path, "alice", ("lan",)) as (app, pilot),
    ):
        await wait_until(pilot, lambda: "(not logged in)" in status(app))
        await type_line(pilot, f"/login al {PASSWORD}")
        await wait_until(pilot, lambda: "alice ✓ al" in status(app), what="logged in as al")
        assert server.link.account == "al"
        assert "You are now logged in as al" in log_text(app)
        assert app.screen.query_one(ChatInput).history[-1] == "/login al"
        await type_line(pilot, "/login wrong-password")
        await wait_until(pilot, lambda: "Could not log in as al" in log_text(app))
        assert PASSWORD not in everything_shown(app)
        assert "wrong-password" not in everything_shown(app)


async def test_nickserv_without_sasl_and_its_password_never_shown(tmp_path: Path) -> None:
    async with (
        fake_server(caps={"echo-message": ""}) as server,
        run_client(server, tmp_path, "alice", ("lan",)) as (app, pilot),
    ):
        await wait_until(pilot, lambda: app.state.active == "#lan")
        await type_line(pilot, f"/login alice {PASSWORD}")  # spaces in it: account first
        await wait_until(pilot, lambda: server.link.got("PRIVMSG"))
        assert sent(server, "PRIVMSG") == [f"PRIVMSG NickServ :IDENTIFY alice {PASSWORD}"]
        # The server echoes it (echo-message); NickServ answers; the account follows.
        server.send(
            f":alice!u@127.0.0.1 PRIVMSG NickServ :IDENTIFY alice {PASSWORD}",
            ":NickServ!NickServ@services NOTICE alice :You are now identified for alice",
            f"{ME} 900 alice alice!u@127.0.0.1 alice :You are now logged in as alice",
        )
        await wait_until(pilot, lambda: "alice ✓" in status(app))
        assert "You are now identified for alice" in log_text(app)
        # And typed by hand, the same: the log and history show it without the password.
        await type_line(pilot, f"/msg NickServ IDENTIFY alice {PASSWORD}")
        await wait_until(pilot, lambda: len(server.link.got("PRIVMSG")) == 2)
        nickserv = app.state.buffer("NickServ")
        assert nickserv is not None and nickserv.entries[-1].text == "IDENTIFY ••••••"
        assert app.screen.query_one(ChatInput).history[-1] == "/msg NickServ IDENTIFY ••••••"
        assert PASSWORD not in everything_shown(app)
        await type_line(pilot, "/logout")
        await wait_until(pilot, lambda: len(server.link.got("PRIVMSG")) == 3)
        assert sent(server, "PRIVMSG")[-1] == "PRIVMSG NickServ :LOGOUT"
        server.send(f"{ME} 901 alice alice!u@127.0.0.1 :You are now logged out")
        await wait_until(pilot, lambda: "You are now logged out" in log_text(app))
        await wait_until(pilot, lambda: "✓" not in status(app))


async def test_slash_register_uses_register_when_offered(tmp_path: Path) -> None:
    async with (
        fake_server(caps=ACCOUNT_CAPS) as server,
        run_client(server, tmp_path, "alice") as (app, pilot),
    ):
        await connected(app, pilot)
        await type_line(pilot, "/register hunter22")
        await wait_until(pilot, lambda: "alice ✓" in status(app), what="registered")
        assert sent(server, "REGISTER") == ["REGISTER alice * hunter22"]
        assert app.screen.query_one(ChatInput).history[-1] == "/register"
        assert "hunter22" not in everything_shown(app)
        await type_line(pilot, f"/register bob {PASSWORD}")  # another account, by name
        await wait_until(pilot, lambda: "Registered the account bob" in log_text(app))
        assert sent(server, "REGISTER")[-1] == f"REGISTER bob * :{PASSWORD}"
        assert app.screen.query_one(ChatInput).history[-1] == "/register bob"
        assert PASSWORD not in everything_shown(app)


async def test_operator_commands_in_the_current_room(tmp_path: Path) -> None:
    async with (
        fake_server() as server,
        run_client(server, tmp_path, "alice", ("lan",)) as (app, pilot),
    ):
        await wait_until(pilot, lambda: app.state.active == "#lan")
        for line in (
            "/op bob",
            "/deop bob",
            "/voice bob carol",
            "/devoice bob",
            "/ban bob",
            "/ban $a:mallory",
            "/ban *!*@10.0.0.*",
            "/unban bob!*@*",
            "/kick bob please stop",
            "/kick carol",
        ):
            await type_line(pilot, line)
        await wait_until(pilot, lambda: len(server.link.got("KICK")) == 2)
        assert sent(server, "MODE") == [
            "MODE #lan +o bob",
            "MODE #lan -o bob",
            "MODE #lan +v bob",
            "MODE #lan +v carol",
            "MODE #lan -v bob",
            "MODE #lan +b bob!*@*",
            "MODE #lan +b $a:mallory",
            "MODE #lan +b *!*@10.0.0.*",
            "MODE #lan -b bob!*@*",
        ]
        assert sent(server, "KICK") == ["KICK #lan bob :please stop", "KICK #lan carol"]
        app.switch_to(SERVER_KEY)
        await type_line(pilot, "/op bob")
        assert "/op needs a room" in log_text(app)


# --- who is logged in -----------------------------------------------------------------


async def test_marks_follow_accounts_and_unmask_a_squatter(tmp_path: Path) -> None:
    async with (
        fake_server(caps=ACCOUNT_CAPS) as server,
        run_client(server, tmp_path, "alice", ("lan",)) as (app, pilot),
    ):
        await wait_until(pilot, lambda: app.state.active == "#lan")
        members = app.screen.query_one(MemberList)
        server.send(
            ":bob!b@h JOIN #lan bob :Bob",  # extended-join: logged in as bob
            ":carol!c@h JOIN #lan * :Carol",  # not logged in
            "@account=bob :bob!b@h PRIVMSG #lan :[b]hi[/b] from the real bob",
        )
        await wait_until(pilot, lambda: "real bob" in log_text(app))
        await wait_until(pilot, lambda: "bob ✓" in members.plain)
        assert "carol\n" in members.plain + "\n" and "carol ✓" not in members.plain
        assert "bob✓ │ [b]hi[/b] from the real bob" in log_text(app)  # text, not markup
        # carol logs in (account-notify); bob leaves and someone else takes the nick.
        server.send(
            ":carol!c@h ACCOUNT carol",
            ":bob!b@h QUIT :bye",
            ":bob!x@elsewhere JOIN #lan * :Not Bob",
            ":bob!x@elsewhere PRIVMSG #lan :trust me, I am bob",
        )
        await wait_until(pilot, lambda: "trust me" in log_text(app))
        await wait_until(pilot, lambda: "bob ?" in members.plain and "carol ✓" in members.plain)
        assert "bob? │ trust me, I am bob" in log_text(app)
        assert "bob✓ │ [b]hi[/b] from the real bob" in log_text(app)  # as it was then
        # account-tag: a line without the tag means carol is no longer logged in.
        server.send(":carol!c@h PRIVMSG #lan :logged out now")
        await wait_until(pilot, lambda: "logged out now" in log_text(app))
        await wait_until(pilot, lambda: "carol ?" in members.plain)


async def test_whox_after_join_tells_who_is_logged_in(tmp_path: Path) -> None:
    async with (
        fake_server(caps=ACCOUNT_CAPS) as server,
        run_client(server, tmp_path, "alice") as (app, pilot),
    ):
        await connected(app, pilot)
        server.send(f"{ME} 005 alice WHOX :are supported by this server")
        await type_line(pilot, "/join #lan")
        await wait_until(pilot, lambda: server.link.got("WHO"), what="WHOX request")
        [who] = server.link.got("WHO")
        assert who.params[0] == "#lan" and who.params[1].startswith("%tcuhnfar,")
        token = who.params[1].split(",")[1]
        server.send(
            f"{ME} 353 alice = #lan :@alice dave erin",
            f"{ME} 366 alice #lan :End of /NAMES list.",
            f"{ME} 354 alice {token} #lan d h dave H dave :Dave",
            f"{ME} 354 alice {token} #lan e h erin G 0 :Erin",
            f"{ME} 315 alice #lan :End of WHO list",
        )
        members = app.screen.query_one(MemberList)
        await wait_until(pilot, lambda: "dave ✓" in members.plain and "erin" in members.plain)
        assert "erin ✓" not in members.plain
        assert app.state.buffer("#lan").members["erin"].away  # the G flag
        assert "354" not in log_text(app)  # our own WHO is not shown


# --- remembered passwords -------------------------------------------------------------


async def test_remembered_password_in_a_private_file(tmp_path: Path) -> None:
    config = tmp_path / "config"
    path = config / "passwords.json"
    async with fake_server(caps=ACCOUNT_CAPS, accounts={"alice": PASSWORD}) as server:
        async with run_client(
            server, tmp_path, "alice", account_password="wrong", remember=True
        ) as (app, pilot):
            await wait_until(pilot, lambda: "Could not log in" in log_text(app))
            assert not path.exists()  # only a password that worked is kept
        async with run_client(
            server, tmp_path, "alice", account_password=PASSWORD, remember=True
        ) as (app, pilot):
            await wait_until(pilot, lambda: "is remembered in" in log_text(app))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert PASSWORD in path.read_text()
        path.chmod(0o644)
        # Next time the account alone is enough; a file others could read is fixed.
        async with run_client(server, tmp_path, "alice", account="alice") as (app, pilot):
            await wait_until(pilot, lambda: "alice ✓" in status(app))
            assert "was readable by other users" in log_text(app)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_connect_screen_account_fields(tmp_path: Path) -> None:
    async with fake_server(caps=ACCOUNT_CAPS) as server:
        app = make_app(nick="carol", config_dir=tmp_path / "config")
        async with app.run_test(size=TERMINAL_SIZE) as pilot:
            try:
                await wait_until(pilot, lambda: isinstance(app.screen, ConnectScreen))
                screen = app.screen
                screen.query_one("#host", Input).value = f"{server.host}:{server.port}"
                screen.query_one("#tls", Switch).value = False  # a plain-text test server
                assert screen.query_one("#account", Input).placeholder == "your nick"
                screen.query_one("#register", Switch).value = True
                screen.query_one("#remember", Switch).value = True
                screen.query_one("#host", Input).focus()
                await pilot.press("enter")
                assert "choose a password" in str(screen.query_one("#connect-error").render())
                screen.query_one("#account-password", Input).value = PASSWORD
                screen.query_one("#account-password", Input).focus()
                await pilot.press("enter")
                await wait_until(pilot, lambda: "carol ✓" in status(app), what="registered")
                assert server.accounts == {"carol": PASSWORD}
                assert PASSWORD in (tmp_path / "config" / "passwords.json").read_text()
            finally:
                await app.connection.close("test over")
        # The next start offers that server with its remembered password.
        app = make_app(nick="someone", config_dir=tmp_path / "config")
        async with app.run_test(size=TERMINAL_SIZE) as pilot:
            try:
                await wait_until(pilot, lambda: isinstance(app.screen, ConnectScreen))
                screen = app.screen
                assert screen.query_one("#nick", Input).value == "carol"
                assert screen.query_one("#remember", Switch).value
                assert "remembered" in screen.query_one("#account-password", Input).placeholder
                await pilot.press("enter")
                await wait_until(pilot, lambda: server.link.account == "carol", what="login")
                assert Message.of("AUTHENTICATE", "SCRAM-SHA-256") in server.link.received
            finally:
                await app.connection.close("test over")
        # Turning "remember password" off forgets it.
        app = make_app(nick="someone", config_dir=tmp_path / "config")
        async with app.run_test(size=TERMINAL_SIZE) as pilot:
            try:
                await wait_until(pilot, lambda: isinstance(app.screen, ConnectScreen))
                app.screen.query_one("#remember", Switch).value = False
                await pilot.press("enter")
                await connected(app, pilot)
                assert not (tmp_path / "config" / "passwords.json").exists()
                assert not server.link.got("AUTHENTICATE")
            finally:
                await app.connection.close("test over")
