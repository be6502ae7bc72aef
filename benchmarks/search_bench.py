#!/usr/bin/env python3
"""Search benchmark: SEARCH's store query over a database of a million messages.

Builds (once) a history database the server would have made, with its schema, filled
with chat-like lines: words drawn from a Zipf law over ~30,000 words (English function
words first, as in real chat), 300 rooms of Zipf sizes and one message in ten private
among 2,000 nicks; then ``HistoryStore.index`` puts them in the full-text index, in
bulk, as the server's store thread does (and the rate is printed). Then it
times the searches a client sends through ``HistoryStore.search``, the code SEARCH
runs (commands/search.py), for a user in 5 rooms (the busiest, middling ones and a
small one) with private conversations, and prints the median and p95 of each kind,
with the database's size. Target (issue 12): under 50 ms.

    python3 benchmarks/search_bench.py                  # 1,000,000 messages, temp dir
    python3 benchmarks/search_bench.py --db /tmp/s.db   # build there once, then reuse
    python3 benchmarks/search_bench.py --insert-cost    # what storing a message costs

``--insert-cost`` measures what the store thread pays per message: it writes batches of
50 messages through ``HistoryStore.write`` (its group commit, which leaves the search
index alone) into a database of ``--prefill`` messages, then indexes them with
``HistoryStore.index``, all at once (as when the server is quiet) and, on a second
copy, in steps of ``FTS_STEP_ROWS`` (as under sustained load), and prints the cost per
message of the write alone and with each way of indexing.
"""

from __future__ import annotations

import argparse
import itertools
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatroom.server.pipeline import FTS_STEP_ROWS
from chatroom.server.records import (
    ID_TIME_SHIFT,
    SearchTarget,
    StoredMessage,
    dm_key,
)
from chatroom.server.store import HistoryStore

TARGET_MS = 50.0
ROOMS = 300
NICKS = 2000
PRIVATE_SHARE = 0.1
START_MS = 1_700_000_000_000  # 2023-11-14; one message a second from then
BUILD_BATCH = 100_000
# The most common words of English chat first, then made-up words: the Zipf law gives
# the first few a share of every line, as "the" has, and most of the rest a handful.
COMMON = """the be to of and a in that have i it for not on with he as you do at this but
his by from they we say her she or an will my one all would there their what so up out if
about who get which go me when make can like time no just him know take people into year
your good some could them see other than then now look only come its over think also back
after use two how our work first well way even new want because any these give day most us
is are was were been has had did said got lol ok yeah thanks hey hi yes sure maybe today
tomorrow build server test deploy bug fix merge branch release coffee lunch meeting please
"""
SYLLABLES = "ka lo mi ne ru sa ti vo ze pra sto len dor mak fin gul hep jor wix bam cel dun eph"
# The searching user: the busiest room, two middling ones and two small ones.
USER = "user5"
USER_ROOMS = ["#room0", "#room3", "#room50", "#room150", "#room290"]


def vocabulary(size: int = 30_000, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    words = list(dict.fromkeys(COMMON.split()))
    syllables = SYLLABLES.split()
    seen = set(words)
    while len(words) < size:
        word = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


WORDS = vocabulary()


def messages(count: int, seed: int = 7, first: int = 0):
    """``count`` StoredMessage rows: chat-like text, rooms of Zipf sizes, some private."""
    rng = random.Random(seed)
    word_weights = list(itertools.accumulate(1 / (i + 1) for i in range(len(WORDS))))
    rooms = [f"#room{i}" for i in range(ROOMS)]
    room_weights = list(itertools.accumulate(1 / (i + 1) ** 0.8 for i in range(ROOMS)))
    nicks = [f"user{i}" for i in range(NICKS)]
    for i in range(first, first + count):
        text = " ".join(rng.choices(WORDS, cum_weights=word_weights, k=rng.randint(2, 16)))
        nick = rng.choice(nicks)
        if rng.random() < PRIVATE_SHARE:
            peer = rng.choice(nicks)
            target, display = dm_key(nick, peer), peer
        else:
            target = display = rng.choices(rooms, cum_weights=room_weights)[0]
        time_ms = START_MS + i * 1000
        yield StoredMessage(
            time_ms << ID_TIME_SHIFT,
            f"bench{i:012x}",
            time_ms,
            target,
            display,
            f"{nick}!{nick}@10.0.0.{i % 250}",
            "PRIVMSG",
            text,
        )


def build(path: Path, count: int) -> None:
    """The server's schema (HistoryStore's migrations), then ``count`` messages
    inserted in big transactions, then indexed for search (index())."""
    HistoryStore(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = OFF")  # a benchmark's throwaway file
    started = time.perf_counter()
    rows = messages(count)
    done = 0
    while chunk := list(itertools.islice(rows, BUILD_BATCH)):
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO messages(id, msgid, time_ms, target, display, sender, command, text)"
            " VALUES (?,?,?,?,?,?,?,?)",
            [m[:8] for m in chunk],
        )
        db.execute("COMMIT")
        done += len(chunk)
        rate = done / (time.perf_counter() - started)
        print(f"\r  built {done:,} of {count:,} ({rate:,.0f}/s)", end="", flush=True)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    print(f"\n  built in {time.perf_counter() - started:.0f} s")
    index(path)


def index(path: Path) -> None:
    """Index what the search index lacks (nothing inserts into it: the server's store
    thread runs HistoryStore.index, as here), and print the rate if there was any."""
    store = HistoryStore(path, check=False)
    try:
        started = time.perf_counter()
        rows = store.index()
        seconds = time.perf_counter() - started
        store.checkpoint()
    finally:
        store.close()
    if rows:
        print(
            f"  indexed {rows:,} in {seconds:.1f} s"
            f" ({rows / seconds:,.0f}/s, {seconds / rows * 1e6:.2f} us a message)"
        )


def stored(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        db.close()


def sizes(path: Path) -> tuple[float, float]:
    """(whole file, the full-text index's share) in MB."""
    db = sqlite3.connect(path)
    try:
        fts = db.execute(
            "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name LIKE 'messages_fts%'"
        ).fetchone()[0]
    except sqlite3.Error:  # no dbstat in this SQLite
        fts = 0
    finally:
        db.close()
    return path.stat().st_size / 1e6, fts / 1e6


def queries() -> dict[str, list[tuple]]:
    """Each kind of search, as several (targets, text, sender) of like cost: a run
    cycles through them, so not every repetition asks SQLite the very same thing."""
    mine = [SearchTarget(k) for k in USER_ROOMS] + [SearchTarget(USER, 0, every_private=True)]
    small, busy = [SearchTarget("#room290")], [SearchTarget("#room0")]
    common, mid, rare = WORDS[:10], WORDS[200:220], WORDS[20_000:20_020]
    pairs = [f"{a} {b}" for a, b in zip(mid, common, strict=False)]
    common_pairs = [f"{a} {b}" for a, b in itertools.pairwise(common)]
    return {
        "common word, all mine": [(mine, w, None) for w in common],
        "rare word, all mine": [(mine, w, None) for w in rare],
        "two words, all mine": [(mine, p, None) for p in pairs],
        "mid word, all mine": [(mine, w, None) for w in mid],
        "common word, small room": [(small, w, None) for w in common],
        "mid word, busiest room": [(busy, w, None) for w in mid],
        "two common, small room": [(small, p, None) for p in common_pairs],
        "from= and word, busy room": [(busy, w, f"user{i}") for i, w in enumerate(common)],
        "from= only, all mine": [(mine, None, f"user{i}") for i in range(10)],
        "8 commonest words (worst)": [(small, " ".join(WORDS[:8]), None)],
    }


def run_queries(path: Path, repeat: int, limit: int) -> bool:
    store = HistoryStore(path, exclusive=False, check=False)
    ok = True
    try:
        print(f"\n{'search':28} {'found':>5} {'median ms':>10} {'p95 ms':>8}")
        for kind, variants in queries().items():
            times, found = [], 0
            for targets, text, sender in variants:  # warm each once: a server is warm
                store.search(targets, text, None, None, sender, limit)
            for i in range(repeat):
                targets, text, sender = variants[i % len(variants)]
                started = time.perf_counter()
                found = len(store.search(targets, text, None, None, sender, limit))
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            median = statistics.median(times)
            p95 = times[max(0, round(0.95 * len(times)) - 1)]
            worst = kind.endswith("(worst)")
            if not worst and p95 >= TARGET_MS:
                ok = False
            print(f"{kind:28} {found:5} {median:10.2f} {p95:8.2f}")
    finally:
        store.close()
    return ok


def insert_cost(workdir: Path, prefill: int, batches: int, batch: int = 50) -> None:
    """Per-message cost to the store thread: HistoryStore.write alone, and with the
    bulk index() of what it wrote, all at once or in steps of FTS_STEP_ROWS. Both are
    means (all the time over all the messages): FTS5 merges its segments now and then,
    and a median would leave that out."""
    base = workdir / "prefill.sqlite3"
    if stored(base) < prefill:
        for f in workdir.glob("prefill.sqlite3*"):
            f.unlink()
        build(base, prefill)
    else:
        index(base)
    rows = list(messages(batches * batch, seed=11, first=prefill))
    writes, indexing = [], {}
    for name, step in (
        ("all at once (quiet)", None),
        (f"in steps of {FTS_STEP_ROWS}", FTS_STEP_ROWS),
    ):
        path = workdir / "insert.sqlite3"
        for f in workdir.glob("insert.sqlite3*"):
            f.unlink()
        shutil.copy(base, path)
        store = HistoryStore(path, check=False)
        try:
            for start in range(0, len(rows), batch):
                started = time.perf_counter()
                store.write(rows[start : start + batch])
                writes.append(time.perf_counter() - started)
            started = time.perf_counter()
            done = 0
            while store.unindexed:  # what the store thread does later, in bulk
                done += store.index(step)
            seconds = time.perf_counter() - started
        finally:
            store.close()
        assert done == len(rows), (done, len(rows))
        indexing[name] = seconds / done * 1e6
    write = statistics.fmean(writes) / batch * 1e6
    ms = write * batch / 1000
    print(f"{'write alone':36} {write:5.1f} us a message ({batch} a batch: {ms:.2f} ms)")
    for name, us in indexing.items():
        print(f"{'write + index() ' + name:36} {write + us:5.1f} us a message (the index {us:.1f})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", type=Path, help="build the database here (reused if it has enough)")
    ap.add_argument("-n", "--messages", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=40, help="timed searches per kind")
    ap.add_argument("--limit", type=int, default=100, help="results per search (search_max)")
    ap.add_argument("--insert-cost", action="store_true", help="measure insert cost instead")
    ap.add_argument("--prefill", type=int, default=100_000, help="--insert-cost: rows first")
    ap.add_argument("--batches", type=int, default=200, help="--insert-cost: batches of 50")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="search-bench-") as tmp:
        if args.insert_cost:
            workdir = args.db.parent if args.db else Path(tmp)
            insert_cost(workdir, args.prefill, args.batches)
            return 0
        path = args.db or Path(tmp) / "search.sqlite3"
        have = stored(path) if path.exists() else 0
        if have < args.messages:
            if path.exists():
                print(f"{path} has {have:,} messages, not {args.messages:,}: rebuilding")
                for f in path.parent.glob(path.name + "*"):
                    f.unlink()
            print(f"building {path} with {args.messages:,} messages")
            build(path, args.messages)
        else:
            print(f"reusing {path} ({have:,} messages)")
            index(path)
        total, fts = sizes(path)
        print(f"database {total:,.0f} MB, of which the search index {fts:,.0f} MB")
        ok = run_queries(path, args.repeat, args.limit)
        print(
            f"\ntarget: p95 under {TARGET_MS:.0f} ms for every search but the worst case:"
            f" {'met' if ok else 'NOT met'}"
        )
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
