"""End-to-end server behaviour over real loopback sockets: fan-out, limits, hostile input."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from chatroom.protocol import Message, parse


def test_fifty_clients_in_five_rooms_lose_nothing_and_nothing_crosses(server_factory, connect):
    fx = server_factory(flood_limit=False)
    rooms = [f"#room{r}" for r in range(5)]
    clients = []
    for i in range(50):
        c = connect(to=fx)
        c.register(f"user{i}")
        c.join(rooms[i % 5])
        clients.append(c)
    # every member of a room must have seen every later join before the talking starts
    for i, c in enumerate(clients):
        last = max(j for j in range(50) if j % 5 == i % 5)
        if last != i:
            c.expect("JOIN", where=lambda m, last=last: m.nick == f"user{last}")
    per_sender = 20
    for n in range(per_sender):
        for i, c in enumerate(clients):
            c.send(f"PRIVMSG {rooms[i % 5]} :m {i} {n}")
    for i, c in enumerate(clients):
        expected = {
            (j, n) for j in range(50) if j % 5 == i % 5 and j != i for n in range(per_sender)
        }
        got: list[tuple[int, int]] = []
        while len(got) < len(expected):
            msg = c.expect("PRIVMSG", timeout=10)
            assert msg.params[0] == rooms[i % 5], f"{c.nick} got a message from another room"
            _, sender, seq = msg.params[1].split()
            assert msg.nick == f"user{sender}"
            got.append((int(sender), int(seq)))
        assert set(got) == expected and len(got) == len(expected)
        for sender in {s for s, _ in got}:  # per-sender order is kept
            seqs = [n for s, n in got if s == sender]
            assert seqs == sorted(seqs)


def test_slow_reader_is_dropped_and_others_keep_receiving(server_factory, connect):
    fx = server_factory(flood_limit=False, sendq_bytes=512 * 1024)
    talker = connect("talker", to=fx)
    listener = connect("listener", to=fx)
    talker.join("#lan")
    listener.join("#lan")
    # a client that joins and then never reads again; a small receive window (set before
    # connecting) keeps the kernel from absorbing what the server queues for it
    stuck = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect((fx.host, fx.port))
    stuck.sendall(b"NICK stuck\r\nUSER s 0 * :never reads\r\nJOIN #lan\r\n")
    try:
        listener.expect("JOIN", where=lambda m: m.nick == "stuck")
    except BaseException:
        stuck.close()
        raise
    # 400-byte lines, ~6.5 MB towards the stuck client: more than its SendQ plus what the
    # kernel's send buffer (tcp_wmem max, 4 MiB by default) can absorb. Sent at about
    # 10,000 lines/s, so that the healthy reader's SendQ is ~130 ms of slack even when
    # this shared machine delays our reader thread.
    total = 16000
    text = "x" * 400
    received = bytearray()
    arrived_at: list[float] = []

    def drain() -> None:  # a healthy client: reads as fast as the server sends
        listener.sock.settimeout(15)
        while received.count(b" QUIT ") == 0 or received.count(b"PRIVMSG") < total:
            try:
                data = listener.sock.recv(1 << 16)
            except OSError:
                return
            if not data:
                return
            received.extend(data)
        arrived_at.append(time.monotonic())

    reader = threading.Thread(target=drain)
    reader.start()
    start = time.monotonic()
    try:
        for batch in range(0, total, 200):
            talker.send_raw(
                b"".join(
                    f"PRIVMSG #lan :{n} {text}\r\n".encode() for n in range(batch, batch + 200)
                )
            )
            time.sleep(0.02)
        reader.join(30)
    finally:
        stuck.close()
    lines = [parse(raw) for raw in bytes(received).split(b"\r\n") if raw]
    numbers = [int(m.params[1].split()[0]) for m in lines if m.command == "PRIVMSG"]
    assert numbers == list(range(total)), "the healthy reader lost or reordered messages"
    quits = [m for m in lines if m.command == "QUIT" and m.nick == "stuck"]
    assert [q.params[0] for q in quits] == ["SendQ exceeded"]
    assert arrived_at and arrived_at[0] - start < 20


def test_line_of_513_bytes_gets_417_and_connection_stays(irc_server, connect):
    c = connect("longline")
    c.join("#lan")
    prefix = "PRIVMSG #lan :"
    ok = prefix + "a" * (510 - len(prefix))
    c.send_raw((ok + "\r\n").encode())
    c.send_raw((ok + "a\r\n").encode())
    err = c.expect("417")
    assert "too long" in err.params[-1]
    c.send("PING still-here")
    assert c.expect("PONG").params[-1] == "still-here"


def test_unterminated_line_past_recvq_closes_with_error(server_factory, connect):
    fx = server_factory(recvq_bytes=4096)
    c = connect("hog", to=fx)
    c.send_raw(b"PRIVMSG #lan :" + b"a" * 5000)
    err = c.expect("ERROR")
    assert "RecvQ exceeded" in err.params[0]
    assert c.wait_closed()


@pytest.mark.parametrize(
    "payload",
    [
        b"PRIVMSG #lan :caf\xe9 latin-1\r\n",
        b"PRIVMSG #lan :nul\x00inside\r\n",
        b"PRIVMSG #lan :a\rb\r\n",
    ],
    ids=["invalid-utf8", "nul", "bare-cr"],
)
def test_bad_bytes_are_rejected_and_never_relayed(irc_server, connect, payload):
    sender = connect("sender")
    other = connect("other")
    sender.join("#lan")
    other.join("#lan")
    sender.send_raw(payload)
    sender.send("PRIVMSG #lan :clean")
    reply = sender.expect("FAIL") if b"\xe9" in payload else sender.expect("400")
    if reply.command == "FAIL":
        assert reply.params[:2] == ("PRIVMSG", "INVALID_UTF8")
    msg = other.expect("PRIVMSG")
    assert msg.params[1] == "clean", "the bad line must not reach anyone"


@pytest.mark.parametrize(
    "first_bytes, name",
    [
        (b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "HTTP"),
        (bytes.fromhex("160301020001000200") + b"\x03\x03" + b"\x00" * 40, "TLS"),
    ],
)
def test_http_and_tls_on_the_plain_port_get_error_and_close(irc_server, connect, first_bytes, name):
    c = connect()
    c.send_raw(first_bytes)
    err = c.expect("ERROR")
    assert name in err.params[0]
    assert c.wait_closed()


def test_flood_is_lagged_then_disconnected(server_factory, connect):
    fx = server_factory(flood_burst=5, flood_rate=10.0, flood_max_lag=1.0)
    watcher = connect("watcher", to=fx)
    flooder = connect("flooder", to=fx)
    watcher.join("#lan")
    flooder.join("#lan")
    # 8 lines: 5 pass at once, the rest are spaced out at 10/s (fake lag), none lost
    start = time.monotonic()
    flooder.send_raw(b"".join(f"PRIVMSG #lan :{n}\r\n".encode() for n in range(8)))
    got = [watcher.expect("PRIVMSG").params[1] for _ in range(8)]
    assert got == [str(n) for n in range(8)]
    assert time.monotonic() - start >= 0.2, "lines beyond the burst must be delayed"
    # a burst that owes more than flood_max_lag is Excess Flood
    flooder.send_raw(b"".join(f"PRIVMSG #lan :f{n}\r\n".encode() for n in range(200)))
    quit_msg = watcher.expect("QUIT", where=lambda m: m.nick == "flooder", timeout=10)
    assert quit_msg.params[0] == "Excess Flood"
    assert flooder.wait_closed()


def test_no_flood_limit_lets_a_burst_through(server_factory, connect):
    fx = server_factory(flood_limit=False)
    watcher = connect("watcher", to=fx)
    sender = connect("sender", to=fx)
    watcher.join("#lan")
    sender.join("#lan")
    sender.send_raw(b"".join(f"PRIVMSG #lan :{n}\r\n".encode() for n in range(500)))
    got = [watcher.expect("PRIVMSG").params[1] for _ in range(500)]
    assert got == [str(n) for n in range(500)]


def test_registration_timeout(server_factory, connect):
    fx = server_factory(registration_timeout=0.5)
    c = connect(to=fx)
    c.send("NICK slowpoke")
    err = c.expect("ERROR", timeout=5)
    assert "Registration timeout" in err.params[0]
    assert c.wait_closed()


def test_idle_client_is_pinged_then_dropped_without_pong(server_factory, connect):
    fx = server_factory(ping_interval=0.5, ping_timeout=0.7)
    watcher = connect("watcher", to=fx)
    idle = connect("idle", to=fx)
    watcher.join("#lan")
    idle.join("#lan")
    ping = idle.expect("PING", timeout=5)
    assert ping.params[0] == "test.server"
    # idle never answers; the watcher (whose expect() answers PINGs) sees it time out
    quit_msg = watcher.expect("QUIT", where=lambda m: m.nick == "idle", timeout=5)
    assert quit_msg.params[0].startswith("Ping timeout")


def test_nick_race_has_exactly_one_winner(irc_server, connect):
    racers = [connect() for _ in range(8)]
    barrier = threading.Barrier(len(racers))

    def go(c):
        barrier.wait()
        c.send("NICK contested")
        c.send("USER r 0 * :racer")

    threads = [threading.Thread(target=go, args=(c,)) for c in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outcomes = []
    for c in racers:
        replies = c.collect(quiet=0.5)
        outcomes.append({m.command for m in replies} & {"001", "433"})
    assert sum("001" in o for o in outcomes) == 1
    assert sum("433" in o for o in outcomes) == len(racers) - 1


def test_nick_is_free_the_moment_its_connection_closes(irc_server, connect):
    first = connect("takeme")
    first.close()
    second = connect()
    deadline = time.monotonic() + 5
    while True:
        second.send("NICK takeme")
        replies = second.collect(quiet=0.2)
        if not any(m.command == "433" for m in replies):
            break
        assert time.monotonic() < deadline, "nick still held after its connection closed"
    second.send("USER t 0 * :t")
    assert second.expect("001").params[0] == "takeme"


def test_per_address_and_total_connection_limits(server_factory, connect):
    fx = server_factory(max_per_address=2, exempt_loopback=False)
    a, b = connect(to=fx), connect(to=fx)
    a.register("a1")
    b.register("b1")
    c = connect(to=fx)
    assert "Too many connections" in c.expect("ERROR").params[0]
    assert c.wait_closed()
    fx2 = server_factory(max_clients=1)
    d = connect("d1", to=fx2)
    e = connect(to=fx2)
    assert "Too many connections" in e.expect("ERROR").params[0]
    d.send("PING ok")
    assert d.expect("PONG").params[-1] == "ok"


def test_loopback_is_exempt_from_per_address_limit_by_default(server_factory, connect):
    fx = server_factory(max_per_address=1)
    clients = [connect(f"lo{i}", to=fx) for i in range(3)]
    assert all(not c.closed for c in clients)


def test_shutdown_tells_everyone_and_leaks_nothing(server_factory, connect):
    fx = server_factory()
    clients = [connect(f"c{i}", to=fx) for i in range(5)]
    for c in clients:
        c.join("#lan")
    silent = connect(to=fx)  # connected (accepted: it has an answer), never registered
    silent.send("PING hello")
    silent.expect("PONG")
    server = fx.server
    start = time.monotonic()
    fx.stop()
    assert time.monotonic() - start < 5, "stop() must not hang on connected clients"
    for c in [*clients, silent]:
        err = c.expect("ERROR")
        assert err.params[0] == "Server shutting down"
        assert c.wait_closed()
    assert not server.writer.alive
    assert server.socket.fileno() == -1  # listening socket closed
    conn_threads = [t for t in threading.enumerate() if t.name.startswith("chatroom-conn-")]
    assert all(str(fx.port) not in t.name for t in conn_threads)


def test_tcp_nodelay_on_client_sockets(irc_server, connect):
    c = connect("nodelay")
    server = irc_server.server
    with server.registry.lock:
        user = server.registry.find_user("nodelay")
    assert user is not None
    assert user.conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert server.request_queue_size >= 128
    c.send(Message.of("QUIT"))


# --- connection threads -------------------------------------------------------------------


def test_a_thread_that_cannot_start_closes_its_connection_and_the_server_goes_on(
    irc_server, connect, monkeypatch, caplog
) -> None:
    start = threading.Thread.start
    failures = [RuntimeError("can't start new thread")]

    def start_or_fail_once(thread: threading.Thread) -> None:
        if thread.name.startswith("chatroom-conn-") and failures:
            raise failures.pop()
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", start_or_fail_once)
    refused = socket.create_connection((irc_server.host, irc_server.port), timeout=10)
    try:
        assert refused.recv(4096) == b"", "the connection without a thread is closed"
    finally:
        refused.close()
    assert any(
        r.levelname == "ERROR" and "closed unserved: can't start new thread" in r.getMessage()
        for r in caplog.records
    )
    later = connect("later")  # the accept loop lives on
    later.send("PING :x")
    later.expect("PONG")
