"""The file host (soju.im/FILEHOST) on the real web port, over real sockets: who may
upload, what anyone with the link downloads, the limits, and the retention sweep."""

from __future__ import annotations

import base64
import http.client
import os
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from chatroom.server.web.files import ID_PATTERN
from tests.conftest import IRCClient, ServerFixture

PASSWORD = "correct horse battery"


@pytest.fixture
def web(
    server_factory: Callable[..., ServerFixture], tmp_path: Path
) -> Callable[..., ServerFixture]:
    """A server with its web port on (any free port) and files in tmp_path."""

    def make(**overrides: object) -> ServerFixture:
        settings: dict[str, object] = {
            "http": True,
            "http_port": 0,
            "files_dir": str(tmp_path / "files"),
            "scram_iterations": 4096,  # logins in tests need not take 100 ms each
        }
        settings.update(overrides)
        return server_factory(**settings)

    return make


def account(fx: ServerFixture, clients: Callable[..., IRCClient], name: str) -> IRCClient:
    """A connection logged in to a new account ``name``."""
    c = clients(fx, name)
    c.send(f"REGISTER * * :{PASSWORD}")
    assert c.expect("REGISTER").params[:2] == ("SUCCESS", name)
    return c


def basic(name: str, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


class Reply:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def request(
    fx: ServerFixture,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    tls: bool = False,
) -> Reply:
    server = fx.server
    assert server is not None and server.http_port is not None
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", server.http_port, timeout=10, context=context
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        return Reply(conn.getresponse())
    finally:
        conn.close()


def upload(
    fx: ServerFixture,
    data: bytes,
    *,
    name: str = "notes.txt",
    content_type: str = "text/plain",
    auth: str | None = None,
    tls: bool = False,
) -> Reply:
    headers = {
        "Content-Type": content_type,
        "Content-Disposition": f"attachment; filename*=UTF-8''{name}",
    }
    if auth is not None:
        headers["Authorization"] = auth
    return request(fx, "POST", "/upload", data, headers, tls=tls)


def path_of(url: str) -> str:
    return urlsplit(url).path


def filehost(c: IRCClient) -> str:
    """The soju.im/FILEHOST token this connection was given at registration."""
    c.send("VERSION")  # the ISUPPORT lines again
    while True:
        msg = c.expect("005")
        for token in msg.params[1:-1]:
            if token.startswith("soju.im/FILEHOST="):
                return token.split("=", 1)[1]
        if any(t.startswith("CHATHISTORY") for t in msg.params):
            raise AssertionError("no soju.im/FILEHOST in ISUPPORT")


def stored(fx: ServerFixture) -> list[str]:
    assert fx.server is not None and fx.server.files is not None
    directory = fx.server.files.directory
    return sorted(p.name for p in directory.iterdir() if p.name != ".partial")


def partial(fx: ServerFixture) -> list[str]:
    assert fx.server is not None and fx.server.files is not None
    return list(fx.server.files.partial.iterdir())


# --- the upload URL -----------------------------------------------------------------------


def test_isupport_names_the_upload_url_on_the_address_the_client_reached(web, clients) -> None:
    fx = web()
    c = clients(fx, "alice")
    url = filehost(c)
    assert url == f"http://127.0.0.1:{fx.server.http_port}/upload"
    # the spec's preflight: OPTIONS on it, and what it takes
    reply = request(fx, "OPTIONS", path_of(url))
    assert reply.status == 204
    assert "POST" in reply.headers["Allow"]
    assert reply.headers["Accept-Post"] == "*/*"


def test_no_file_host_without_accounts_or_without_the_web_port(
    web, server_factory, clients
) -> None:
    for fx in (web(accounts=False), server_factory()):
        c = clients(fx, "alice")
        c.send("VERSION")
        tokens = []
        while True:
            msg = c.expect("005")
            tokens += msg.params[1:-1]
            if any(t.startswith("CHATHISTORY") for t in msg.params):
                break
        assert not [t for t in tokens if t.startswith("soju.im/FILEHOST")]


# --- upload and download ------------------------------------------------------------------


def test_upload_then_anyone_with_the_link_downloads_the_same_bytes(web, clients) -> None:
    fx = web()
    account(fx, clients, "alice")
    data = os.urandom(200_000)
    reply = upload(fx, data, name="photo.png", content_type="image/png", auth=basic("alice"))
    assert reply.status == 201, reply.text
    url = reply.headers["Location"]
    assert reply.text.strip() == url
    scheme, netloc, path, _, _ = urlsplit(url)
    assert (scheme, netloc) == ("http", f"127.0.0.1:{fx.server.http_port}")
    _, files, file_id, name = path.split("/")
    assert (files, name) == ("files", "photo.png") and ID_PATTERN.fullmatch(file_id)
    # another user, no account, no credentials: the link is enough
    got = request(fx, "GET", path)
    assert got.status == 200
    assert got.body == data
    assert got.headers["Content-Type"] == "image/png"
    assert got.headers["Content-Disposition"].startswith("inline;")
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in got.headers["Content-Security-Policy"]
    head = request(fx, "HEAD", path)
    assert head.status == 200 and head.body == b""
    assert head.headers["Content-Length"] == str(len(data))


def test_uploaded_html_and_svg_are_never_served_as_a_page(web, clients) -> None:
    fx = web()
    account(fx, clients, "alice")
    page = b"<html><script>alert(document.cookie)</script></html>"
    for name, kind in (("x.html", "text/html"), ("x.svg", "image/svg+xml")):
        url = upload(fx, page, name=name, content_type=kind, auth=basic("alice")).headers[
            "Location"
        ]
        got = request(fx, "GET", path_of(url))
        assert got.body == page
        assert got.headers["Content-Type"] == "application/octet-stream"
        assert got.headers["Content-Disposition"].startswith("attachment;")
        assert "sandbox" in got.headers["Content-Security-Policy"]


def test_names_are_sanitised_and_kept_in_utf8(web, clients) -> None:
    fx = web()
    account(fx, clients, "alice")
    url = upload(
        fx, b"x", name="..%2F..%2Fetc%2Fcaf%C3%A9%20menu.txt", auth=basic("alice")
    ).headers["Location"]
    assert url.endswith("/caf%C3%A9%20menu.txt")
    got = request(fx, "GET", path_of(url))
    assert "filename*=UTF-8''caf%C3%A9%20menu.txt" in got.headers["Content-Disposition"]
    # nothing was written outside the files directory
    assert not (Path(fx.server.files.directory).parent / "etc").exists()


def test_multipart_upload_as_curl_and_browsers_send_it(web, clients) -> None:
    fx = web()
    account(fx, clients, "alice")
    data = os.urandom(100_000) + b"\r\n--not-the-boundary\r\n"
    boundary = "----chatroomtest7MA4YWxkTrZu0gW"
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="comment"\r\n\r\n'
            "hello\r\n"
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="data.bin"\r\n'
            "Content-Type: application/x-thing\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    reply = request(
        fx,
        "POST",
        "/upload",
        body,
        {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Authorization": basic("alice"),
        },
    )
    assert reply.status == 201, reply.text
    got = request(fx, "GET", path_of(reply.headers["Location"]))
    assert got.body == data
    assert got.headers["Content-Type"] == "application/x-thing"


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("multipart/form-data", b"--x\r\n\r\nno boundary parameter"),
        ("multipart/form-data; boundary=abc", b"--abc\r\nContent-Disposition: form-data; "),
        (
            "multipart/form-data; boundary=abc",
            b'--abc\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\nunended',
        ),
        ("multipart/form-data; boundary=abc", b"x" * 20_000),
        (
            "multipart/form-data; boundary=abc",
            b"--abc\r\nContent-Disposition: form-data\r\n\r\nx\r\n--abc--",
        ),
    ],
    ids=["no-boundary", "cut-in-headers", "no-closing-boundary", "no-delimiter", "no-file"],
)
def test_bad_multipart_is_400_and_stores_nothing(web, clients, content_type, body) -> None:
    fx = web()
    account(fx, clients, "alice")
    reply = request(
        fx, "POST", "/upload", body, {"Content-Type": content_type, "Authorization": basic("alice")}
    )
    assert reply.status == 400
    assert reply.text.startswith("400 Bad Request: bad multipart")
    assert stored(fx) == [] and partial(fx) == []


# --- who may upload -----------------------------------------------------------------------


def test_anonymous_and_wrong_password_uploads_are_refused(web, clients) -> None:
    fx = web()
    account(fx, clients, "alice")
    anonymous = upload(fx, b"data")
    assert anonymous.status == 401
    assert anonymous.headers["WWW-Authenticate"].startswith('Basic realm="chatroom"')
    wrong = upload(fx, b"data", auth=basic("alice", "not the password"))
    assert wrong.status == 401
    nobody = upload(fx, b"data", auth=basic("mallory"))
    assert nobody.status == 401
    garbled = upload(fx, b"data", auth="Basic !!!")
    assert garbled.status == 400
    assert stored(fx) == []


def test_failed_logins_over_http_hit_the_same_limit_as_irc(web, clients) -> None:
    fx = web(login_failures=2)
    account(fx, clients, "alice")
    for _ in range(2):
        assert upload(fx, b"x", auth=basic("alice", "guess")).status == 401
    limited = upload(fx, b"x", auth=basic("alice"))  # even the right password, for now
    assert limited.status == 429
    assert int(limited.headers["Retry-After"]) >= 1
    # and IRC sees the same limit for that account
    c = clients(fx, "bob")
    c.send(f"PRIVMSG NickServ :IDENTIFY alice {PASSWORD}")
    notice = c.expect("NOTICE", where=lambda m: "NickServ" in (m.source or ""))
    assert "Too many failed logins" in notice.params[1]


# --- limits -------------------------------------------------------------------------------


def test_a_file_over_the_size_limit_is_413_before_its_body_is_read(web, clients) -> None:
    fx = web(file_max_bytes=1000)
    account(fx, clients, "alice")
    reply = upload(fx, b"x" * 5000, auth=basic("alice"))
    assert reply.status == 413
    assert "1000" in reply.text or "MiB" in reply.text
    assert upload(fx, b"x" * 1000, auth=basic("alice")).status == 201
    assert len(stored(fx)) == 2  # the one that fits: its bytes and its description


def test_quota_per_account_and_the_disk_cap(web, clients) -> None:
    fx = web(file_quota_bytes=1600, files_total_bytes=2500)
    account(fx, clients, "alice")
    account(fx, clients, "bob")
    assert upload(fx, b"a" * 1000, auth=basic("alice")).status == 201
    over = upload(fx, b"a" * 1000, auth=basic("alice"))
    assert over.status == 507
    assert "over your quota: you keep 1000 bytes of 1.6 KiB" in over.text
    assert upload(fx, b"b" * 1000, auth=basic("bob")).status == 201  # bob's own quota
    full = upload(fx, b"b" * 501, auth=basic("bob"))
    assert full.status == 507 and "full" in full.text


def test_uploads_per_minute(web, clients) -> None:
    fx = web(uploads_per_minute=2)
    account(fx, clients, "alice")
    assert upload(fx, b"1", auth=basic("alice")).status == 201
    assert upload(fx, b"2", auth=basic("alice")).status == 201
    third = upload(fx, b"3", auth=basic("alice"))
    assert third.status == 429
    assert 1 <= int(third.headers["Retry-After"]) <= 60


def test_retention_sweep_removes_old_files_and_their_links(web, clients) -> None:
    fx = web(file_retention_days=30)
    account(fx, clients, "alice")
    old = upload(fx, b"old", auth=basic("alice")).headers["Location"]
    files = fx.server.files
    files.clock = lambda: time.time() + 29 * 86400  # a day short of expiry: kept
    assert files.sweep() == 0
    young = upload(fx, b"young", auth=basic("alice")).headers["Location"]
    files.clock = lambda: time.time() + 31 * 86400
    assert files.sweep() == 1
    assert request(fx, "GET", path_of(old)).status == 404
    assert request(fx, "GET", path_of(young)).body == b"young"
    assert len(stored(fx)) == 2  # young's bytes and description only
    assert files.used_by("alice") == len(b"young")


def test_files_survive_a_restart_and_half_written_uploads_do_not(web, clients) -> None:
    fx = web()
    account(fx, clients, "alice")
    url = upload(fx, b"kept", auth=basic("alice")).headers["Location"]
    directory = fx.server.files.directory
    (directory / ".partial" / "AAAAAAAAAAAAAAAAAAAAAA").write_bytes(b"cut short by a crash")
    (directory / "BBBBBBBBBBBBBBBBBBBBBB").write_bytes(b"bytes without a description")
    fx.restart()
    assert request(fx, "GET", path_of(url)).body == b"kept"
    assert partial(fx) == []
    assert len(stored(fx)) == 2


# --- TLS ----------------------------------------------------------------------------------


def test_https_on_the_same_port_with_the_chats_certificate(web, clients, tmp_path) -> None:
    fx = web(tls=True, tls_port=0, tls_dir=str(tmp_path / "tls"))
    account(fx, clients, "alice")
    tls_client = IRCClient(fx.host, fx.server.tls_port)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    tls_client.sock = context.wrap_socket(tls_client.sock)
    try:
        tls_client.register("carol")
        url = filehost(tls_client)
    finally:
        tls_client.close()
    assert url == f"https://127.0.0.1:{fx.server.http_port}/upload"
    # the HTTPS side presents the very certificate the chat's TLS port does
    with (
        ssl.create_connection(("127.0.0.1", fx.server.http_port)) as raw,
        context.wrap_socket(raw) as s,
    ):
        der = s.getpeercert(binary_form=True)
    from chatroom.server.tls import fingerprint_sha256

    assert fingerprint_sha256(der) == fx.server.tls.fingerprint
    reply = upload(fx, b"secret", auth=basic("alice"), tls=True)
    assert reply.status == 201
    assert reply.headers["Location"].startswith("https://")
    assert request(fx, "GET", path_of(reply.headers["Location"]), tls=True).body == b"secret"
    # plain HTTP still answers on the same port (loopback, clear text allowed)
    assert request(fx, "GET", path_of(reply.headers["Location"])).body == b"secret"


# --- shutdown -----------------------------------------------------------------------------


def test_stop_with_uploads_under_way_leaks_no_thread_or_partial_file(web, clients) -> None:
    fx = web()
    account(fx, clients, "alice")
    import socket

    port = fx.server.http_port
    idle = socket.create_connection(("127.0.0.1", port))
    mid = socket.create_connection(("127.0.0.1", port))
    mid.sendall(
        (
            "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
            f"Authorization: {basic('alice')}\r\n\r\n"
        ).encode()
        + b"x" * 1000
    )
    deadline = time.monotonic() + 5
    while not partial(fx) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert partial(fx), "the upload did not start"
    files = fx.server.files
    fx.stop()
    try:
        leftover = [t.name for t in threading.enumerate() if t.name.startswith("chatroom-web")]
        assert leftover == []
        assert list(files.partial.iterdir()) == []
    finally:
        idle.close()
        mid.close()


def test_module_doctests() -> None:
    """Name sanitising, types, sizes, Content-Disposition: the examples in the code."""
    import doctest

    from chatroom.server.web import bodies, files

    for module in (bodies, files):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


def test_clear_http_from_the_lan_goes_to_https_when_clear_text_is_restricted(
    web, clients, tmp_path, monkeypatch
) -> None:
    """With --plaintext loopback, a browser on another machine is sent to HTTPS and an
    upload in clear text is refused before its password is checked. (Tests stay on
    loopback: the server is told this connection comes from the LAN.)"""
    from chatroom.server.web import httpd

    fx = web(tls=True, tls_port=0, tls_dir=str(tmp_path / "tls"), plaintext="loopback")
    account(fx, clients, "alice")
    monkeypatch.setattr(httpd, "is_loopback", lambda host: False)
    page = request(fx, "GET", "/", headers={"Host": "office-chat.lan:8067"})
    assert page.status == 301
    assert page.headers["Location"] == f"https://office-chat.lan:{fx.server.http_port}/"
    refused = upload(fx, b"secret", auth=basic("alice"))
    assert refused.status == 403 and "HTTPS" in refused.text
    assert upload(fx, b"secret", auth=basic("alice"), tls=True).status == 201
    assert len(stored(fx)) == 2  # only the HTTPS upload


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_a_range_of_a_file_resumes_a_download_or_seeks_a_video(
    web, clients, tmp_path, tls: bool
) -> None:
    fx = web(tls=True, tls_port=0, tls_dir=str(tmp_path / "tls"))
    account(fx, clients, "alice")
    data = os.urandom(700_000)  # more than one of the pieces a TLS download is sent in
    path = path_of(upload(fx, data, name="film.mp4", auth=basic("alice")).headers["Location"])
    whole = request(fx, "GET", path, tls=tls)
    assert whole.status == 200 and whole.headers["Accept-Ranges"] == "bytes"
    part = request(fx, "GET", path, headers={"Range": "bytes=300000-"}, tls=tls)
    assert part.status == 206
    assert part.headers["Content-Range"] == f"bytes 300000-{len(data) - 1}/{len(data)}"
    assert part.body == data[300_000:]
    middle = request(fx, "GET", path, headers={"Range": "bytes=10-19"}, tls=tls)
    assert (middle.status, middle.body) == (206, data[10:20])
    tail = request(fx, "GET", path, headers={"Range": "bytes=-5"}, tls=tls)
    assert tail.body == data[-5:]
    past = request(fx, "GET", path, headers={"Range": f"bytes={len(data)}-"}, tls=tls)
    assert past.status == 416
    assert past.headers["Content-Range"] == f"bytes */{len(data)}"
    several = request(fx, "GET", path, headers={"Range": "bytes=0-1,5-6"}, tls=tls)
    assert (several.status, several.body) == (200, data)  # not served in parts: whole
