"""Accounts, registered rooms and read markers in the server's SQLite database (store.py).

Sessions read and write them through the records.Accounts interface, synchronously
from their own thread: an account change is rare and must be on disk before the
client is told it happened. The store has its own connection (WAL lets it work
beside the history store thread's) behind one lock; password hashing (PBKDF2, tens
of milliseconds) is done by the caller, outside that lock.

Only SCRAM-SHA-256 credentials are stored (salt, iterations, StoredKey, ServerKey):
enough to check a PLAIN password and to run SCRAM, never enough to log in with.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

from chatroom.protocol import casefold
from chatroom.sasl import Credentials
from chatroom.server.records import AccountInfo, AccountStoreError, RoomRegistration
from chatroom.server.store import HistoryStore

log = logging.getLogger(__name__)


class AccountStore:
    """records.Accounts over the database of ``store`` (its file, or its private
    in-memory database)."""

    def __init__(self, store: HistoryStore) -> None:
        self._db = sqlite3.connect(
            store.uri, uri=store.uri.startswith("file:"), check_same_thread=False
        )
        self._db.isolation_level = None
        self._db.execute("PRAGMA busy_timeout = 2000")
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _read(self, sql: str, args: tuple[object, ...]) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as e:
                log.error("accounts: read failed: %s", e)
                raise AccountStoreError(str(e)) from e

    def _write(self, *statements: tuple[str, tuple[object, ...]]) -> int:
        """Run ``statements`` in one transaction; the rows the last one changed."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                changed = 0
                for sql, args in statements:
                    changed = self._db.execute(sql, args).rowcount
                self._db.execute("COMMIT")
                return changed
            except sqlite3.Error as e:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(e, sqlite3.IntegrityError):
                    return 0
                log.error("accounts: write failed: %s", e)
                raise AccountStoreError(str(e)) from e

    # --- accounts -----------------------------------------------------------------------

    def count(self) -> int:
        """How many accounts one can log in to (dropped ones keep their name, not their
        login), for /metrics: a LAN server has few, so counting them is cheap."""
        return self._read("SELECT COUNT(*) FROM accounts WHERE dropped IS NULL", ())[0][0]

    def exists(self, name: str) -> bool:
        """Whether the name is an account's, or was one that was dropped."""
        return bool(self._read("SELECT 1 FROM accounts WHERE key = ?", (casefold(name),)))

    def get(self, name: str) -> AccountInfo | None:
        """The account, unless there is none or it was dropped."""
        rows = self._read(
            "SELECT name, salt, iterations, stored_key, server_key, created"
            " FROM accounts WHERE key = ? AND dropped IS NULL",
            (casefold(name),),
        )
        if not rows:
            return None
        name, salt, iterations, stored, server, created = rows[0]
        return AccountInfo(name, Credentials(salt, iterations, stored, server), created)

    def create(self, name: str, creds: Credentials) -> bool:
        """False when the name is taken (by any case of it)."""
        return bool(
            self._write(
                (
                    "INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                    (
                        casefold(name),
                        name,
                        creds.salt,
                        creds.iterations,
                        creds.stored_key,
                        creds.server_key,
                        time.time(),
                    ),
                )
            )
        )

    def set_credentials(self, name: str, creds: Credentials) -> bool:
        return bool(
            self._write(
                (
                    "UPDATE accounts SET salt = ?, iterations = ?, stored_key = ?, server_key = ?"
                    " WHERE key = ? AND dropped IS NULL",
                    (
                        creds.salt,
                        creds.iterations,
                        creds.stored_key,
                        creds.server_key,
                        casefold(name),
                    ),
                )
            )
        )

    def drop(self, name: str) -> bool:
        """Drop the account: its credentials, the rooms it founded and its places in
        access lists go; its name stays taken (Ergo's rule), so whoever registered it
        next would not read the private conversations it left."""
        key = casefold(name)
        rooms = [
            r for (r,) in self._read("SELECT key FROM registered_rooms WHERE founder = ?", (key,))
        ]
        statements: list[tuple[str, tuple[object, ...]]] = []
        for room in rooms:
            statements += self._unregister_statements(room)
        statements.append(("DELETE FROM room_access WHERE account = ?", (key,)))
        statements.append(("DELETE FROM read_markers WHERE account = ?", (key,)))
        statements.append(
            (
                "UPDATE accounts SET stored_key = x'', server_key = x'', dropped = ?"
                " WHERE key = ? AND dropped IS NULL",
                (time.time(), key),
            )
        )
        return bool(self._write(*statements))

    # --- registered rooms -----------------------------------------------------------------

    def room(self, name: str) -> RoomRegistration | None:
        key = casefold(name)
        rows = self._read(
            "SELECT name, founder, registered FROM registered_rooms WHERE key = ?", (key,)
        )
        if not rows:
            return None
        room_name, founder, registered = rows[0]
        access = dict(self._read("SELECT account, status FROM room_access WHERE room = ?", (key,)))
        lists = [
            (mode, mask, set_by, set_at)
            for mode, mask, set_by, set_at in self._read(
                "SELECT mode, mask, set_by, set_at FROM room_lists WHERE room = ? ORDER BY rowid",
                (key,),
            )
        ]
        return RoomRegistration(room_name, founder, registered, access, lists)

    def register_room(
        self, name: str, founder: str, lists: list[tuple[str, str, str, int]]
    ) -> bool:
        key, founder_key = casefold(name), casefold(founder)
        statements: list[tuple[str, tuple[object, ...]]] = [
            ("DELETE FROM room_lists WHERE room = ?", (key,)),
            ("DELETE FROM room_access WHERE room = ?", (key,)),
            *(
                ("INSERT OR IGNORE INTO room_lists VALUES (?, ?, ?, ?, ?)", (key, *entry))
                for entry in lists
            ),
            ("INSERT INTO room_access VALUES (?, ?, 'o')", (key, founder_key)),
            (
                "INSERT INTO registered_rooms VALUES (?, ?, ?, ?)",
                (key, name, founder_key, time.time()),
            ),
        ]
        return bool(self._write(*statements))

    @staticmethod
    def _unregister_statements(key: str) -> list[tuple[str, tuple[object, ...]]]:
        return [
            ("DELETE FROM room_lists WHERE room = ?", (key,)),
            ("DELETE FROM room_access WHERE room = ?", (key,)),
            ("DELETE FROM registered_rooms WHERE key = ?", (key,)),
        ]

    def unregister_room(self, name: str) -> bool:
        return bool(self._write(*self._unregister_statements(casefold(name))))

    def set_access(self, room: str, account: str, status: str | None) -> None:
        """``status`` 'o' or 'v' puts ``account`` on the room's access list; None
        takes it off."""
        key, account_key = casefold(room), casefold(account)
        if status:
            self._write(
                ("INSERT OR REPLACE INTO room_access VALUES (?, ?, ?)", (key, account_key, status))
            )
        else:
            self._write(
                ("DELETE FROM room_access WHERE room = ? AND account = ?", (key, account_key))
            )

    def set_list_entry(
        self, room: str, mode: str, mask: str, set_by: str, set_at: int, present: bool
    ) -> None:
        key = casefold(room)
        if present:
            self._write(
                (
                    "INSERT OR IGNORE INTO room_lists VALUES (?, ?, ?, ?, ?)",
                    (key, mode, mask, set_by, set_at),
                )
            )
        else:
            self._write(
                (
                    "DELETE FROM room_lists WHERE room = ? AND mode = ? AND mask = ?",
                    (key, mode, mask),
                )
            )

    # --- read markers (IRCv3 read-marker) ---------------------------------------------------

    def read_marker(self, account: str, target: str) -> int | None:
        """Where ``account`` has read ``target`` (a room or a nick) to: a server time in
        ms, or None when it never said."""
        rows = self._read(
            "SELECT time_ms FROM read_markers WHERE account = ? AND target = ?",
            (casefold(account), casefold(target)),
        )
        return rows[0][0] if rows else None

    def set_read_marker(
        self, account: str, target: str, time_ms: int, keep: int
    ) -> tuple[int | None, int]:
        """Move ``account``'s marker on ``target`` forward to ``time_ms`` (never back):
        the marker (before, after). A new marker beyond ``keep`` of the account's makes
        the least recently moved ones go."""
        key, target_key = casefold(account), casefold(target)
        db = self._db
        with self._lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                row = db.execute(
                    "SELECT time_ms FROM read_markers WHERE account = ? AND target = ?",
                    (key, target_key),
                ).fetchone()
                before = row[0] if row else None
                if before is None:
                    db.execute(
                        "DELETE FROM read_markers WHERE account = ? AND target IN (SELECT target"
                        " FROM read_markers WHERE account = ? ORDER BY updated DESC"
                        " LIMIT -1 OFFSET ?)",
                        (key, key, max(keep - 1, 0)),
                    )
                if before is None or time_ms > before:
                    db.execute(
                        "INSERT INTO read_markers VALUES (?, ?, ?, ?) ON CONFLICT(account, target)"
                        " DO UPDATE SET time_ms = excluded.time_ms, updated = excluded.updated",
                        (key, target_key, time_ms, time.time()),
                    )
                db.execute("COMMIT")
            except sqlite3.Error as e:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                log.error("accounts: saving a read marker failed: %s", e)
                raise AccountStoreError(str(e)) from e
        return before, time_ms if before is None else max(before, time_ms)
