"""TLS and trust on first use in the real client app, driven by Pilot, against TLS
servers on 127.0.0.1 with certificates made here (ECDSA P-256, self-signed).

The first connection asks, showing the SHA-256 fingerprint; Trust keeps it (0600) and
registers over TLS; the next connection does not ask; a server restarted on the same port
with another certificate is refused (by a fresh start and by an automatic reconnect) with
both fingerprints and the command that forgets the old one, which lets the question come
back; ``--trust-fingerprint`` accepts the one named and refuses any other; Cancel neither
connects nor keeps anything; a certificate an authority vouches for needs no question.
"""

from __future__ import annotations

import datetime
import doctest
import hashlib
import ipaddress
import json
import ssl
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NamedTuple

import pytest
from client_helpers import TERMINAL_SIZE, wait_until
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fake_server import FakeServer
from textual.pilot import Pilot
from textual.widgets import Input, Static, Switch

import chatroom.client.connection as connection_module
from chatroom.client import cli, config, trust
from chatroom.client.app import ChatApp, make_app
from chatroom.client.config import CONFIG_DIR_ENV, RecentServer, load_recent, remember_server
from chatroom.client.model import SERVER_KEY
from chatroom.client.screens.connect import ConnectScreen
from chatroom.client.screens.dialogs import TrustRefusedScreen, TrustScreen
from chatroom.client.trust import KNOWN_FILE, KnownServers, normalise_fingerprint

HOST = "127.0.0.1"


class Cert(NamedTuple):
    cert: Path
    key: Path
    fingerprint: str  # as openssl prints it, computed here (not by the code under test)


def make_cert(
    directory: Path,
    name: str,
    *,
    names: tuple[str, ...] = ("localhost",),
    ips: tuple[str, ...] = (HOST,),
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    ca: bool = False,
) -> tuple[Cert, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A P-256 certificate for ``names`` and ``ips``: self-signed, or signed by ``issuer``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"chatroom test {name}")])
    now = datetime.datetime.now(datetime.UTC)
    alt = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    signer_cert, signer_key = issuer if issuer is not None else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer_cert.subject if signer_cert is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    if signer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
            critical=False,
        )
    certificate = builder.sign(signer_key, hashes.SHA256())
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    digest = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()
    fingerprint = ":".join(f"{b:02X}" for b in digest)
    return Cert(cert_path, key_path, fingerprint), certificate, key


def self_signed(directory: Path, name: str) -> Cert:
    return make_cert(directory, name)[0]


def server_context(cert: Cert) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert, cert.key)
    return context


@asynccontextmanager
async def tls_server(cert: Cert, port: int = 0) -> AsyncIterator[FakeServer]:
    server = await FakeServer(tls=server_context(cert), port=port).start()
    try:
        yield server
    finally:
        await server.close()


@asynccontextmanager
async def client(
    server: FakeServer, config_dir: Path, **kwargs: object
) -> AsyncIterator[tuple[ChatApp, Pilot]]:
    """The real app connecting with TLS to ``server`` (its own test config dir)."""
    kwargs.setdefault("tls", True)
    app = make_app(HOST, server.port, "alice", config_dir=config_dir, **kwargs)  # type: ignore[arg-type]
    async with app.run_test(size=TERMINAL_SIZE) as pilot:
        try:
            yield app, pilot
        finally:
            if app.connection is not None:
                await app.connection.close("test over")


def shown(app: ChatApp) -> str:
    """What the dialog on top says."""
    return str(app.screen.query_one("#question", Static).render())


def server_lines(app: ChatApp) -> str:
    """The server window's lines."""
    return "\n".join(e.text for e in app.state.buffers[SERVER_KEY].entries)


def shows_fingerprint(text: str, fingerprint: str) -> bool:
    """The dialogs show a fingerprint in two halves, one per line."""
    return fingerprint[:47] in text and fingerprint[48:] in text


def known(config_dir: Path) -> dict[str, dict[str, str]]:
    return json.loads((config_dir / KNOWN_FILE).read_text())


def registration_lines(server: FakeServer) -> list[str]:
    return [str(m) for link in server.links for m in link.received]


async def asked(app: ChatApp, pilot: Pilot) -> TrustScreen:
    await wait_until(pilot, lambda: isinstance(app.screen, TrustScreen), what="trust question")
    screen = app.screen
    assert isinstance(screen, TrustScreen)
    # Laid out (the buttons have a place on screen) before anyone clicks them.
    await wait_until(pilot, lambda: screen.query_one("#trust").region.width > 0, what="layout")
    return screen


async def refused(app: ChatApp, pilot: Pilot) -> str:
    await wait_until(
        pilot, lambda: isinstance(app.screen, TrustRefusedScreen), what="refusal screen"
    )
    await wait_until(pilot, lambda: app.conn_state == "closed", what="closed for good")
    # Pushed is not yet composed: on a loaded machine the text may come a frame later.
    await wait_until(pilot, lambda: bool(app.screen.query("#question")), what="refusal text")
    return shown(app)


async def connected(app: ChatApp, pilot: Pilot) -> None:
    await wait_until(pilot, lambda: app.conn_state == "connected", what="registered")


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    return tmp_path / "config"


# --- first use, stored trust ---------------------------------------------------------


async def test_first_use_asks_then_trust_keeps_it_and_registers_over_tls(
    tmp_path: Path, config_dir: Path
) -> None:
    cert = self_signed(tmp_path, "a")
    async with tls_server(cert) as server:
        address = f"{HOST}:{server.port}"
        async with client(server, config_dir, expected_fingerprint=cert.fingerprint.lower()) as (
            app,
            pilot,
        ):
            screen = await asked(app, pilot)
            text = shown(app)
            assert shows_fingerprint(text, cert.fingerprint)
            assert f"First connection to {address}" in text
            assert "matches the fingerprint the server announced" in text
            assert screen.question.address == address
            assert registration_lines(server) == []  # nothing sent while asking
            assert not (config_dir / KNOWN_FILE).exists()
            await pilot.click("#trust")
            await connected(app, pilot)
            link = server.link
            assert link.registered and link.nick == "alice"
            assert link.writer.get_extra_info("ssl_object") is not None
            assert app.connection is not None
            assert app.connection.tls_version in ("TLSv1.2", "TLSv1.3")
            assert app.connection.auth.secure  # PLAIN allowed: the link is TLS
        entry = known(config_dir)[address]
        assert entry["sha256"] == cert.fingerprint
        mode = stat.S_IMODE((config_dir / KNOWN_FILE).stat().st_mode)
        assert mode == 0o600
        assert load_recent(config_dir)[0] == RecentServer(HOST, server.port, "alice", "", True)

        # The next connection to the same host:port: no question.
        async with client(server, config_dir) as (app, pilot):
            await connected(app, pilot)
            assert not any(isinstance(s, TrustScreen) for s in app.screen_stack)
            assert "trusted on first use" in server_lines(app)
        assert len(server.links) == 2  # one TLS link per connection (+ refused verifications)


async def test_cancel_neither_connects_nor_keeps_anything(tmp_path: Path, config_dir: Path) -> None:
    cert = self_signed(tmp_path, "a")
    announced = self_signed(tmp_path, "other").fingerprint
    async with (
        tls_server(cert) as server,
        client(server, config_dir, expected_fingerprint=announced) as (app, pilot),
    ):
        await asked(app, pilot)
        text = shown(app)
        assert "does NOT match" in text and shows_fingerprint(text, announced)
        await pilot.click("#cancel")
        await wait_until(pilot, lambda: app.conn_state == "closed", what="closed")
        assert "did not trust" in server_lines(app)
        assert registration_lines(server) == []
        assert not any(link.registered for link in server.links)
        assert not (config_dir / KNOWN_FILE).exists()


async def test_closing_while_asking_takes_the_question_away(
    tmp_path: Path, config_dir: Path
) -> None:
    cert = self_signed(tmp_path, "a")
    async with tls_server(cert) as server, client(server, config_dir) as (app, pilot):
        await asked(app, pilot)
        assert app.connection is not None
        await app.connection.close("changed my mind")
        await wait_until(pilot, lambda: not isinstance(app.screen, TrustScreen), what="gone")
        assert app.conn_state == "closed"
        assert registration_lines(server) == []
    assert not (config_dir / KNOWN_FILE).exists()


# --- a changed certificate ------------------------------------------------------------


async def test_changed_certificate_on_reconnect_is_refused_without_a_loop(
    tmp_path: Path, config_dir: Path
) -> None:
    old, new = self_signed(tmp_path, "old"), self_signed(tmp_path, "new")
    async with tls_server(old) as first:
        port = first.port
        KnownServers(config_dir).trust(f"{HOST}:{port}", old.fingerprint)
        async with client(first, config_dir, backoff_base=0.05) as (app, pilot):
            await connected(app, pilot)  # trusted already: no question
            assert not isinstance(app.screen, TrustScreen)
            await first.close()  # the server restarts...
            async with tls_server(new, port) as second:  # ...with another certificate
                text = await refused(app, pilot)
                assert shows_fingerprint(text, old.fingerprint)
                assert shows_fingerprint(text, new.fingerprint)
                assert f"chatroom-client --forget-fingerprint {HOST}:{port}" in text
                assert registration_lines(second) == []
                tries = len(second.links)
                await pilot.pause(0.5)  # ten backoff periods: no more tries
                assert len(second.links) == tries == 1
                assert app.conn_state == "closed"
    assert known(config_dir)[f"{HOST}:{port}"]["sha256"] == old.fingerprint


async def test_changed_certificate_is_refused_until_forgotten(
    tmp_path: Path,
    config_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old, new = self_signed(tmp_path, "old"), self_signed(tmp_path, "new")
    async with tls_server(old) as first:
        port = first.port
        async with client(first, config_dir) as (app, pilot):
            await asked(app, pilot)
            await pilot.click("#trust")
            await connected(app, pilot)
    address = f"{HOST}:{port}"
    async with tls_server(new, port) as second:
        async with client(second, config_dir) as (app, pilot):
            text = await refused(app, pilot)
            assert "has changed" in text
            assert shows_fingerprint(text, old.fingerprint)
            assert shows_fingerprint(text, new.fingerprint)
            assert f"chatroom-client --forget-fingerprint {address}" in text
            assert "--forget-fingerprint" in server_lines(app)
            assert registration_lines(second) == []
            # One button, and it only closes: no way on to the server from here.
            assert [b.id for b in app.screen.query("Button")] == ["close"]
            await pilot.click("#close")
            assert app.conn_state == "closed"

        monkeypatch.setenv(CONFIG_DIR_ENV, str(config_dir))
        assert cli.main(["--forget-fingerprint", address]) == 0
        assert f"Forgot SHA-256 {old.fingerprint} for {address}" in capsys.readouterr().out
        assert address not in known(config_dir)
        assert cli.main(["--forget-fingerprint", address]) == 1  # nothing left to forget
        assert "No fingerprint is trusted" in capsys.readouterr().err

        async with client(second, config_dir) as (app, pilot):
            await asked(app, pilot)
            assert shows_fingerprint(shown(app), new.fingerprint)
            await pilot.click("#trust")
            await connected(app, pilot)
    assert known(config_dir)[address]["sha256"] == new.fingerprint


# --- --trust-fingerprint ----------------------------------------------------------------


async def test_trust_fingerprint_accepts_that_one_without_asking(
    tmp_path: Path, config_dir: Path
) -> None:
    cert = self_signed(tmp_path, "a")
    written = cert.fingerprint.replace(":", "").lower()  # any case, colons or not
    async with (
        tls_server(cert) as server,
        client(server, config_dir, trust_fingerprint=written) as (app, pilot),
    ):
        await connected(app, pilot)
        assert not any(isinstance(s, TrustScreen) for s in app.screen_stack)
        assert server.link.registered
        assert len(server.links) == 1  # straight to the fingerprint: no CA attempt
    assert not (config_dir / KNOWN_FILE).exists()  # a script's pin is not written down


async def test_wrong_trust_fingerprint_is_refused_without_asking(
    tmp_path: Path, config_dir: Path
) -> None:
    cert, other = self_signed(tmp_path, "a"), self_signed(tmp_path, "b")
    async with (
        tls_server(cert) as server,
        client(server, config_dir, trust_fingerprint=other.fingerprint) as (app, pilot),
    ):
        text = await refused(app, pilot)
        assert "--trust-fingerprint" in text
        assert shows_fingerprint(text, other.fingerprint)
        assert shows_fingerprint(text, cert.fingerprint)
        assert not any(isinstance(s, TrustScreen) for s in app.screen_stack)
        assert registration_lines(server) == []
    assert not (config_dir / KNOWN_FILE).exists()


# --- certificates an authority vouches for ------------------------------------------------


@pytest.fixture
def test_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A certificate authority the client trusts (in place of the system's)."""
    ca, ca_cert, ca_key = make_cert(tmp_path, "ca", names=(), ips=(), ca=True)
    verifying = ssl.create_default_context(cafile=str(ca.cert))
    unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    monkeypatch.setattr(connection_module, "_tls_contexts", (verifying, unverified))
    return ca_cert, ca_key


async def test_a_certificate_valid_for_the_host_is_accepted_silently(
    tmp_path: Path, config_dir: Path, test_ca
) -> None:
    leaf = make_cert(tmp_path, "leaf", issuer=test_ca)[0]
    async with tls_server(leaf) as server, client(server, config_dir) as (app, pilot):
        await connected(app, pilot)
        assert not any(isinstance(s, TrustScreen) for s in app.screen_stack)
        assert "certificate authority" in server_lines(app)
    assert not (config_dir / KNOWN_FILE).exists()


async def test_a_valid_certificate_for_another_name_is_asked_about(
    tmp_path: Path, config_dir: Path, test_ca
) -> None:
    leaf = make_cert(tmp_path, "leaf", names=("elsewhere.example",), ips=(), issuer=test_ca)[0]
    async with tls_server(leaf) as server, client(server, config_dir) as (app, pilot):
        await asked(app, pilot)
        assert shows_fingerprint(shown(app), leaf.fingerprint)
        assert "mismatch" in shown(app).lower()  # OpenSSL's reason: the host name


# --- our own server ------------------------------------------------------------------------


async def test_our_server_with_its_own_certificate(
    tmp_path: Path, config_dir: Path, server_factory
) -> None:
    """chatroom-server makes a certificate on first start; the client shows the same
    fingerprint the server prints, and registers over TLS once it is trusted."""
    fx = server_factory(tls=True, tls_port=0, tls_dir=str(tmp_path / "server-tls"))
    server = fx.server
    assert server is not None and server.tls is not None and server.tls_port
    printed = server.tls.fingerprint
    app = make_app(HOST, server.tls_port, "alice", config_dir=config_dir, tls=True)
    async with app.run_test(size=TERMINAL_SIZE) as pilot:
        await asked(app, pilot)
        assert shows_fingerprint(shown(app), printed)
        await pilot.click("#trust")
        await connected(app, pilot)
        assert app.connection is not None and app.connection.tls_version
        assert "Welcome to the chatroom IRC Network alice" in server_lines(app)
        assert f"Connected to {HOST}:{server.tls_port} (TLS) as alice" in server_lines(app)
        await app.connection.close("test over")
    assert known(config_dir)[f"{HOST}:{server.tls_port}"]["sha256"] == printed


# --- TLS on, the other end plaintext ----------------------------------------------------


async def test_tls_to_a_plaintext_port_says_so_and_stops(config_dir: Path, irc_server) -> None:
    """Our server answers a ClientHello on its plaintext port with a plaintext ERROR:
    the client says what is wrong and stops (retrying cannot help)."""
    app = make_app(HOST, irc_server.port, "alice", config_dir=config_dir, tls=True)
    async with app.run_test(size=TERMINAL_SIZE) as pilot:
        await wait_until(pilot, lambda: app.conn_state == "closed", what="closed for good")
        reason = server_lines(app)
        assert "does not speak TLS" in reason and "6667" in reason


# --- the connect screen -----------------------------------------------------------------


async def test_connect_screen_tls_switch_follows_port_and_recent_servers(
    tmp_path: Path, config_dir: Path
) -> None:
    remember_server(RecentServer("chat.lan", 7000, "alice", "", tls=True), config_dir)
    app = make_app(None, nick="alice", config_dir=config_dir)
    async with app.run_test(size=TERMINAL_SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, ConnectScreen), what="connect")
        switch = app.screen.query_one("#tls", Switch)
        port = app.screen.query_one("#port", Input)
        assert (port.value, switch.value) == ("7000", True)  # as last time
        port.value = "6667"
        await wait_until(pilot, lambda: not switch.value, what="off for 6667")
        port.value = "6697"
        await wait_until(pilot, lambda: switch.value, what="on for 6697")
        switch.value = False
        await wait_until(pilot, lambda: port.value == "6667", what="port follows the switch")
        await pilot.pause()
        assert switch.value is False
        assert "6697" in str(app.screen.query_one("#tls-help", Static).render())


@pytest.mark.parametrize("how", ["typed", "discovered"])
async def test_connect_screen_tls_connection_asks_over_the_chat_screen(
    tmp_path: Path, config_dir: Path, how: str
) -> None:
    cert = self_signed(tmp_path, "a")
    async with tls_server(cert) as server:
        app = make_app(None, nick="alice", config_dir=config_dir)
        async with app.run_test(size=TERMINAL_SIZE) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, ConnectScreen), what="form")
            form = app.screen
            assert isinstance(form, ConnectScreen)
            if how == "typed":  # ircs:// says TLS, whatever the switch and port say
                form.query_one("#host", Input).value = f"ircs://{HOST}:{server.port}"
            else:  # as the discovery list fills the form: with the announced fingerprint
                form.choose(HOST, server.port, tls=True, fingerprint=cert.fingerprint)
            await pilot.click("#connect")
            await asked(app, pilot)
            announced = "matches the fingerprint the server announced" in shown(app)
            assert announced == (how == "discovered")
            await pilot.click("#trust")
            await connected(app, pilot)
            await app.connection.close("test over")  # type: ignore[union-attr]
    assert load_recent(config_dir)[0].tls


# --- the pieces ---------------------------------------------------------------------------


def test_fingerprints_are_read_in_any_spelling() -> None:
    fp = "AB:" * 31 + "CD"
    for spelling in (fp, fp.lower(), fp.replace(":", ""), f"sha256:{fp.lower()}", f" {fp} "):
        assert normalise_fingerprint(spelling) == fp
    for bad in ("", "AB:CD", fp + ":EF", fp.replace("A", "G")):
        with pytest.raises(ValueError):
            normalise_fingerprint(bad)


def test_cli_reads_tls_and_fingerprints(tmp_path: Path) -> None:
    assert tuple(cli.resolve_target("ircs://chat.lan")) == ("chat.lan", 6697, True)
    assert tuple(cli.resolve_target("irc://chat.lan")) == ("chat.lan", 6667, False)
    assert tuple(cli.resolve_target("chat.lan", tls=True)) == ("chat.lan", 6697, True)
    assert tuple(cli.resolve_target(None, tls=True)) == (None, 6697, True)
    with pytest.raises(ValueError):
        cli.resolve_target("irc://chat.lan", tls=True)
    with pytest.raises(SystemExit):
        cli.main(["--trust-fingerprint", "not-a-fingerprint", "chat.lan"])
    with pytest.raises(SystemExit):
        cli.main(["--trust-fingerprint", "AB" * 32, "irc://chat.lan"])
    code, text = cli.forget_fingerprint("ircs://[::1]", tmp_path)
    assert code == 1 and "[::1]:6697" in text


def test_doctests() -> None:
    for module in (trust, config, cli):
        result = doctest.testmod(module)
        assert result.failed == 0, module.__name__
