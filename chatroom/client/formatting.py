"""Other people's text made safe to show: control sequences stripped, IRC codes as styles.

Everything a peer sends is data. It becomes a :class:`rich.text.Text` built from plain
strings, so Rich/Textual markup in it is never interpreted, and every terminal control
character or escape sequence is removed before it can reach the terminal. IRC's own
formatting codes (bold, colours...) are turned into Rich styles instead.

One sanitiser, :func:`strip_controls`, stands between the network and the screen, in
one of two forms: :func:`irc_to_text` where IRC styles are shown (message bodies, the
topic) and :func:`strip_formatting` for plain text everywhere else (names in the room
and member lists and the bars, system lines, toasts, dialogs).
"""

from __future__ import annotations

import re
import zlib
from functools import lru_cache

from rich.color import Color
from rich.style import Style
from rich.text import Text

from chatroom.protocol import casefold

__all__ = [
    "NICK_COLOURS",
    "contains_mention",
    "irc_to_text",
    "nick_colour",
    "strip_controls",
    "strip_formatting",
]

# IRC formatting codes (https://modern.ircdocs.horse/formatting).
BOLD = "\x02"
COLOUR = "\x03"
HEX_COLOUR = "\x04"
RESET = "\x0f"
MONOSPACE = "\x11"
REVERSE = "\x16"
ITALIC = "\x1d"
STRIKE = "\x1e"
UNDERLINE = "\x1f"
_IRC_CODES = BOLD + COLOUR + HEX_COLOUR + RESET + MONOSPACE + REVERSE + ITALIC + STRIKE + UNDERLINE

# Terminal escape sequences first (so their parameters go too), then any single C0/C1
# control character that is not an IRC code, DEL, and the Unicode bidi overrides that
# would let a line reorder what follows it on screen.
_ESCAPE_SEQUENCE = (
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC, terminated by BEL or ST
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC
    r"|\x1b[ -/]*[0-~]?"  # two-character escapes (and a lone ESC)
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
_CONTROL_CHARS = "".join(chr(c) for c in range(0x20) if chr(c) not in _IRC_CODES + "\t")
_CONTROL_RE = re.compile(
    _ESCAPE_SEQUENCE
    + "|["
    + re.escape(_CONTROL_CHARS)
    + "\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
_FORMAT_RE = re.compile(
    r"\x03(?:\d{1,2}(?:,\d{1,2})?)?"
    r"|\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?"
    r"|[\x02\x0f\x11\x16\x1d\x1e\x1f]"
)
_ANY_SPECIAL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# mIRC colour numbers 0-15 and the extended 16-98 (99 means "default").
_PALETTE_HEX = (
    "ffffff 000000 00007f 009300 ff0000 7f0000 9c009c fc7f00 ffff00 00fc00 009393 00ffff "
    "0000fc ff00ff 7f7f7f d2d2d2 "
    "470000 472100 474700 324700 004700 00472c 004747 002747 000047 2e0047 470047 47002a "
    "740000 743a00 747400 517400 007400 007449 007474 004074 000074 4b0074 740074 740045 "
    "b50000 b56300 b5b500 7db500 00b500 00b571 00b5b5 0063b5 0000b5 7500b5 b500b5 b5006b "
    "ff0000 ff8c00 ffff00 b2ff00 00ff00 00ffa0 00ffff 008cff 0000ff a500ff ff00ff ff0098 "
    "ff5959 ffb459 ffff71 cfff60 6fff6f 65ffc9 6dffff 59b4ff 5959ff c459ff ff66ff ff59bc "
    "ff9c9c ffd39c ffff9c e2ff9c 9cff9c 9cffdb 9cffff 9cd3ff 9c9cff dc9cff ff9cff ff94d3 "
    "000000 131313 282828 363636 4d4d4d 656565 818181 9f9f9f bcbcbc e2e2e2 ffffff"
)
_PALETTE = _PALETTE_HEX.split()

# Readable on dark and light backgrounds; a nick always gets the same one.
NICK_COLOURS = (
    "#e06c75",
    "#98c379",
    "#e5c07b",
    "#61afef",
    "#c678dd",
    "#56b6c2",
    "#d19a66",
    "#be5046",
    "#7ec699",
    "#f08d49",
    "#cc99cd",
    "#67cdcc",
    "#b5bd68",
    "#81a2be",
    "#de935f",
    "#8abeb7",
)


def strip_controls(text: str) -> str:
    r"""Remove terminal escape sequences and control characters, keeping IRC codes.

    Tabs become spaces so the log's columns stay put.

    >>> strip_controls("hi\x1b[2J\x1b]0;pwned\x07 there\x07\r")
    'hi there'
    >>> strip_controls("\x02bold\x02")
    '\x02bold\x02'
    """
    if _ANY_SPECIAL_RE.search(text) is None:
        return text
    return _CONTROL_RE.sub("", text).replace("\t", " ")


def strip_formatting(text: str) -> str:
    r"""Plain text: no control characters and no IRC formatting codes.

    >>> strip_formatting("\x02hi\x0f \x0304,01red\x03 \x04ff0000x")
    'hi red x'
    """
    return _FORMAT_RE.sub("", strip_controls(text))


@lru_cache(maxsize=256)
def _colour(index: int) -> Color | None:
    if 0 <= index < len(_PALETTE):
        return Color.parse("#" + _PALETTE[index])
    return None  # 99 and anything unknown: the default colour


@lru_cache(maxsize=256)
def _hex_colour(value: str) -> Color:
    return Color.parse("#" + value.lower())


def irc_to_text(raw: str, base: Style | str = "") -> Text:
    r"""Render a peer's message as a Text: safe, with IRC formatting as styles.

    >>> t = irc_to_text("a \x02b\x02 [bold]c[/]")
    >>> t.plain, [(s.start, s.end, str(s.style)) for s in t.spans]
    ('a b [bold]c[/]', [(2, 3, 'bold')])
    """
    text = strip_controls(raw)
    if _FORMAT_RE.search(text) is None:
        return Text(text, style=base, end="")
    out = Text(style=base, end="")
    bold = italic = underline = strike = reverse = mono = False
    fg: Color | None = None
    bg: Color | None = None
    pos = 0

    def current() -> Style | None:
        """The style the codes so far add up to (None: plain)."""
        style = Style(
            bold=bold or None,
            italic=italic or None,
            underline=underline or None,
            strike=strike or None,
            reverse=reverse or None,
            dim=mono or None,  # a terminal is monospace already; dim marks it as code
            color=fg,
            bgcolor=bg,
        )
        return style if style else None

    for match in _FORMAT_RE.finditer(text):
        if match.start() > pos:
            out.append(text[pos : match.start()], current())
        pos = match.end()
        code = match.group()
        head = code[0]
        if head == BOLD:
            bold = not bold
        elif head == ITALIC:
            italic = not italic
        elif head == UNDERLINE:
            underline = not underline
        elif head == STRIKE:
            strike = not strike
        elif head == REVERSE:
            reverse = not reverse
        elif head == MONOSPACE:
            mono = not mono
        elif head == RESET:
            bold = italic = underline = strike = reverse = mono = False
            fg = bg = None
        elif head == COLOUR:
            if len(code) == 1:
                fg = bg = None
            else:
                fg_s, _, bg_s = code[1:].partition(",")
                fg = _colour(int(fg_s))
                if bg_s:
                    bg = _colour(int(bg_s))
        elif head == HEX_COLOUR:
            if len(code) == 1:
                fg = bg = None
            else:
                fg_s, _, bg_s = code[1:].partition(",")
                fg = _hex_colour(fg_s)
                if bg_s:
                    bg = _hex_colour(bg_s)
    if pos < len(text):
        out.append(text[pos:], current())
    return out


@lru_cache(maxsize=1024)
def nick_colour(nick: str) -> str:
    """A stable colour for a nick (same nick, same colour, across runs and machines).

    >>> nick_colour("Alice") == nick_colour("alice")
    True
    """
    return NICK_COLOURS[zlib.crc32(casefold(nick).encode("utf-8")) % len(NICK_COLOURS)]


@lru_cache(maxsize=64)
def _mention_re(nick: str) -> re.Pattern[str]:
    # A nick may contain []\`^{|}- so \b is not enough: look for non-nick characters.
    return re.compile(
        r"(?<![A-Za-z0-9\[\]\\`_^{|}-])"
        + re.escape(casefold(nick))
        + r"(?![A-Za-z0-9\[\]\\`_^{|}-])"
    )


def contains_mention(text: str, nick: str) -> bool:
    """True when ``text`` names ``nick`` as a whole word (IRC case-insensitively).

    >>> contains_mention("hey Bob, lunch?", "bob"), contains_mention("bobby", "bob")
    (True, False)
    """
    if not nick:
        return False
    return _mention_re(nick).search(casefold(strip_formatting(text))) is not None
