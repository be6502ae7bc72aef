"""Multiline messages (IRCv3 draft/multiline) on the client: limits, outgoing batches,
and an incoming batch folded into one message.

A message of several lines goes as ``BATCH +ref draft/multiline <target>``, its lines
tagged ``batch=ref`` (a line too long for one PRIVMSG is cut, the later pieces tagged
``draft/multiline-concat``), then ``BATCH -ref``. An incoming batch becomes one
PRIVMSG whose text has a ``\\n`` between lines, so the log shows it as one block.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from chatroom.protocol import MAX_LINE_BYTES, Message

__all__ = [
    "BATCH_TYPE",
    "CAP",
    "CONCAT",
    "Limits",
    "batch_lines",
    "combine",
    "limits_of",
]

CAP = "draft/multiline"
BATCH_TYPE = "draft/multiline"
CONCAT = "draft/multiline-concat"
# Bytes kept free in each line for the ":nick!user@host " prefix the server adds when
# relaying it (as commands.SOURCE_RESERVE).
SOURCE_RESERVE = 110


@dataclass(frozen=True, slots=True)
class Limits:
    """The server's ``max-bytes`` and ``max-lines`` (0: not given, no limit)."""

    max_bytes: int
    max_lines: int = 0


def limits_of(value: str) -> Limits:
    """The limits in the value of ``draft/multiline`` in CAP LS.

    >>> limits_of("max-bytes=4096,max-lines=40")
    Limits(max_bytes=4096, max_lines=40)
    >>> limits_of("max-bytes=x")
    Limits(max_bytes=0, max_lines=0)
    """
    found: dict[str, int] = {}
    for token in value.split(","):
        key, _, number = token.partition("=")
        if number.isascii() and number.isdigit():
            found[key] = int(number)
    return Limits(found.get("max-bytes", 0), found.get("max-lines", 0))


def _split(text: str, budget: int) -> list[str]:
    """``text`` in pieces of at most ``budget`` bytes that join back to it exactly
    (a space stays at the end of its piece, as the spec recommends).

    >>> _split("aaa bbb ccc", 8)
    ['aaa bbb ', 'ccc']
    """
    pieces: list[str] = []
    while len(text.encode()) > budget:
        cut = len(text.encode()[:budget].decode("utf-8", "ignore"))
        space = text.rfind(" ", 0, cut)
        if space > 0:
            cut = space + 1
        pieces.append(text[:cut])
        text = text[cut:]
    pieces.append(text)
    return pieces


def batch_lines(
    target: str, lines: list[str], limits: Limits, tags: Mapping[str, str] | None = None
) -> list[Message]:
    """The lines of one multiline message to ``target``; ValueError (saying which
    limit) when it is over the server's limits. ``tags``: client tags for the BATCH
    line (a reply's)."""
    size = sum(len(line.encode()) for line in lines) + len(lines) - 1
    if limits.max_bytes and size > limits.max_bytes:
        raise ValueError(
            f"Message too long ({size} bytes); the server takes at most {limits.max_bytes}"
        )
    budget = MAX_LINE_BYTES - len(f"PRIVMSG {target} :\r\n".encode()) - SOURCE_RESERVE
    pieces = [(piece, i > 0) for line in lines for i, piece in enumerate(_split(line, budget))]
    if limits.max_lines and len(pieces) > limits.max_lines:
        raise ValueError(
            f"Message too long ({len(pieces)} lines); the server takes at most {limits.max_lines}"
        )
    ref = secrets.token_hex(6)
    out = [Message.of("BATCH", "+" + ref, BATCH_TYPE, target, tags=tags)]
    for text, concat in pieces:
        line_tags = {"batch": ref, CONCAT: ""} if concat else {"batch": ref}
        out.append(Message.of("PRIVMSG", target, text, tags=line_tags))
    out.append(Message.of("BATCH", "-" + ref))
    return out


def combine(source: str | None, tags: Mapping[str, str], lines: list[Message]) -> Message | None:
    """A received multiline batch (the BATCH line's source and tags, then its lines) as
    one message; None when it holds no PRIVMSG or NOTICE."""
    chat = [m for m in lines if m.command in ("PRIVMSG", "NOTICE") and len(m.params) >= 2]
    if not chat:
        return None
    text = ""
    for i, m in enumerate(chat):
        if i and CONCAT not in m.tags:
            text += "\n"
        text += m.params[1]
    kept = {k: v for k, v in tags.items() if k != "batch"}
    first = chat[0]
    return Message(first.command, (first.params[0], text), source or first.source, kept)
