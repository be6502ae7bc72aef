"""README.md is the front door: its table of settings must match the code."""

from __future__ import annotations

import re
from dataclasses import MISSING, fields
from pathlib import Path

from chatroom.server.config import Config
from chatroom.server.session import isupport_tokens

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented_with_its_default():
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", README, re.MULTILINE))
    for f in fields(Config):
        assert f.name in rows, f"README's settings table lacks {f.name}"
        if f.default is not MISSING and isinstance(f.default, (int, float)):
            shown = rows[f.name].strip("` ").split()[0].strip("`")
            value = str(f.default).lower()
            assert shown in (value, value.removesuffix(".0")), f"{f.name}: {shown} != {value}"


def test_isupport_in_readme_is_what_the_server_sends():
    block = README.split("ISUPPORT (005) as sent with the defaults:")[1].split("```")[1]
    assert block.split() == isupport_tokens(Config())
