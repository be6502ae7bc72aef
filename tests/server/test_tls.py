"""TLS on the server: the certificate it makes or is given, chat over TLS beside plain
text, the limits over TLS, hostile peers on both ports, and the listeners' settings.

Real sockets on 127.0.0.1; the test clients pin the server's own certificate (it is
their only CA, and the address must be in its names). Every server here has
``tls_port=0`` and its certificate in a temporary directory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import socket
import ssl
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chatroom.cli import server_main
from chatroom.protocol import parse
from chatroom.server.config import Config
from chatroom.server.server import ChatServer
from chatroom.server.tls import (
    CERT_FILE,
    KEY_FILE,
    TLSSetupError,
    certificate_fingerprint,
    load_or_create,
)
from tests.conftest import REPLY_TIMEOUT, IRCClient, free_port, make_config

OPENSSL = shutil.which("openssl")


class QuickServer(ChatServer):
    """The real server, with accept loops that notice a stop within 20 ms (not 0.5 s)."""

    accept_poll = 0.02

    def serve_forever(self, poll_interval: float = 0.02) -> None:
        super().serve_forever(poll_interval)


class TLSClient(IRCClient):
    """conftest's test client over TLS, pinning ``cert`` (checked against 127.0.0.1)."""

    def __init__(self, port: int, cert: Path, *, timeout: float = REPLY_TIMEOUT, **wrap) -> None:
        super().__init__("127.0.0.1", port, timeout=timeout)
        context = ssl.create_default_context(cafile=str(cert))
        self.sock = context.wrap_socket(self.sock, server_hostname="127.0.0.1", **wrap)


@pytest.fixture
def tls_factory(tmp_path: Path) -> Iterator[Callable[..., ChatServer]]:
    """Start servers with TLS on (port 0, certificate under tmp_path) and more settings."""
    made: list[ChatServer] = []

    def make(**overrides: object) -> ChatServer:
        settings = {"tls": True, "tls_port": 0, "tls_dir": str(tmp_path / "tls"), **overrides}
        server = QuickServer(make_config(**settings))
        made.append(server)
        server.start()
        return server

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def clients() -> Iterator[Callable[..., IRCClient]]:
    """Open clients to a server: ``clients(server, "alice")`` over TLS (pinned), or with
    ``tls=False`` to its plain port."""
    made: list[IRCClient] = []

    def make(server: ChatServer, nick: str | None = None, *, tls: bool = True, **kw) -> IRCClient:
        if tls:
            c: IRCClient = TLSClient(server.tls_port, server.tls.cert_path, **kw)
        else:
            c = IRCClient("127.0.0.1", server.port, **kw)
        made.append(c)
        if nick:
            c.register(nick)
        return c

    yield make
    for c in made:
        c.close()


def raw(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=REPLY_TIMEOUT)
    return s


def read_to_eof(sock: socket.socket, timeout: float = REPLY_TIMEOUT) -> bytes:
    """Everything until the peer closes (or resets); fails if it does not within timeout."""
    got = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"still open after {timeout} s; got {got[-200:]!r}"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return got
        if not chunk:
            return got
        got += chunk


def client_hello() -> bytes:
    """The first flight of a real TLS client, as bytes (for the plain port)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log records that would alarm an operator: errors, or any traceback."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


# --- chat over TLS ----------------------------------------------------------------------


def test_tls_and_plain_clients_chat_in_one_room(tls_factory, clients):
    server = tls_factory()
    alice = clients(server, "alice")  # TLS
    bob = clients(server, "bob", tls=False)
    assert alice.sock.version() in ("TLSv1.2", "TLSv1.3")
    alice.join("#lan")
    bob.join("#lan")
    alice.send("PRIVMSG #lan :over TLS")
    assert bob.expect("PRIVMSG").params == ("#lan", "over TLS")
    bob.send("PRIVMSG #lan :in clear")
    assert alice.expect("PRIVMSG").params == ("#lan", "in clear")
    bob.send("PRIVMSG alice :private")
    assert alice.expect("PRIVMSG").params == ("alice", "private")


def test_a_quit_over_tls_ends_with_close_notify(tls_factory, clients):
    server = tls_factory()
    # suppress_ragged_eofs=False: a close without close_notify would raise SSLEOFError
    c = clients(server, "leaver", suppress_ragged_eofs=False)
    c.send("QUIT :bye")
    err = c.expect("ERROR")
    assert "bye" in err.params[0]
    c.sock.settimeout(REPLY_TIMEOUT)
    assert c.sock.recv(4096) == b""  # close_notify: a clean end of the TLS stream


def test_a_big_fanout_burst_over_tls_arrives_complete_and_in_order(tls_factory, clients):
    server = tls_factory(flood_limit=False)
    sender = clients(server, "sender")
    receivers = [clients(server, f"r{i}") for i in range(4)]
    receivers.append(clients(server, "plain", tls=False))
    for c in [sender, *receivers]:
        c.join("#big")
    last = receivers[-1].nick
    for c in [sender, *receivers[:-1]]:
        c.expect("JOIN", where=lambda m: m.nick == last)
    total = 3000
    text = "y" * 80
    sender.send_raw(b"".join(f"PRIVMSG #big :{n} {text}\r\n".encode() for n in range(total)))
    for c in receivers:
        got = [int(c.expect("PRIVMSG", timeout=15).params[1].split()[0]) for _ in range(total)]
        assert got == list(range(total)), f"{c.nick} lost or reordered lines"


def test_sendq_overflow_over_tls_drops_only_that_client(tls_factory, clients, tmp_path):
    server = tls_factory(flood_limit=False, sendq_bytes=64 * 1024)
    talker = clients(server, "talker")
    listener = clients(server, "listener")
    talker.join("#lan")
    listener.join("#lan")
    # a TLS client that joins and then never reads again (small window, set before connect)
    stuck_raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stuck_raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck_raw.settimeout(REPLY_TIMEOUT)
    stuck_raw.connect(("127.0.0.1", server.tls_port))
    context = ssl.create_default_context(cafile=str(server.tls.cert_path))
    stuck = context.wrap_socket(stuck_raw, server_hostname="127.0.0.1")
    try:
        stuck.sendall(b"NICK stuck\r\nUSER s 0 * :never reads\r\nJOIN #lan\r\n")
        listener.expect("JOIN", where=lambda m: m.nick == "stuck")
        total, text = 12000, "x" * 400  # ~5 MB towards the stuck client
        received = bytearray()

        def drain() -> None:  # a healthy TLS reader
            listener.sock.settimeout(20)
            while received.count(b" QUIT ") == 0 or received.count(b"PRIVMSG") < total:
                try:
                    data = listener.sock.recv(1 << 16)
                except OSError:
                    return
                if not data:
                    return
                received.extend(data)

        reader = threading.Thread(target=drain)
        reader.start()
        for batch in range(0, total, 200):
            talker.send_raw(
                b"".join(
                    f"PRIVMSG #lan :{n} {text}\r\n".encode() for n in range(batch, batch + 200)
                )
            )
            time.sleep(0.01)
        reader.join(30)
    finally:
        stuck.close()
    lines = [parse(line) for line in bytes(received).split(b"\r\n") if line]
    numbers = [int(m.params[1].split()[0]) for m in lines if m.command == "PRIVMSG"]
    assert numbers == list(range(total)), "the healthy TLS reader lost or reordered messages"
    quits = [m for m in lines if m.command == "QUIT" and m.nick == "stuck"]
    assert [q.params[0] for q in quits] == ["SendQ exceeded"]
    talker.send("PRIVMSG #lan :still here")  # the others go on
    assert listener.expect("PRIVMSG").params[1] == "still here"


def test_shutdown_says_goodbye_over_tls_and_leaks_nothing(tls_factory, clients, caplog):
    caplog.set_level(logging.INFO)
    threads_before = {t.ident for t in threading.enumerate()}
    fds_before = len(os.listdir("/proc/self/fd"))
    server = tls_factory()
    tls_users = [clients(server, f"t{i}") for i in range(3)]
    plain_user = clients(server, "p", tls=False)
    stalled = raw(server.tls_port)  # connected, in no hurry to shake hands
    server.stop()
    for c in [*tls_users, plain_user]:
        assert c.expect("ERROR").params[0] == "Server shutting down"
        assert c.wait_closed()
    assert read_to_eof(stalled) == b""
    stalled.close()
    for c in [*tls_users, plain_user]:
        c.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        extra = [t for t in threading.enumerate() if t.ident not in threads_before]
        if not extra and len(os.listdir("/proc/self/fd")) <= fds_before:
            break
        time.sleep(0.05)
    assert not [t.name for t in threading.enumerate() if t.ident not in threads_before]
    assert len(os.listdir("/proc/self/fd")) <= fds_before
    assert not problems(caplog)


# --- the certificate ----------------------------------------------------------------------


def _config(tmp_path: Path, **overrides: object) -> Config:
    return make_config(tls=True, tls_port=0, tls_dir=str(tmp_path / "tls"), **overrides)


def test_first_start_makes_a_certificate_and_the_next_reuses_it(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    config = _config(tmp_path)
    first = load_or_create(config, addresses=["192.0.2.7", "fe80::1"])
    cert_path, key_path = tmp_path / "tls" / CERT_FILE, tmp_path / "tls" / KEY_FILE
    assert (first.cert_path, first.key_path) == (cert_path, key_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.parent.stat().st_mode) == 0o700
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = names.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]
    host = socket.gethostname()
    assert "localhost" in dns and f"{host.split('.')[0]}.local" in dns
    assert ips[:2] == ["127.0.0.1", "::1"] and "192.0.2.7" in ips
    assert "fe80::1" not in ips  # link-local: no certificate can name its scope
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert 3650 <= days <= 3651
    assert first.fingerprint == certificate_fingerprint(cert_path)
    before = (cert_path.read_bytes(), key_path.read_bytes())
    again = load_or_create(config)
    assert again.fingerprint == first.fingerprint
    assert (cert_path.read_bytes(), key_path.read_bytes()) == before


def test_the_certificate_goes_beside_the_database_by_default(tmp_path):
    db = tmp_path / "data" / "history.sqlite3"
    config = make_config(tls=True, tls_port=0, db=str(db), history=False)
    material = load_or_create(config, addresses=[])
    assert material.cert_path == db.parent / CERT_FILE


def test_a_key_others_can_read_is_refused(tmp_path, capsys):
    config = _config(tmp_path)
    material = load_or_create(config, addresses=[])
    material.key_path.chmod(0o640)
    with pytest.raises(TLSSetupError, match="chmod 600"):
        ChatServer(config)
    argv = ["--host", "127.0.0.1", "--port", "0", "--tls-port", "0", "--db", ":memory:"]
    assert server_main([*argv, "--tls-dir", str(material.key_path.parent)]) == 1
    err = capsys.readouterr().err
    assert f"the TLS key {material.key_path} is open to its group" in err
    assert "chmod 600" in err


def test_a_certificate_and_a_key_that_do_not_match_are_refused(tmp_path, capsys):
    one = load_or_create(make_config(tls=True, tls_dir=str(tmp_path / "one")), addresses=[])
    two = load_or_create(make_config(tls=True, tls_dir=str(tmp_path / "two")), addresses=[])
    argv = ["--host", "127.0.0.1", "--port", "0", "--tls-port", "0", "--db", ":memory:"]
    mixed = ["--tls-cert", str(one.cert_path), "--tls-key", str(two.key_path)]
    assert server_main([*argv, *mixed]) == 1
    assert "do not match" in capsys.readouterr().err
    assert server_main([*argv, "--tls-cert", str(one.cert_path)]) == 2  # no key
    assert "--tls-key" in capsys.readouterr().err
    # the right pair, given: served as is (the fingerprint is that certificate's)
    given = load_or_create(
        make_config(tls=True, tls_cert=str(one.cert_path), tls_key=str(one.key_path))
    )
    assert given.fingerprint == one.fingerprint


def test_half_a_pair_is_refused_not_replaced(tmp_path):
    config = _config(tmp_path)
    material = load_or_create(config, addresses=[])
    material.key_path.unlink()
    with pytest.raises(TLSSetupError, match="is missing"):
        load_or_create(config)
    assert material.cert_path.exists()


@pytest.mark.skipif(OPENSSL is None, reason="needs openssl (apt-get install openssl)")
def test_fingerprint_command_prints_what_openssl_prints(tmp_path, capsys):
    db = tmp_path / "history.sqlite3"
    material = load_or_create(make_config(tls=True, db=str(db)), addresses=[])
    assert server_main(["fingerprint", "--db", str(db)]) == 0
    ours = capsys.readouterr().out.strip()
    assert server_main(["fingerprint", "--tls-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == ours
    assert server_main(["fingerprint", "--tls-cert", str(material.cert_path)]) == 0
    assert capsys.readouterr().out.strip() == ours
    theirs = subprocess.run(
        [OPENSSL, "x509", "-noout", "-fingerprint", "-sha256", "-in", str(material.cert_path)],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout.strip()
    # OpenSSL 1.1 and LibreSSL print "SHA256 Fingerprint=", OpenSSL 3 "sha256 ...=": the
    # label's case is theirs to choose, the hex is the certificate's
    assert ours.lower() == theirs.lower() and ours.startswith("SHA256 Fingerprint=")
    assert ours.partition("=")[2] == theirs.partition("=")[2] == material.fingerprint
    assert server_main(["fingerprint", "--tls-dir", str(tmp_path / "nothing")]) == 1
    assert "no certificate" in capsys.readouterr().err


def test_start_prints_the_fingerprint_and_the_tls_commands(tmp_path, server_process):
    tls_port = free_port()
    sp = server_process("--db", ":memory:", "--tls-port", str(tls_port), "--tls-dir", str(tmp_path))
    fingerprint = certificate_fingerprint(tmp_path / CERT_FILE)
    out, err = sp.stop()
    assert f"SHA256 Fingerprint={fingerprint}" in out.splitlines()
    assert f"127.0.0.1:{tls_port} (TLS)" in out
    assert f"TLS on port {tls_port}, certificate SHA256 Fingerprint={fingerprint}" in err
    assert f"chatroom-client ircs://127.0.0.1:{tls_port}" in err
    assert f"/connect -tls -tls_pinned_cert {fingerprint} 127.0.0.1 {tls_port}" in err
    hexdigits = fingerprint.replace(":", "").lower()
    assert f"-tls_fingerprint={hexdigits}" in err


# --- real TLS clients ---------------------------------------------------------------------


@pytest.mark.skipif(OPENSSL is None, reason="needs openssl (apt-get install openssl)")
@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_openssl_s_client_shakes_hands_and_registers(tls_factory, version):
    server = tls_factory()
    done = subprocess.run(
        [
            OPENSSL,
            "s_client",
            "-connect",
            f"127.0.0.1:{server.tls_port}",
            "-quiet",
            version,
            "-CAfile",
            str(server.tls.cert_path),
            "-verify_ip",
            "127.0.0.1",
            "-verify_return_error",
        ],
        input=b"NICK ossl\r\nUSER o 0 * :openssl\r\nQUIT :done\r\n",
        capture_output=True,
        timeout=15,
    )
    assert b" 001 ossl " in done.stdout, done.stderr.decode(errors="replace")
    assert b"ERROR :Closing Link" in done.stdout


class SClient:
    """``openssl s_client`` with its command letters on (no -quiet, no -ign_eof): a line
    ``K`` alone asks for a key update, ``R`` renegotiates (TLS 1.2)."""

    def __init__(self, port: int, *flags: str) -> None:
        self.proc = subprocess.Popen(
            [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", *flags],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.out = bytearray()
        self.reader = threading.Thread(target=self._pump)
        self.reader.start()

    def _pump(self) -> None:
        while chunk := self.proc.stdout.read1(65536):
            self.out.extend(chunk)

    def write(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def wait_for(self, what: bytes, times: int = 1) -> None:
        deadline = time.monotonic() + 10
        while self.out.count(what) < times and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.out.count(what) >= times, bytes(self.out[-800:])

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.reader.join(5)
        self.proc.stdout.close()


@pytest.mark.skipif(OPENSSL is None, reason="needs openssl (apt-get install openssl)")
def test_key_updates_keep_the_stream_readable(tls_factory):
    """TLS 1.3 KeyUpdate asking for ours: our reply and every line after it must come
    out of the one TLSStream in order, or the client could not decrypt what follows."""
    server = tls_factory()
    c = SClient(server.tls_port, "-tls1_3")
    try:
        c.write(b"NICK ku\r\nUSER k 0 * :k\r\n")
        c.wait_for(b" 376 ku ")
        for n in range(3):
            c.write(b"K\n")  # alone in its read(): a command, not a line
            c.wait_for(b"KEYUPDATE\n", n + 1)
            time.sleep(0.1)
            c.write(f"PING :k{n}\r\n".encode())
            c.wait_for(f"PONG test.server k{n}\r\n".encode())
    finally:
        c.close()


@pytest.mark.skipif(OPENSSL is None, reason="needs openssl (apt-get install openssl)")
def test_a_record_the_reader_makes_follows_the_writers_in_order(
    tls_factory, clients, monkeypatch, caplog
):
    """A TLS 1.2 renegotiation is refused with an alert that the reader thread makes,
    after thousands of records the writer made for the same connection: the client can
    read the alert only if it went out after them, in sequence. (It must arrive while no
    line is in flight: a client renegotiating takes application data as an error.)"""
    from chatroom.server.outbox import Outbox

    caplog.set_level(logging.INFO)
    made = []
    records_made = Outbox.records_made
    monkeypatch.setattr(Outbox, "records_made", lambda ob: (made.append(1), records_made(ob)))
    server = tls_factory(flood_limit=False)
    talker = clients(server, "talker", tls=False)
    talker.join("#lan")
    c = SClient(server.tls_port, "-tls1_2")
    try:
        c.write(b"NICK reneg\r\nUSER r 0 * :r\r\nJOIN #lan\r\n")
        c.wait_for(b" 366 reneg #lan ")
        talker.send_raw(
            b"".join(f"PRIVMSG #lan :{n} {'z' * 200}\r\n".encode() for n in range(3000))
        )
        c.wait_for(b"PRIVMSG #lan :2999 ")
        c.write(b"R\n")
        c.wait_for(b"no renegotiation")
    finally:
        c.close()
    assert made, "the alert was made by the reader thread"
    assert b"bad record mac" not in c.out and b"decryption failed" not in c.out
    talker.send("PRIVMSG #lan :still fine")  # the server carries on
    assert not problems(caplog)


# --- hostile peers --------------------------------------------------------------------------


def test_plain_text_on_the_tls_port_is_answered_in_clear(tls_factory, caplog):
    caplog.set_level(logging.INFO)
    server = tls_factory()
    s = raw(server.tls_port)
    s.sendall(b"NICK lost\r\nUSER l 0 * :wrong port\r\n")
    got = read_to_eof(s)
    s.close()
    assert got == (
        b"ERROR :Closing Link: this is the TLS port; use port"
        + f" {server.port} for plain text, or TLS\r\n".encode()
    )
    assert not problems(caplog)
    assert not server._sessions  # never a client


def test_tls_on_the_plain_port_is_told_the_tls_port(tls_factory, caplog):
    caplog.set_level(logging.INFO)
    server = tls_factory()
    s = raw(server.port)
    s.sendall(client_hello())
    got = read_to_eof(s)
    s.close()
    assert got.startswith(b"ERROR :Closing Link: 127.0.0.1 (this is the plain-text IRC port")
    assert f"use port {server.tls_port} for TLS".encode() in got
    assert not problems(caplog)


def test_garbage_instead_of_a_client_hello_is_closed(tls_factory, caplog):
    caplog.set_level(logging.DEBUG)  # a failed handshake is a DEBUG line (clients probe)
    server = tls_factory()
    # Each is refused on its first bytes, whatever follows. (A random record header
    # was not: one time in about a thousand it announced a record longer than what
    # came, and the server waited for the rest until its handshake timeout.)
    junk_records = [
        b"\x16\x03\x01\x00\x05hello",  # a handshake record holding no ClientHello
        b"\x16\x07\x07" + os.urandom(300),  # no TLS record version
        b"\x16\x03\x01\x01\x2c\x02" + os.urandom(299),  # a ServerHello from a client
    ]
    for junk in junk_records:
        s = raw(server.tls_port)
        s.sendall(junk)
        got = read_to_eof(s)
        s.close()
        assert not got.startswith(b"ERROR"), "garbage that looks like TLS gets no IRC reply"
    assert not problems(caplog)
    assert any("TLS handshake failed" in r.getMessage() for r in caplog.records)


def test_a_slow_handshake_times_out_and_frees_its_thread(tls_factory, caplog):
    caplog.set_level(logging.INFO)
    server = tls_factory(tls_handshake_timeout=0.5)
    silent = raw(server.tls_port)  # says nothing at all
    dribble = raw(server.tls_port)  # starts a ClientHello, then stalls
    dribble.sendall(client_hello()[:20])
    start = time.monotonic()
    assert read_to_eof(silent) == b"" and read_to_eof(dribble) == b""
    assert time.monotonic() - start < 3
    silent.close()
    dribble.close()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        with server._lock:
            if not server._conn_threads and not server._handshakes:
                break
        time.sleep(0.02)
    assert not server._conn_threads and not server._handshakes
    timed_out = [r for r in caplog.records if "TLS handshake timed out" in r.getMessage()]
    assert len(timed_out) == 2
    assert not problems(caplog)


def test_handshakes_per_address_are_limited(tls_factory, clients):
    server = tls_factory(exempt_loopback=False, max_per_address=2)
    waiting = [raw(server.tls_port) for _ in range(2)]
    time.sleep(0.2)  # both are in their handshake now
    third = raw(server.tls_port)
    assert read_to_eof(third, timeout=2) == b""  # refused at once
    third.close()
    for s in waiting:
        s.close()
    deadline = time.monotonic() + 3
    while server._handshakes and time.monotonic() < deadline:
        time.sleep(0.02)
    clients(server, "after")  # the count went back down


def test_a_broken_record_after_the_handshake_ends_only_that_connection(
    tls_factory, clients, caplog
):
    caplog.set_level(logging.INFO)
    server = tls_factory()
    watcher = clients(server, "watcher")
    victim = clients(server, "victim")
    watcher.join("#lan")
    victim.join("#lan")
    with socket.socket(fileno=os.dup(victim.sock.fileno())) as under:
        under.sendall(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)  # not what the key makes
    quit_msg = watcher.expect("QUIT", where=lambda m: m.nick == "victim")
    assert quit_msg.params[0].startswith("Read error: TLS")
    assert not problems(caplog)


# --- which ports --------------------------------------------------------------------------


def test_plaintext_loopback_binds_the_plain_port_to_loopback_only():
    # TLS off here, so that nothing in this test listens beyond loopback
    server = QuickServer(make_config(host="0.0.0.0", plaintext="loopback"))
    try:
        assert server.server_address[0] == "127.0.0.1"
        assert server.tls_port is None
    finally:
        server.server_close()
        server.writer.stop(0)
    server = QuickServer(make_config(host="::", plaintext="loopback"))
    try:
        assert server.server_address[0] == "127.0.0.1"
        assert all(ln.server_address[0] == "::1" for ln in server._listeners)
    finally:
        server.server_close()
        server.writer.stop(0)


def test_plaintext_off_opens_no_plain_port(tls_factory, clients):
    server = tls_factory(plaintext="off")
    assert server.port is None and server.socket.fileno() == -1
    assert [ln.port for ln in server._listeners] == [server.tls_port]
    clients(server, "only")


def test_plaintext_off_without_tls_is_refused(capsys):
    with pytest.raises(ValueError, match="no port"):
        ChatServer(make_config(plaintext="off"))
    assert server_main(["--plaintext", "off", "--no-tls", "--db", ":memory:"]) == 2
    assert "no port" in capsys.readouterr().err
    with pytest.raises(ValueError, match="plaintext"):
        ChatServer(dataclasses.replace(make_config(), plaintext="maybe"))
