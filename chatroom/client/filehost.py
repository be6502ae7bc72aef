"""The file host in the client: /upload, attachments, downloads and previews.

A part of :class:`~chatroom.client.app.ChatApp` (a mixin: it uses the app's state,
connection and screens), kept apart because it is a concern of its own: the HTTP side
(:mod:`chatroom.client.transfer`), the attachment cache
(:mod:`chatroom.client.attachments`), the progress bar and the preview.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from textual.css.query import NoMatches
from textual.worker import Worker

from chatroom.client import transfer
from chatroom.client.attachments import IMAGE_TYPES, Attachment, Attachments, origin
from chatroom.client.auth import Credentials, is_loopback
from chatroom.client.commands import CommandError, say
from chatroom.client.model import SERVER_KEY
from chatroom.client.screens.dialogs import ConfirmScreen
from chatroom.client.screens.preview import ImagePreviewScreen, image_preview_available
from chatroom.client.widgets.log import MessageLog
from chatroom.client.widgets.transfer_bar import TransferBar
from chatroom.protocol import UnserializableMessage, casefold

# Opens a downloaded file in the system's viewer.
Opener = Callable[[Path], None]

# HEAD requests for attachments' size and type at once (the rest wait their turn).
HEAD_CONCURRENCY = 4
# A HEAD that takes longer than this is given up (the name alone stays shown).
HEAD_TIMEOUT = 10.0
# Set (to anything) to never start the system's file viewer (tests set it).
NO_OPEN_ENV = "CHATROOM_NO_OPEN"


def open_file(path: Path) -> None:
    """Open ``path`` in the system's viewer (``xdg-open``, ``open``), not waiting for it."""
    if sys.platform == "win32":
        os.startfile(path)  # type: ignore[attr-defined]
        return
    command = "open" if sys.platform == "darwin" else "xdg-open"
    if shutil.which(command) is None:
        raise OSError(f"{command} is not installed")
    subprocess.Popen(
        [command, str(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


class FileHost:
    """The app's file-host behaviour; ChatApp calls :meth:`init_files` first."""

    def init_files(self, downloads: Path, opener: Opener | None) -> None:
        self.downloads_dir = downloads
        self.opener = None if os.environ.get(NO_OPEN_ENV) else opener
        self.attachments = Attachments(on_wanted=self._attachments_wanted)
        self._heads_pending = False
        self._head_limit = asyncio.Semaphore(HEAD_CONCURRENCY)
        self._answered: set[str] = set()  # attachment URLs whose rows need redrawing
        self._transfer: Worker[None] | None = None

    # --- -----------------------------------------------------------

    @property
    def transfer_running(self) -> bool:
        """Whether an upload or a download is under way (Escape cancels it)."""
        return self._transfer is not None and not self._transfer.is_finished

    def cancel_transfer(self) -> None:
        """Escape: stop the upload or download under way (its worker says so)."""
        if self._transfer is not None:
            self._transfer.cancel()

    def file_trust(self) -> transfer.TlsTrust:
        """How to trust the file host: the certificate of the chat link, when it is TLS
        (the server presents the same one on its web port)."""
        connection = self.connection
        if connection is None or not connection.settings.tls:
            return transfer.TlsTrust()
        return transfer.TlsTrust(connection.peer_fingerprint, require_tls=True)

    def _filehost_changed(self, filehost: str) -> None:
        self.attachments.reset(filehost)
        screen = self.chat_screen
        if screen is not None and screen.ready:
            with contextlib.suppress(NoMatches):
                screen.query_one(MessageLog).redraw_all()

    def _attachments_wanted(self) -> None:
        """The log drew attachments it knows nothing of yet: ask the file host (soon,
        off the drawing path)."""
        if not self._heads_pending:
            self._heads_pending = True
            self.call_later(self._ask_heads)

    def _ask_heads(self) -> None:
        self._heads_pending = False
        for url in self.attachments.take_wanted():
            self.run_worker(self._head(url), group="attachments", exit_on_error=False)

    async def _head(self, url: str) -> None:
        meta = None
        try:
            async with self._head_limit:
                meta = await transfer.head(url, trust=self.file_trust(), timeout=HEAD_TIMEOUT)
        except (transfer.TransferError, OSError, TimeoutError):
            pass  # the name alone stays shown
        finally:
            self.attachments.answered(url, meta)
            self._answered.add(url)
            self._schedule_flush()

    def _redraw_attachments(self) -> None:
        """Lines with links the file host has just told us about are drawn again."""
        urls, self._answered = self._answered, set()
        for buf in self.state.buffers.values():
            touched = [e.seq for e in buf.entries if "/files/" in e.text and _has_any(e.text, urls)]
            if touched:
                buf.touched.update(touched)
                self.state.dirty_entries.add(buf.key)

    def _upload_credentials(self) -> Credentials:
        """The account to upload as, with its password; CommandError saying how to log
        in when there is none."""
        account = self.state.account
        connection = self.connection
        creds = connection.auth.credentials if connection is not None else None
        if account is None:
            raise CommandError(
                "Uploading needs an account: /login ACCOUNT PASSWORD (or /register PASSWORD)"
            )
        if creds is None or creds.register or casefold(creds.account) != casefold(account):
            raise CommandError(
                f"Uploading needs the password of {account}, which this session does not "
                f"know: /login {account} PASSWORD"
            )
        return creds

    def _check_cleartext(self, filehost: str) -> None:
        """Basic auth over plain http shows the password to the network: the same rule
        as for SASL PLAIN (TLS or loopback, or --allow-plain-sasl)."""
        where = origin(filehost)
        if where is None or where[0] == "https" or self.allow_plain_sasl:
            return
        if is_loopback(where[1]) or where[1] == "localhost":
            return
        raise CommandError(
            "This server's file host is plain http, which would send your password "
            "unencrypted; start with --allow-plain-sasl to allow it"
        )

    def upload(self, path: str) -> None:
        """/upload PATH: send the file to the file host, then its link to this window."""
        if self.transfer_running:
            raise CommandError("A file is being transferred; Escape cancels it")
        self._registered_connection()
        filehost = self.state.filehost
        if not filehost:
            raise CommandError("This server has no file host, so files can't be uploaded here")
        buf = self.state.active_buffer
        if buf.key == SERVER_KEY:
            raise CommandError("/upload needs a room or a private conversation")
        creds = self._upload_credentials()
        self._check_cleartext(filehost)
        text = path.strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            text = text[1:-1]
        file = Path(text).expanduser()
        try:
            if not file.is_file():
                what = "a directory" if file.is_dir() else "there"
                raise CommandError(
                    f"{file} is {what}, not a file" if file.exists() else f"No file {file}"
                )
            size = file.stat().st_size
        except OSError as exc:
            raise CommandError(f"Can't read {file}: {exc.strerror or exc}") from None
        self._transfer = self.run_worker(
            self._upload(filehost, buf.name, file, size, creds),
            group="transfer",
            exit_on_error=False,
        )

    def _transfer_bar(self) -> TransferBar | None:
        screen = self.chat_screen
        if screen is None or not screen.ready:
            return None
        try:
            return screen.query_one(TransferBar)
        except NoMatches:
            return None

    def _progress(self) -> transfer.Progress:
        def moved(done: int, total: int | None) -> None:
            bar = self._transfer_bar()
            if bar is not None:
                bar.show_progress(done, total)

        return moved

    def _transfer_started(self, verb: str, name: str, size: int | None) -> None:
        bar = self._transfer_bar()
        if bar is not None:
            bar.start(verb, name, size)

    def _transfer_over(self) -> None:
        bar = self._transfer_bar()
        if bar is not None:
            bar.stop()
        self._schedule_flush()

    async def _upload(
        self, filehost: str, target: str, file: Path, size: int, creds: Credentials
    ) -> None:
        key = casefold(target)
        self._transfer_started("Uploading", file.name, size)
        try:
            link = await transfer.upload(
                filehost,
                file,
                creds.account,
                creds.password,
                self._progress(),
                trust=self.file_trust(),
            )
        except asyncio.CancelledError:
            self.state.info(f"Upload of {file.name} cancelled", key)
            raise
        except transfer.TransferError as exc:
            self.state.info(f"{file.name} was not uploaded: {exc}", key, error=True)
        except OSError as exc:
            self.state.info(f"Can't read {file}: {exc.strerror or exc}", key, error=True)
        else:
            try:
                say(self, target, link)
            except (CommandError, UnserializableMessage) as exc:
                self.state.info(
                    f"{file.name} is uploaded, but its link was not sent ({exc}): {link}",
                    key,
                    error=True,
                )
        finally:
            self._transfer_over()

    def download(self, attachment: Attachment) -> None:
        """Enter on an attachment: save it in the downloads folder (then show it, if it
        is a picture)."""
        if self.transfer_running:
            raise CommandError("A file is being transferred; Escape cancels it")
        meta = self.attachments.meta(attachment.url)
        self._transfer = self.run_worker(
            self._download(attachment, meta, self.state.active),
            group="transfer",
            exit_on_error=False,
        )

    async def _download(
        self, attachment: Attachment, meta: transfer.FileMeta | None, key: str
    ) -> None:
        name = meta.name if meta is not None else attachment.name
        self._transfer_started("Downloading", name, meta.size if meta is not None else None)
        try:
            path = await transfer.download(
                attachment.url, self.downloads_dir, self._progress(), trust=self.file_trust()
            )
        except asyncio.CancelledError:
            self.state.info(f"Download of {name} cancelled", key)
            raise
        except transfer.TransferError as exc:
            self.state.info(f"{name} was not downloaded: {exc}", key, error=True)
            return
        except OSError as exc:
            self.state.info(
                f"{name} could not be saved in {self.downloads_dir}: {exc.strerror or exc}",
                key,
                error=True,
            )
            return
        finally:
            self._transfer_over()
        self.state.info(f"Saved {path.name} in {path.parent}", key)
        self._schedule_flush()
        kind = meta.content_type if meta is not None else mimetypes.guess_type(path.name)[0]
        if kind in IMAGE_TYPES:
            self.show_image(path)

    def show_image(self, path: Path) -> None:
        """A downloaded picture: shown in the terminal when textual-image is installed,
        else offered to the system's viewer."""
        if image_preview_available():

            def closed(choice: str | None) -> None:
                if choice == "open":
                    self._open_file(path)

            self.push_screen(
                ImagePreviewScreen(path, path.name, can_open=self.opener is not None), closed
            )
        elif self.opener is not None:

            def answer(yes: bool | None) -> None:
                if yes:
                    self._open_file(path)

            question = f"Open {path.name} in the system viewer?"
            self.push_screen(ConfirmScreen(question, yes="Open"), answer)

    def _open_file(self, path: Path) -> None:
        opener = self.opener
        if opener is None:
            return
        try:
            opener(path)
        except OSError as exc:
            self.state.info(f"Could not open {path.name}: {exc}", error=True)
            self._schedule_flush()


def _has_any(text: str, needles: set[str]) -> bool:
    return any(needle in text for needle in needles)
