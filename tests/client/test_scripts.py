"""What the repository's scripts and benchmarks start leaves the user's files alone."""

from __future__ import annotations

from ngircd_proc import start_server, stop_server


def test_scripts_never_touch_the_users_history(tmp_path, monkeypatch):
    """The screenshot script and the client benchmark start our server through
    start_server: it must get a database of its own, not the user's data directory
    (each run used to add its lines to the last, and the screenshot showed them twice)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    server, _port = start_server("chatroom", "--log-level", "WARNING")
    stop_server(server)
    assert not (tmp_path / "data").exists() and not (tmp_path / "home").exists()
