"""The server's LAN announcement (chatroom.server.announce): the records it builds (no
network), then what it really publishes over mDNS inside a private network namespace.

mDNS is multicast: these tests send it only inside a namespace they create
(``unshare --net``, only ``lo``, bound to 127.0.0.1), never on this machine's real
interfaces. Where no namespace can be made they skip and say why. The end-to-end
Announcer -> discover() cases are in tests/client/test_discovery.py.
"""

from __future__ import annotations

import doctest
import logging
from typing import Any

import pytest

from chatroom.server import announce
from chatroom.server.announce import IRC_SERVICE, IRCS_SERVICE, Announcer
from tests.netns import run_in_netns

FP = ":".join(f"{i:02X}" for i in range(32))

# Shared head of the namespace snippets: log records kept to report, loopback only.
_SETUP = """
import asyncio, json, logging, threading, time
from chatroom.server.announce import Announcer
LO = ["127.0.0.1"]
FP = ":".join(f"{i:02X}" for i in range(32))

class Keep(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []
    def emit(self, record):
        self.lines.append(f"{record.levelname} {record.getMessage()}")

kept = Keep()
logging.getLogger("chatroom.server.announce").addHandler(kept)
logging.getLogger("chatroom.server.announce").setLevel(logging.INFO)

def announcer(name="lan.example", plain=6667, tls=6697, interfaces=LO):
    return Announcer(name, "TestNet", "chatroom-9.9", LO, plain, tls, FP, interfaces,
                     host_name="box")

def thread_names():
    return [t.name for t in threading.enumerate()]
"""


@pytest.fixture
def no_mdns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a namespace no test may open mDNS sockets: fail if one tries."""

    def refuse(_interfaces: object) -> None:
        raise AssertionError("this test must not open mDNS sockets")

    monkeypatch.setattr(announce, "_new_zeroconf", refuse)


# --- the records it builds (no network) -----------------------------------------------


def test_doctests() -> None:
    result = doctest.testmod(announce)
    assert result.failed == 0 and result.attempted > 0


def make(**overrides: Any) -> Announcer:
    args: dict[str, Any] = {
        "server_name": "lan.example",
        "network": "LAN",
        "version": "chatroom-0.1.0",
        "host_addresses": ["192.168.1.20"],
        "plain_port": 6667,
        "tls_port": 6697,
        "fingerprint": FP,
        "host_name": "box",
    }
    return Announcer(**(args | overrides))


def test_both_records_with_the_other_port_and_the_fingerprint() -> None:
    plain, tls = make().service_infos()
    assert (plain.type, plain.name, plain.port) == (
        IRC_SERVICE,
        f"lan-example.{IRC_SERVICE}",
        6667,
    )
    assert (tls.type, tls.name, tls.port) == (IRCS_SERVICE, f"lan-example.{IRCS_SERVICE}", 6697)
    common = {
        b"name": b"lan.example",
        b"network": b"LAN",
        b"version": b"chatroom-0.1.0",
        b"fp": b"sha256:" + FP.encode(),
    }
    assert plain.properties == common | {b"tls": b"6697"}
    assert tls.properties == common | {b"plain": b"6667"}
    for info in (plain, tls):
        assert info.server == "box.local."
        assert info.parsed_addresses() == ["192.168.1.20"]


@pytest.mark.parametrize(
    ("plain_port", "tls_port", "types"),
    [(6667, None, [IRC_SERVICE]), (None, 6697, [IRCS_SERVICE]), (None, None, [])],
)
def test_only_the_ports_that_are_open(
    plain_port: int | None, tls_port: int | None, types: list[str]
) -> None:
    infos = make(plain_port=plain_port, tls_port=tls_port).service_infos()
    assert [info.type for info in infos] == types
    for info in infos:
        assert b"tls" not in info.properties and b"plain" not in info.properties


def test_fingerprint_forms_are_normalised() -> None:
    for given in (FP.lower(), FP.replace(":", ""), f"sha256 Fingerprint={FP}", f"sha256:{FP}"):
        (info, _) = make(fingerprint=given).service_infos()
        assert info.properties[b"fp"] == b"sha256:" + FP.encode()


def test_a_bad_fingerprint_is_left_out_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="chatroom.server.announce"):
        (info, _) = make(fingerprint="not-a-fingerprint").service_infos()
    assert b"fp" not in info.properties
    assert "not a SHA-256" in caplog.text
    (info, _) = make(fingerprint=None).service_infos()
    assert b"fp" not in info.properties


def test_instance_and_host_names_are_single_labels() -> None:
    (info, _) = make(
        server_name="irc.\x1bexample.org" + "x" * 100, host_name="my host.lan"
    ).service_infos()
    instance = info.name.removesuffix("." + IRC_SERVICE)
    assert "." not in instance and "\x1b" not in instance
    assert len(instance.encode()) <= 63
    assert info.server == "my-host.local."


def test_two_servers_on_one_machine_get_different_instance_names() -> None:
    # On one machine zeroconf's probing cannot be relied on to rename (its defending
    # reply is unicast to port 5353, which every local responder shares), so the
    # name carries a port whenever the ports are not the standard ones.
    standard = make().service_infos()
    other = make(plain_port=7000, tls_port=7001).service_infos()
    tls_only = make(plain_port=None, tls_port=7001).service_infos()
    assert [i.name for i in standard + other + tls_only] == [
        f"lan-example.{IRC_SERVICE}",
        f"lan-example.{IRCS_SERVICE}",
        f"lan-example-7000.{IRC_SERVICE}",
        f"lan-example-7000.{IRCS_SERVICE}",
        f"lan-example-7001.{IRCS_SERVICE}",
    ]


def test_long_txt_values_fit_a_txt_string() -> None:
    (info, _) = make(server_name="é" * 300, network="n" * 300).service_infos()
    assert all(len(k) + 1 + len(v or b"") <= 255 for k, v in info.properties.items())
    assert info.properties[b"name"].decode()  # cut on a character boundary


def test_bad_host_addresses_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="chatroom.server.announce"):
        (info, _) = make(
            host_addresses=["nonsense", "0.0.0.0", "10.0.0.7", "10.0.0.7"]
        ).service_infos()
    assert info.parsed_addresses() == ["10.0.0.7"]
    assert "'nonsense' is not an IP address" in caplog.text


@pytest.mark.usefixtures("no_mdns")
def test_nothing_to_announce_opens_no_socket(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="chatroom.server.announce"):
        assert make(host_addresses=[]).start() is False
        assert make(plain_port=None, tls_port=None).start() is False
    assert "not announcing on the LAN" in caplog.text


@pytest.mark.usefixtures("no_mdns")
def test_the_no_mdns_switch_keeps_sockets_shut(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(announce.NO_MDNS_ENV, "1")
    with caplog.at_level(logging.INFO, logger="chatroom.server.announce"):
        assert make().start() is False
    assert f"{announce.NO_MDNS_ENV} is set" in caplog.text


@pytest.mark.usefixtures("no_mdns")
def test_stop_before_start_and_start_after_stop() -> None:
    a = make()
    a.stop()
    a.stop()
    assert a.start() is False  # stopped for good: a server does not announce after stop()
    assert a.wait_announced(0.1) is False
    assert a.names == []


# --- over mDNS, in a private network namespace ----------------------------------------


def test_published_records_as_any_mdns_client_sees_them() -> None:
    out = run_in_netns(
        _SETUP,
        """
        from zeroconf import Zeroconf
        a = announcer()
        assert a.start()
        announced = a.wait_announced(8)
        peer = Zeroconf(interfaces=LO)
        seen = {}
        for name in a.names:
            info = peer.get_service_info(name.split(".", 1)[1], name, 3000)
            seen[name] = {
                "port": info.port, "server": info.server,
                "addresses": info.parsed_addresses(),
                "txt": {k.decode(): v.decode() for k, v in info.properties.items()},
            }
        peer.close()
        a.stop()
        print(json.dumps({"announced": announced, "seen": seen, "log": kept.lines,
                          "threads": thread_names()}))
        """,
    )
    assert out["announced"] is True
    common = {
        "name": "lan.example",
        "network": "TestNet",
        "version": "chatroom-9.9",
        "fp": f"sha256:{FP}",
    }
    assert out["seen"] == {
        f"lan-example.{IRC_SERVICE}": {
            "port": 6667,
            "server": "box.local.",
            "addresses": ["127.0.0.1"],
            "txt": common | {"tls": "6697"},
        },
        f"lan-example.{IRCS_SERVICE}": {
            "port": 6697,
            "server": "box.local.",
            "addresses": ["127.0.0.1"],
            "txt": common | {"plain": "6667"},
        },
    }
    assert any(line.startswith("INFO announced on the LAN as") for line in out["log"])
    assert out["threads"] == ["MainThread"]


def test_start_failure_is_a_warning_and_the_caller_goes_on() -> None:
    out = run_in_netns(
        _SETUP,
        """
        a = announcer(interfaces=["10.9.9.9"])  # no such address in the namespace
        t0 = time.monotonic()
        started = a.start()
        a.stop()
        print(json.dumps({"started": started, "took": time.monotonic() - t0,
                          "log": kept.lines, "threads": thread_names()}))
        """,
    )
    assert out["started"] is False
    assert out["took"] < 2.0
    assert [line for line in out["log"] if line.startswith("WARNING")] == [
        "WARNING not announcing on the LAN (mDNS unavailable: [Errno 19] No such device)"
    ]
    assert out["threads"] == ["MainThread"]


def test_stop_while_probing_twice_and_start_inside_an_event_loop() -> None:
    out = run_in_netns(
        _SETUP,
        """
        early = announcer("early")
        early.start()
        t0 = time.monotonic()
        early.stop()  # still probing: nothing announced yet
        early.stop()  # idempotent
        early_took = time.monotonic() - t0

        async def in_loop():  # Announcer must not attach to a running loop and deadlock
            a = announcer("looped")
            started = a.start()
            announced = await asyncio.to_thread(a.wait_announced, 8)
            t0 = time.monotonic()
            await asyncio.to_thread(a.stop)
            return started and announced, time.monotonic() - t0
        looped, stop_took = asyncio.run(in_loop())
        print(json.dumps({"early_took": early_took, "looped": looped, "stop_took": stop_took,
                          "log": kept.lines, "threads": thread_names()}))
        """,
    )
    assert out["early_took"] < announce.STOP_TIMEOUT
    assert out["looped"] is True
    assert out["stop_took"] < announce.STOP_TIMEOUT
    assert not [line for line in out["log"] if line.startswith("WARNING")]
    assert out["log"][-1] == "INFO LAN announcement withdrawn"
    assert out["threads"] == ["MainThread"]
