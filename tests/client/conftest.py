"""Client test fixtures (helpers live in client_helpers.py).

``irc_server`` (tests/conftest.py) is our own server; ``ngircd`` starts a private
ngircd on loopback for the interop tests and skips when ngircd is not installed.
Every client test runs with the OS keyring switched off (``_no_real_keyring``), with
downloads going to a temporary directory and no file viewer (``_no_real_downloads``), and
with mDNS switched off (``_no_mdns``): a connect screen shown by a test must not
multicast on this machine's network. Tests about discovery inject a fake browser, or
run the real one inside a network namespace of their own (netns.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from ngircd_proc import Ngircd, available

from chatroom.client.app import NO_OPEN_ENV
from chatroom.client.config import DOWNLOADS_DIR_ENV
from chatroom.client.discovery import NO_MDNS_ENV
from chatroom.client.passwords import NO_KEYRING_ENV


@pytest.fixture(autouse=True)
def _no_real_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """No client test may read or write the user's real keyring: remembered passwords
    go to the file in the test's config dir, or to a backend the test hands over."""
    monkeypatch.setenv(NO_KEYRING_ENV, "1")


@pytest.fixture(autouse=True)
def _no_real_downloads(monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> None:
    """No client test may save into the user's downloads folder or start the system's
    file viewer: downloads go to a temporary directory (a test may name its own)."""
    monkeypatch.setenv(DOWNLOADS_DIR_ENV, str(tmp_path_factory.mktemp("downloads")))
    monkeypatch.setenv(NO_OPEN_ENV, "1")


@pytest.fixture(autouse=True)
def _no_mdns(monkeypatch: pytest.MonkeyPatch) -> None:
    """No client test may send mDNS on the real network (tests/conftest.py says so for
    the whole run; this keeps it true for the client tests whatever that file does)."""
    monkeypatch.setenv(NO_MDNS_ENV, "1")


@pytest.fixture
def ngircd() -> Iterator[Ngircd]:
    """A private ngircd on 127.0.0.1 (interop); skipped when ngircd is absent."""
    if not available():
        pytest.skip("ngircd is not installed (apt-get install ngircd)")
    server = Ngircd().start()
    yield server
    server.close()


@pytest.fixture
def ngircd_factory() -> Iterator[Callable[..., Ngircd]]:
    """ngircd with options, e.g. ``ngircd_factory(password="s3cret")``."""
    if not available():
        pytest.skip("ngircd is not installed (apt-get install ngircd)")
    made: list[Ngircd] = []

    def make(**kwargs: object) -> Ngircd:
        server = Ngircd(**kwargs).start()  # type: ignore[arg-type]
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()
