"""Links to the server's file host in messages: which are attachments, and what we know of them.

Sans-IO. A link is an attachment when it points at the file host the server advertised
(``soju.im/FILEHOST``): the same scheme, host and port, and a path
``/files/<22-character id>/<name>``. Any other link stays a plain link: the client
asks nothing of addresses a peer merely typed.

:class:`Attachments` keeps what a HEAD request said of each link (name, size, type),
at most :data:`MAX_KNOWN` of them (the least recently shown go first), so each link is
asked about once. The log asks it while drawing; what is not known yet is listed in
:attr:`Attachments.wanted` for the app to fetch, and the log shows the name alone
until the answer comes.
"""

from __future__ import annotations

import re
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from chatroom.client.transfer import FileMeta, human_size

__all__ = [
    "IMAGE_TYPES",
    "MAX_KNOWN",
    "Attachment",
    "Attachments",
    "attachment_line",
    "attachment_of",
    "origin",
]

# Links whose metadata is kept (a few hundred bytes each).
MAX_KNOWN = 1024
# HEAD requests waiting at once; more links on screen wait for a later repaint.
MAX_WANTED = 64
# What the file host serves inline and the client may preview or open in a viewer.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# The file host's ids: 22 URL-safe base64 characters (16 random bytes).
_FILE_PATH = re.compile(r"/files/[A-Za-z0-9_-]{22}/([^/?#]+)")
_DEFAULT_PORTS = {"http": 80, "https": 443}
ATTACHMENT_MARK = "📎"
_SEPARATOR = " · "


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) address, the port filled in; None if it is not one.

    >>> origin("https://Chat.LAN/upload"), origin("http://[::1]:8067/x")
    (('https', 'chat.lan', 443), ('http', '::1', 8067))
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def _shown(text: str) -> str:
    """A name from a peer's link, safe on one line: controls and format characters
    (bidi overrides) become spaces."""
    return " ".join(
        "".join(" " if unicodedata.category(c) in ("Cc", "Cf") else c for c in text).split()
    )


@dataclass(frozen=True, slots=True)
class Attachment:
    """A link to a file on the file host, and the name its address gives."""

    url: str
    name: str


def attachment_of(url: str, filehost: str | None) -> Attachment | None:
    """The attachment ``url`` is, when it points into ``filehost`` (the upload URL the
    server advertised); else None.

    >>> host = "https://10.0.0.5:8067/upload"
    >>> attachment_of("https://10.0.0.5:8067/files/" + "a" * 22 + "/cat%20pic.png", host).name
    'cat pic.png'
    >>> attachment_of("https://10.0.0.5:9999/files/" + "a" * 22 + "/x.png", host) is None
    True
    """
    if not filehost:
        return None
    where = origin(url)
    if where is None or where != origin(filehost):
        return None
    match = _FILE_PATH.fullmatch(urlsplit(url).path)
    if match is None:
        return None
    name = _shown(unquote(match[1], errors="replace"))
    return Attachment(url, name) if name else None


def attachment_line(attachment: Attachment, meta: FileMeta | None) -> str:
    """What the log shows for an attachment: the name, and size and type once known.

    >>> a = Attachment("u", "cat.png")
    >>> attachment_line(a, None), attachment_line(a, FileMeta("cat.png", 1258291, "image/png"))
    ('📎 cat.png', '📎 cat.png · 1.2 MiB · image/png')
    """
    parts = [f"{ATTACHMENT_MARK} {attachment.name}"]
    if meta is not None:
        if meta.size is not None:
            parts.append(human_size(meta.size))
        if meta.content_type:
            parts.append(_shown(meta.content_type))
    return _SEPARATOR.join(parts)


class Attachments:
    """The file host of the server we are on, and what is known of links into it."""

    def __init__(self, limit: int = MAX_KNOWN, on_wanted: Callable[[], None] | None = None) -> None:
        self.filehost: str | None = None
        self.limit = limit
        # Called when a link becomes wanted (the app then asks the file host, off the
        # drawing path).
        self.on_wanted = on_wanted
        self._known: OrderedDict[str, FileMeta | None] = OrderedDict()  # by URL; None: no answer
        self.wanted: list[str] = []  # URLs to ask about (HEAD), oldest first
        self._asked: set[str] = set()  # URLs asked about, not yet answered

    def find(self, url: str) -> Attachment | None:
        """The attachment ``url`` is on this server's file host, if it is one."""
        return attachment_of(url, self.filehost)

    def meta(self, url: str) -> FileMeta | None:
        """What the file host said of ``url``; None until it answered (and then it is
        wanted: the app asks)."""
        if url in self._known:
            self._known.move_to_end(url)
            return self._known[url]
        if url not in self._asked and len(self.wanted) < MAX_WANTED:
            self._asked.add(url)
            self.wanted.append(url)
            if self.on_wanted is not None:
                self.on_wanted()
        return None

    def take_wanted(self) -> list[str]:
        """The URLs to ask about now (each once)."""
        wanted, self.wanted = self.wanted, []
        return wanted

    def answered(self, url: str, meta: FileMeta | None) -> None:
        """The file host answered for ``url`` (None: it could not say; the name alone
        is shown, and it is not asked again)."""
        self._asked.discard(url)
        self._known[url] = meta
        self._known.move_to_end(url)
        while len(self._known) > self.limit:
            self._known.popitem(last=False)

    def reset(self, filehost: str | None) -> None:
        """A new connection: its file host (None: none); what was known of another
        server's links goes."""
        if filehost != self.filehost:
            self._known.clear()
            self.wanted.clear()
            self._asked.clear()
        self.filehost = filehost
