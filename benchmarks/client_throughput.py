"""Client speed: absorb a flood of messages in one room, then scroll a 10,000-line backlog.

Runs the real app (headless, the same ``make_app`` as users) against a real server on
loopback. A separate sender process floods ``#bench`` at ``--rate`` messages a second
(0 = as fast as it can), so the sender does not steal the client's event loop.

Reports:
  absorbed msg/s   messages taken into the model per second, first to last
  screen delay     from the sender writing the last message to it being in the log view
  scroll           milliseconds per PageUp through a 10,000-line backlog, and per jump
  history          milliseconds to put a page of 100 older lines at the top of that
                   backlog and redraw with the reader's line kept in place

Usage:
  python3 benchmarks/client_throughput.py                       # our server, 1000/s, 5 s
  python3 benchmarks/client_throughput.py --server ngircd --rate 0 --count 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "client"))

from ngircd_proc import start_server, stop_server  # noqa: E402

# our server for the benchmark: flood control off, as for ngircd
SERVER_ARGS = ("--no-flood-limit", "--log-level", "WARNING")
ROOM = "#bench"
TERMINAL = (120, 40)
# Give up on any phase after this long (a hung server must not hang the benchmark).
PHASE_TIMEOUT = 120.0
POLL = 0.002
SCROLL_LINES = 10_000
SCROLL_STEPS = 60
HISTORY_PAGE_LINES = 100


# --- the sender (a separate process) --------------------------------------------------


def sender_main(port: int, count: int, rate: float) -> None:
    """Register, join, wait for 'go' on stdin, flood, print the last send time as JSON."""
    from chatroom.protocol import LineBuffer, Message, parse, serialize

    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = LineBuffer()

    def wait_for(command: str) -> None:
        while True:
            for line in buf.feed(sock.recv(65536)):
                msg = parse(line)
                if msg.command == "PING":
                    sock.sendall(serialize(Message.of("PONG", *msg.params)))
                if msg.command == command:
                    return

    sock.sendall(b"NICK flood\r\nUSER flood 0 * :flood\r\n")
    wait_for("001")
    sock.sendall(serialize(Message.of("JOIN", ROOM)))
    wait_for("366")
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    batch = 50 if rate == 0 else max(1, int(rate / 200))  # ~5 ms between writes at 1000/s
    sent = 0
    while sent < count:
        n = min(batch, count - sent)
        data = b"".join(
            serialize(Message.of("PRIVMSG", ROOM, f"message {sent + i} of {count}: lorem ipsum"))
            for i in range(n)
        )
        sock.sendall(data)
        sent += n
        if rate:
            delay = start + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    last = time.monotonic()
    print(json.dumps({"start": start, "last": last}), flush=True)
    sys.stdin.readline()  # stay connected until told to go
    sock.close()


# --- the client side ----------------------------------------------------------------------


async def run(port: int, count: int, rate: float) -> dict[str, float]:
    from chatroom.client.app import make_app
    from chatroom.client.model import BufferKind, EntryKind
    from chatroom.client.widgets.log import MessageLog
    from chatroom.protocol import Message

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        app = make_app("127.0.0.1", port, "reader", (ROOM,), config_dir=Path(tmp))
        async with app.run_test(size=TERMINAL) as pilot:

            async def until(predicate, what: str) -> float:
                deadline = time.monotonic() + PHASE_TIMEOUT
                while not predicate():
                    if time.monotonic() > deadline:
                        raise SystemExit(f"timed out: {what}")
                    await asyncio.sleep(POLL)
                return time.monotonic()

            await until(lambda: app.state.active == ROOM.lower(), "join")
            sender = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--sender",
                str(port),
                str(count),
                str(rate),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            assert sender.stdout is not None and sender.stdin is not None
            await sender.stdout.readline()  # ready
            buf = app.state.buffer(ROOM)
            assert buf is not None and buf.kind is BufferKind.CHANNEL
            await until(lambda: "flood" in buf.members, "sender joined")
            log = app.screen.query_one(MessageLog)
            sender.stdin.write(b"go\n")
            await sender.stdin.drain()

            # The first message, then the last one into the model, then onto the screen.
            first = await until(lambda: buf.entries[-1].nick == "flood", "first message")
            final = f"message {count - 1} of {count}"
            absorbed = await until(
                lambda: buf.entries[-1].text.startswith(final), "last message absorbed"
            )
            shown = await until(lambda: final in log.visible_text(), "last message on screen")
            times = json.loads((await sender.stdout.readline()).decode())
            results["messages"] = count
            results["send_rate"] = count / max(1e-9, times["last"] - times["start"])
            results["absorbed_rate"] = count / max(1e-9, absorbed - first)
            results["screen_delay_ms"] = (shown - times["last"]) * 1000
            sender.stdin.write(b"bye\n")
            await sender.stdin.drain()
            await sender.wait()

            # Scrolling: a 10,000-line backlog (the bounded backlog's size) in a fresh room.
            scroll = app.state.open("#scroll")
            for i in range(SCROLL_LINES):
                app.state.add(scroll, EntryKind.MESSAGE, f"user{i % 17}", f"backlog line {i}")
            start = time.perf_counter()
            app.switch_to(scroll.key)
            await pilot.pause()
            results["switch_ms"] = (time.perf_counter() - start) * 1000
            assert log.row_count >= SCROLL_LINES, log.row_count
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(SCROLL_STEPS):
                await pilot.press("pageup")
            results["pageup_ms"] = (time.perf_counter() - wall) * 1000 / SCROLL_STEPS
            results["pageup_cpu_ms"] = (time.process_time() - cpu) * 1000 / SCROLL_STEPS
            wall, cpu = time.perf_counter(), time.process_time()
            for step in range(SCROLL_STEPS):
                log.scroll_to(y=(step * 997) % max(1, log.row_count - 40), animate=False)
                await pilot.pause()
            results["jump_ms"] = (time.perf_counter() - wall) * 1000 / SCROLL_STEPS
            results["jump_cpu_ms"] = (time.process_time() - cpu) * 1000 / SCROLL_STEPS

            # A history page arriving at the top of the 10,000-line room (scroll-back).
            reading = log.top_entry()
            older = [
                app.state.history_entry(
                    scroll,
                    Message.of(
                        "PRIVMSG",
                        "#scroll",
                        f"older {i}",
                        source="old!o@h",
                        tags={"msgid": f"o{i}"},
                    ),
                )
                for i in range(HISTORY_PAGE_LINES)
            ]
            wall = time.perf_counter()
            app.state.insert_history(scroll, [e for e in older if e is not None], None)
            app.flush()
            results["prepend_ms"] = (time.perf_counter() - wall) * 1000
            await pilot.pause()
            assert log.top_entry() is reading, "the reader's line moved"
            await app.connection.close()
    return results


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--sender":
        sender_main(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=["chatroom", "ngircd"], default="chatroom")
    parser.add_argument("--rate", type=float, default=1000.0, help="messages/s (0: flat out)")
    parser.add_argument("--count", type=int, default=5000, help="messages to send")
    args = parser.parse_args()
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    server, port = start_server(args.server, *SERVER_ARGS)
    try:
        results = asyncio.run(run(port, args.count, args.rate))
    finally:
        stop_server(server)
    print(
        f"server: {args.server}, {args.count} messages at "
        f"{'max' if not args.rate else f'{args.rate:.0f}/s'} into one room"
    )
    print(f"  sender achieved     {results['send_rate']:8.0f} msg/s")
    print(f"  client absorbed     {results['absorbed_rate']:8.0f} msg/s")
    print(f"  last one on screen  {results['screen_delay_ms']:8.1f} ms after it was sent")
    print(f"  10,000-line room: first shown in {results['switch_ms']:.0f} ms")
    print(
        f"    PageUp        {results['pageup_ms']:6.1f} ms/step wall "
        f"(Pilot round trip), {results['pageup_cpu_ms']:5.1f} ms CPU"
    )
    print(
        f"    random jump   {results['jump_ms']:6.1f} ms/step wall, "
        f"{results['jump_cpu_ms']:5.1f} ms CPU"
    )
    print(f"    100 older lines prepended, view kept: {results['prepend_ms']:.1f} ms")


if __name__ == "__main__":
    main()
