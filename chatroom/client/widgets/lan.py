"""The live list of chatroom servers on this network (LAN discovery) on the connect screen.

The widget starts its :class:`ServerBrowser` (normally a
:class:`~chatroom.client.discovery.Discovery`, with zeroconf's asyncio API) when it is
mounted and stops it when it is unmounted, so leaving the connect screen leaves no
sockets, tasks or threads behind. Servers appear and disappear as they are announced
and withdrawn. When discovery cannot run, one dim line says why: it is a convenience,
never an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Label, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker

from chatroom.client.discovery import DiscoveredServer, DiscoveryError
from chatroom.client.formatting import strip_formatting

__all__ = ["BrowserFactory", "LanServers", "ServerBrowser", "server_label"]

log = logging.getLogger(__name__)

LOOKING = "Looking for servers on this network…"
UNAVAILABLE = "Discovery unavailable"
# Names are padded to the longest in the list, up to this many columns, so the
# addresses line up.
NAME_COLUMN = 24


class ServerBrowser(Protocol):
    """What the list needs of :class:`~chatroom.client.discovery.Discovery` (tests
    pass a fake): ``start`` raises DiscoveryError when it cannot run; ``on_change``
    gets the whole list each time it changes; ``stop`` is idempotent."""

    async def start(self, on_change: Callable[[list[DiscoveredServer]], None]) -> None: ...

    async def stop(self) -> None: ...


# Makes a fresh browser each time a connect screen is shown.
BrowserFactory = Callable[[], ServerBrowser]


def server_label(server: DiscoveredServer, name_width: int = 0) -> Text:
    """One row: name (padded to ``name_width``), address and port, TLS or not, network.

    >>> str(server_label(DiscoveredServer("lan", "10.0.0.7", 6667, 6697, None, "LAN", None), 5))
    'lan    10.0.0.7:6697  TLS  LAN'
    >>> str(server_label(DiscoveredServer("old", "fd00::1", 6667, None, None, None, None)))
    'old  [fd00::1]:6667  no TLS'
    """
    host = f"[{server.host}]" if ":" in server.host else server.host
    text = Text()
    text.append(strip_formatting(server.name).ljust(name_width), style="bold")
    text.append(f"  {host}:{server.port}  ")
    text.append(
        "TLS" if server.prefers_tls else "no TLS", style="green" if server.prefers_tls else "dim"
    )
    if server.network:
        text.append(f"  {strip_formatting(server.network)}", style="dim")
    return text


def _key(server: DiscoveredServer) -> str:
    """Names a row across updates (the list order changes as servers come and go)."""
    return f"{server.host}|{server.plain_port}|{server.tls_port}|{server.fingerprint}|{server.name}"


class LanServers(Vertical):
    """The "On this network" list, live; choosing a server posts
    :class:`LanServers.Chosen`. ``browser`` None: not looking (the dim line says so)."""

    @dataclass
    class Chosen(Message):
        """The user chose a server found on the network."""

        lan_servers: LanServers
        server: DiscoveredServer

    def __init__(self, browser: ServerBrowser | None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.browser = browser
        self.servers: list[DiscoveredServer] = []
        self._by_key: dict[str, DiscoveredServer] = {}
        self._starting: Worker[None] | None = None
        self._stopped = False

    def compose(self) -> ComposeResult:
        yield Label("On this network", id="lan-title")
        yield OptionList(id="lan")
        yield Static(Text(LOOKING, style="dim"), id="lan-status")

    def on_mount(self) -> None:
        self.query_one("#lan", OptionList).display = False
        if self.browser is None:
            self._unavailable("discovery is off")
            return
        self._starting = self.run_worker(self._start(self.browser), exit_on_error=False)

    async def _start(self, browser: ServerBrowser) -> None:
        try:
            await browser.start(self._changed)
        except DiscoveryError as exc:
            self._unavailable(str(exc))
        except Exception as exc:  # a convenience must not take the connect screen down
            log.warning("LAN discovery failed to start: %r", exc)
            self._unavailable(str(exc) or type(exc).__name__)

    async def on_unmount(self) -> None:
        """Stop looking: the connect screen is going away (or the app is)."""
        self._stopped = True
        if self._starting is not None:
            self._starting.cancel()
        if self.browser is not None:
            try:
                await self.browser.stop()
            except Exception as exc:
                log.warning("LAN discovery failed to stop: %r", exc)

    @property
    def available(self) -> bool:
        """False once discovery said it cannot run here."""
        return not self.has_class("unavailable")

    def _unavailable(self, reason: str) -> None:
        if self._stopped or not self.is_attached:
            return
        self.add_class("unavailable")
        self.query_one("#lan", OptionList).display = False
        status = self.query_one("#lan-status", Static)
        status.display = True
        status.update(Text(f"{UNAVAILABLE}: {strip_formatting(reason)}", style="dim"))

    def _changed(self, servers: list[DiscoveredServer]) -> None:
        """From the browser (in the loop): show the new list, keeping the highlight."""
        if self._stopped or not self.is_attached:
            return
        self.servers = list(servers)
        listing = self.query_one("#lan", OptionList)
        highlighted = listing.highlighted
        previous = listing.get_option_at_index(highlighted).id if highlighted is not None else None
        self._by_key = {}
        for server in self.servers:  # option ids must be unique, whatever was announced
            key = _key(server)
            while key in self._by_key:
                key += "'"
            self._by_key[key] = server
        width = min(max((len(s.name) for s in self.servers), default=0), NAME_COLUMN)
        listing.clear_options()
        listing.add_options([Option(server_label(s, width), id=k) for k, s in self._by_key.items()])
        if previous in self._by_key:
            listing.highlighted = list(self._by_key).index(previous)
        listing.display = bool(self.servers)
        status = self.query_one("#lan-status", Static)
        status.display = not self.servers
        status.update(Text(LOOKING, style="dim"))

    @on(OptionList.OptionSelected, "#lan")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        server = self._by_key.get(event.option.id or "")
        if server is not None:
            self.post_message(self.Chosen(self, server))
