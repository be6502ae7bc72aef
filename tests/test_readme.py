"""README.md is the front door: its table of settings must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from chatroom.server.config import Config, limits_table

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented_with_its_default():
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", README, re.MULTILINE))
    for name, default, _meaning in limits_table():
        assert name in rows, f"README's settings table lacks {name}"
        if isinstance(default, (int, float)):
            shown = rows[name].strip("` ").split()[0].strip("`")
            value = str(default).lower()
            assert shown in (value, value.removesuffix(".0")), f"{name}: {shown} != {value}"


def test_isupport_in_readme_is_what_the_server_sends():
    block = README.split("ISUPPORT (005) as sent with the defaults:")[1].split("```")[1]
    assert block.split() == Config().isupport_tokens()
