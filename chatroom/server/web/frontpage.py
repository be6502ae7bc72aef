"""GET /: the page someone on the LAN opens first: how to join, the rooms, who is here.

One HTML5 page, rendered from a snapshot of the registry taken under its lock (and
built outside it). Plain HTML and one inline stylesheet: no script at all, and the
Content-Security-Policy (:data:`CSP`, sent by web/httpd.py) allows nothing else, so
whatever a user manages to put in a topic or a nick is text. Every such string goes
through :func:`html.escape`, with IRC formatting and control characters removed first.
It reloads itself every ``frontpage_refresh`` seconds (a meta refresh, no script), reads
on a phone (one column that reflows) and follows the system's light or dark scheme.

Never on it: secret (+s) or private (+p) rooms, invisible (+i) users, anything said.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from typing import TYPE_CHECKING, NamedTuple

from chatroom.protocol import casefold
from chatroom.server.config import VERSION
from chatroom.server.registry import is_loopback

if TYPE_CHECKING:
    from chatroom.server.server import ChatServer

CONTENT_TYPE = "text/html; charset=utf-8"
# A page for a LAN, not a directory: past these, the page says how many more there are.
MAX_ROOMS = 200
MAX_PEOPLE = 500
# Room modes that keep a room off the page: secret; private, should a server have it.
HIDDEN_ROOM_MODES = frozenset("sp")

# One stylesheet, inline: its hash is in the CSP, so no other style can apply.
STYLE = """
:root{color-scheme:light dark;--bg:#f5f6f8;--fg:#1b1f24;--muted:#5d6671;--card:#fff;
--line:#dfe3e8;--code:#eef1f4;--accent:#0a7470;--chip:#e3f1ef;--chipfg:#0a4f4c}
@media (prefers-color-scheme:dark){:root{--bg:#101317;--fg:#e4e7eb;--muted:#99a3ae;
--card:#181d23;--line:#29313b;--code:#0c0f13;--accent:#5fd3c6;--chip:#173230;
--chipfg:#bdeee8}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--fg);
font:1.0625rem/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif}
main{max-width:72rem;margin:0 auto;padding:1.5rem 1rem 2.5rem}
.columns{display:grid;grid-template-columns:minmax(0,1fr);column-gap:2.5rem}
@media (min-width:60rem){.columns{grid-template-columns:minmax(0,1fr) minmax(0,1fr);
grid-template-rows:auto 1fr;grid-template-areas:"rooms connect" "people connect"}
#connect{grid-area:connect}#rooms{grid-area:rooms}#people{grid-area:people}}
header{padding:.5rem 0 1rem;border-bottom:1px solid var(--line)}
h1{font-size:clamp(1.75rem,6vw,2.4rem);line-height:1.15;margin:0;overflow-wrap:anywhere}
.server{margin:.35rem 0 0;color:var(--muted);overflow-wrap:anywhere}
.figures{display:flex;flex-wrap:wrap;gap:.5rem;margin:1rem 0 0;padding:0;list-style:none}
.figures li{background:var(--chip);color:var(--chipfg);border-radius:999px;
padding:.2rem .8rem;font-weight:600;font-size:.95rem}
h2{font-size:1.3rem;margin:2rem 0 .75rem}
h3{font-size:1.05rem;margin:0 0 .5rem}
p{margin:.5rem 0}
.muted{color:var(--muted)}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;
padding:1rem 1.1rem;margin:.75rem 0}
.label{display:block;font-size:.85rem;color:var(--muted);margin:.6rem 0 .2rem}
pre,code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace}
pre{margin:0;background:var(--code);border-radius:8px;padding:.55rem .75rem;font-size:.9rem;
line-height:1.45;white-space:pre-wrap;overflow-wrap:anywhere;user-select:all}
dl.where{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem;margin:0}
dl.where dt{color:var(--muted)}
dl.where dd{margin:0;font-weight:600;overflow-wrap:anywhere}
dd.fp{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-weight:400;
font-size:.85rem;user-select:all}
ul.rooms,ul.people{list-style:none;margin:0;padding:0}
ul.rooms li{background:var(--card);border:1px solid var(--line);border-radius:12px;
padding:.75rem 1rem;margin:.5rem 0}
.room{display:flex;align-items:baseline;justify-content:space-between;gap:.75rem}
.name{font-weight:700;color:var(--accent);overflow-wrap:anywhere}
.count{flex:none;font-size:.9rem;color:var(--muted)}
.topic{margin:.25rem 0 0;overflow-wrap:anywhere}
ul.people{display:flex;flex-wrap:wrap;gap:.5rem}
ul.people li{background:var(--card);border:1px solid var(--line);border-radius:999px;
padding:.25rem .85rem;overflow-wrap:anywhere}
ul.people li.away{color:var(--muted);border-style:dashed}
ul.people small{font-size:.8rem;margin-left:.35rem}
footer{margin-top:2.5rem;padding-top:1rem;border-top:1px solid var(--line);
color:var(--muted);font-size:.9rem}
a{color:var(--accent)}
@media (max-width:30rem){dl.where{grid-template-columns:1fr;gap:0}
dl.where dd{margin-bottom:.4rem}}
"""

_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CSP = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'self' data:;"
    " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# A speech balloon, so the tab has an icon and the browser asks for no /favicon.ico.
_ICON = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E"
    "%3Cpath fill='%230a7470' d='M2 2h12a1 1 0 0 1 1 1v8a1 1 0 0 1-1 1H7l-4 3v-3H2a1 1 0 0"
    " 1-1-1V3a1 1 0 0 1 1-1z'/%3E%3C/svg%3E"
)

# IRC formatting (colours with their numbers), C0 controls but tab, DEL, C1 controls and
# the bidi embeddings and overrides: what a topic may carry that means nothing on a page.
_NOT_TEXT = re.compile(
    r"\x03(?:\d{1,2}(?:,\d{1,2})?)?|\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?"
    r"|[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
)


def text(value: str) -> str:
    """A user's string as HTML text: formatting stripped, then escaped.

    >>> text("\\x02<b>hi</b>\\x02 \\x0304red\\x03 & 'q'")
    '&lt;b&gt;hi&lt;/b&gt; red &amp; &#x27;q&#x27;'
    """
    return html.escape(_NOT_TEXT.sub("", value), quote=True)


class Room(NamedTuple):
    name: str
    topic: str
    people: int


class Person(NamedTuple):
    nick: str
    away: bool


class Snapshot(NamedTuple):
    """What the page shows of the registry, copied under its lock."""

    rooms: list[Room]  # public rooms only
    people: list[Person]  # visible (not +i) registered users
    online: int  # registered users, the invisible too


def snapshot(chat: ChatServer) -> Snapshot:
    """Copy what the page needs; the lock is held only for the copy."""
    reg = chat.registry
    with reg.lock:
        rooms = [
            Room(c.name, c.topic, len(c.members))
            for c in reg.channels.values()
            if HIDDEN_ROOM_MODES.isdisjoint(c.modes)
        ]
        people = [
            Person(u.nick, u.away is not None) for u in reg.registered_users() if "i" not in u.modes
        ]
        online = reg.registered_count
    rooms.sort(key=lambda r: (-r.people, casefold(r.name)))
    people.sort(key=lambda p: casefold(p.nick))
    return Snapshot(rooms, people, online)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _block(label: str, *commands: str) -> str:
    lines = "\n".join(text(c) for c in commands)
    return f'<span class="label">{text(label)}</span><pre>{lines}</pre>'


def _connect(chat: ChatServer, host: str) -> str:
    """How to connect: the address, ports and fingerprint, then each client's commands
    (the same lines the server logs at start: server.connect_commands, tls_commands)."""
    # here, not at the top: server.py imports the web server, which imports this page
    from chatroom.server.server import connect_commands, tls_commands

    plain_port = chat.port
    here = host == "localhost" or is_loopback(host)  # the reader is on the server's machine
    plain_here_only = chat.config.plaintext != "on" and not here
    if plain_here_only:
        plain_port = None  # plain text is for the server's machine only: not for this reader
    tls_port = chat.tls_port
    fingerprint = chat.tls.fingerprint if chat.tls is not None and tls_port else ""
    where = [f"<dt>Address</dt><dd>{text(host)}</dd>"]
    if tls_port:
        where.append(f"<dt>TLS port</dt><dd>{tls_port}</dd>")
    if plain_port:
        where.append(f"<dt>Plain-text port</dt><dd>{plain_port}</dd>")
    elif chat.port and plain_here_only:
        where.append(f"<dt>Plain-text port</dt><dd>{chat.port} (on the server itself only)</dd>")
    if fingerprint:
        where.append(
            f'<dt>TLS fingerprint<br>(SHA-256)</dt><dd class="fp">{text(fingerprint)}</dd>'
        )
    parts = [f'<div class="card"><dl class="where">{"".join(where)}</dl></div>']

    client, irssi, weechat = [], [], []
    if tls_port:
        # tls_commands' lines are "label: command" (the last in parentheses), in this order;
        # tests/server/test_frontpage.py checks that each command is on the page
        lines = [line.strip() for line in tls_commands(host, tls_port, fingerprint)]
        tls_client = lines[0].partition(": ")[2]
        tls_irssi = lines[1].partition(": ")[2]
        tls_weechat = lines[2].partition(": ")[2]
        old_weechat = lines[3].strip("()").partition(": ")[2]
        client.append(_block("With TLS", tls_client))
        irssi.append(_block("With TLS, the certificate pinned", tls_irssi))
        weechat.append(_block("With TLS, the certificate pinned", tls_weechat, "/connect lan"))
        weechat.append(_block("Before WeeChat 4.0, in place of the -tls options", old_weechat))
    if plain_port:
        plain_client, plain_irssi = connect_commands(host, plain_port)
        label = "Without TLS" if tls_port else "Plain text"
        client.append(_block(label, plain_client))
        irssi.append(_block(label, plain_irssi))
        weechat.append(_block(label, f"/server add lan {host}/{plain_port}", "/connect lan"))
    if not client:
        parts.append('<p class="muted">This server has no IRC port open.</p>')
        return "".join(parts)
    if tls_port:
        parts.append(
            '<p class="muted">Prefer TLS. The first time, your client shows the'
            " certificate's fingerprint: it must be the one above.</p>"
        )
    for name, blocks in (("chatroom-client", client), ("irssi", irssi), ("WeeChat", weechat)):
        parts.append(f'<div class="card"><h3>{name}</h3>{"".join(blocks)}</div>')
    return "".join(parts)


def _rooms(snap: Snapshot) -> str:
    if not snap.rooms:
        return '<p class="muted">No public rooms yet: join one, and it is made.</p>'
    items = []
    for room in snap.rooms[:MAX_ROOMS]:
        topic = (
            f'<p class="topic"><bdi>{text(room.topic)}</bdi></p>'
            if room.topic
            else '<p class="topic muted">No topic</p>'
        )
        items.append(
            f'<li><div class="room"><bdi class="name">{text(room.name)}</bdi>'
            f'<span class="count">{_plural(room.people, "person", "people")}</span></div>'
            f"{topic}</li>"
        )
    more = len(snap.rooms) - MAX_ROOMS
    tail = (
        f'<p class="muted">and {_plural(more, "more room", "more rooms")}</p>' if more > 0 else ""
    )
    return f'<ul class="rooms">{"".join(items)}</ul>{tail}'


def _people(snap: Snapshot) -> str:
    if not snap.online:
        return '<p class="muted">Nobody is online right now.</p>'
    items = [
        f'<li class="away"><bdi>{text(p.nick)}</bdi><small>away</small></li>'
        if p.away
        else f"<li><bdi>{text(p.nick)}</bdi></li>"
        for p in snap.people[:MAX_PEOPLE]
    ]
    unlisted = snap.online - min(len(snap.people), MAX_PEOPLE)
    tail = (
        f'<p class="muted">and {_plural(unlisted, "other", "others")} not listed</p>'
        if unlisted > 0
        else ""
    )
    return f'<ul class="people">{"".join(items)}</ul>{tail}'


def render(chat: ChatServer, host: str) -> bytes:
    """The front page, as the browser that reached us at ``host`` should see it."""
    snap = snapshot(chat)
    cfg = chat.config
    network, server = text(cfg.network), text(cfg.server_name)
    refresh = cfg.frontpage_refresh
    reload_meta = f'<meta http-equiv="refresh" content="{int(refresh)}">\n' if refresh > 0 else ""
    every = (
        f"This page refreshes every {_plural(int(refresh), 'second', 'seconds')}. "
        if refresh > 0
        else ""
    )
    figures = (
        f"<li>{_plural(snap.online, 'person', 'people')} online</li>"
        f"<li>{_plural(len(snap.rooms), 'public room', 'public rooms')}</li>"
    )
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
{reload_meta}<title>{network} on {server}</title>
<link rel="icon" href="{_ICON}">
<style>{STYLE}</style>
</head>
<body>
<main>
<header>
<h1><bdi>{network}</bdi></h1>
<p class="server">IRC chat on <bdi>{server}</bdi></p>
<ul class="figures">{figures}</ul>
</header>
<div class="columns">
<section id="connect">
<h2>Join</h2>
{_connect(chat, host)}
</section>
<section id="rooms">
<h2>Rooms</h2>
{_rooms(snap)}
</section>
<section id="people">
<h2>Online now</h2>
{_people(snap)}
</section>
</div>
<footer>{every}{text(VERSION)} · <a href="/metrics">metrics</a></footer>
</main>
</body>
</html>
"""
    return page.encode("utf-8")
