"""IRCv3 tags on outgoing lines: server-time, msgid, per-client encodings, batches, labels.

A relayed line is encoded once per *variant* (what the recipient negotiated):
``PLAIN`` (no tags), ``TIME_ONLY`` (server-time without message-tags) and
``ALL_TAGS`` (message-tags), each again with the sender's ``account`` tag for clients
of account-tag (``+ WITH_ACCOUNT``): six in all, the last three the same bytes as the
first three when the sender is not logged in. Each client's Sink carries its variant,
so the writer picks the right bytes without looking at capabilities. Sans-IO, like
protocol.py.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from chatroom.protocol import Cap, Message, escape_tag_value, serialize
from chatroom.server.records import new_msgid

PLAIN, TIME_ONLY, ALL_TAGS = 0, 1, 2
WITH_ACCOUNT = 3  # added to a variant for clients of account-tag
Variants = tuple[bytes, bytes, bytes, bytes, bytes, bytes]

_batch_ids = itertools.count(1)
# (second, "YYYY-MM-DDThh:mm:ss") of the last server_time(): one strftime a second, not
# one a message. One tuple, read and replaced whole, because every connection's thread
# calls server_time() outside any lock: two globals let a thread pair its milliseconds
# with the second another thread had just written.
_second_prefix: tuple[int, str] = (-1, "")


def variant_for(caps: set[str]) -> int:
    """Which encoding a client with ``caps`` receives."""
    account = WITH_ACCOUNT if Cap.ACCOUNT_TAG in caps else 0
    if Cap.MESSAGE_TAGS in caps:
        return ALL_TAGS + account
    if Cap.SERVER_TIME in caps:
        return TIME_ONLY + account
    return PLAIN + account


def has_time(variant: int) -> bool:
    """Whether a client of ``variant`` takes server-time tags."""
    return variant % WITH_ACCOUNT != PLAIN


def has_all_tags(variant: int) -> bool:
    """Whether a client of ``variant`` takes msgid and client-only tags."""
    return variant % WITH_ACCOUNT == ALL_TAGS


def server_time(epoch_ms: int) -> str:
    """IRCv3 server-time format: ``2026-11-26T16:07:36.123Z``.

    >>> server_time(0)
    '1970-01-01T00:00:00.000Z'
    """
    global _second_prefix
    seconds, ms = divmod(epoch_ms, 1000)
    cached = _second_prefix
    if cached[0] != seconds:
        cached = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
        _second_prefix = cached
    return f"{cached[1]}.{ms:03d}Z"


def parse_server_time(text: str) -> int | None:
    """``YYYY-MM-DDThh:mm:ss.sssZ`` to ms since the epoch; None when malformed.

    >>> parse_server_time("1970-01-01T00:00:01.500Z")
    1500
    >>> parse_server_time("yesterday") is None
    True
    """
    if not text.endswith("Z"):
        return None
    try:
        dt = datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(dt.timestamp() * 1000)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def encode_variants(
    msg: Message,
    time_tag: str,
    msgid: str | None,
    client_tags: Mapping[str, str] | None = None,
    account: str | None = None,
) -> Variants:
    """The six encodings of a relayed line; the untagged body is serialised once."""
    return encode_body(serialize(msg), time_tag, msgid, client_tags, account)


def encode_body(
    body: bytes,
    time_tag: str,
    msgid: str | None,
    client_tags: Mapping[str, str] | None = None,
    account: str | None = None,
) -> Variants:
    """The six encodings of an untagged line ``body`` (CR-LF terminated), for a caller
    that built it itself (the relay of a chat line: commands/messages.py)."""
    head = b"@time=" + time_tag.encode()
    timed = head + b" " + body
    if msgid is None and not client_tags:
        full = timed
    else:
        extra = f";msgid={msgid}" if msgid else ""  # our msgids need no escaping
        if client_tags:
            extra += "".join(
                f";{k}={escape_tag_value(v)}" if v else f";{k}" for k, v in client_tags.items()
            )
        full = head + extra.encode() + b" " + body
    if account is None:
        return (body, timed, full, body, timed, full)
    tag = b"@account=" + escape_tag_value(account).encode()
    return (
        body,
        timed,
        full,
        tag + b" " + body,
        tag + b";" + timed[1:],
        tag + b";" + full[1:],
    )


def stamp(
    msg: Message, client_tags: dict[str, str] | None = None, account: str | None = None
) -> tuple[int, str, Variants]:
    """Server time and msgid for a relayed line, and its encodings (no lock needed);
    ``account``: the sender's, for account-tag.

    Called by every thread outside the registry lock: see server_time."""
    return stamp_body(serialize(msg), client_tags, account)


def stamp_body(
    body: bytes, client_tags: Mapping[str, str] | None = None, account: str | None = None
) -> tuple[int, str, Variants]:
    """:func:`stamp` for a line already serialised (``body``, untagged, CR-LF ended)."""
    time_ms = time.time_ns() // 1_000_000
    msgid = new_msgid()
    return time_ms, msgid, encode_body(body, server_time(time_ms), msgid, client_tags, account)


def add_tag(line: bytes, key: str, value: str) -> bytes:
    """Put one more tag on an encoded line (labels, batch membership).

    >>> add_tag(b":s PING x\\r\\n", "label", "a1")
    b'@label=a1 :s PING x\\r\\n'
    >>> add_tag(b"@time=t :s PING x\\r\\n", "batch", "7")
    b'@batch=7;time=t :s PING x\\r\\n'
    """
    tag = f"{key}={escape_tag_value(value)}".encode()
    if line.startswith(b"@"):
        return b"@" + tag + b";" + line[1:]
    return b"@" + tag + b" " + line


def has_tag(line: bytes, key: str) -> bool:
    """Whether an encoded line already carries tag ``key``.

    >>> has_tag(b"@time=t;batch=3 :s X", "batch"), has_tag(b":s X", "batch")
    (True, False)
    """
    if not line.startswith(b"@"):
        return False
    section = line[1 : line.find(b" ")]
    wanted = key.encode()
    return any(item.partition(b"=")[0] == wanted for item in section.split(b";"))


def new_batch_id() -> str:
    """A reference tag for BATCH, unique within this server process."""
    return f"b{next(_batch_ids)}"
