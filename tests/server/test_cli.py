"""The chatroom-server command: starts with its defaults, stops cleanly on a signal."""

from __future__ import annotations

import signal
import socket

import pytest

from chatroom.cli import build_config, server_parser


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_sends_error_to_clients_and_exits_zero(sig, server_process):
    server = server_process("--name", "sig.test", "--db", ":memory:")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as c:
        c.sendall(b"NICK sig\r\nUSER s 0 * :s\r\n")
        data = b""
        while b" 376 " not in data and b" 422 " not in data:
            data += c.recv(4096)
        server.proc.send_signal(sig)
        tail = b""
        while chunk := c.recv(4096):
            tail += chunk
    assert b"ERROR :Server shutting down" in tail
    assert server.proc.wait(timeout=10) == 0
    _, err = server.stop()
    assert "server stopped" in err


def test_flags_override_config_file(tmp_path):
    toml = tmp_path / "chat.toml"
    toml.write_text('[server]\nport = 7000\nnicklen = 12\nmotd_file = "motd.txt"\n')
    (tmp_path / "motd.txt").write_text("hello lan\n")
    args = server_parser().parse_args(
        ["--config", str(toml), "--port", "7001", "--oper", "root:pw", "--no-flood-limit"]
    )
    cfg = build_config(args)  # motd_file is relative to the config file
    assert (cfg.port, cfg.nicklen, cfg.motd) == (7001, 12, "hello lan\n")
    assert cfg.opers == {"root": "pw"} and cfg.flood_limit is False


def test_unknown_setting_in_config_file_is_an_error(tmp_path, capsys):
    from chatroom.cli import server_main

    toml = tmp_path / "bad.toml"
    toml.write_text("nicklenn = 5\n")
    assert server_main(["--config", str(toml)]) == 2
    assert "nicklenn" in capsys.readouterr().err


def test_port_in_use_is_a_clear_error(capsys):
    from chatroom.cli import server_main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert server_main(["--host", "127.0.0.1", "--port", str(port), "--no-tls"]) == 1
    assert "cannot listen" in capsys.readouterr().err


def test_start_says_how_to_reach_the_server(server_process):
    server = server_process("--name", "reach.test", "--db", ":memory:")
    _, err = server.stop()
    port = server.port
    assert "reachable from this machine only (listening on 127.0.0.1" in err
    assert f"join with: chatroom-client 127.0.0.1:{port}" in err
    assert f"(irssi: /connect 127.0.0.1 {port})" in err


def test_reachability_helpers_doctests():
    import doctest

    import chatroom.server.server as server_module

    result = doctest.testmod(server_module)
    assert result.attempted and not result.failed


def test_default_motd_without_motd_flag(server_process):
    # no --motd: a short greeting (server name, how many are on, /help), never 422
    server = server_process("--name", "motd.test", "--db", ":memory:")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as c:
        c.sendall(b"NICK first\r\nUSER f 0 * :f\r\n")
        data = b""
        while b" 376 " not in data and b" 422 " not in data:
            chunk = c.recv(4096)
            assert chunk, f"closed before the end of the MOTD: {data!r}"
            data += chunk
    text = data.decode()
    assert " 422 " not in text
    assert "Welcome to motd.test" in text
    assert "1 person here now, you included." in text
    assert "/help lists the commands" in text


def test_sigterm_as_soon_as_the_port_answers_is_a_clean_stop(tmp_path):
    """The ports open before the server has started: a SIGTERM then (a service manager,
    a test) stops it in order, exit 0, having said where it listened; not a silent kill."""
    import subprocess
    import sys
    import time

    from tests.conftest import free_port

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from chatroom.cli import server_main; raise SystemExit(server_main())",
            *("--host", "127.0.0.1", "--port", str(port), "--db", str(tmp_path / "h.db")),
            *("--no-tls", "--no-http", "--no-announce"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.002)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"listening on 127.0.0.1:{port}" in out
    assert "SIGTERM received, shutting down" in err
