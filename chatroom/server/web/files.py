"""The file host's storage: uploads on disk under ``files_dir``, an index in memory.

Each file is two entries in the directory: ``<id>`` (the bytes, exactly as uploaded) and
``<id>.json`` (who uploaded it, its sanitised name, type, size and time). An upload is
written under ``.partial/`` and renamed into place when complete, data first and the
description last, so a crash leaves either a whole file or something the next start
removes. The id is 128 random bits: knowing it is what lets someone download the file,
and no name or path a client sends is ever joined into a path on disk.

Limits (Config): file size, bytes per account, bytes in all, uploads per account per
minute, days kept. Sizes are reserved when an upload starts, from its Content-Length,
so concurrent uploads cannot together pass a quota.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import re
import secrets
import threading
import time
import unicodedata
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

from chatroom.protocol import casefold
from chatroom.server.config import Config

log = logging.getLogger(__name__)

# 16 random bytes in URL-safe base64, without padding
ID_LENGTH = 22
ID_PATTERN = re.compile(rf"[A-Za-z0-9_-]{{{ID_LENGTH}}}")
# a name longer than this keeps its start and its extension
NAME_MAX = 120
PARTIAL_DIR = ".partial"
# how often the retention sweep looks (the ticker asks every second)
SWEEP_INTERVAL = 600.0
# a declared type must look like one; anything else is guessed from the name
_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")


@dataclass(frozen=True)
class FileInfo:
    """What the index knows of a stored file."""

    id: str
    name: str
    content_type: str
    size: int
    account: str
    created: float


class UploadRefused(Exception):
    """An upload the limits refuse: the HTTP status and a reason for the uploader."""

    def __init__(self, status: int, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


def sanitise_name(name: str | None) -> str:
    """A file name safe to show and to offer as a download name: the last path
    component, no control or format characters, no leading dots, at most NAME_MAX.

    >>> sanitise_name("../../etc/passwd"), sanitise_name("C:\\\\x\\\\evil.exe")
    ('passwd', 'evil.exe')
    >>> sanitise_name("..."), sanitise_name(None), sanitise_name(" a\\x00b\\u202e.txt ")
    ('file', 'file', 'ab.txt')
    """
    text = unicodedata.normalize("NFC", name or "")
    text = re.split(r"[/\\]", text)[-1]
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C")
    text = " ".join(text.split()).lstrip(". ").rstrip(" ")
    if not text:
        return "file"
    if len(text) > NAME_MAX:
        stem, dot, ext = text.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            text = stem[: NAME_MAX - len(ext) - 1] + "." + ext
        else:
            text = text[:NAME_MAX]
    return text


def content_type_for(declared: str | None, name: str) -> str:
    """The declared type if it looks like one (parameters dropped), else a guess from
    the name, else ``application/octet-stream``.

    >>> content_type_for("image/PNG; x=1", "a"), content_type_for("junk", "a.txt")
    ('image/png', 'text/plain')
    """
    if declared:
        base = declared.split(";", 1)[0].strip().lower()
        if _MIME.fullmatch(base) and base not in ("multipart/form-data",):
            return base
    guessed = mimetypes.guess_type(name, strict=False)[0]
    return guessed or "application/octet-stream"


class Upload:
    """One upload under way: bytes go to a partial file; commit() makes it a file."""

    def __init__(self, store: FileStore, account: str, reserved: int) -> None:
        self.store = store
        self.account = account
        self.reserved = reserved
        self.id = secrets.token_urlsafe(16)
        self.size = 0
        self._path = store.partial / self.id
        self._file = open(self._path, "xb")  # noqa: SIM115 - closed by commit/abort
        self._done = False

    def write(self, data: bytes) -> None:
        """Append ``data``; UploadRefused (413) past the file size limit."""
        self.size += len(data)
        if self.size > self.store.config.file_max_bytes:
            raise UploadRefused(413, self.store.too_large())
        self._file.write(data)

    def commit(self, name: str | None, content_type: str | None) -> FileInfo:
        """Make it a stored file (on disk before it is announced) and index it."""
        clean = sanitise_name(name)
        info = FileInfo(
            id=self.id,
            name=clean,
            content_type=content_type_for(content_type, clean),
            size=self.size,
            account=self.account,
            created=self.store.clock(),
        )
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        meta = self.store.partial / f"{self.id}.json"
        with open(meta, "x", encoding="utf-8") as f:
            json.dump(asdict(info), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(self._path, self.store.directory / self.id)
        os.replace(meta, self.store.directory / f"{self.id}.json")
        self.store.sync_dir()
        self._done = True
        self.store.finished(self, info)
        return info

    def abort(self) -> None:
        """Forget it (a failed, refused or cancelled upload): nothing stays on disk."""
        if self._done:
            return
        self._done = True
        try:
            self._file.close()
        finally:
            self._path.unlink(missing_ok=True)
            self.store.finished(self, None)


class FileStore:
    """The stored files and the limits on storing more; safe from any thread."""

    def __init__(self, directory: Path, config: Config, clock=time.time) -> None:
        self.directory = directory
        self.partial = directory / PARTIAL_DIR
        self.config = config
        self.clock = clock
        self._lock = threading.Lock()
        self._files: dict[str, FileInfo] = {}
        self._by_account: dict[str, int] = {}  # casefolded account -> bytes stored
        self._total = 0
        self._reserved: dict[str, int] = {}  # account -> bytes of uploads under way
        self._reserved_total = 0
        self._recent: dict[str, deque[float]] = {}  # account -> times of recent uploads
        self._next_sweep = 0.0
        # for /metrics: counted under the lock
        self.uploads_total = 0
        self.upload_bytes_total = 0
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.partial.mkdir(exist_ok=True, mode=0o700)
        self._load()

    # --- start -------------------------------------------------------------------------

    def _load(self) -> None:
        for leftover in self.partial.iterdir():  # uploads a crash or a stop cut short
            leftover.unlink(missing_ok=True)
        for meta in self.directory.glob("*.json"):
            data = self.directory / meta.stem
            try:
                info = FileInfo(**json.loads(meta.read_text(encoding="utf-8")))
                if not ID_PATTERN.fullmatch(info.id) or info.id != meta.stem:
                    raise ValueError("not one of ours")
                if data.stat().st_size != info.size:
                    raise ValueError("size differs from its description")
            except (OSError, ValueError, TypeError) as e:
                log.warning("files: %s is not a stored file (%s): removed", meta.name, e)
                meta.unlink(missing_ok=True)
                data.unlink(missing_ok=True)
                continue
            self._add(info)
        for data in self.directory.iterdir():  # bytes without a description: never finished
            if ID_PATTERN.fullmatch(data.name) and data.name not in self._files:
                data.unlink(missing_ok=True)
        log.info(
            "files: %d kept in %s (%.1f MiB)", len(self._files), self.directory, self._total / 2**20
        )

    def _add(self, info: FileInfo) -> None:
        self._files[info.id] = info
        key = casefold(info.account)
        self._by_account[key] = self._by_account.get(key, 0) + info.size
        self._total += info.size

    def _remove(self, info: FileInfo) -> None:
        del self._files[info.id]
        key = casefold(info.account)
        left = self._by_account.get(key, 0) - info.size
        if left > 0:
            self._by_account[key] = left
        else:
            self._by_account.pop(key, None)
        self._total -= info.size

    # --- uploading ---------------------------------------------------------------------

    def too_large(self) -> str:
        return f"file too large: the limit is {_mib(self.config.file_max_bytes)}"

    def begin(self, account: str, declared: int) -> Upload:
        """Start an upload of at most ``declared`` bytes for ``account``, or refuse it
        (413 too large, 429 too many per minute, 507 over a quota)."""
        cfg = self.config
        if declared > cfg.file_max_bytes:
            raise UploadRefused(413, self.too_large())
        key = casefold(account)
        now = time.monotonic()
        with self._lock:
            recent = self._recent.setdefault(key, deque())
            while recent and now - recent[0] >= 60.0:
                recent.popleft()
            if len(recent) >= cfg.uploads_per_minute:
                wait = 60.0 - (now - recent[0])
                raise UploadRefused(
                    429, f"too many uploads: {cfg.uploads_per_minute} a minute", wait
                )
            mine = self._by_account.get(key, 0) + self._reserved.get(key, 0)
            if mine + declared > cfg.file_quota_bytes:
                raise UploadRefused(
                    507,
                    f"over your quota: you keep {_mib(mine)} of {_mib(cfg.file_quota_bytes)}",
                )
            if self._total + self._reserved_total + declared > cfg.files_total_bytes:
                raise UploadRefused(507, "the server's file space is full")
            recent.append(now)
            self._reserved[key] = self._reserved.get(key, 0) + declared
            self._reserved_total += declared
        try:
            return Upload(self, key, declared)
        except OSError as e:
            self._release(key, declared)
            log.error("files: cannot write in %s: %s", self.partial, e)
            raise UploadRefused(507, "the server cannot store files just now") from e

    def _release(self, key: str, reserved: int) -> None:
        left = self._reserved.get(key, 0) - reserved
        if left > 0:
            self._reserved[key] = left
        else:
            self._reserved.pop(key, None)
        self._reserved_total -= reserved

    def finished(self, upload: Upload, info: FileInfo | None) -> None:
        """From Upload: its reservation ends; ``info`` is the stored file, if it was."""
        with self._lock:
            self._release(upload.account, upload.reserved)
            if info is not None:
                self._add(info)
                self.uploads_total += 1
                self.upload_bytes_total += info.size

    def sync_dir(self) -> None:
        """The renames are durable once the directory is (POSIX)."""
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    # --- reading -------------------------------------------------------------------------

    def get(self, file_id: str) -> tuple[FileInfo, Path] | None:
        """The file with this id and where its bytes are, unless there is none."""
        if not ID_PATTERN.fullmatch(file_id):
            return None
        with self._lock:
            info = self._files.get(file_id)
        return (info, self.directory / info.id) if info is not None else None

    @property
    def count(self) -> int:
        return len(self._files)

    @property
    def total_bytes(self) -> int:
        return self._total

    def used_by(self, account: str) -> int:
        with self._lock:
            return self._by_account.get(casefold(account), 0)

    # --- retention -------------------------------------------------------------------------

    def maybe_sweep(self, now: float) -> None:
        """From the server's ticker (monotonic ``now``): a sweep every SWEEP_INTERVAL."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        self.sweep()

    def sweep(self) -> int:
        """Remove the files older than ``file_retention_days``; how many went."""
        days = self.config.file_retention_days
        if days <= 0:
            return 0
        cutoff = self.clock() - days * 86400
        with self._lock:
            expired = [info for info in self._files.values() if info.created < cutoff]
            for info in expired:
                self._remove(info)
        for info in expired:  # out of the index first: nobody starts downloading it now
            (self.directory / f"{info.id}.json").unlink(missing_ok=True)
            (self.directory / info.id).unlink(missing_ok=True)
        if expired:
            log.info("files: %d older than %g days removed", len(expired), days)
        return len(expired)


def resolve_files_dir(config: Config) -> Path:
    """``files_dir``; when empty, ``files/`` beside the history database if ``db`` names
    a file, else in the per-user data directory (where the default database lives)."""
    if config.files_dir:
        return Path(config.files_dir).expanduser()
    if config.db and config.db != ":memory:":
        return Path(config.db).expanduser().resolve().parent / "files"
    from chatroom.server.config import default_db_path

    return default_db_path().parent / "files"


def _mib(n: int) -> str:
    """A size for people.

    >>> _mib(50 << 20), _mib(1536 << 10), _mib(1000), _mib(20 << 10)
    ('50 MiB', '1.5 MiB', '1000 bytes', '20 KiB')
    """
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"
