"""Text of replies: cut to a byte budget, peers' words echoed safely, labels read raw.

Sans-IO helpers shared by the session and the command modules.
"""

from __future__ import annotations

from chatroom.protocol import unescape_tag_value

# IRCv3 labeled-response: a label is at most 64 bytes (longer ones are not echoed).
MAX_LABEL_BYTES = 64


def raw_label(raw: bytes) -> str | None:
    """The ``label`` tag of a line that could not be parsed, if it can be read safely.

    >>> raw_label(b"@label=ab;x=y NONEXISTENT_COMMAND"), raw_label(b"PING x")
    ('ab', None)
    """
    if not raw.startswith(b"@"):
        return None
    section = raw[1:].partition(b" ")[0]
    for item in section.split(b";"):
        key, _, value = item.partition(b"=")
        if key == b"label":
            label = unescape_tag_value(value.decode("utf-8", "replace"))
            ok = label and label.isprintable() and len(label.encode()) <= MAX_LABEL_BYTES
            return label if ok else None
    return None


def truncate_utf8(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` bytes of UTF-8 without splitting a character."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", "ignore")


def safe_param(param: str) -> str:
    """A peer's argument echoed in a middle position of a reply: ``*`` when IRC could
    not carry it there (empty, a space, a leading colon), so an error reply always
    serialises (Ergo's SafeErrorParam)."""
    return param if param and param[0] != ":" and " " not in param else "*"
