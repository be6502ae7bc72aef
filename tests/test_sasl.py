"""SASL PLAIN and SCRAM-SHA-256 (chatroom.sasl): bytes in, bytes out, no sockets."""

from __future__ import annotations

import base64
import doctest
import re
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatroom import sasl
from chatroom.protocol import casefold
from chatroom.sasl import (
    DEFAULT_ITERATIONS,
    MAX_MESSAGE_BYTES,
    MIN_ITERATIONS,
    SALT_BYTES,
    Credentials,
    SaslError,
    ScramClient,
    ScramServer,
    check_password,
    fake_credentials,
    make_credentials,
    parse_plain,
    plain_response,
)

FAKE_SECRET = b"test fake secret"
# 4096 rounds (the RFC minimum) keeps each PBKDF2 to a few milliseconds.
FAST = MIN_ITERATIONS

# RFC 7677 section 3.
RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

ALICE_PASSWORD = "correct horse"
# Keyed by casefolded name, like the accounts table.
ACCOUNTS: dict[str, Credentials] = {
    "alice": make_credentials(ALICE_PASSWORD, FAST),
    "user": make_credentials("pencil", FAST, salt=RFC_SALT),
}

SERVER_FIRST_RE = re.compile(rb"r=([\x21-\x2b\x2d-\x7e]+),s=([A-Za-z0-9+/]+=*),i=([0-9]+)\Z")


def lookup(username: str) -> Credentials | None:
    return ACCOUNTS.get(casefold(username))


def make_server(nonce: str | None = None) -> ScramServer:
    return ScramServer(lookup, fake_secret=FAKE_SECRET, nonce=nonce)


def exchange(client: ScramClient, server: ScramServer) -> None:
    """Wire a client and a server together for a whole exchange."""
    server_final = server.final(client.final(server.first(client.first())))
    client.verify(server_final)


def reason(excinfo: pytest.ExceptionInfo[SaslError]) -> str:
    return excinfo.value.reason


# --- RFC 7677 test vector -------------------------------------------------------------


def test_rfc7677_vector_client() -> None:
    client = ScramClient("user", "pencil", nonce=RFC_CLIENT_NONCE)
    assert client.first() == RFC_CLIENT_FIRST
    assert client.final(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    client.verify(RFC_SERVER_FINAL)
    assert client.authenticated


def test_rfc7677_vector_server() -> None:
    server = make_server(nonce=RFC_SERVER_NONCE)
    assert server.first(RFC_CLIENT_FIRST) == RFC_SERVER_FIRST
    assert server.username == "user"
    assert server.authzid == ""
    assert not server.authenticated
    assert server.final(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL
    assert server.authenticated


# --- round trips ----------------------------------------------------------------------


def test_round_trip_with_random_password() -> None:
    password = secrets.token_urlsafe(16) + "é€"
    creds = make_credentials(password, FAST)
    server = ScramServer(lambda name: creds, fake_secret=FAKE_SECRET)
    client = ScramClient("bob", password)
    exchange(client, server)
    assert server.authenticated and client.authenticated
    assert server.username == "bob"


def test_round_trip_nfkc_password_matches_either_form() -> None:
    # U+FB01 LATIN SMALL LIGATURE FI normalises to "fi" under NFKC.
    creds = make_credentials("\ufb01sh", FAST)
    exchange(ScramClient("bob", "fish"), ScramServer(lambda _: creds, fake_secret=FAKE_SECRET))
    assert check_password(creds, "fish")


def test_username_with_comma_and_equals_is_escaped() -> None:
    creds = make_credentials("pw", FAST)
    seen: list[str] = []

    def record(name: str) -> Credentials:
        seen.append(name)
        return creds

    client = ScramClient("a,b=c", "pw", nonce="abc")
    client_first = client.first()
    assert client_first == b"n,,n=a=2Cb=3Dc,r=abc"
    server = ScramServer(record, fake_secret=FAKE_SECRET)
    client.verify(server.final(client.final(server.first(client_first))))
    assert seen == ["a,b=c"]
    assert server.username == "a,b=c"


def test_authzid_is_kept_and_bound() -> None:
    server = make_server(nonce="S")
    server.first(b"n,a=b=2Cob,n=alice,r=C")
    assert server.authzid == "b,ob"
    # c= must carry the same gs2 header, authzid included.
    with pytest.raises(SaslError) as excinfo:
        server.final(b"c=biws,r=CS,p=" + base64.b64encode(bytes(32)))
    assert reason(excinfo) == "malformed"


def test_y_flag_accepted_and_bound() -> None:
    # "y": the client could do channel binding but thinks we cannot; still plain SCRAM.
    server = make_server(nonce="S")
    server.first(b"y,,n=alice,r=C")
    c = base64.b64encode(b"y,,")
    with pytest.raises(SaslError) as excinfo:  # right binding, wrong (zero) proof
        server.final(b"c=" + c + b",r=CS,p=" + base64.b64encode(bytes(32)))
    assert reason(excinfo) == "invalid-proof"


# --- failures of a well-formed exchange -----------------------------------------------


def test_wrong_password_is_invalid_proof() -> None:
    client = ScramClient("alice", "wrong horse")
    server = make_server()
    with pytest.raises(SaslError) as excinfo:
        server.final(client.final(server.first(client.first())))
    assert reason(excinfo) == "invalid-proof"
    assert not server.authenticated


def test_unknown_user_fails_at_final() -> None:
    server = make_server()
    client = ScramClient("mallory", "whatever")
    server_first = server.first(client.first())  # no error yet: looks like any account
    assert server.username == "mallory"
    with pytest.raises(SaslError) as excinfo:
        server.final(client.final(server_first))
    assert reason(excinfo) == "unknown-user"
    assert not server.authenticated


def test_unknown_user_server_first_has_the_same_shape() -> None:
    known = SERVER_FIRST_RE.match(make_server().first(b"n,,n=alice,r=abc"))
    unknown = SERVER_FIRST_RE.match(make_server().first(b"n,,n=mallory,r=abc"))
    assert known and unknown
    assert len(base64.b64decode(known[2])) == len(base64.b64decode(unknown[2])) == SALT_BYTES
    assert int(unknown[3]) == DEFAULT_ITERATIONS
    assert len(known[1]) == len(unknown[1])


def test_fake_credentials_are_stable_and_folded() -> None:
    fake = fake_credentials("Mallory", FAKE_SECRET)
    assert fake == fake_credentials("mallory", FAKE_SECRET)  # like a casefolded account key
    assert fake.salt != fake_credentials("eve", FAKE_SECRET).salt
    assert fake.salt != fake_credentials("mallory", b"other secret").salt
    assert len(fake.salt) == SALT_BYTES
    assert len(fake.stored_key) == len(fake.server_key) == 32
    assert fake.iterations == DEFAULT_ITERATIONS
    assert fake_credentials("m", FAKE_SECRET, iterations=FAST).iterations == FAST


def test_tampered_nonce_is_bad_nonce() -> None:
    server = make_server(nonce="SERVER")
    server.first(b"n,,n=alice,r=CLIENT")
    proof = base64.b64encode(bytes(32))
    with pytest.raises(SaslError) as excinfo:
        server.final(b"c=biws,r=CLIENTSERVEX,p=" + proof)
    assert reason(excinfo) == "bad-nonce"


def test_tampered_channel_binding_is_malformed() -> None:
    client = ScramClient("alice", ALICE_PASSWORD)
    server = make_server()
    client_final = client.final(server.first(client.first()))
    tampered = client_final.replace(b"c=biws", b"c=" + base64.b64encode(b"y,,"))
    with pytest.raises(SaslError) as excinfo:
        server.final(tampered)
    assert reason(excinfo) == "malformed"


def test_failed_exchange_cannot_continue() -> None:
    server = make_server()
    with pytest.raises(SaslError):
        server.first(b"bogus")
    with pytest.raises(SaslError) as excinfo:
        server.first(b"n,,n=alice,r=abc")
    assert reason(excinfo) == "malformed"


def test_out_of_order_messages() -> None:
    with pytest.raises(SaslError) as excinfo:
        make_server().final(b"c=biws,r=abc,p=AAAA")
    assert reason(excinfo) == "malformed"
    server = make_server()
    server.first(b"n,,n=alice,r=abc")
    with pytest.raises(SaslError) as excinfo:
        server.first(b"n,,n=alice,r=abc")
    assert reason(excinfo) == "malformed"

    client = ScramClient("alice", "pw")
    with pytest.raises(SaslError):
        client.final(RFC_SERVER_FIRST)
    client = ScramClient("alice", "pw")
    client.first()
    with pytest.raises(SaslError):
        client.verify(RFC_SERVER_FINAL)


# --- malformed peer messages: server side ---------------------------------------------

BAD_CLIENT_FIRST = [
    (b"", "malformed"),
    (b"n,,r=abc", "malformed"),  # no n=
    (b"n,,n=alice", "malformed"),  # no r=
    (b"n,,r=abc,n=alice", "malformed"),  # wrong order
    (b"n=alice,r=abc", "malformed"),  # no gs2 header
    (b"x,,n=alice,r=abc", "malformed"),  # bad gs2 flag
    (b"n,b=bob,n=alice,r=abc", "malformed"),  # authzid without a=
    (b"n,a=,n=alice,r=abc", "malformed"),  # empty authzid
    (b"n,,n=,r=abc", "malformed"),  # empty username
    (b"n,,n=al=2Xce,r=abc", "malformed"),  # unknown escape
    (b"n,,n=alice=,r=abc", "malformed"),  # dangling '='
    (b"n,,n=al\x00ice,r=abc", "malformed"),
    (b"n,,n=alice,r=", "malformed"),  # empty nonce
    (b"n,,n=alice,r=a b", "malformed"),  # space is not printable
    (b"n,,n=alice,r=\xc3\xa9", "malformed"),  # non-ASCII nonce
    (b"n,,n=alice,r=abc,", "malformed"),  # empty extension
    (b"n,,n=al\xffice,r=abc", "malformed"),  # not UTF-8
    (b"n,,n=" + b"a" * MAX_MESSAGE_BYTES + b",r=abc", "malformed"),
    (b"p=tls-unique,,n=alice,r=abc", "unsupported-extension"),
    (b"n,,m=ext,n=alice,r=abc", "unsupported-extension"),
    (b"n,,n=alice,r=abc,m=ext", "unsupported-extension"),
]


@pytest.mark.parametrize(("message", "expected"), BAD_CLIENT_FIRST)
def test_bad_client_first(message: bytes, expected: str) -> None:
    server = make_server()
    with pytest.raises(SaslError) as excinfo:
        server.first(message)
    assert reason(excinfo) == expected
    assert not server.authenticated


def test_client_first_extension_is_ignored() -> None:
    assert SERVER_FIRST_RE.match(make_server().first(b"n,,n=alice,r=abc,x=whatever"))


_PROOF = base64.b64encode(bytes(32))
BAD_CLIENT_FINAL = [
    (b"", "malformed"),
    (b"c=biws,r=CS", "malformed"),  # no proof
    (b"r=CS,c=biws,p=" + _PROOF, "malformed"),  # wrong order
    (b"c=biws,p=" + _PROOF, "malformed"),  # no r=
    (b"c=bi!s,r=CS,p=" + _PROOF, "malformed"),  # bad base64 in c=
    (b"c=biws,r=CS,p=%%%%", "malformed"),  # bad base64 in p=
    (b"c=biws,r=CS,p=AAAA", "malformed"),  # proof of the wrong length
    (b"c=biws,r=CS,p=" + _PROOF + b",x=y", "malformed"),  # proof not last
    (b"c=eSws,r=CS,p=" + _PROOF, "malformed"),  # c= is "y,,", we got "n,,"
    (b"c=biws,r=CS,m=x,p=" + _PROOF, "unsupported-extension"),
    (b"c=biws,r=CX,p=" + _PROOF, "bad-nonce"),
    (b"c=biws,r=C,p=" + _PROOF, "bad-nonce"),
    (b"c=biws,r=CS\xff,p=" + _PROOF, "malformed"),  # not UTF-8
    (b"c=biws,r=CS,p=" + b"A" * MAX_MESSAGE_BYTES, "malformed"),  # too long
    (b"c=biws,r=CS,p=" + _PROOF, "invalid-proof"),  # well-formed, wrong proof
]


@pytest.mark.parametrize(("message", "expected"), BAD_CLIENT_FINAL)
def test_bad_client_final(message: bytes, expected: str) -> None:
    server = make_server(nonce="S")
    server.first(b"n,,n=alice,r=C")
    with pytest.raises(SaslError) as excinfo:
        server.final(message)
    assert reason(excinfo) == expected
    assert not server.authenticated


# --- malformed peer messages: client side ---------------------------------------------

_SALT = base64.b64encode(b"salt").decode()
BAD_SERVER_FIRST = [
    (f"r=CS,s={_SALT},i=4095", "weak-iterations"),
    (f"r=CS,s={_SALT},i=0", "weak-iterations"),
    (f"r=CS,s={_SALT},i=10000001", "malformed"),
    (f"r=CS,s={_SALT},i=99999999999999999999", "malformed"),
    (f"r=CS,s={_SALT},i=-5000", "malformed"),
    (f"r=CS,s={_SALT},i=", "malformed"),
    (f"r=CS,s={_SALT},i=\u0664\u0660\u0669\u0666", "malformed"),  # Arabic-Indic digits
    (f"r=XS,s={_SALT},i=4096", "bad-nonce"),  # does not extend ours
    (f"r=C,s={_SALT},i=4096", "bad-nonce"),  # adds nothing to ours
    ("r=CS,s=,i=4096", "malformed"),  # empty salt
    ("r=CS,s=***,i=4096", "malformed"),
    (f"s={_SALT},r=CS,i=4096", "malformed"),
    (f"r=CS,s={_SALT}", "malformed"),
    (f"m=x,r=CS,s={_SALT},i=4096", "unsupported-extension"),
    (f"r=CS,s={_SALT},i=4096,m=x", "unsupported-extension"),
    ("x" * (MAX_MESSAGE_BYTES + 1), "malformed"),
]


@pytest.mark.parametrize(("message", "expected"), BAD_SERVER_FIRST)
def test_client_refuses_bad_server_first(message: str, expected: str) -> None:
    client = ScramClient("alice", "pw", nonce="C")
    client.first()
    with pytest.raises(SaslError) as excinfo:
        client.final(message.encode())
    assert reason(excinfo) == expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"e=invalid-proof", "invalid-proof"),
        (b"e=other-error,x=y", "other-error"),
        (b"e=", "malformed"),
        (b"e=" + b"x" * 100, "malformed"),
        (b"v=" + base64.b64encode(bytes(32)), "bad-server-signature"),
        (b"v=!!", "malformed"),
        (b"x=1", "malformed"),
        (b"", "malformed"),
    ],
)
def test_client_verify_failures(message: bytes, expected: str) -> None:
    client = ScramClient("user", "pencil", nonce=RFC_CLIENT_NONCE)
    client.first()
    client.final(RFC_SERVER_FIRST)
    with pytest.raises(SaslError) as excinfo:
        client.verify(message)
    assert reason(excinfo) == expected
    assert not client.authenticated


def test_client_refuses_bad_arguments() -> None:
    for username in ("", "a\0b"):
        with pytest.raises(ValueError):
            ScramClient(username, "pw")
    with pytest.raises(ValueError):
        ScramClient("alice", "pw", nonce="has,comma")
    with pytest.raises(ValueError):
        ScramServer(lookup, fake_secret=FAKE_SECRET, nonce="")


# --- PLAIN ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\0alice\0s3cret", ("", "alice", "s3cret")),
        (b"bob\0alice\0s3cret", ("bob", "alice", "s3cret")),
        ("\0zoë\0pässwörd€".encode(), ("", "zoë", "pässwörd€")),
        (b"\0alice\0pass word", ("", "alice", "pass word")),
    ],
)
def test_parse_plain(data: bytes, expected: tuple[str, str, str]) -> None:
    assert parse_plain(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"alice",
        b"alice\0s3cret",  # one NUL
        b"\0alice\0s3cret\0",  # three NULs
        b"\0\0alice\0s3cret",
        b"\0\0s3cret",  # empty authcid
        b"\0alice\0",  # empty password
        b"\0alice\0\xff\xfe",  # not UTF-8
        b"\0alice\0" + b"x" * MAX_MESSAGE_BYTES,
    ],
)
def test_parse_plain_malformed(data: bytes) -> None:
    with pytest.raises(SaslError) as excinfo:
        parse_plain(data)
    assert reason(excinfo) == "malformed"


def test_plain_response_round_trips() -> None:
    assert plain_response("alice", "s3cret") == b"\0alice\0s3cret"
    data = plain_response("zoë", "pässwörd", authzid="ops")
    assert parse_plain(data) == ("ops", "zoë", "pässwörd")
    for args in (("", "pw"), ("alice", ""), ("al\0ice", "pw"), ("alice", "p\0w")):
        with pytest.raises(ValueError):
            plain_response(*args)


# --- credentials ----------------------------------------------------------------------


def test_check_password() -> None:
    creds = ACCOUNTS["alice"]
    assert check_password(creds, ALICE_PASSWORD)
    assert not check_password(creds, "correct horse ")
    assert not check_password(creds, "")
    assert not check_password(fake_credentials("alice", FAKE_SECRET, FAST), ALICE_PASSWORD)


def test_make_credentials() -> None:
    a = make_credentials("pw", FAST)
    b = make_credentials("pw", FAST)
    assert len(a.salt) == SALT_BYTES and a.iterations == FAST
    assert a.salt != b.salt and a.stored_key != b.stored_key  # a fresh salt each time
    assert make_credentials("pw", FAST, salt=a.salt) == a
    assert len(a.stored_key) == len(a.server_key) == 32
    with pytest.raises(ValueError):
        make_credentials("pw", MIN_ITERATIONS - 1)
    with pytest.raises(ValueError):
        make_credentials("pw", FAST, salt=b"")


def test_iteration_constants() -> None:
    assert MIN_ITERATIONS == 4096
    assert DEFAULT_ITERATIONS >= MIN_ITERATIONS


def test_doctests() -> None:
    result = doctest.testmod(sasl)
    assert result.attempted > 0 and result.failed == 0


# --- property tests: hostile bytes only ever raise SaslError --------------------------

# Pieces of real messages, so examples get past the first checks.
_FRAGMENTS = st.sampled_from(
    [
        *(b"n", b"y", b"p=", b"a=", b"n=", b"r=", b"c=", b"m=", b"s=", b"i=", b"e=", b"v="),
        *(b",", b",,", b"=", b"=2C", b"=3D", b"\0", b"\xff", b"\xc3", b"biws", b"C", b"S"),
        *(b"alice", b"AAAA", b"4096", _PROOF),
    ]
)
HOSTILE = st.one_of(st.binary(max_size=200), st.lists(_FRAGMENTS, max_size=16).map(b"".join))


@settings(derandomize=True, max_examples=300)
@given(HOSTILE)
def test_server_first_raises_only_sasl_error(data: bytes) -> None:
    try:
        make_server().first(data)
    except SaslError:
        pass


@settings(derandomize=True, max_examples=300)
@given(HOSTILE)
def test_server_final_raises_only_sasl_error(data: bytes) -> None:
    server = make_server(nonce="S")
    server.first(b"n,,n=alice,r=C")
    try:
        server.final(data)
    except SaslError:
        pass
    else:
        pytest.fail("a made-up proof authenticated")


@settings(derandomize=True, max_examples=300)
@given(HOSTILE)
def test_parse_plain_raises_only_sasl_error(data: bytes) -> None:
    try:
        parse_plain(data)
    except SaslError:
        pass
