"""Remembered account passwords: the OS keyring when there is one, else a 0600 file.

Only passwords the user asked to remember (the connect screen's "remember password"),
and only once the server accepted them. Each is keyed by server (``host:port``) and
account (casefolded). The keyring is the ``keyring`` library (an optional dependency:
``pip install chatroom[keyring]``) with a backend that really stores something; without
one, ``passwords.json`` in the config directory, readable by the user alone (created
0600, and put back to 0600 if found readable by others).

Tests never reach the real keyring: they set :data:`NO_KEYRING_ENV` or hand
:class:`Passwords` a backend of their own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any, Protocol

from chatroom.protocol import casefold

__all__ = [
    "FILE_MODE",
    "KEYRING_SERVICE",
    "NO_KEYRING_ENV",
    "PASSWORDS_FILE",
    "FilePasswords",
    "KeyringBackend",
    "Passwords",
    "open_passwords",
    "password_key",
    "system_keyring",
]

PASSWORDS_FILE = "passwords.json"
# Owner read/write only: the file holds passwords as they are.
FILE_MODE = 0o600
DIR_MODE = 0o700
# The keyring "service" our entries are filed under; the "username" is password_key().
KEYRING_SERVICE = "chatroom"
# Set (to anything but "" or "0") to never use the OS keyring (tests, shared machines).
NO_KEYRING_ENV = "CHATROOM_NO_KEYRING"

_log = logging.getLogger(__name__)


class KeyringBackend(Protocol):
    """What we use of a ``keyring`` backend (``keyring.get_keyring()``)."""

    def get_password(self, service: str, username: str) -> str | None: ...

    def set_password(self, service: str, username: str, password: str) -> None: ...

    def delete_password(self, service: str, username: str) -> None: ...


def password_key(host: str, port: int, account: str) -> str:
    """The key of one remembered password.

    >>> password_key("chat.lan", 6667, "Alice"), password_key("::1", 7000, "bob")
    ('alice@chat.lan:6667', 'bob@[::1]:7000')
    """
    where = f"[{host}]" if ":" in host else host
    return f"{casefold(account)}@{where}:{port}"


def system_keyring() -> KeyringBackend | None:
    """The OS keyring, when ``keyring`` is installed, allowed, and has a backend that
    stores something (not its "fail" or "null" stand-ins, whose priority is <= 0)."""
    if os.environ.get(NO_KEYRING_ENV, "") not in ("", "0"):
        return None
    try:
        import keyring

        backend: Any = keyring.get_keyring()
        if float(getattr(backend, "priority", 0)) <= 0:
            return None
    except Exception:  # not installed, or a backend that breaks on import (D-Bus...)
        return None
    return backend  # type: ignore[no-any-return]


class FilePasswords:
    """Passwords in ``passwords.json`` in ``directory``, mode 0600.

    ``fixed_mode`` is set when the file was found readable by others and made private
    again (the app tells the user: it may have been read).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / PASSWORDS_FILE
        self.fixed_mode = False

    def _load(self) -> dict[str, str]:
        try:
            mode = self.path.stat().st_mode
        except OSError:
            return {}
        if os.name == "posix" and stat.S_IMODE(mode) & 0o077:
            with contextlib.suppress(OSError):
                os.chmod(self.path, FILE_MODE)
                self.fixed_mode = True
                _log.warning("%s was readable by others; made it %o", self.path, FILE_MODE)
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(raw, dict):
            return {}
        return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}

    def _save(self, data: dict[str, str]) -> None:
        if not data:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        self.directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        tmp = self.path.with_name(PASSWORDS_FILE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            if os.name == "posix":
                os.fchmod(fd, FILE_MODE)  # an old .tmp keeps its mode through O_CREAT
            os.write(fd, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    def get(self, key: str) -> str | None:
        return self._load().get(key)

    def set(self, key: str, password: str) -> None:
        data = self._load()
        data[key] = password
        self._save(data)

    def delete(self, key: str) -> None:
        data = self._load()
        if data.pop(key, None) is not None:
            self._save(data)


class Passwords:
    """Remembered passwords: in ``keyring`` (a backend) when given, else in ``file``.

    A keyring that fails at run time (locked, D-Bus gone) is given up on for the rest
    of the session, and the file is used instead.
    """

    def __init__(self, file: FilePasswords, keyring: KeyringBackend | None = None) -> None:
        self.file = file
        self.keyring = keyring

    @property
    def where(self) -> str:
        """Where a password goes, in words for the user."""
        if self.keyring is not None:
            return "the system keyring"
        return f"{self.file.path} (readable by you alone)"

    def _keyring_failed(self, exc: Exception) -> None:
        _log.warning("keyring failed (%s); remembering passwords in %s", exc, self.file.path)
        self.keyring = None

    def get(self, host: str, port: int, account: str) -> str | None:
        """The remembered password of ``account`` on ``host:port``, if any."""
        key = password_key(host, port, account)
        if self.keyring is not None:
            try:
                found = self.keyring.get_password(KEYRING_SERVICE, key)
            except Exception as exc:
                self._keyring_failed(exc)
            else:
                if found:
                    return found
        return self.file.get(key)

    def set(self, host: str, port: int, account: str, password: str) -> None:
        """Remember ``password`` (in the keyring, so none is left in the file)."""
        key = password_key(host, port, account)
        if self.keyring is not None:
            try:
                self.keyring.set_password(KEYRING_SERVICE, key, password)
            except Exception as exc:
                self._keyring_failed(exc)
            else:
                self.file.delete(key)
                return
        self.file.set(key, password)

    def delete(self, host: str, port: int, account: str) -> None:
        """Forget the password of ``account`` on ``host:port`` wherever it is."""
        key = password_key(host, port, account)
        if self.keyring is not None:
            try:
                if self.keyring.get_password(KEYRING_SERVICE, key) is not None:
                    self.keyring.delete_password(KEYRING_SERVICE, key)
            except Exception as exc:
                self._keyring_failed(exc)
        self.file.delete(key)


def open_passwords(directory: Path, *, use_keyring: bool = True) -> Passwords:
    """The password store for config directory ``directory``."""
    return Passwords(FilePasswords(directory), system_keyring() if use_keyring else None)
