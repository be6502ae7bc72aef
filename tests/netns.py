"""Running test code inside a private network namespace, where mDNS may be sent.

mDNS is multicast: tests send it only inside a namespace they create (``unshare
--net``, only ``lo``: up, multicast on), never on this machine's real interfaces.
Every snippet first checks that ``lo`` is its only interface and refuses to go on
otherwise. Where no namespace can be made, the test skips and says why.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

__all__ = ["NETNS_TIMEOUT", "REPO", "netns_unavailable", "run_in_netns"]

REPO = Path(__file__).resolve().parents[1]
# Seconds one namespace run may take before it is killed (each needs about 3-5 s).
NETNS_TIMEOUT = 25.0

# Runs first in every snippet: refuse to go on unless this process is in a namespace
# whose only interface is lo, so nothing can reach a real network.
_PREAMBLE = """
import socket, sys
if [name for _, name in socket.if_nameindex()] != ["lo"]:
    sys.exit("not in a private network namespace: refusing to send mDNS")
"""


@functools.cache
def netns_unavailable() -> str | None:
    """Why a namespace cannot be made here, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (util-linux / iproute2)"
    try:
        probe = subprocess.run(
            ["unshare", "--net", "ip", "link", "set", "lo", "up"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot run unshare: {e}"
    if probe.returncode != 0:
        return "cannot create a network namespace (needs root or user namespaces): " + (
            probe.stderr.decode(errors="replace").strip()
        )
    return None


def run_in_netns(*snippets: str, timeout: float = NETNS_TIMEOUT) -> Any:
    """Run Python snippets (each dedented, in order) in a new network namespace (only
    lo: up, multicast on) and return the JSON printed last on stdout. Skips when no
    namespace can be made."""
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(reason)
    code = "\n".join(textwrap.dedent(part) for part in (_PREAMBLE, *snippets))
    script = 'ip link set lo up && ip link set lo multicast on && exec "$0" -c "$1"'
    env = {k: v for k, v in os.environ.items() if k != "CHATROOM_NO_MDNS"}  # allowed in here
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    try:
        done = subprocess.run(
            ["unshare", "--net", "sh", "-c", script, sys.executable, code],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=REPO,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"namespace run took over {timeout} s; stderr:\n{e.stderr}")
    if done.returncode != 0:
        pytest.fail(f"namespace run exited {done.returncode}; stderr:\n{done.stderr}")
    lines = done.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{done.stderr}"
    return json.loads(lines[-1])
