"""The store thread: it commits history, then hands everything on to the writer, in order.

Every line for every client passes through :class:`HistoryPipeline` on its way to the
writer (outbox.py). The pipeline's thread takes whatever has been posted, writes the
room messages among it to SQLite in one transaction (group commit, store.py), and only
then hands the whole batch, in order, to the writer. So a message that anyone has seen
(its echo, or its delivery) is already committed: it survives ``kill -9`` of the
server. Under load it gathers a little before each commit (STORE_DUTY), so that
batches grow; the search index follows the commits in bulk, when the thread is quiet
(FTS_QUIET), and a search has it catch up first, so it finds every line delivered
before it.

The chat never stops because of its history. A batch that cannot be stored is still
delivered: when the database or the disk fails (full, I/O error, locked) the cause is
logged once, :attr:`HistoryPipeline.problem` says messages are not being saved, and the
server tells everyone (``on_health``), again when saving works again; a record SQLite
refuses on its own (a bug upstream) is skipped and logged with its traceback, and the
rest of its batch is stored. An exception escaping the store thread's loop itself stops
the server loudly (``on_death``) rather than leaving it mute.

The pipeline is also the records.History that the server injects into sessions: their
reads go straight to the store, and rooms are saved (and redacted messages deleted)
in their place among the lines.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

from chatroom.server.outbox import Inbox, Writer
from chatroom.server.records import Multicast, RoomState, SearchTarget, StoredMessage
from chatroom.server.store import HistoryStore

# the name its lines carried before the store thread had a module of its own (logs
# name it, and operators filter on it)
log = logging.getLogger("chatroom.server.store")

# How often (seconds) the store thread applies the retention rules, and copies the
# write-ahead log into the database (which bounds the WAL to that much traffic); at
# each checkpoint it also checks that the database file is still the one it opened.
RETENTION_INTERVAL = 60.0
CHECKPOINT_INTERVAL = 2.0
# Seconds saving must work, without a failure, before users are told it works again:
# a nearly full disk takes some writes and refuses others, and nobody should get a
# NOTICE for each turn. (Failing is announced at the first failure.)
RECOVERY_GRACE = 10.0
# Full-text indexing is deferred (store.HistoryStore.index): in bulk, FTS5 costs 2.6 us
# for a short line on a small index and 5 to 8 us for a chat line on an index of a
# million (benchmarks/search_bench.py --insert-cost), against some 16 us through a
# per-row trigger in the batches the store thread commits. Chat comes in bursts, and a
# burst's CPU goes to delivering it: the store thread indexes what it committed once it
# is quiet (no commit for FTS_QUIET seconds).
# Under load that does not let up, it indexes in steps of FTS_STEP_ROWS (3 to 8 ms
# of work each, between two commits) once FTS_BATCH_ROWS rows wait, which bounds the
# backlog; and all of it at start (what a kill -9 left) and at stop. A search does not
# wait for any of these: it has the store thread index first, waiting at most
# SEARCH_INDEX_WAIT seconds for it (then, or if that thread is gone or indexing fails,
# it searches what is indexed). After a failure, the next try is FTS_QUIET later.
FTS_QUIET = 0.5
FTS_BATCH_ROWS = 20_000
FTS_STEP_ROWS = 1000
SEARCH_INDEX_WAIT = 1.0
# Group commit that gathers, as the writer coalesces (outbox.FLUSH_DUTY): after a commit
# that took D seconds, the store thread gathers for STORE_DUTY * D, at most
# MAX_STORE_DELAY seconds (the most latency it adds), before the next. A lone line is
# committed at once; under load batches grow, and a commit costs mostly by the pages it
# dirties (some 15 for 10 rows in 10 rooms: 100 us), hardly by its rows. Measured with
# the rooms load at 15,000 messages/s: 35-45% fewer commits, store thread CPU 6-12% less
# per message. But it is off (0): where senders wait for what they sent (ircload's
# closed loops, a chat), the latency it adds cost more than it saved: with a duty of 1,
# rooms and fanout50 delivered 11-17% less, at the same CPU per message.
STORE_DUTY = 0.0
MAX_STORE_DELAY = 0.002


class SaveRoom(NamedTuple):
    """Store-thread inbox entry: persist a room's state (never forwarded to the writer)."""

    state: RoomState


class DeleteMessage(NamedTuple):
    """Store-thread inbox entry: delete a stored message (REDACT) once everything posted
    before it is committed; never forwarded to the writer, so the REDACT relayed after
    it reaches nobody before the message is gone."""

    target: str  # conversation key
    msgid: str
    id: int  # its place among the writes (Registry.next_message_id): wait_committed(id)


# Entries for the store thread alone: the writer never sees them.
_STORE_ONLY = (SaveRoom, DeleteMessage)


def _storage_failure(e: BaseException) -> bool:
    """The database or the disk under it failed (full, I/O error, locked, read-only,
    damaged): every write fails alike until that is fixed. Anything else (an integrity
    error, a value SQLite cannot take) is about the records themselves."""
    return isinstance(e, (sqlite3.OperationalError, sqlite3.InternalError)) or (
        type(e) is sqlite3.DatabaseError
    )


def _describe(record: object) -> str:
    """A record for the log: which one, never what was said."""
    if isinstance(record, StoredMessage):
        return f"message id={record.id!r} msgid={record.msgid!r} in {record.target!r}"
    if isinstance(record, RoomState):
        return f"room state of {record.key!r}"
    return f"a {type(record).__name__} record"


def _halves(ms: list, rs: list) -> list[tuple[list, list]]:
    """Two smaller parts of a batch of messages ``ms`` and room states ``rs``."""
    if ms and rs:
        return [(ms, []), ([], rs)]
    if ms:
        return [(ms[: len(ms) // 2], []), (ms[len(ms) // 2 :], [])]
    return [([], rs[: len(rs) // 2]), ([], rs[len(rs) // 2 :])]


# on_health(problem, unsaved): problem is what users are told while messages are not
# being saved, None once they are again; unsaved is how many went unsaved meanwhile.
HealthCallback = Callable[[str | None, int], None]


class HistoryPipeline(Inbox):
    """The store thread: group-commits history, then forwards everything to the writer.

    It has the writer's posting interface (post, post_many, multicast, throttle), and
    the server puts it in front of the writer, so order is kept end to end. It never
    stops for a batch: see the module docstring for what it does when storing fails.
    It is also the history sessions read (records.History), and what they save rooms
    through, so a room's state is stored in its place among the lines around it.
    """

    def __init__(
        self,
        store: HistoryStore,
        writer: Writer,
        *,
        on_health: HealthCallback | None = None,
        on_death: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(on_death)
        self.store = store
        self.writer = writer
        self.on_health = on_health  # called from the store thread; must not block on it
        self._wake_event = threading.Event()
        self._committed = store.last_id  # highest message id known to be on disk
        # Every message committed with an id up to this one is in the search index (the
        # store thread moves it, under _committed_cv; searches wait on that).
        self._indexed = store.last_id if not store.unindexed else store.indexed
        self._committed_cv = threading.Condition()
        self._index_asked = False  # a search waits: index now (set by it, cleared by us)
        self._last_commit = 0.0  # (monotonic) indexing waits for a quiet moment after it
        self._index_retry = 0.0  # after a failure: no new try before then
        # for tests and operators
        self.failures = 0  # batches that could not be stored (whatever the cause)
        self.unsaved = 0  # messages delivered but not stored
        # messages in the database (/metrics): counted once by the store thread when it
        # starts, then kept by it alone, as it writes and deletes
        self.rows = 0
        # Why messages are not being saved, as users are told it; None while they are.
        self.problem: str | None = None
        self._write_error: str | None = None  # the failure of the database or disk under way
        self._outage_unsaved = 0  # messages not saved since it began
        self._saving_since: float | None = None  # during it: writes work again since then
        self._file_error: str | None = None  # the database file deleted or replaced
        self._failing: dict[str, str] = {}  # upkeep task -> the error already logged
        self._thread = threading.Thread(target=self._run, name="chatroom-store", daemon=True)

    # --- the posting interface (any thread) ----------------------------------------------

    def _wake(self) -> None:
        self._sleeping = False
        self._wake_event.set()

    def variants_changed(self) -> None:
        self.writer.variants_changed()

    def save_room(self, state: RoomState) -> None:
        self.post(SaveRoom(state))

    def delete_message(self, target: str, msgid: str, id_: int) -> None:
        self.post(DeleteMessage(target, msgid, id_))

    def forget_room(self, key: str, name: str, history_from: int) -> None:
        """A room emptied: it is gone with its modes and topic, and history up to
        ``history_from`` stays with the room that was (served to no later room)."""
        self.save_room(RoomState(key, name, "", "", 0.0, "nt", None, None, 0.0, history_from))

    # --- reads (records.History; any thread): straight to the store ------------------------

    def room_state(self, key: str) -> RoomState | None:
        return self.store.room_state(key)

    def window(
        self, target: str, lo: int, hi: int, limit: int, newest: bool, events: bool = False
    ) -> list[StoredMessage]:
        return self.store.window(target, lo, hi, limit, newest, events)

    def locate(self, target: str, msgid: str) -> int | None:
        return self.store.locate(target, msgid)

    def targets(
        self, keys: Sequence[str], start_ms: int, end_ms: int, limit: int
    ) -> list[tuple[str, str, int]]:
        return self.store.targets(keys, start_ms, end_ms, limit)

    def dm_keys(self, nick_key: str) -> list[str]:
        return self.store.dm_keys(nick_key)

    def message(self, target: str, msgid: str) -> StoredMessage | None:
        return self.store.message(target, msgid)

    def search(
        self,
        targets: Sequence[SearchTarget],
        text: str | None,
        before_ms: int | None,
        after_ms: int | None,
        sender: str | None,
        limit: int,
        newest: bool = True,
    ) -> list[StoredMessage]:
        self._index_committed()
        return self.store.search(targets, text, before_ms, after_ms, sender, limit, newest)

    def _index_committed(self) -> None:
        """Have the store thread index everything committed so far, so that a search
        finds every line delivered before it. Searches are rare: a few ms of waiting.
        If the store thread is gone, or indexing fails, search what is indexed."""
        target = self._committed
        if self._indexed >= target:
            return

        def done() -> bool:
            return (
                self._indexed >= target
                or self._stop
                or "search index" in self._failing
                or not self._thread.is_alive()
            )

        with self._committed_cv:
            if done():
                return
            self._index_asked = True
            self._wake_event.set()  # also ends a gathering wait
            self._committed_cv.wait_for(done, SEARCH_INDEX_WAIT)

    # --- backpressure -----------------------------------------------------------------------

    def throttle(self, timeout: float = 1.0) -> None:
        """Backpressure: wait while either this thread or the writer is far behind."""
        super().throttle(timeout)
        self.writer.throttle(timeout)

    @property
    def close_linger(self) -> float:
        return self.writer.close_linger

    def wait_committed(self, id_: int, timeout: float = 5.0) -> bool:
        """Block until message ``id_`` (and all before it) is on disk."""
        with self._committed_cv:
            return self._committed_cv.wait_for(
                lambda: self._committed >= id_ or self._stop, timeout
            )

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Commit and forward what is queued, then stop."""
        self._stop = True
        self._wake_event.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._release_producers()
        if self._inbox and not self._thread.is_alive():
            # posted after the thread's last pass (or it died): closes must still
            # reach the writer, or their sockets would never be closed
            if self.dead:
                self.forward_unstored()
            else:
                self._commit_and_forward()
                self._index()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def forward_unstored(self) -> None:
        """Once the store thread has died: pass what is queued on to the writer (lines,
        closes), except history lines, which are not on disk and so reach nobody."""
        inbox = self._inbox
        keep = []
        for _ in range(len(inbox)):
            entry = inbox.popleft()
            kind = type(entry)
            if kind in _STORE_ONLY:
                continue
            if kind is Multicast and len(entry) == 4 and entry.record is not None:
                self.unsaved += 1
                continue
            keep.append(entry)
        self.writer.post_many(keep)

    def _died(self, stage: str) -> None:
        super()._died(stage)
        with self._committed_cv:  # nothing will be committed any more: stop waiting
            self._committed_cv.notify_all()

    # --- the store thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException:
            self._died("the history store thread")

    def _loop(self) -> None:
        inbox = self._inbox
        monotonic = time.monotonic
        wait, clear = self._wake_event.wait, self._wake_event.clear
        next_retention = monotonic() + RETENTION_INTERVAL
        next_checkpoint = monotonic() + CHECKPOINT_INTERVAL
        next_commit = 0.0
        self._upkeep("row count", self._count_rows)
        self._index()  # what a kill -9 left unindexed, before anything else
        while True:
            if inbox:
                # Gathering for the next commit: posters do not wake us (_sleeping is
                # False; each wake is a futex call and a GIL hand-off). stop() and a
                # search do.
                delay = next_commit - monotonic()
                if delay > 0 and not self._stop:
                    wait(delay)
                    clear()
            else:
                self._sleeping = True
                if not inbox:
                    if self._stop:
                        break
                    wait(self._idle_wait(monotonic()))
                self._sleeping = False
                clear()
            if inbox:
                started = monotonic()
                self._commit_and_forward()
                ended = self._last_commit = monotonic()
                next_commit = ended + min((ended - started) * STORE_DUTY, MAX_STORE_DELAY)
            self._release_producers()
            now = monotonic()
            self._index_if_due(now)
            if self._saving_since is not None and now - self._saving_since >= RECOVERY_GRACE:
                self._recovered()
            if now >= next_checkpoint:
                next_checkpoint = now + CHECKPOINT_INTERVAL
                self._upkeep("checkpoint", self.store.checkpoint)
                self._upkeep("file check", self._check_file)
            if now >= next_retention:
                next_retention = now + RETENTION_INTERVAL
                self._upkeep("retention", self._retention)
        self._index()  # at stop: nothing is left for the next start

    def _idle_wait(self, now: float) -> float:
        """How long the idle store thread sleeps: until indexing is due (a quiet
        moment, see FTS_QUIET), at most CHECKPOINT_INTERVAL."""
        if not self.store.unindexed:
            return CHECKPOINT_INTERVAL
        due = max(self._last_commit + FTS_QUIET, self._index_retry)
        return max(0.0, min(CHECKPOINT_INTERVAL, due - now))

    def _index_if_due(self, now: float) -> None:
        """Index what waits to be: all of it if a search asks or the thread is quiet, a
        step of it under load once a backlog has built up (see FTS_QUIET)."""
        if self._index_asked:
            self._index_asked = False
            self._index()
            return
        waiting = self.store.unindexed
        if not waiting:
            self._indexed = self._committed  # nothing waits: searches need not ask
            return
        if now < self._index_retry:
            return
        if not self._inbox and now - self._last_commit >= FTS_QUIET:
            self._index()
        elif waiting >= FTS_BATCH_ROWS:
            self._index(FTS_STEP_ROWS)

    def _index(self, limit: int | None = None) -> None:
        """Index the committed rows the search index lacks (``limit``: the oldest so
        many at most), and wake the searches that wait for it. A failure (a full disk)
        is logged once and delivery goes on."""
        committed = self._committed  # all of it is in the database: index() covers it
        # A warning: nothing is lost while the index lags (it catches up once it works);
        # a full disk under it is an error of the writes, and logged as such.
        self._upkeep("search index", lambda: self.store.index(limit), logging.WARNING)
        failed = "search index" in self._failing
        if failed:
            self._index_retry = time.monotonic() + FTS_QUIET
        with self._committed_cv:
            if not failed:
                left = self.store.unindexed
                self._indexed = max(self._indexed, self.store.indexed if left else committed)
            self._committed_cv.notify_all()

    def _commit_and_forward(self) -> None:
        """Store one batch, then forward it: whatever happens while storing, it is
        forwarded (a failure is logged and counted, never fatal)."""
        inbox = self._inbox
        popleft = inbox.popleft
        batch = [popleft() for _ in range(len(inbox))]
        deliver = batch
        messages: list[StoredMessage] = []
        try:
            # one pass: the history rows, and what is for this thread alone
            add = messages.append
            rooms: list[RoomState] = []
            deletions: list[DeleteMessage] = []
            for e in batch:
                kind = type(e)
                if kind is Multicast:
                    if (r := e[3]) is not None:  # its record
                        add(r)
                elif kind is SaveRoom:
                    rooms.append(e.state)
                elif kind is DeleteMessage:
                    deletions.append(e)
            if rooms or deletions:
                deliver = [e for e in batch if type(e) not in _STORE_ONLY]
            if messages or rooms:
                self._save(messages, rooms)
            if deletions:  # after the batch's inserts: a message and its REDACT may share it
                pairs = [(d.target, d.msgid) for d in deletions]
                self._upkeep("redaction", lambda: self._delete(pairs))
            last = max(messages[-1].id if messages else 0, deletions[-1].id if deletions else 0)
            if last:
                with self._committed_cv:
                    self._committed = max(self._committed, last)
                    self._committed_cv.notify_all()
        except Exception:
            # a bug where something was posted, not the database: deliver all the same
            self.failures += 1
            log.exception("history: a batch of %d entries could not be stored", len(batch))
            deliver = [e for e in batch if type(e) not in _STORE_ONLY]
        self.writer.post_many(deliver)

    def _save(self, messages: list[StoredMessage], rooms: list[RoomState]) -> None:
        try:
            self.store.write(messages, rooms)
        except Exception as e:
            self.failures += 1
            if _storage_failure(e):
                self._not_saved(e, len(messages))
                return
            log.warning(
                "history: SQLite refused a batch of %d messages, %d room states (%s: %s);"
                " storing it in parts to skip only what it refuses",
                len(messages),
                len(rooms),
                type(e).__name__,
                e,
            )
            self._salvage(messages, rooms)
            return
        self.rows += len(messages)
        if self._write_error is not None and self._saving_since is None:
            self._saving_since = time.monotonic()

    def _salvage(self, messages: list[StoredMessage], rooms: list[RoomState]) -> None:
        """Store every record of a refused batch that SQLite takes: halve the batch until
        each failing record fails alone (a few writes per bad record), and skip those."""
        parts = _halves(messages, rooms)[::-1]  # a stack: the older half on top
        while parts:
            ms, rs = parts.pop()
            try:
                self.store.write(ms, rs)
                self.rows += len(ms)
                continue
            except Exception as e:
                if _storage_failure(e):
                    self._not_saved(e, len(ms) + sum(len(p[0]) for p in parts))
                    return
                error = e
            if len(ms) + len(rs) > 1:
                parts.extend(_halves(ms, rs)[::-1])
                continue
            self.unsaved += len(ms)
            log.error(
                "history: skipped %s: SQLite refuses it",
                _describe(ms[0] if ms else rs[0]),
                exc_info=error,
            )
        if self._write_error is not None and self._saving_since is None:
            self._saving_since = time.monotonic()

    # --- health: what users and operators are told -------------------------------------------

    def _not_saved(self, e: Exception, count: int) -> None:
        """The database or disk failed: say so once, not once per batch."""
        self.unsaved += count
        self._outage_unsaved += count
        self._saving_since = None
        if self._write_error is None:
            self._write_error = str(e)
            log.error(
                "history: cannot save to %s: %s. Messages are delivered but not saved"
                " until this is fixed (logged again when saving works)",
                self.store.path,
                e,
                exc_info=e,
            )
            self._health_changed()

    def _recovered(self) -> None:
        """Saving has worked for RECOVERY_GRACE seconds: the outage is over."""
        lost, self._outage_unsaved = self._outage_unsaved, 0
        self._saving_since = None
        log.warning(
            "history: saving to %s works again; %d messages were not saved while it failed (%s)",
            self.store.path,
            lost,
            self._write_error,
        )
        self._write_error = None
        self._health_changed(lost)

    def _check_file(self) -> None:
        if self._file_error is not None:
            return  # reported; it stays so until a restart
        change = self.store.file_problem()
        if change is None:
            return
        self._file_error = change
        log.critical(
            "history database %s %s while the server runs: what is stored from now on is"
            " lost when the server stops. Restart the server to begin a new database there.",
            self.store.path,
            change,
        )
        self._health_changed()

    def _health_changed(self, unsaved: int = 0) -> None:
        if self._file_error is not None:
            problem: str | None = (
                f"Messages are not being saved to history: its database file {self._file_error}"
            )
        elif self._write_error is not None:
            problem = f"Messages are not being saved to history: {self._write_error}"
        else:
            problem = None
        if problem == self.problem:
            return
        self.problem = problem
        if self.on_health is not None:
            try:
                self.on_health(problem, unsaved)
            except Exception:
                log.exception("history: telling users about its state failed")

    # --- upkeep ---------------------------------------------------------------------------------

    def _upkeep(self, task: str, run: Callable[[], object], level: int = logging.ERROR) -> None:
        """Run a periodic task; its failure is logged when it starts and when it ends,
        not every CHECKPOINT_INTERVAL."""
        try:
            run()
        except Exception as e:
            if self._failing.get(task) != str(e):
                self._failing[task] = str(e)
                log.log(level, "history %s failed: %s", task, e, exc_info=e)
            return
        if self._failing.pop(task, None) is not None:
            log.info("history %s works again", task)

    def _count_rows(self) -> None:
        self.rows = self.store.count()

    def _delete(self, pairs: list[tuple[str, str]]) -> None:
        self.rows -= self.store.delete(pairs)

    def _retention(self) -> None:
        removed = self.store.apply_retention()
        self.rows -= removed
        if removed:
            log.info("history retention removed %d messages", removed)
