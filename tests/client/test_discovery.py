"""LAN discovery: parsing and merging announcements (no network), then the real thing
(Announcer -> discover()/Discovery) over mDNS inside a private network namespace.

mDNS is multicast: these tests send it only inside a namespace they create
(``unshare --net``, only ``lo``, bound to 127.0.0.1), never on this machine's real
interfaces. Where no namespace can be made they skip and say why.
"""

from __future__ import annotations

import doctest
from typing import Any

import pytest

from chatroom.client import discovery
from chatroom.client.discovery import (
    IRC_SERVICE,
    IRCS_SERVICE,
    MAX_SERVERS,
    MAX_TEXT,
    DiscoveredServer,
    DiscoveryError,
    format_servers,
    merge_records,
    parse_record,
)
from chatroom.server import announce
from tests.netns import run_in_netns

FP = ":".join(f"{i:02X}" for i in range(32))
FP_TXT = b"sha256:" + FP.encode()

# Shared head of the namespace snippets: announcers on loopback, results as JSON.
_SETUP = """
import asyncio, dataclasses, json, logging, threading, time
from chatroom.client.discovery import Discovery, discover
from chatroom.server.announce import Announcer
LO = ["127.0.0.1"]
FP = ":".join(f"{i:02X}" for i in range(32))

def announcer(name, plain=6667, tls=6697, fp=FP):
    return Announcer(name, "TestNet", "chatroom-9.9", LO, plain, tls, fp, LO, host_name=name)

def rows(servers):
    return [dataclasses.asdict(s) for s in servers]
"""


# --- the pure part: records in, servers out -------------------------------------------


def test_doctests() -> None:
    result = doctest.testmod(discovery)
    assert result.failed == 0 and result.attempted > 0


def test_service_names_and_keys_match_the_announcer() -> None:
    assert (discovery.IRC_SERVICE, discovery.IRCS_SERVICE) == (
        announce.IRC_SERVICE,
        announce.IRCS_SERVICE,
    )
    for key in ("NAME", "NETWORK", "VERSION", "FINGERPRINT", "TLS_PORT", "PLAIN_PORT"):
        assert getattr(discovery, f"TXT_{key}") == getattr(announce, f"TXT_{key}")
    assert discovery.FINGERPRINT_PREFIX == announce.FINGERPRINT_PREFIX
    assert discovery.NO_MDNS_ENV == announce.NO_MDNS_ENV


def record(
    service: str = IRC_SERVICE,
    instance: str = "lan",
    target: str = "box.local.",
    port: int | None = 6667,
    addresses: tuple[str, ...] = ("192.168.1.20",),
    **txt: bytes | None,
) -> Any:
    props = {
        b"name": b"lan.example",
        b"network": b"LAN",
        b"version": b"chatroom-0.1.0",
        b"fp": FP_TXT,
    }
    props |= {k.encode(): v for k, v in txt.items()}
    return parse_record(service, f"{instance}.{service}", target, port, list(addresses), props)


def test_the_two_records_of_one_server_merge_into_one_entry() -> None:
    plain = record(IRC_SERVICE, tls=b"6697")
    tls = record(IRCS_SERVICE, port=6697, plain=b"6667")
    expected = DiscoveredServer(
        "lan.example", "192.168.1.20", 6667, 6697, FP, "LAN", "chatroom-0.1.0"
    )
    assert merge_records([plain, tls]) == [expected]
    assert merge_records([tls, plain]) == [expected]
    # One record alone already knows both ports, from its TXT.
    assert merge_records([plain]) == [expected]
    assert merge_records([tls]) == [expected]
    assert expected.url == "ircs://192.168.1.20:6697" and expected.prefers_tls


def test_records_of_different_servers_stay_apart() -> None:
    one = record(IRC_SERVICE, tls=b"6697")
    other_host = record(IRCS_SERVICE, target="other.local.", port=6697, plain=b"6667")
    other_port = record(IRCS_SERVICE, port=7000, plain=b"6667")
    other_fp = record(IRCS_SERVICE, port=6697, plain=b"6667", fp=b"sha256:" + b"11" * 32)
    assert len(merge_records([one, other_host, other_port, other_fp])) == 4


def test_plaintext_only_server() -> None:
    (server,) = merge_records([record(IRC_SERVICE, fp=None)])
    assert (server.plain_port, server.tls_port, server.fingerprint) == (6667, None, None)
    assert server.url == "irc://192.168.1.20:6667" and not server.prefers_tls


def test_tls_record_wins_where_both_speak() -> None:
    plain = record(IRC_SERVICE, tls=b"6697", name=b"from-plain", version=None)
    tls = record(IRCS_SERVICE, port=6697, plain=b"6667", name=b"from-tls", network=None)
    (server,) = merge_records([plain, tls])
    assert server.name == "from-tls"
    assert (server.network, server.version) == ("LAN", "chatroom-0.1.0")  # filled from plain


@pytest.mark.parametrize(
    ("txt", "tls_port"),
    [
        (b"6697", 6697),
        (b"0", None),
        (b"65536", None),
        (b"99999999999", None),
        (b"-1", None),
        (b"6697; rm -rf", None),
        (b"\xff\xfe", None),
        (b"", None),
        (None, None),
    ],
)
def test_other_port_from_txt_is_checked(txt: bytes | None, tls_port: int | None) -> None:
    (server,) = merge_records([record(IRC_SERVICE, tls=txt)])
    assert server.tls_port == tls_port
    assert server.plain_port == 6667


@pytest.mark.parametrize("port", [None, 0, -1, 65536])
def test_record_with_a_bad_own_port_is_dropped(port: int | None) -> None:
    assert record(IRC_SERVICE, port=port) is None


def test_record_without_a_usable_address_is_dropped() -> None:
    assert record(addresses=()) is None
    assert record(addresses=("0.0.0.0", "224.0.0.251", "not-an-ip")) is None


def test_address_prefers_ipv4() -> None:
    assert record(addresses=("fd00::5", "10.0.0.7")).host == "10.0.0.7"
    assert record(addresses=("fe80::1%2", "fd00::5")).host == "fd00::5"


def test_hostile_text_is_cleaned_and_cut() -> None:
    r = record(name=b"\x1b[2J" + b"A" * 250, network=b"\xff\xfe" * 100, version=b"\x00\x07")
    assert r.name == "[2J" + "A" * (MAX_TEXT - 3)
    assert r.network is not None and len(r.network) <= MAX_TEXT and "\x00" not in r.network
    assert r.version is None
    assert record(fp=b"sha256:nothex").fingerprint is None
    assert record(fp=b"md5:" + b"ab" * 16).fingerprint is None
    assert record(fp=b"sha256:" + b"ab" * 32).fingerprint == ":".join(["AB"] * 32)


def test_name_falls_back_to_the_instance_then_the_address() -> None:
    assert record(instance="my box", name=None).name == "my box"
    assert record(instance="\x00", name=b"\x01").name == "192.168.1.20"


def test_txt_keys_are_case_insensitive_and_the_first_counts() -> None:
    props = {b"TLS": b"7000", b"tls": b"6697", b"Name": b"first", b"name": b"second"}
    r = parse_record(IRC_SERVICE, f"x.{IRC_SERVICE}", "h.local.", 6667, ["10.0.0.1"], props)
    assert r is not None and (r.tls_port, r.name) == (7000, "first")


def test_unknown_service_type_is_dropped() -> None:
    assert record(service="_http._tcp.local.") is None


def test_the_list_is_bounded_and_sorted() -> None:
    many = [
        record(instance=f"s{i}", target=f"h{i}.local.", name=f"s{i:03}".encode())
        for i in range(200)
    ]
    servers = merge_records(many)
    assert len(servers) == MAX_SERVERS
    assert [s.name for s in servers] == sorted(s.name for s in servers)


def test_format_servers() -> None:
    servers = [
        DiscoveredServer("lan.example", "192.168.1.20", 6667, 6697, FP, "LAN", "v"),
        DiscoveredServer("v6", "fd00::1", None, 6697, None, None, None),
    ]
    lines = format_servers(servers).splitlines()
    assert lines == [
        f"lan.example  192.168.1.20  tls=6697 plain=6667  sha256:{FP}",
        "v6           fd00::1       tls=6697             -",
    ]
    assert format_servers([]) == "no chatroom servers found on this network"


async def test_the_no_mdns_switch_keeps_sockets_shut(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**_kwargs: object) -> None:
        raise AssertionError("this test must not open mDNS sockets")

    monkeypatch.setattr(discovery, "AsyncZeroconf", refuse)
    monkeypatch.setenv(discovery.NO_MDNS_ENV, "1")
    with pytest.raises(DiscoveryError, match="CHATROOM_NO_MDNS"):
        await discovery.Discovery().start(lambda _servers: None)
    with pytest.raises(DiscoveryError):
        await discovery.discover(0.1)


# --- over mDNS, in a private network namespace ----------------------------------------


def test_discover_finds_an_announced_server_with_its_ports_and_fingerprint() -> None:
    out = run_in_netns(
        _SETUP,
        """
        a = announcer("lan.example")
        assert a.start()
        found = asyncio.run(discover(3.0, LO))
        a.stop()
        print(json.dumps(rows(found)))
        """,
    )
    assert out == [
        {
            "name": "lan.example",
            "host": "127.0.0.1",
            "plain_port": 6667,
            "tls_port": 6697,
            "fingerprint": FP,
            "network": "TestNet",
            "version": "chatroom-9.9",
        }
    ]


def test_a_stopped_server_disappears_from_the_live_list() -> None:
    out = run_in_netns(
        _SETUP,
        """
        async def main():
            changes = []
            a = announcer("lan.example")
            d = Discovery(LO)
            await d.start(lambda servers: changes.append([s.name for s in servers]))
            a.start()
            t0 = time.monotonic()
            while not d.servers and time.monotonic() - t0 < 8:
                await asyncio.sleep(0.05)
            seen = len(d.servers)
            await asyncio.to_thread(a.stop)
            t1 = time.monotonic()
            while d.servers and time.monotonic() - t1 < 8:
                await asyncio.sleep(0.05)
            gone_after = time.monotonic() - t1
            await d.stop()
            await d.stop()  # idempotent
            return {"seen": seen, "left": len(d.servers), "gone_after": gone_after,
                    "changes": changes}
        result = asyncio.run(main())  # also ends the thread asyncio.to_thread used
        result["threads"] = [t.name for t in threading.enumerate()]
        print(json.dumps(result))
        """,
    )
    assert out["seen"] == 1
    assert out["left"] == 0
    assert out["gone_after"] < 3.0  # goodbye packets, not a TTL running out
    assert out["changes"][0] == ["lan.example"] and out["changes"][-1] == []
    assert out["threads"] == ["MainThread"]  # the announcer's zeroconf thread is gone too


def test_two_announced_servers_are_two_entries() -> None:
    out = run_in_netns(
        _SETUP,
        """
        a = announcer("alpha", 6667, 6697)
        b = announcer("beta", 7667, None, fp=None)  # plaintext only
        assert a.start() and b.start()
        found = asyncio.run(discover(3.0, LO))
        a.stop(); b.stop()
        print(json.dumps(rows(found)))
        """,
    )
    assert [(s["name"], s["plain_port"], s["tls_port"], s["fingerprint"]) for s in out] == [
        ("alpha", 6667, 6697, FP),
        ("beta", 7667, None, None),
    ]


def test_malformed_announcements_are_cleaned_or_ignored() -> None:
    out = run_in_netns(
        _SETUP,
        """
        from zeroconf import ServiceInfo, Zeroconf
        zc = Zeroconf(interfaces=LO)
        bad = {  # what a hostile or broken responder could say; each TXT string <= 255 bytes
            "evil": (6667, {b"name": b"\\x1b[2J" + b"A" * 240, b"tls": b"99999",
                            b"fp": b"sha256:zz", b"network": b"\\xff" * 240, b"version": None}),
            "noport": (0, {b"name": b"noport"}),
        }
        for instance, (port, props) in bad.items():
            info = ServiceInfo("_irc._tcp.local.", f"{instance}._irc._tcp.local.", port=port,
                               properties=props, server=f"{instance}.local.",
                               parsed_addresses=["127.0.0.1"])
            zc.register_service(info, cooperating_responders=True)
        good = announcer("good")
        good.start()
        found = asyncio.run(discover(3.0, LO))
        good.stop()
        zc.close()
        print(json.dumps(rows(found)))
        """,
    )
    by_name = {s["name"][:3]: s for s in out}
    assert set(by_name) == {"[2J", "goo"}, out  # the port-0 record is dropped
    evil = by_name["[2J"]
    assert evil["name"] == "[2J" + "A" * (MAX_TEXT - 3)
    assert (evil["plain_port"], evil["tls_port"], evil["fingerprint"]) == (6667, None, None)
    assert evil["network"] is not None and len(evil["network"]) <= MAX_TEXT
    assert by_name["goo"]["tls_port"] == 6697


def test_discovery_on_a_missing_interface_raises_discovery_error() -> None:
    out = run_in_netns(
        _SETUP,
        """
        from chatroom.client.discovery import DiscoveryError
        try:
            asyncio.run(discover(0.1, ["10.9.9.9"]))
        except DiscoveryError as e:
            print(json.dumps({"error": str(e), "threads": threading.active_count()}))
        """,
    )
    assert out["error"].startswith("mDNS unavailable")
    assert out["threads"] == 1
