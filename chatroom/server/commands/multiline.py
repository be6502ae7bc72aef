"""Multiline messages (IRCv3 draft/multiline): a client's batch collected, checked,
stored as one message, and relayed as a batch or as plain lines.

A client opens ``BATCH +ref draft/multiline <target>``, sends PRIVMSG (or NOTICE) lines
tagged ``batch=ref`` (``draft/multiline-concat`` joins a line to the one before it with
no line break) and closes with ``BATCH -ref``. While a batch is open the session hands
every line to :func:`absorb` (Session.handle_line; one attribute test per line
otherwise): lines of the batch are collected and checked against the limits as they
come, anything else ends the batch. On ``BATCH -ref`` the message is checked like a
PRIVMSG (the right to speak, the relayed line's length), stored as one history row
(its lines joined with ``\\n``) and relayed: as a ``draft/multiline`` batch, with one
msgid on its BATCH line, to clients of draft/multiline and batch; as its lines, blank
ones left out and the msgid on the first, to everyone else (irssi and WeeChat show
each line). The lines keep the composition the sender gave them (the spec's SHOULD);
a replay from history re-splits the stored text (:func:`replay_pieces`).

Every refusal is ``FAIL BATCH <code>`` (the spec's codes) and nothing is stored or
relayed. A batch that failed stays as a dead marker until its ``BATCH -ref``, so the
rest of its lines are dropped quietly rather than delivered one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chatroom.protocol import MAX_LINE_BYTES, Cap, Message, casefold, is_channel, serialize
from chatroom.protocol import Numeric as N
from chatroom.server import tags as T
from chatroom.server.commands import accounts  # a module: session.py imports this one
from chatroom.server.records import dm_key, new_msgid
from chatroom.server.registry import STATUS_PREFIXES, Sink, User, split_status, with_bot_tag
from chatroom.server.text import safe_param

if TYPE_CHECKING:
    from chatroom.server.session import Session

BATCH_TYPE = "draft/multiline"
CONCAT = "draft/multiline-concat"
# The commands a multiline batch may carry (Ergo takes NOTICE too; one kind per batch).
_LINE_COMMANDS = frozenset({"PRIVMSG", "NOTICE"})
# Keepalives pass through an open batch without ending it: a client may answer the
# server's PING while it sends a long batch.
_KEEPALIVES = frozenset({"PING", "PONG"})
# What a relayed line adds to its source, command, target and text (as in messages.py):
# ':' and ' ' around the source, ' ' and ' :' around the target, and the CR-LF.
_RELAY_FRAMING = 7
_INVALID = "MULTILINE_INVALID"
# Looked up for every line of a batch.
_MULTILINE, _BATCH = Cap.DRAFT_MULTILINE, Cap.BATCH


@dataclass(slots=True)
class OpenBatch:
    """A client's multiline batch between ``BATCH +ref`` and ``BATCH -ref``."""

    ref: str  # the client's reference tag
    target: str  # as the client wrote it on the BATCH line
    opened: float  # Session.clock() when it opened (multiline_timeout)
    label: str | None  # labeled-response: the BATCH line's label, answered at the end
    tags: dict[str, str] | None  # client-only tags of the BATCH line: the message's
    command: str = ""  # PRIVMSG or NOTICE, from its first line
    lines: list[tuple[str, bool]] = field(default_factory=list)  # (text, concat)
    size: int = 0  # bytes as max-bytes counts them: the texts and a \n between lines
    done: bool = False  # failed or delivered: what still comes for it is dropped quietly


def cap_value(s: Session) -> str:
    """The value of ``draft/multiline`` in CAP LS 302."""
    return f"max-bytes={s.cfg.multiline_max_bytes},max-lines={s.cfg.multiline_max_lines}"


def can_receive(user: User) -> bool:
    """Whether ``user`` takes a multiline message as a batch (it needs both caps)."""
    caps = user.caps
    return _MULTILINE in caps and _BATCH in caps


# --- the BATCH command (no batch open) -----------------------------------------------------


def batch(s: Session, msg: Message) -> None:
    """``BATCH +ref draft/multiline <target>`` opens a batch; a ``BATCH -ref`` that closes
    none is refused (an open batch's lines never get here: see :func:`absorb`)."""
    ref = msg.params[0]
    if ref[:1] != "+" or len(ref) < 2:
        return s.fail("BATCH", _INVALID, "No multiline batch is open", ref)
    if len(msg.params) < 3 or msg.params[1] != BATCH_TYPE:
        kind = msg.param(1) or "*"
        return s.fail("BATCH", _INVALID, f"Only {BATCH_TYPE} batches can be sent", kind)
    if _MULTILINE not in s.user.caps:
        return s.fail("BATCH", _INVALID, f"Negotiate {BATCH_TYPE} before sending one")
    target = msg.params[2]
    if "," in target:
        return s.fail("BATCH", _INVALID, "A multiline batch has one target", target)
    client_tags = (
        {k: v for k, v in msg.tags.items() if k[0] == "+"}
        if msg.tags and Cap.MESSAGE_TAGS in s.user.caps
        else None
    )
    s.open_batch = OpenBatch(ref[1:], target, s.clock(), None, client_tags or None)


def start_labeled(s: Session, msg: Message, label: str) -> None:
    """A labeled BATCH with no batch open: a batch that opens is answered when it
    closes (the echo, or ACK), under this label; a refusal is answered now."""
    s._capture = []
    try:
        s.handle(msg)
        opened = s.open_batch
        if opened is not None and not s._capture:
            opened.label = label
            return
        s._send_labeled(label)
    finally:
        s._capture = None


# --- lines while a batch is open -------------------------------------------------------


def absorb(s: Session, msg: Message) -> bool:
    """Take a line while a batch is open: True when it belonged to the batch (a line of
    it, its end, a nested BATCH), False when the session should handle it as usual (a
    keepalive, or another command, which ends the batch first)."""
    ob = s.open_batch
    assert ob is not None
    if not ob.done and s.clock() - ob.opened > s.cfg.multiline_timeout:
        _fail(s, ob, _INVALID, _timeout_text(s))
    command = msg.command
    if command in _LINE_COMMANDS and "batch" in msg.tags:
        if ob.done:
            return True  # the rest of a refused batch
        if msg.tags["batch"] != ob.ref:
            _fail(s, ob, _INVALID, "Line tagged with another batch than the open one")
        else:
            _add(s, ob, msg)
        return True
    if command == "BATCH":
        ref = msg.param(0)
        if ref == "-" + ob.ref:
            s.open_batch = None
            if not ob.done:
                caps = s.user.caps
                label = ob.label or (
                    msg.tags.get("label") if Cap.LABELED_RESPONSE in caps else None
                )
                _close(s, ob, label)
            return True
        if ob.done and ref[:1] == "+":
            s.open_batch = None  # a new batch after a refused one
            return False
        if not ob.done:
            _fail(s, ob, _INVALID, "Multiline batches cannot be nested or interleaved")
        return True
    if command in _KEEPALIVES:
        return False
    if not ob.done:
        _fail(s, ob, _INVALID, f"{command} sent inside a multiline batch; the batch is dropped")
    return False


def _add(s: Session, ob: OpenBatch, msg: Message) -> None:
    """One line of the batch, checked against the limits as it comes."""
    params = msg.params
    if len(params) < 2:
        return _fail(s, ob, _INVALID, "A line of a multiline batch needs a target and text")
    if ob.command and msg.command != ob.command:
        return _fail(s, ob, _INVALID, "A multiline batch is all PRIVMSG or all NOTICE")
    if casefold(params[0]) != casefold(ob.target):
        return _fail(
            s, ob, "MULTILINE_INVALID_TARGET", "Invalid multiline target", ob.target, params[0]
        )
    text = params[1]
    concat = CONCAT in msg.tags
    if concat and not text:
        return _fail(s, ob, _INVALID, "A blank line cannot carry draft/multiline-concat")
    ob.command = msg.command
    ob.size += len(text.encode()) + (1 if ob.lines and not concat else 0)
    ob.lines.append((text, concat))
    cfg = s.cfg
    if ob.size > cfg.multiline_max_bytes:
        limit = str(cfg.multiline_max_bytes)
        _fail(s, ob, "MULTILINE_MAX_BYTES", f"Multiline batch max-bytes ({limit}) exceeded", limit)
    elif len(ob.lines) > cfg.multiline_max_lines:
        limit = str(cfg.multiline_max_lines)
        _fail(s, ob, "MULTILINE_MAX_LINES", f"Multiline batch max-lines ({limit}) exceeded", limit)


def _timeout_text(s: Session) -> str:
    return f"Multiline batch not closed within {s.cfg.multiline_timeout:g} seconds; dropped"


def _fail(
    s: Session, ob: OpenBatch, code: str, text: str, *context: str, direct: bool = False
) -> None:
    """Refuse the batch: ``FAIL BATCH <code>`` (under its label), nothing is kept.
    ``direct``: from the timers thread, where another command's labeled answer may be
    under way on the connection's own thread."""
    ob.done = True
    ob.lines = []
    fail = Message("FAIL", ("BATCH", code, *map(safe_param, context), text), s.server)
    if s._capture is not None and not direct:
        s.send(fail)  # part of the labeled answer being gathered (_close)
        return
    line = serialize(fail)
    s.user.conn.send(T.add_tag(line, "label", ob.label) if ob.label else line)


def expire(s: Session, now: float) -> None:
    """Drop a batch left open longer than ``multiline_timeout`` (Session.tick, on the
    timers thread; the lock orders it with the connection's own close)."""
    ob = s.open_batch
    if ob is None or ob.done or now - ob.opened <= s.cfg.multiline_timeout:
        return
    with s.reg.lock:
        if ob.done:
            return
        _fail(s, ob, _INVALID, _timeout_text(s), direct=True)


# --- delivery --------------------------------------------------------------------------


def _close(s: Session, ob: OpenBatch, label: str | None) -> None:
    """``BATCH -ref``: check the whole, then store and relay it (labeled-response: the
    label goes on the echo's BATCH line when the echo is the whole answer)."""
    ob.label = label
    if not ob.lines:
        return _fail(s, ob, _INVALID, "Empty multiline batch")
    if not any(text for text, _ in ob.lines):
        return _fail(s, ob, _INVALID, "A multiline message of blank lines only")
    if label is None:
        _deliver(s, ob)
        return
    s._capture = []
    try:
        with s.reg.lock:  # so the answer keeps its place among what the others see
            echo = _deliver(s, ob)
            captured = s._capture
            if echo and len(captured) == len(echo) and captured[0] is echo[0]:
                s._capture = None
                first = T.add_tag(echo[0], "label", label)
                s.user.conn.send(b"".join((first, *echo[1:])))
            else:
                s._send_labeled(label)
    finally:
        s._capture = None


def _deliver(s: Session, ob: OpenBatch) -> list[bytes] | None:
    """Relay and store a checked batch; returns the echo lines sent to the sender."""
    target = ob.target
    notice = ob.command == "NOTICE"

    def error(numeric: str, *params: str) -> None:
        if not notice:  # RFC 2812 3.3.2: no automatic replies to a NOTICE
            s.reply(numeric, *params)

    user, reg = s.user, s.reg
    prefix, name = split_status(target)
    if is_channel(name):
        chan = reg.find_channel(name)
        if chan is None:
            error(N.ERR_NOSUCHCHANNEL, target, "No such channel")
            return None
        shown = prefix + chan.name
        if not _fits(s, ob, shown):
            return None
        status = "".join(STATUS_PREFIXES[p] for p in prefix)
        forms = _encode(s, ob, shown)
        with reg.lock:
            if ob.done:  # expired meanwhile (timers thread)
                return None
            if reg.channels.get(chan.folded) is not chan or not chan.visible_to(user):
                error(N.ERR_NOSUCHCHANNEL, shown, "No such channel")
                return None
            if not chan.can_speak(user):
                error(N.ERR_CANNOTSENDTOCHAN, chan.name, "Cannot send to channel")
                return None
            ob.done = True
            batched: list[Sink] = []
            plain: list[Sink] = []
            for member, modes in chan.members.items():
                if member is user or (status and not any(m in modes for m in status)):
                    continue
                (batched if can_receive(member) else plain).append(member.conn)
            # history is for everyone in the room: not a STATUSMSG
            history = None if prefix else (chan.folded, chan.name)
            record = s.record(forms.out, forms.time_ms, forms.msgid, ob.tags, history)
            s.multicast(forms.batch_variants, tuple(batched), None, record)
            s.multicast(forms.plain_variants, tuple(plain))
            reg.stats.messages += 1  # one message, however many lines (lock held)
            return _echo(s, forms)
    if reg.accounts is not None and accounts.is_service(target):
        _fail(s, ob, _INVALID, "Services take one line at a time", target)
        return None
    with reg.lock:
        if ob.done:
            return None
        peer = reg.find_user(target)
        if peer is None:
            error(N.ERR_NOSUCHNICK, target, "No such nick/channel")
            return None
        if not _fits(s, ob, peer.nick):
            return None
        ob.done = True
        forms = _encode(s, ob, peer.nick)
        history = (dm_key(user.identity, peer.identity), peer.nick)
        record = s.record(forms.out, forms.time_ms, forms.msgid, ob.tags, history)
        variants = forms.batch_variants if can_receive(peer) else forms.plain_variants
        # to oneself: delivered like anyone's message, and echoed besides
        s.multicast(variants, (peer.conn,), None, record)
        reg.stats.messages += 1
        echo = _echo(s, forms)
        if peer.away is not None:
            error(N.RPL_AWAY, peer.nick, peer.away)
        return echo


def _fits(s: Session, ob: OpenBatch, shown: str) -> bool:
    """Every line, relayed with our source in front, fits in 512 bytes (else FAIL)."""
    room = MAX_LINE_BYTES - _RELAY_FRAMING - len(s.user.source) - len(ob.command)
    room -= len(shown.encode())
    if all(len(text.encode()) <= room for text, _ in ob.lines):
        return True
    _fail(s, ob, _INVALID, f"A line is too long to relay (at most {max(room, 0)} bytes here)")
    return False


def _echo(s: Session, forms: _Forms) -> list[bytes] | None:
    """echo-message: the sender gets the message as it would receive it."""
    if Cap.ECHO_MESSAGE not in s.user.caps:
        return None
    lines = (forms.batch if can_receive(s.user) else forms.plain)[s.variant]
    for line in lines:
        s.out(line)
    return lines


@dataclass(slots=True)
class _Forms:
    """A multiline message encoded for every kind of recipient."""

    out: Message  # the whole message (its text joined): the history row's
    time_ms: int
    msgid: str
    batch: list[list[bytes]]  # per tags variant: the lines of the draft/multiline batch
    plain: list[list[bytes]]  # per tags variant: the lines for clients without it
    batch_variants: tuple[bytes, ...]  # the same, each variant's lines joined
    plain_variants: tuple[bytes, ...]


def _encode(s: Session, ob: OpenBatch, shown: str) -> _Forms:
    """Both forms of the message, per tags variant (tags.py): a batch whose BATCH line
    carries the msgid, time and tags (the lines only ``batch`` and the concat tag), and
    the plain lines, blank ones left out, each with the time and tags and only the
    first with the msgid (the spec's fallback)."""
    user = s.user
    source, command = user.source, ob.command
    time_ms = T.now_ms()
    time_tag, msgid = T.server_time(time_ms), new_msgid()
    tags = with_bot_tag(user, ob.tags)
    account = user.account
    ref = T.new_batch_id()
    start = T.encode_variants(
        Message("BATCH", ("+" + ref, BATCH_TYPE, shown), source), time_tag, msgid, tags, account
    )
    inner = [
        serialize(
            Message(
                command, (shown, text), source, {"batch": ref, CONCAT: ""} if c else {"batch": ref}
            )
        )
        for text, c in ob.lines
    ]
    end = serialize(Message("BATCH", ("-" + ref,), s.server))
    batch = [[start[v], *inner, end] for v in range(len(start))]
    encoded = []
    for text, _ in ob.lines:
        if text:  # the spec: no blank lines for clients without multiline
            first = None if encoded else msgid
            line = Message(command, (shown, text), source)
            encoded.append(T.encode_variants(line, time_tag, first, tags, account))
    plain = [[e[v] for e in encoded] for v in range(len(start))]
    return _Forms(
        Message(command, (shown, joined(ob.lines)), source),
        time_ms,
        msgid,
        batch,
        plain,
        tuple(b"".join(lines) for lines in batch),
        tuple(b"".join(lines) for lines in plain),
    )


def joined(lines: Sequence[tuple[str, bool]]) -> str:
    """The message a batch's lines make (the spec's combined value).

    >>> joined([("hello", False), ("how is ", False), ("everyone?", True)])
    'hello\\nhow is everyone?'
    """
    out: list[str] = []
    for i, (text, concat) in enumerate(lines):
        if i and not concat:
            out.append("\n")
        out.append(text)
    return "".join(out)


# --- history replay ------------------------------------------------------------------------


def replay_pieces(
    sender: str, command: str, display: str, text: str, reserve: int = 0
) -> list[tuple[str, bool]] | None:
    """A stored message as lines to send (text, concat), or None when it is one line
    that fits as it is. Each line of the text is cut, between words where it can, to
    fit in 512 bytes after ``:sender COMMAND display :`` and ``reserve`` bytes more.

    >>> replay_pieces("a!b@c", "PRIVMSG", "#r", "one\\ntwo")
    [('one', False), ('two', False)]
    >>> replay_pieces("a!b@c", "PRIVMSG", "#r", "one line") is None
    True
    """
    budget = MAX_LINE_BYTES - len(f":{sender} {command} {display} :\r\n".encode()) - reserve
    if "\n" not in text and len(text.encode()) <= budget:
        return None
    pieces: list[tuple[str, bool]] = []
    for line in text.split("\n"):
        chunks = split_utf8(line, budget)
        pieces.append((chunks[0], False))
        pieces.extend((chunk, True) for chunk in chunks[1:])
    return pieces


def split_utf8(line: str, budget: int) -> list[str]:
    """``line`` in pieces of at most ``budget`` bytes, never inside a character, and
    after a space where one is near the end (the space stays at the end of its piece,
    as the spec recommends for draft/multiline-concat).

    >>> split_utf8("aaa bbb ccc", 8)
    ['aaa bbb ', 'ccc']
    >>> split_utf8("ééé", 4)
    ['éé', 'é']
    """
    data = line.encode()
    budget = max(budget, 4)
    if len(data) <= budget:
        return [line]
    pieces = []
    while len(data) > budget:
        cut = budget
        while data[cut] & 0xC0 == 0x80:  # a continuation byte: back to the character
            cut -= 1
        space = data.rfind(b" ", 0, cut)
        if space >= budget // 2:
            cut = space + 1
        pieces.append(data[:cut].decode())
        data = data[cut:]
    if data:
        pieces.append(data.decode())
    return pieces
