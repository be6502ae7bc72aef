"""Table-driven tests for the sans-IO IRC codec: bytes in, Messages out, and back."""

from __future__ import annotations

import doctest

import pytest

import chatroom.protocol
from chatroom.protocol import (
    MAX_LINE_BYTES,
    MAX_TAGS_BYTES,
    RECVQ_BYTES,
    ForbiddenCharacter,
    InvalidUTF8,
    LineBuffer,
    LineTooLong,
    MalformedMessage,
    Message,
    Numeric,
    PeerProtocolError,
    ProtocolError,
    RecvQExceeded,
    UnserializableMessage,
    casefold,
    escape_tag_value,
    is_channel,
    is_valid_channel,
    is_valid_nick,
    parse,
    serialize,
    sniff_foreign_protocol,
    split_source,
    unescape_tag_value,
)

M = Message.of


def cases(table: list[tuple]) -> list:
    """Turn ``(id, *values)`` rows into pytest params so each row is named in the output."""
    return [pytest.param(*row[1:], id=row[0]) for row in table]


# --- canonical lines: bytes -> Message -> the same bytes -------------------------------------

CANONICAL = [
    ("ping", b"PING irc.lan\r\n", M("PING", "irc.lan")),
    ("no-params", b"QUIT\r\n", M("QUIT")),
    ("privmsg-one-word", b"PRIVMSG #a :hi\r\n", M("PRIVMSG", "#a", "hi")),
    (
        "source-and-trailing",
        b":alice!al@10.0.0.5 PRIVMSG #lan :hello there\r\n",
        M("PRIVMSG", "#lan", "hello there", source="alice!al@10.0.0.5"),
    ),
    ("empty-trailing", b"PRIVMSG #a :\r\n", M("PRIVMSG", "#a", "")),
    ("colon-inside-trailing", b"PRIVMSG #a :a :b\r\n", M("PRIVMSG", "#a", "a :b")),
    ("trailing-starts-with-colon", b"PRIVMSG #a ::-)\r\n", M("PRIVMSG", "#a", ":-)")),
    ("trailing-spaces-kept", b"PRIVMSG #a :  x  \r\n", M("PRIVMSG", "#a", "  x  ")),
    ("colon-inside-middle", b"MODE #a +k k:ey\r\n", M("MODE", "#a", "+k", "k:ey")),
    ("mode-mask", b"MODE #a +b x!*@*\r\n", M("MODE", "#a", "+b", "x!*@*")),
    ("join", b":a!b@c JOIN #a\r\n", M("JOIN", "#a", source="a!b@c")),
    ("part-no-reason", b"PART #a\r\n", M("PART", "#a")),
    ("part-reason", b"PART #a :gone\r\n", M("PART", "#a", "gone")),
    (
        "kick-reason",
        b":op!o@h KICK #a bob :bye now\r\n",
        M("KICK", "#a", "bob", "bye now", source="op!o@h"),
    ),
    ("user", b"USER alice 0 * :Alice Liddell\r\n", M("USER", "alice", "0", "*", "Alice Liddell")),
    ("cap-ls", b"CAP LS 302\r\n", M("CAP", "LS", "302")),
    (
        "fifteen-params",
        b"CMD a b c d e f g h i j k l m n :o p\r\n",
        M("CMD", *"abcdefghijklmn", "o p"),
    ),
    (
        "unicode-text",
        "PRIVMSG #café :héllo wörld 🎉\r\n".encode(),
        M("PRIVMSG", "#café", "héllo wörld 🎉"),
    ),
    (
        "numeric-welcome",
        b":irc.lan 001 alice :Welcome to the LAN\r\n",
        M("001", "alice", "Welcome to the LAN", source="irc.lan"),
    ),
    (
        "numeric-single-param",
        b":irc.lan 001 alice\r\n",
        M("001", "alice", source="irc.lan"),
    ),
    (
        "numeric-last-param-forced-colon",
        b":irc.lan 324 alice #a :+nt\r\n",
        M("324", "alice", "#a", "+nt", source="irc.lan"),
    ),
    (
        "numeric-isupport",
        b":irc.lan 005 alice CASEMAPPING=rfc1459 UTF8ONLY :are supported by this server\r\n",
        M(
            "005",
            "alice",
            "CASEMAPPING=rfc1459",
            "UTF8ONLY",
            "are supported by this server",
            source="irc.lan",
        ),
    ),
    (
        # IRCv3 message-tags spec, "A message sent by the server with 3 tags".
        "spec-three-tags",
        b"@aaa=bbb;ccc;example.com/ddd=eee :nick!ident@host.com PRIVMSG me :Hello\r\n",
        M(
            "PRIVMSG",
            "me",
            "Hello",
            source="nick!ident@host.com",
            tags={"aaa": "bbb", "ccc": "", "example.com/ddd": "eee"},
        ),
    ),
    (
        # IRCv3 message-tags spec: raw and escaped characters in a client-only tag.
        "spec-escaped-client-tag",
        b"@+example=raw+:=,escaped\\:\\s\\\\ :irc.example.com NOTICE #channel :Message\r\n",
        M(
            "NOTICE",
            "#channel",
            "Message",
            source="irc.example.com",
            tags={"+example": "raw+:=,escaped; \\"},
        ),
    ),
    (
        "spec-tagmsg",
        b"@+example-client-tag=example-value TAGMSG #channel\r\n",
        M("TAGMSG", "#channel", tags={"+example-client-tag": "example-value"}),
    ),
    (
        "server-time-msgid",
        b"@msgid=abc;time=2024-01-01T00:00:00.000Z :a!b@c PRIVMSG #a :hi\r\n",
        M(
            "PRIVMSG",
            "#a",
            "hi",
            source="a!b@c",
            tags={"msgid": "abc", "time": "2024-01-01T00:00:00.000Z"},
        ),
    ),
]


@pytest.mark.parametrize(("raw", "expected"), cases(CANONICAL))
def test_canonical_line_parses(raw: bytes, expected: Message) -> None:
    assert parse(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), cases(CANONICAL))
def test_canonical_line_serializes_back_to_the_same_bytes(raw: bytes, expected: Message) -> None:
    assert serialize(expected) == raw
    assert bytes(expected) == raw


# --- round trips of messages that are built, not read ----------------------------------------

ROUND_TRIPS = [
    ("bare-command", M("AWAY")),
    ("lowercase-hex-like-param", M("PONG", "irc.lan", "deadbeef")),
    ("source-only-server", M("NOTICE", "*", "Looking up your hostname", source="irc.lan")),
    ("ipv6-source", M("PRIVMSG", "#a", "x", source="alice!~al@2001:db8::1")),
    ("trailing-leading-spaces", M("PRIVMSG", "#a", "   indented")),
    ("trailing-only-spaces", M("PRIVMSG", "#a", "   ")),
    ("trailing-is-colon", M("PRIVMSG", "#a", ":")),
    ("trailing-double-colon", M("PRIVMSG", "#a", "::")),
    ("trailing-empty-non-text-command", M("CMD", "a", "")),
    ("last-param-starts-with-colon", M("WHO", ":weird")),
    ("colon-in-middle-and-last", M("CMD", "a:b", "c:d")),
    ("tabs-in-text", M("PRIVMSG", "#a", "col1\tcol2")),
    ("irc-formatting-codes", M("PRIVMSG", "#a", "\x02bold\x02 \x0304red\x03")),
    ("emoji-and-cjk", M("PRIVMSG", "#日本", "こんにちは 👋🏽")),
    ("many-params", M("CMD", *(f"p{i}" for i in range(14)), "last one")),
    ("tag-empty-value", M("PING", "x", tags={"flag": ""})),
    ("tag-vendor", M("PING", "x", tags={"example.com/k": "v"})),
    ("tag-client-only", M("PRIVMSG", "#a", "x", tags={"+draft/reply": "123"})),
    (
        "tag-needs-every-escape",
        M("PRIVMSG", "#a", "x", tags={"+x": "a;b c\\d\re\nf"}),
    ),
    ("tag-unicode", M("PRIVMSG", "#a", "x", tags={"+react": "👍 ok"})),
    ("tag-backslash-then-letter", M("PING", "x", tags={"k": "\\s is not a space"})),
    (
        "everything",
        M(
            "PRIVMSG",
            "#lan",
            "a :b ::c",
            source="n!u@h",
            tags={"label": "1", "time": "2024-05-05T10:00:00Z", "+x": ";"},
        ),
    ),
    ("numeric-enum-command", Message(Numeric.ERR_NICKNAMEINUSE, ("*", "bob", "in use"), "irc.lan")),
]


@pytest.mark.parametrize("msg", cases(ROUND_TRIPS))
def test_round_trip(msg: Message) -> None:
    wire = serialize(msg)
    assert wire.endswith(b"\r\n")
    assert wire.count(b"\n") == 1
    assert b"\r" not in wire[:-2]
    assert parse(wire) == msg


# --- parsing lines we did not write ourselves -------------------------------------------------

PARSE = [
    ("lowercase-command", b"privmsg #a :hi\r\n", M("PRIVMSG", "#a", "hi")),
    ("mixed-case-command", b"PrivMsg #a :hi\r\n", M("PRIVMSG", "#a", "hi")),
    ("last-param-without-colon", b"PRIVMSG #a hi\r\n", M("PRIVMSG", "#a", "hi")),
    ("bare-lf", b"PRIVMSG #a :hi\n", M("PRIVMSG", "#a", "hi")),
    ("no-terminator", b"PRIVMSG #a :hi", M("PRIVMSG", "#a", "hi")),
    ("str-input", "PRIVMSG #a :hi\r\n", M("PRIVMSG", "#a", "hi")),
    ("str-input-bare-lf", "NICK bob\n", M("NICK", "bob")),
    (
        "many-spaces-between-params",
        b"PRIVMSG   #a    :hi  there \r\n",
        M("PRIVMSG", "#a", "hi  there "),
    ),
    ("many-spaces-after-source", b":src   JOIN   #a\r\n", M("JOIN", "#a", source="src")),
    ("many-spaces-after-tags", b"@a=b   PING x\r\n", M("PING", "x", tags={"a": "b"})),
    ("trailing-spaces-no-trailing", b":src AWAY \r\n", M("AWAY", source="src")),
    ("join-trailing-chan", b":src JOIN :#chan\r\n", M("JOIN", "#chan", source="src")),
    (
        "parser-tests-mode-trailing-spaces",
        b":services.esper.net MODE #foo-bar +o foobar  \r\n",
        M("MODE", "#foo-bar", "+o", "foobar", source="services.esper.net"),
    ),
    (
        "parser-tests-unreal-double-space",
        b":gravel.mozilla.org 432  #momo :Erroneous Nickname: Illegal characters\r\n",
        M("432", "#momo", "Erroneous Nickname: Illegal characters", source="gravel.mozilla.org"),
    ),
    (
        "parser-tests-mode-oo",
        b":SomeOp MODE #channel +oo SomeUser :AnotherUser\r\n",
        M("MODE", "#channel", "+oo", "SomeUser", "AnotherUser", source="SomeOp"),
    ),
    ("tab-is-not-space", b":cool\tguy foo bar baz\r\n", M("FOO", "bar", "baz", source="cool\tguy")),
    (
        "numeric-command",
        b":irc.lan 433 * bob :Nickname is already in use\r\n",
        M("433", "*", "bob", "Nickname is already in use", source="irc.lan"),
    ),
    (
        "parser-tests-tags",
        b"@a=b;c=32;k;rt=ql7 foo\r\n",
        M("FOO", tags={"a": "b", "c": "32", "k": "", "rt": "ql7"}),
    ),
    (
        "parser-tests-escaped-tags",
        b"@a=b\\\\and\\nk;c=72\\s45;d=gh\\:764 foo\r\n",
        M("FOO", tags={"a": "b\\and\nk", "c": "72 45", "d": "gh;764"}),
    ),
    (
        "parser-tests-tags-and-source",
        b"@c;h=;a=b :quux ab cd\r\n",
        M("AB", "cd", source="quux", tags={"c": "", "h": "", "a": "b"}),
    ),
    (
        # IRCv3: "Clients receiving messages with more than one occurrence of a tag key
        # SHOULD discard all but the final occurrence."
        "duplicate-tag-last-wins",
        b"@tag1=1;tag2=3;tag3=4;tag1=5;vendor/tag2=8 COMMAND\r\n",
        M("COMMAND", tags={"tag1": "5", "tag2": "3", "tag3": "4", "vendor/tag2": "8"}),
    ),
    (
        "unicode-tag-value",
        "@+react=👍 PRIVMSG #a :x\r\n".encode(),
        M("PRIVMSG", "#a", "x", tags={"+react": "👍"}),
    ),
]


@pytest.mark.parametrize(("raw", "expected"), cases(PARSE))
def test_parse(raw: bytes | str, expected: Message) -> None:
    assert parse(raw) == expected


def test_parsed_command_is_comparable_with_numeric_enum() -> None:
    msg = parse(b":irc.lan 433 * bob :Nickname is already in use\r\n")
    assert msg.command == Numeric.ERR_NICKNAMEINUSE
    assert msg.nick == "irc.lan"


MALFORMED = [
    ("empty", b"\r\n"),
    ("only-spaces", b"    \r\n"),
    ("only-source", b":irc.lan\r\n"),
    ("empty-source", b": PRIVMSG #a :x\r\n"),
    ("only-tags", b"@a=b\r\n"),
    ("only-tags-and-source", b"@a=b :src\r\n"),
    ("empty-tag-key", b"@=x PING y\r\n"),
    ("tag-key-bad-char", b"@a$b=c PING y\r\n"),
    ("tag-key-trailing-slash", b"@vendor/=c PING y\r\n"),
    ("command-with-punctuation", b"PRIV-MSG #a :x\r\n"),
    ("command-non-ascii", "PRIVMSGÉ #a :x\r\n".encode()),
    ("command-is-trailing", b":src :trailing\r\n"),
]


@pytest.mark.parametrize("raw", cases(MALFORMED))
def test_malformed_lines_raise(raw: bytes) -> None:
    with pytest.raises(MalformedMessage) as info:
        parse(raw)
    assert isinstance(info.value, PeerProtocolError)
    assert info.value.fatal is False


# --- length limits: 512 without tags, 8191 for the tag section --------------------------------


def privmsg_with_body_bytes(n: int, terminator: bytes = b"\r\n", tags: bytes = b"") -> bytes:
    """A PRIVMSG whose part after the tags is exactly ``n`` bytes, excluding the terminator."""
    head = b"PRIVMSG #a :"
    return tags + head + b"x" * (n - len(head)) + terminator


def tags_section_of(n: int) -> bytes:
    """A tag section of exactly ``n`` bytes, counting its '@' and the space after it."""
    prefix = b"@a="
    return prefix + b"v" * (n - len(prefix) - 1) + b" "


LENGTH_OK = [
    ("body-510-crlf", privmsg_with_body_bytes(510)),
    ("body-510-lf", privmsg_with_body_bytes(510, b"\n")),
    ("body-510-unterminated", privmsg_with_body_bytes(510, b"")),
    (
        "body-510-multibyte",
        b"PRIVMSG #a :" + "é".encode() * 249 + b"\r\n",
    ),
    ("tags-8191", tags_section_of(MAX_TAGS_BYTES) + b"PING x\r\n"),
    (
        "tags-8191-and-body-510",
        privmsg_with_body_bytes(510, tags=tags_section_of(MAX_TAGS_BYTES)),
    ),
]

LENGTH_TOO_LONG = [
    ("body-511-crlf", privmsg_with_body_bytes(511)),
    ("body-511-lf", privmsg_with_body_bytes(511, b"\n")),
    ("body-511-unterminated", privmsg_with_body_bytes(511, b"")),
    ("body-511-multibyte", b"PRIVMSG #a :" + "é".encode() * 249 + b"x\r\n"),
    ("body-4000", privmsg_with_body_bytes(4000)),
    ("tags-8192", tags_section_of(MAX_TAGS_BYTES + 1) + b"PING x\r\n"),
    ("tags-ok-body-511", privmsg_with_body_bytes(511, tags=tags_section_of(100))),
    ("tags-8192-body-short", privmsg_with_body_bytes(20, tags=tags_section_of(8192))),
]


def test_limit_constants_match_the_specs() -> None:
    assert MAX_LINE_BYTES == 512
    assert MAX_TAGS_BYTES == 8191
    assert len(privmsg_with_body_bytes(510)) == MAX_LINE_BYTES
    assert len(tags_section_of(MAX_TAGS_BYTES)) == MAX_TAGS_BYTES


@pytest.mark.parametrize("raw", cases(LENGTH_OK))
def test_line_at_the_limit_parses(raw: bytes) -> None:
    msg = parse(raw)
    assert msg.command in {"PRIVMSG", "PING"}
    assert msg.params[-1].encode() in raw


@pytest.mark.parametrize("raw", cases(LENGTH_TOO_LONG))
def test_line_over_the_limit_raises_417(raw: bytes) -> None:
    with pytest.raises(LineTooLong) as info:
        parse(raw)
    assert info.value.numeric == "417" == Numeric.ERR_INPUTTOOLONG
    assert info.value.fatal is False


# --- characters that never belong inside a line -----------------------------------------------

FORBIDDEN = [
    ("nul-in-trailing", b"PRIVMSG #a :a\x00b\r\n", "PRIVMSG"),
    ("bare-cr-in-trailing", b"PRIVMSG #a :a\rb\r\n", "PRIVMSG"),
    ("cr-cr-lf", b"PRIVMSG #a :a\r\r\n", "PRIVMSG"),
    ("cr-at-end-without-lf", b"PRIVMSG #a :a\r", "PRIVMSG"),
    ("lf-smuggling-second-line", b"PRIVMSG #a :x\nQUIT :pwned\r\n", "PRIVMSG"),
    ("lowercase-command", b"notice #a :a\x00\r\n", "NOTICE"),
    ("with-tags-and-source", b"@t=1 :a!b@c NOTICE #a :x\x00\r\n", "NOTICE"),
    ("nul-in-middle", b"JOIN #a\x00b\r\n", "JOIN"),
    ("nul-in-tags", b"@t=\x00 TAGMSG #a\r\n", "TAGMSG"),
    ("command-unreadable", b"PRIV\x00MSG #a :x\r\n", "*"),
    ("str-nul", "PRIVMSG #a :a\x00b", "PRIVMSG"),
    ("str-bare-cr", "PRIVMSG #a :a\rb\r\n", "PRIVMSG"),
    ("str-lf-inside", "PRIVMSG #a :x\nQUIT\n", "PRIVMSG"),
]


@pytest.mark.parametrize(("raw", "command"), cases(FORBIDDEN))
def test_forbidden_characters_raise_with_command(raw: bytes | str, command: str) -> None:
    with pytest.raises(ForbiddenCharacter) as info:
        parse(raw)
    assert info.value.command == command
    assert info.value.fatal is False


INVALID_UTF8 = [
    ("lone-ff", b"PRIVMSG #a :\xff\r\n", "PRIVMSG"),
    ("truncated-sequence", b"NOTICE #a :caf\xc3\r\n", "NOTICE"),
    ("latin1-channel", b"JOIN #caf\xe9\r\n", "JOIN"),
    ("overlong-slash", b"PRIVMSG #a :\xc0\xaf\r\n", "PRIVMSG"),
    ("encoded-surrogate", b"PRIVMSG #a :\xed\xa0\x80\r\n", "PRIVMSG"),
    ("in-tag-value", b"@+x=\xff PRIVMSG #a :hi\r\n", "PRIVMSG"),
    ("in-source", b":\xffbad!u@h topic #a :x\r\n", "TOPIC"),
]


@pytest.mark.parametrize(("raw", "command"), cases(INVALID_UTF8))
def test_invalid_utf8_raises_with_command(raw: bytes, command: str) -> None:
    with pytest.raises(InvalidUTF8) as info:
        parse(raw)
    assert info.value.command == command
    assert info.value.fatal is False


# --- framing ----------------------------------------------------------------------------------

FRAMING = [
    ("one-crlf-line", [b"NICK a\r\n"], [[b"NICK a"]]),
    ("one-lf-line", [b"NICK a\n"], [[b"NICK a"]]),
    ("mixed-terminators", [b"A\nB\r\nC\n"], [[b"A", b"B", b"C"]]),
    ("split-mid-word", [b"PI", b"NG", b" x\r\n"], [[], [], [b"PING x"]]),
    ("split-between-cr-and-lf", [b"NICK a\r", b"\nUSER u"], [[], [b"NICK a"]]),
    (
        "two-lines-then-partial",
        [b"NICK a\r\nUSER a 0 * :A\nPI", b"NG x\r\n"],
        [[b"NICK a", b"USER a 0 * :A"], [b"PING x"]],
    ),
    ("empty-lines-skipped", [b"\r\n\n\r\nA\r\n\n\r\n"], [[b"A"]]),
    ("empty-feed", [b"", b"A\n", b""], [[], [b"A"], []]),
    ("double-cr-keeps-one", [b"A\r\r\n"], [[b"A\r"]]),
    ("trailing-space-kept", [b"AWAY \r\n"], [[b"AWAY "]]),
]


@pytest.mark.parametrize(("chunks", "expected"), cases(FRAMING))
def test_line_buffer_framing(chunks: list[bytes], expected: list[list[bytes]]) -> None:
    buf = LineBuffer()
    assert [buf.feed(chunk) for chunk in chunks] == expected


def test_line_buffer_one_byte_at_a_time() -> None:
    stream = b"NICK a\r\nUSER a 0 * :A\n\r\nPING x\r\nPART"
    buf = LineBuffer()
    lines = [line for i in range(len(stream)) for line in buf.feed(stream[i : i + 1])]
    assert lines == [b"NICK a", b"USER a 0 * :A", b"PING x"]
    assert len(buf) == len(b"PART")


def test_line_buffer_keeps_unterminated_tail() -> None:
    buf = LineBuffer()
    assert buf.feed(b"PING x\r\nPRIVMSG #a :hal") == [b"PING x"]
    assert len(buf) == len(b"PRIVMSG #a :hal")
    assert buf.feed(b"f\r\n") == [b"PRIVMSG #a :half"]
    assert len(buf) == 0


def test_line_buffer_double_cr_line_is_then_refused_by_parse() -> None:
    (line,) = LineBuffer().feed(b"PRIVMSG #a :x\r\r\n")
    with pytest.raises(ForbiddenCharacter):
        parse(line)


RECVQ = [
    # (id, limit, chunks fed first, last chunk, does the last chunk overflow?)
    ("tail-at-limit-kept", 8, [], b"12345678", False),
    ("tail-one-over-limit", 8, [], b"123456789", True),
    ("tail-grows-over-limit", 8, [b"1234", b"5678"], b"9", True),
    ("tail-after-newline-at-limit", 8, [], b"PING\n12345678", False),
    ("tail-after-newline-over-limit", 8, [], b"PING\n123456789", True),
    (
        "default-limit-holds-a-maximal-line",
        RECVQ_BYTES,
        [],
        b"x" * (MAX_TAGS_BYTES + MAX_LINE_BYTES),
        False,
    ),
    ("default-limit-exact", RECVQ_BYTES, [], b"x" * RECVQ_BYTES, False),
    ("default-limit-over", RECVQ_BYTES, [b"x" * RECVQ_BYTES], b"x", True),
]


@pytest.mark.parametrize(("limit", "before", "last", "fatal"), cases(RECVQ))
def test_line_buffer_recvq_limit(limit: int, before: list[bytes], last: bytes, fatal: bool) -> None:
    buf = LineBuffer(limit) if limit != RECVQ_BYTES else LineBuffer()
    assert buf.limit == limit
    for chunk in before:
        assert buf.feed(chunk) == []
    if fatal:
        with pytest.raises(RecvQExceeded) as info:
            buf.feed(last)
        assert info.value.fatal is True
        assert info.value.numeric is None
        # The hostile tail is dropped, not kept around.
        assert len(buf) == 0
    else:
        buf.feed(last)
        assert len(buf) == len(last.rpartition(b"\n")[2])


def test_terminated_lines_longer_than_the_buffer_limit_reach_parse() -> None:
    # A complete line is framed even when long; parse then answers it with 417.
    buf = LineBuffer(limit=16)
    (line,) = buf.feed(privmsg_with_body_bytes(600))
    with pytest.raises(LineTooLong):
        parse(line)


# --- IRCv3 tag escaping ---------------------------------------------------------------------

UNESCAPE = [
    ("empty", "", ""),
    ("plain", "abc", "abc"),
    ("semicolon", "\\:", ";"),
    ("space", "\\s", " "),
    ("backslash", "\\\\", "\\"),
    ("cr", "\\r", "\r"),
    ("lf", "\\n", "\n"),
    ("spec-raw-and-escaped", "raw+:=,escaped\\:\\s\\\\", "raw+:=,escaped; \\"),
    ("spec-lone-trailing-backslash", "test\\", "test"),
    ("unknown-escape-drops-backslash", "value\\1", "value1"),
    ("unknown-escape-letter", "\\b\\t", "bt"),
    ("char-at-a-time", "value\\\\ntest", "value\\ntest"),
    ("escaped-backslash-then-lone", "\\\\\\", "\\"),
    ("parser-tests-mixed", "\\\\\\\\\\:\\\\s\\s\\r\\n", "\\\\;\\s \r\n"),
    ("parser-tests-a", "b\\\\and\\nk", "b\\and\nk"),
    ("unicode-untouched", "h\\séllo", "h éllo"),
]


@pytest.mark.parametrize(("raw", "value"), cases(UNESCAPE))
def test_unescape_tag_value(raw: str, value: str) -> None:
    assert unescape_tag_value(raw) == value


@pytest.mark.parametrize(("raw", "value"), cases(UNESCAPE))
def test_unescape_inside_a_parsed_line(raw: str, value: str) -> None:
    msg = parse(f"@k={raw} TAGMSG #a\r\n".encode())
    assert msg.tags == {"k": value}


ESCAPE = [
    ("empty", "", ""),
    ("plain", "plain", "plain"),
    ("spec-raw-and-escaped", "raw+:=,escaped; \\", "raw+:=,escaped\\:\\s\\\\"),
    ("crlf", "a\r\nb", "a\\r\\nb"),
    ("all-five", "; \\\r\n", "\\:\\s\\\\\\r\\n"),
    ("unicode", "ünï 🎉", "ünï\\s🎉"),
    ("equals-and-colon-raw", "a=b:c,d+", "a=b:c,d+"),
]


@pytest.mark.parametrize(("value", "raw"), cases(ESCAPE))
def test_escape_tag_value(value: str, raw: str) -> None:
    assert escape_tag_value(value) == raw


TAG_VALUES = [
    ("empty", ""),
    ("backslashes", "\\\\\\"),
    ("looks-escaped", "\\s\\:\\n"),
    ("all-special", ";; \\ \r\n ;"),
    ("trailing-backslash", "ends with \\"),
    ("unicode", "日本語; テスト"),
]


@pytest.mark.parametrize("value", cases(TAG_VALUES))
def test_escape_unescape_round_trip(value: str) -> None:
    escaped = escape_tag_value(value)
    assert not set(escaped) & set("; \r\n")
    assert unescape_tag_value(escaped) == value


MISSING_VS_EMPTY = [
    ("missing", b"@a PING x\r\n"),
    ("equals-nothing", b"@a= PING x\r\n"),
    ("missing-among-others", b"@b=1;a;c=2 PING x\r\n"),
    ("empty-among-others", b"@b=1;a=;c=2 PING x\r\n"),
]


@pytest.mark.parametrize("raw", cases(MISSING_VS_EMPTY))
def test_missing_tag_value_is_empty_string(raw: bytes) -> None:
    assert parse(raw).tags["a"] == ""


def test_empty_and_missing_tag_values_are_equal() -> None:
    assert parse(b"@a= PING x").tags == parse(b"@a PING x").tags == {"a": ""}
    # Serialising never invents the "a=" form (spec: MUST NOT convert missing to empty).
    assert serialize(M("PING", "x", tags={"a": ""})) == b"@a PING x\r\n"


# --- serialising: what may not go out, and what must be added --------------------------------

HOSTILE = ["\r\nQUIT :pwned", "\nQUIT", "a\rb", "a\x00b"]

UNSERIALIZABLE = [
    *[(f"last-param-{i}", M("PRIVMSG", "#a", bad)) for i, bad in enumerate(HOSTILE)],
    *[(f"middle-param-{i}", M("PRIVMSG", "#a" + bad, "hi")) for i, bad in enumerate(HOSTILE)],
    *[(f"source-{i}", M("PING", "x", source="a" + bad)) for i, bad in enumerate(HOSTILE)],
    *[(f"command-{i}", M("PING" + bad, "x")) for i, bad in enumerate(HOSTILE)],
    *[(f"tag-key-{i}", M("PING", "x", tags={"a" + bad: "v"})) for i, bad in enumerate(HOSTILE)],
    ("tag-value-nul", M("PING", "x", tags={"a": "x\x00y"})),
    ("source-empty", M("PING", "x", source="")),
    ("source-space", M("PING", "x", source="a b")),
    ("middle-empty", M("MODE", "", "+i")),
    ("middle-space", M("MODE", "#a b", "+i")),
    ("middle-leading-colon", M("MODE", ":#a", "+i")),
    ("text-not-last", M("PRIVMSG", "#a", "hello world", "extra")),
    ("command-empty", M("")),
    ("command-space", M("PRIV MSG")),
    ("command-punctuation", M("PRIV-MSG")),
    ("command-non-ascii", M("CAFÉ")),
    ("tag-key-empty", M("PING", "x", tags={"": "v"})),
    ("tag-key-space", M("PING", "x", tags={"a b": "v"})),
    ("tag-key-semicolon", M("PING", "x", tags={"a;b": "v"})),
    ("tag-key-equals", M("PING", "x", tags={"a=b": "v"})),
    ("tag-key-plus-only", M("PING", "x", tags={"+": "v"})),
    ("tag-key-vendor-only", M("PING", "x", tags={"vendor/": "v"})),
    ("tag-key-underscore", M("PING", "x", tags={"a_b": "v"})),
]


@pytest.mark.parametrize("msg", cases(UNSERIALIZABLE))
def test_serialize_refuses(msg: Message) -> None:
    with pytest.raises(UnserializableMessage) as info:
        serialize(msg)
    # A local bug, not the peer's: never confused with a PeerProtocolError.
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ProtocolError)
    assert not isinstance(info.value, PeerProtocolError)


@pytest.mark.parametrize("bad", cases([(repr(b), b) for b in ["\r", "\n", "\r\nQUIT :x"]]))
def test_tag_values_with_cr_lf_are_escaped_not_refused(bad: str) -> None:
    msg = M("PRIVMSG", "#a", "hi", tags={"+x": "a" + bad})
    wire = serialize(msg)
    assert wire.count(b"\n") == 1 and wire.endswith(b"\r\n")
    assert b"\r" not in wire[:-2]
    assert LineBuffer().feed(wire) == [wire[:-2]]
    assert parse(wire) == msg


def test_escaped_tag_value_on_the_wire() -> None:
    msg = M("PRIVMSG", "#a", "hi", tags={"+x": "a;b c\\d\r\ne"})
    assert serialize(msg) == b"@+x=a\\:b\\sc\\\\d\\r\\ne PRIVMSG #a :hi\r\n"


FORCED_COLON = [
    ("privmsg", M("PRIVMSG", "#a", "hi"), b"PRIVMSG #a :hi\r\n"),
    ("notice", M("NOTICE", "bob", "x"), b"NOTICE bob :x\r\n"),
    ("topic", M("TOPIC", "#a", "t"), b"TOPIC #a :t\r\n"),
    ("topic-query", M("TOPIC", "#a"), b"TOPIC #a\r\n"),
    ("part-reason", M("PART", "#a", "bye"), b"PART #a :bye\r\n"),
    ("part-channel-only", M("PART", "#a"), b"PART #a\r\n"),
    ("kick-reason", M("KICK", "#a", "bob", "r"), b"KICK #a bob :r\r\n"),
    ("kick-no-reason", M("KICK", "#a", "bob"), b"KICK #a bob\r\n"),
    ("quit", M("QUIT", "bye"), b"QUIT :bye\r\n"),
    ("error", M("ERROR", "Closing"), b"ERROR :Closing\r\n"),
    ("away", M("AWAY", "brb"), b"AWAY :brb\r\n"),
    ("wallops", M("WALLOPS", "x"), b"WALLOPS :x\r\n"),
    ("kill", M("KILL", "bob", "x"), b"KILL bob :x\r\n"),
    ("join-not-text", M("JOIN", "#a"), b"JOIN #a\r\n"),
    ("nick-not-text", M("NICK", "alice"), b"NICK alice\r\n"),
    ("mode-not-text", M("MODE", "#a", "+o", "bob"), b"MODE #a +o bob\r\n"),
    ("cap-not-text", M("CAP", "*", "LS", "multi-prefix"), b"CAP * LS multi-prefix\r\n"),
    ("cap-space-needs-colon", M("CAP", "*", "LS", "a b"), b"CAP * LS :a b\r\n"),
    ("pong-not-text", M("PONG", "irc.lan", "tok"), b"PONG irc.lan tok\r\n"),
    ("numeric-two-params", M("001", "alice", "Welcome"), b"001 alice :Welcome\r\n"),
    ("numeric-three-params", M("324", "alice", "#a", "+nt"), b"324 alice #a :+nt\r\n"),
    ("numeric-one-param", M("001", "alice"), b"001 alice\r\n"),
    (
        "numeric-enum",
        Message(Numeric.ERR_INPUTTOOLONG, ("alice", "Input line was too long"), "irc.lan"),
        b":irc.lan 417 alice :Input line was too long\r\n",
    ),
    ("empty-last-any-command", M("CMD", "a", ""), b"CMD a :\r\n"),
    ("colon-last-any-command", M("CMD", ":x"), b"CMD ::x\r\n"),
]


@pytest.mark.parametrize(("msg", "wire"), cases(FORCED_COLON))
def test_forced_colon(msg: Message, wire: bytes) -> None:
    assert serialize(msg) == wire
    assert str(msg) == wire[:-2].decode()


# --- casemapping and names --------------------------------------------------------------------

CASEFOLD = [
    ("ascii-upper", "ALICE", "alice"),
    ("already-folded", "alice", "alice"),
    ("rfc1459-specials", "[]\\~", "{}|^"),
    ("folded-specials-stay", "{}|^", "{}|^"),
    ("mixed", "Nick[Away]~", "nick{away}^"),
    ("channel", "#Lan-Party", "#lan-party"),
    ("other-specials-untouched", "A_B`C-D", "a_b`c-d"),
    ("digits", "Bot42", "bot42"),
    ("non-ascii-upper-untouched", "ÉLODIE", "Élodie"),
    ("sharp-s-untouched", "STRAßE", "straße"),
    ("greek-untouched", "ΣΑΣ", "ΣΑΣ"),
    ("kelvin-sign-not-k", "\u212a", "\u212a"),
    ("dotted-capital-i-untouched", "İ", "İ"),
]


@pytest.mark.parametrize(("name", "folded"), cases(CASEFOLD))
def test_casefold(name: str, folded: str) -> None:
    assert casefold(name) == folded
    assert casefold(folded) == folded


SAME_NAME = [
    ("brackets", "Nick[Away]", "nick{away}"),
    ("backslash-pipe", "a\\b", "A|B"),
    ("tilde-caret", "x~", "X^"),
    ("channels", "#LAN", "#lan"),
]
DIFFERENT_NAME = [
    ("underscore-vs-dash", "a_", "a-"),
    ("non-ascii-case", "É", "é"),
    ("kelvin-vs-k", "\u212a", "k"),
    ("sharp-s-vs-ss", "ß", "ss"),
    ("backtick-vs-at", "a`", "a@"),
]


@pytest.mark.parametrize(("a", "b"), cases(SAME_NAME))
def test_casefold_same_name(a: str, b: str) -> None:
    assert casefold(a) == casefold(b)


@pytest.mark.parametrize(("a", "b"), cases(DIFFERENT_NAME))
def test_casefold_different_name(a: str, b: str) -> None:
    assert casefold(a) != casefold(b)


NICKS = [
    ("simple", "alice", True),
    ("capital", "Alice", True),
    ("one-letter", "a", True),
    ("brackets", "[bot]", True),
    ("backslash-first", "\\o", True),
    ("underscore-first", "_under", True),
    ("backtick-first", "`tick", True),
    ("caret-first", "^caret", True),
    ("braces", "{x}", True),
    ("pipe-first", "|pipe", True),
    ("dash-inside", "a-b", True),
    ("digit-inside", "a1", True),
    ("max-length", "x" * 30, True),
    ("empty", "", False),
    ("digit-first", "9lives", False),
    ("dash-first", "-dash", False),
    ("space", "a b", False),
    ("comma", "a,b", False),
    ("colon", "a:b", False),
    ("bang", "a!b", False),
    ("at", "a@b", False),
    ("dot", "a.b", False),
    ("star", "*", False),
    ("channel", "#chan", False),
    ("non-ascii", "élodie", False),
    ("trailing-newline", "alice\n", False),
    ("nul", "a\x00", False),
    ("too-long", "x" * 31, False),
]


@pytest.mark.parametrize(("nick", "valid"), cases(NICKS))
def test_is_valid_nick(nick: str, valid: bool) -> None:
    assert is_valid_nick(nick) is valid


def test_is_valid_nick_max_len() -> None:
    assert is_valid_nick("abcdefghi", max_len=9) is True
    assert is_valid_nick("abcdefghij", max_len=9) is False


CHANNELS = [
    ("short", "#a", True),
    ("dash", "#lan-party", True),
    ("unicode", "#café", True),
    ("dot", "#a.b", True),
    ("brackets", "#A[]", True),
    ("double-hash", "##double", True),
    ("max-length", "#" + "x" * 49, True),
    ("empty", "", False),
    ("hash-only", "#", False),
    ("no-prefix", "lan", False),
    ("ampersand-not-ours", "&local", False),
    ("space", "#a b", False),
    ("comma", "#a,b", False),
    ("colon", "#a:b", False),
    ("bell", "#a\x07", False),
    ("nul", "#a\x00", False),
    ("cr", "#a\r", False),
    ("lf", "#a\n", False),
    ("too-long", "#" + "x" * 50, False),
]


@pytest.mark.parametrize(("name", "valid"), cases(CHANNELS))
def test_is_valid_channel(name: str, valid: bool) -> None:
    assert is_valid_channel(name) is valid


def test_is_valid_channel_max_len() -> None:
    assert is_valid_channel("#abc", max_len=4) is True
    assert is_valid_channel("#abcd", max_len=4) is False


@pytest.mark.parametrize(
    ("name", "expected"),
    cases([("room", "#a", True), ("nick", "alice", False), ("empty", "", False)]),
)
def test_is_channel(name: str, expected: bool) -> None:
    assert is_channel(name) is expected


SOURCES = [
    ("full", "alice!al@10.0.0.5", ("alice", "al", "10.0.0.5")),
    ("server", "irc.example.net", ("irc.example.net", None, None)),
    ("nick-host", "alice@host", ("alice", None, "host")),
    ("nick-user", "alice!al", ("alice", "al", None)),
    ("nick-only", "alice", ("alice", None, None)),
    ("ipv6-host", "alice!~al@2001:db8::1", ("alice", "~al", "2001:db8::1")),
    ("control-codes", "cg!ag@net\x035w\x03ork", ("cg", "ag", "net\x035w\x03ork")),
]


@pytest.mark.parametrize(("source", "parts"), cases(SOURCES))
def test_split_source(source: str, parts: tuple[str, str | None, str | None]) -> None:
    assert split_source(source) == parts


@pytest.mark.parametrize(("source", "parts"), cases(SOURCES))
def test_message_nick_is_the_source_nick(source: str, parts: tuple) -> None:
    assert parse(f":{source} PING x".encode()).nick == parts[0]


def test_message_helpers() -> None:
    msg = M("PRIVMSG", "#a", "hi")
    assert msg.nick is None
    assert msg.param(0) == "#a"
    assert msg.param(1) == "hi"
    assert msg.param(2) == ""
    assert msg.param(5, "?") == "?"
    assert msg == Message("PRIVMSG", ("#a", "hi"), None, {})


SNIFF = [
    ("tls-1.0-record", bytes.fromhex("160301020001fc0303"), "TLS"),
    ("tls-1.2-record", b"\x16\x03\x03\x00\x50", "TLS"),
    ("tls-two-bytes", b"\x16\x03", "TLS"),
    ("http-get", b"GET / HTTP/1.1\r\nHost: lan\r\n", "HTTP"),
    ("http-post", b"POST /x HTTP/1.1\r\n", "HTTP"),
    ("http-head", b"HEAD / HTTP/1.0\r\n", "HTTP"),
    ("http-put", b"PUT /x HTTP/1.1\r\n", "HTTP"),
    ("http-delete", b"DELETE /x HTTP/1.1\r\n", "HTTP"),
    ("http-options", b"OPTIONS * HTTP/1.1\r\n", "HTTP"),
    ("http-connect", b"CONNECT irc.lan:6667 HTTP/1.1\r\n", "HTTP"),
    ("irc-nick", b"NICK alice\r\n", None),
    ("irc-cap", b"CAP LS 302\r\n", None),
    ("irc-pass", b"PASS secret\r\n", None),
    ("irc-user", b"USER a 0 * :A\r\n", None),
    ("irc-tags", b"@label=1 PING x\r\n", None),
    ("irc-lowercase-get-is-not-http", b"get / HTTP/1.1\r\n", None),
    ("word-starting-with-get", b"GETX\r\n", None),
    ("empty", b"", None),
    ("one-byte-0x16", b"\x16", None),
    ("0x16-not-tls-version", b"\x16\x02\x00", None),
    ("reversed", b"\x03\x16", None),
]


@pytest.mark.parametrize(("first", "expected"), cases(SNIFF))
def test_sniff_foreign_protocol(first: bytes, expected: str | None) -> None:
    assert sniff_foreign_protocol(first) == expected


# --- errors and numerics ----------------------------------------------------------------------

ERRORS = [
    ("malformed", MalformedMessage, None, False),
    ("too-long", LineTooLong, "417", False),
    ("utf8", InvalidUTF8, None, False),
    ("forbidden", ForbiddenCharacter, None, False),
    ("recvq", RecvQExceeded, None, True),
]


@pytest.mark.parametrize(("cls", "numeric", "fatal"), cases(ERRORS))
def test_peer_error_classes(cls: type[PeerProtocolError], numeric: str | None, fatal: bool) -> None:
    err = cls("boom")
    assert isinstance(err, PeerProtocolError)
    assert isinstance(err, ProtocolError)
    assert err.numeric == numeric
    assert err.fatal is fatal
    assert err.command == "*"
    assert cls("boom", "JOIN").command == "JOIN"


NUMERICS = [
    ("welcome", Numeric.RPL_WELCOME, "001"),
    ("isupport", Numeric.RPL_ISUPPORT, "005"),
    ("namreply", Numeric.RPL_NAMREPLY, "353"),
    ("endofnames", Numeric.RPL_ENDOFNAMES, "366"),
    ("nosuchnick", Numeric.ERR_NOSUCHNICK, "401"),
    ("inputtoolong", Numeric.ERR_INPUTTOOLONG, "417"),
    ("unknowncommand", Numeric.ERR_UNKNOWNCOMMAND, "421"),
    ("nicknameinuse", Numeric.ERR_NICKNAMEINUSE, "433"),
    ("notregistered", Numeric.ERR_NOTREGISTERED, "451"),
    ("needmoreparams", Numeric.ERR_NEEDMOREPARAMS, "461"),
    ("badchannelkey", Numeric.ERR_BADCHANNELKEY, "475"),
    ("chanoprivsneeded", Numeric.ERR_CHANOPRIVSNEEDED, "482"),
]


@pytest.mark.parametrize(("numeric", "code"), cases(NUMERICS))
def test_numeric_values(numeric: Numeric, code: str) -> None:
    assert numeric == code
    assert str(numeric) == code


def test_numerics_are_three_digits_and_unique() -> None:
    # Enum silently turns a duplicated value into an alias; catch that here.
    assert len(Numeric.__members__) == len(list(Numeric))
    assert all(len(n.value) == 3 and n.value.isdigit() for n in Numeric)


# --- doctests -----------------------------------------------------------------------------------


def test_module_doctests() -> None:
    result = doctest.testmod(chatroom.protocol)
    assert result.attempted > 0
    assert result.failed == 0
