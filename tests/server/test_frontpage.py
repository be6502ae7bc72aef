"""The front page (GET /): how to join, the public rooms, who is online; nothing secret,
nothing anyone said, nothing a user wrote taken as HTML.

A real server on 127.0.0.1 with real IRC clients; the page rendered from it directly
(web/frontpage.render) and fetched over HTTP from its web port.
"""

from __future__ import annotations

import base64
import doctest
import hashlib
import http.client
import re
from pathlib import Path

import pytest

from chatroom.server.server import ChatServer, connect_commands, tls_commands
from chatroom.server.web import frontpage
from tests.conftest import IRCClient, ServerFixture

HOSTILE_TOPIC = "<script>alert(1)</script> & \"quotes\" 'too'"
HOSTILE_ROOM = '#<img/src=x/onerror="alert(2)">&amp;'


def page_of(server: ChatServer, host: str = "127.0.0.1") -> str:
    return frontpage.render(server, host).decode("utf-8")


def section(page: str, name: str) -> str:
    """The HTML of one section of the page (connect, rooms, people)."""
    match = re.search(rf'<section id="{name}">(.*?)</section>', page, re.S)
    assert match, f"no {name} section"
    return match.group(1)


def rooms_shown(page: str) -> list[tuple[str, str]]:
    """(room name as HTML, its member count) in the order the page lists them."""
    return re.findall(
        r'<bdi class="name">(.*?)</bdi><span class="count">(.*?)</span>', section(page, "rooms")
    )


def set_topic(c: IRCClient, room: str, topic: str) -> None:
    c.send(f"TOPIC {room} :{topic}")
    c.expect("TOPIC")


@pytest.fixture
def busy(server_factory, clients) -> tuple[ServerFixture, dict[str, IRCClient]]:
    """A server with people in rooms: #big (3), #small (1), a secret room, a hostile
    name and topic, an invisible user and an away one."""
    fx = server_factory()
    alice, bob, carol, dave = (clients(fx, n) for n in ("alice", "bob", "carol", "dave"))
    for c in (alice, bob, carol):
        c.join("#big")
    set_topic(alice, "#big", HOSTILE_TOPIC)
    bob.join("#hideout")
    bob.send("MODE #hideout +s")
    bob.expect("MODE")
    set_topic(bob, "#hideout", "the secret plan")
    carol.join("#small")
    carol.join(HOSTILE_ROOM)
    dave.send("MODE dave +i")
    dave.expect("MODE")
    dave.join("#big2")
    carol.send("AWAY :lunch")
    carol.expect("306")
    alice.send("PRIVMSG #big :the words nobody outside should read")
    bob.expect("PRIVMSG")
    return fx, {"alice": alice, "bob": bob, "carol": carol, "dave": dave}


def test_rooms_are_listed_by_size_with_their_topics_and_secret_rooms_are_not(busy):
    fx, _ = busy
    page = page_of(fx.server)
    shown = rooms_shown(page)
    assert shown[0] == ("#big", "3 people")
    assert dict(shown) == {
        "#big": "3 people",
        "#big2": "1 person",
        "#small": "1 person",
        "#&lt;img/src=x/onerror=&quot;alert(2)&quot;&gt;&amp;amp;": "1 person",
    }
    assert "hideout" not in page and "secret plan" not in page
    assert "2 people online" not in page and "4 people online" in page
    assert "4 public rooms" in page  # the secret room is not counted either


def test_everything_users_wrote_is_escaped_and_the_page_has_no_script(busy):
    fx, _ = busy
    page = page_of(fx.server, host='"><script>alert(3)</script>')
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot; &#x27;too&#x27;" in page
    assert "<script" not in page.lower() and '"alert(' not in page
    assert "&quot;&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in page  # the host too
    assert "<img" not in page
    assert "nobody outside should read" not in page  # no message text, ever


def test_who_is_online_leaves_out_the_invisible_and_marks_the_away(busy):
    fx, _ = busy
    people = section(page_of(fx.server), "people")
    names = re.findall(r"<bdi>(.*?)</bdi>", people)
    assert names == ["alice", "bob", "carol"]  # sorted; dave is +i
    assert '<li class="away"><bdi>carol</bdi><small>away</small></li>' in people
    assert "lunch" not in people  # away, but not why
    assert "1 other not listed" in people


def test_the_page_changes_as_people_come_and_go(busy, clients):
    fx, people = busy
    people["bob"].send("QUIT :bye")
    people["bob"].wait_closed()
    eve = clients(fx, "eve")
    eve.join("#small")
    page = page_of(fx.server)
    shown = dict(rooms_shown(page))
    assert shown["#big"] == "2 people" and shown["#small"] == "2 people"
    names = re.findall(r"<bdi>(.*?)</bdi>", section(page, "people"))
    assert names == ["alice", "carol", "eve"]


def test_an_empty_server_says_so(server_factory):
    fx = server_factory()
    page = page_of(fx.server)
    assert "No public rooms yet" in page and "Nobody is online" in page
    assert "0 people online" in page


def test_how_to_connect_has_both_ports_the_fingerprint_and_each_client(
    server_factory, tmp_path: Path
):
    fx = server_factory(tls=True, tls_port=0, tls_dir=str(tmp_path / "tls"))
    server = fx.server
    assert server.tls is not None and server.port and server.tls_port
    fingerprint = server.tls.fingerprint
    for host in ("192.168.1.20", "fd00::20", "chat.example"):
        connect = section(page_of(server, host), "connect")
        assert f'<dd class="fp">{fingerprint}</dd>' in connect
        assert f"<dd>{server.tls_port}</dd>" in connect and f"<dd>{server.port}</dd>" in connect
        client, irssi = connect_commands(host, server.port)
        tls = [line.split(": ", 1)[1] for line in tls_commands(host, server.tls_port, fingerprint)]
        for command in (client, irssi, *tls[:3], tls[3].rstrip(")")):
            assert command in connect, command
        assert f"/server add lan {host}/{server.port}" in connect  # WeeChat, plain text
    assert f"chatroom-client ircs://[fd00::20]:{server.tls_port}" in page_of(server, "fd00::20")


def test_plain_text_kept_to_the_server_machine_is_not_offered_to_others(
    server_factory, tmp_path: Path
):
    fx = server_factory(tls=True, tls_port=0, tls_dir=str(tmp_path / "tls"), plaintext="loopback")
    server = fx.server
    lan = section(page_of(server, "192.168.1.20"), "connect")
    assert f"/connect 192.168.1.20 {server.port}" not in lan
    assert "on the server itself only" in lan
    assert f"192.168.1.20 {server.tls_port}" in lan
    here = section(page_of(server, "127.0.0.1"), "connect")
    assert f"/connect 127.0.0.1 {server.port}" in here


def test_without_tls_only_the_plain_commands(server_factory):
    fx = server_factory()
    connect = section(page_of(fx.server, "10.0.0.5"), "connect")
    assert "fingerprint" not in connect.lower() and "ircs://" not in connect
    assert f"chatroom-client 10.0.0.5:{fx.server.port}" in connect
    assert f"/connect 10.0.0.5 {fx.server.port}" in connect


def test_it_refreshes_itself_and_its_style_is_the_one_the_csp_allows(server_factory):
    fx = server_factory(frontpage_refresh=12)
    page = page_of(fx.server)
    assert '<meta http-equiv="refresh" content="12">' in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    styles = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert len(styles) == 1
    digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in frontpage.CSP
    assert frontpage.CSP.startswith("default-src 'none';")
    assert "unsafe" not in frontpage.CSP and "script-src" not in frontpage.CSP
    assert "prefers-color-scheme:dark" in styles[0]
    assert " style=" not in page  # an inline style attribute would be refused by the CSP


# --- over HTTP -------------------------------------------------------------------------------


def fetch(
    port: int, path: str = "/", method: str = "GET", host: str | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Host": host} if host else {}
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def test_the_front_page_over_http(server_factory, clients, tmp_path: Path):
    fx = server_factory(http=True, http_port=0, files_dir=str(tmp_path / "files"))
    alice = clients(fx, "alice")
    alice.join("#lan")
    set_topic(alice, "#lan", HOSTILE_TOPIC)
    port = fx.server.http_port
    status, headers, body = fetch(port, host=f"192.168.7.7:{port}")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Security-Policy"] == frontpage.CSP
    assert int(headers["Content-Length"]) == len(body)
    page = body.decode("utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script" not in page
    assert f"/connect 192.168.7.7 {fx.server.port}" in page  # the host the browser used
    status, headers, body = fetch(port, method="HEAD")
    assert status == 200 and body == b""
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    status, headers, _ = fetch(port, method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"


def test_doctests() -> None:
    assert doctest.testmod(frontpage).failed == 0
