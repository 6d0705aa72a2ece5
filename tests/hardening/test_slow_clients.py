"""Slow and greedy clients against a real `soundalike serve` process (issue 7, hostile requests).

The server runs with a 2-second request deadline and idle timeout (``--request-timeout``,
``--idle-timeout``) so the bounds are reached quickly. Every wait here is a hang guard far above
those bounds; the lower bounds asserted (nothing is cut off before its deadline) cannot be broken
by a slow machine.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from benchmarks.endtoend import Server

from soundalike import audio, synth

from .conftest import copy_catalog, raw_request, request_bytes, wait_for

REQUEST_TIMEOUT = 2.0
IDLE_TIMEOUT = 2
MIN_RATE = 500.0
"""The server's bytes-per-second allowance (see ``soundalike.web.server``)."""
HANG_GUARD = 30.0
"""Longest any single wait may take before the test calls it a hang."""


@pytest.fixture(scope="module")
def served(synth_library: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`soundalike serve` on a copy of the synthetic library, with short client deadlines."""
    library = tmp_path_factory.mktemp("slow-clients-library")
    copy_catalog(synth_library.catalog.path, library / "catalog.sqlite")
    args = ["--threads", "2", "--request-timeout", str(REQUEST_TIMEOUT), "--idle-timeout", str(IDLE_TIMEOUT)]
    with Server(library, *args, log=library / "serve.log") as server:
        yield server
        log = server.stop()
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture(scope="module")
def small_clip(synth_library: Any, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real 3-second MP3 at 32 kbit/s (about 12 KB), cut from a library track."""
    _, spec = synth_library.tracks[6]
    y = audio.excerpt(synth.render(spec), sample_rate=22050, start_s=4.0, duration_s=3.0)
    path = audio.encode(tmp_path_factory.mktemp("small-clip") / "clip.mp3", y, sample_rate=22050, bitrate="32k")
    return path.read_bytes()


# -- a slowloris client ---------------------------------------------------------------------------


@dataclass
class Trickle:
    """One connection sending its request a few bytes at a time, and what became of it."""

    sock: socket.socket
    pending: bytes
    first_byte_at: float
    answer: bytearray = field(default_factory=bytearray)
    closed_at: float | None = None
    reset: bool = False

    @property
    def seconds(self) -> float:
        assert self.closed_at is not None
        return self.closed_at - self.first_byte_at

    @property
    def status(self) -> int | None:
        head = bytes(self.answer).split(b"\r\n", 1)[0].split()
        return int(head[1]) if len(head) >= 2 and head[1].isdigit() else None

    def body_json(self) -> Any:
        return json.loads(bytes(self.answer).split(b"\r\n\r\n", 1)[1])


def endless_headers() -> bytes:
    """A request whose headers never end (a header line far longer than the test will send)."""
    return b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100_000


def endless_body() -> bytes:
    """A POST whose headers arrive whole and whose body never does."""
    head = request_bytes(
        "POST", "/api/recommend", {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": "100000"}
    )
    return head + b"--x\r\n" + b"b" * 99_000


def trickle(host: str, port: int, requests_: list[bytes], *, step: int, every: float, guard: float) -> list[Trickle]:
    """Send each request over its own connection, ``step`` bytes every ``every`` seconds.

    A connection stops sending as soon as it has something to read; it is done when the server
    closes it. Returns once every connection is closed, or after ``guard`` seconds (a hang).
    """
    sel = selectors.DefaultSelector()
    open_: list[Trickle] = []
    for request in requests_:
        sock = socket.create_connection((host, port), timeout=guard)
        sock.setblocking(False)
        t = Trickle(sock, request, time.monotonic())
        open_.append(t)
        sel.register(sock, selectors.EVENT_READ, t)
    everyone = list(open_)
    deadline = time.monotonic() + guard
    try:
        while open_ and time.monotonic() < deadline:
            for t in open_:
                if not t.answer and t.pending:
                    try:
                        t.sock.send(t.pending[:step])
                        t.pending = t.pending[step:]
                    except OSError:
                        pass  # the server closed it; the read below records that
            for key, _ in sel.select(timeout=every):  # pacing of a slow client, not synchronisation
                t = key.data
                try:
                    data = t.sock.recv(65536)
                except ConnectionResetError:
                    data, t.reset = b"", True
                if data:
                    t.answer += data
                    continue
                t.closed_at = time.monotonic()
                sel.unregister(t.sock)
                t.sock.close()
                open_.remove(t)
    finally:
        for t in open_:
            sel.unregister(t.sock)
            t.sock.close()
        sel.close()
    return everyone


def read_until_closed(sock: socket.socket, what: str) -> bytes:
    """Everything the server sends until it closes ``sock``; fail if that takes longer than the socket's timeout."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        pytest.fail(f"{what} was still open after {HANG_GUARD} s")
    return received


# -- the tests -----------------------------------------------------------------------------------


def test_slowloris_clients_get_408_while_others_are_served(served: Server) -> None:
    slow = [endless_headers() for _ in range(6)] + [endless_body() for _ in range(6)]
    result: list[Trickle] = []
    runner = threading.Thread(
        target=lambda: result.extend(trickle(served.host, served.port, slow, step=1, every=0.2, guard=HANG_GUARD))
    )
    runner.start()
    normal: list[tuple[int, float]] = []
    with requests.Session() as session:
        # Twelve slow connections, six times the server's request threads (2); an ordinary client
        # keeps asking until the slow ones are all gone.
        while runner.is_alive():
            reply = session.get(served.url + "/api/tracks/3/similar?k=5", timeout=HANG_GUARD)
            normal.append((reply.status_code, time.monotonic()))
            if reply.status_code == 200 and len(reply.json()["results"]) != 5:
                pytest.fail(f"a normal request got a wrong answer: {reply.text[:300]}")
    runner.join()

    assert len(result) == len(slow)
    for t in result:
        assert t.closed_at is not None, f"a slow connection was still open after {HANG_GUARD} s"
        assert t.status == 408, bytes(t.answer[:300])
        assert "did not arrive in time" in t.body_json()["error"]
        assert t.seconds >= REQUEST_TIMEOUT  # never cut off before its deadline
    first_cut = min(t.closed_at for t in result if t.closed_at is not None)
    during = [status for status, at in normal if at < first_cut]
    assert during and set(during) == {200}, normal[:20]  # served while every slow client was connected
    assert {status for status, _ in normal} == {200}
    wait_for(
        lambda: served.log.read_text().count("request not received within") >= len(slow),
        timeout=HANG_GUARD,
        what="the server to log each slow client it cut off",
    )
    times = sorted(round(t.seconds, 2) for t in result)
    print(f"\n408 after {times[0]}–{times[-1]} s (deadline {REQUEST_TIMEOUT} s); "
          f"{len(during)} normal requests answered 200 before the first slow client was cut off")  # fmt: skip


def test_an_idle_connection_is_closed_after_the_idle_timeout(served: Server) -> None:
    with socket.create_connection((served.host, served.port), timeout=HANG_GUARD) as sock:
        opened = time.monotonic()
        try:
            data = sock.recv(1024)  # blocks until the server closes (or the hang guard)
        except ConnectionResetError:
            data = b""
        except TimeoutError:
            pytest.fail(f"an idle connection was still open after {HANG_GUARD} s")
        waited = time.monotonic() - opened
    assert data == b""
    assert waited >= IDLE_TIMEOUT * 0.9  # the server's clock and ours tick apart by a little
    print(f"\nidle connection closed after {waited:.2f} s (idle timeout {IDLE_TIMEOUT} s)")


def test_a_keep_alive_connection_idle_after_a_request_is_closed_too(served: Server) -> None:
    with socket.create_connection((served.host, served.port), timeout=HANG_GUARD) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = read_until_closed(sock, "a kept-alive idle connection")
    assert received.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("length", [10**12, 52 * 1024 * 1024])
def test_an_oversize_content_length_is_refused_without_reading_the_body(served: Server, length: int) -> None:
    # Only the headers are sent: an answer (rather than a 408 for the missing body) shows the
    # server decided from Content-Length alone.
    head = request_bytes(
        "POST", "/api/recommend", {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(length)}
    )
    reply = raw_request(served.host, served.port, head, timeout=HANG_GUARD)
    assert reply.status == 413
    assert reply.headers["content-type"] == "application/json"
    assert json.loads(reply.body)["status"] == 413
    assert reply.headers.get("connection") == "close"


def test_oversize_headers_are_refused_with_431(served: Server) -> None:
    request = request_bytes("GET", "/api/health", {f"X-Pad-{i}": "p" * 1000 for i in range(80)})
    reply = raw_request(served.host, served.port, request, timeout=HANG_GUARD)
    assert reply.status == 431
    assert json.loads(reply.body)["status"] == 431


def test_a_slow_but_honest_upload_completes(served: Server, small_clip: bytes) -> None:
    boundary = "honest-upload"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\n3\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"clip.mp3\"\r\n"
        "Content-Type: audio/mpeg\r\n\r\n"
    ).encode() + small_clip + f"\r\n--{boundary}--\r\n".encode()
    request = request_bytes("POST", "/api/recommend", {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body)
    rate = 4 * MIN_RATE  # bytes per second, four times the least the server allows
    chunk = int(rate / 10)
    with socket.create_connection((served.host, served.port), timeout=HANG_GUARD) as sock:
        started = time.monotonic()
        for offset in range(0, len(request), chunk):
            try:
                sock.sendall(request[offset : offset + chunk])
            except OSError as exc:
                cut = time.monotonic() - started
                pytest.fail(f"the server cut off an upload at {rate:.0f} B/s after {cut:.1f} s ({exc}): {sock.recv(500)!r}")
            time.sleep(chunk / rate)  # pacing of a slow client, not synchronisation
        sent_in = time.monotonic() - started
        answer = read_until_closed(sock, "the connection of a slow upload")
    assert sent_in > 2 * REQUEST_TIMEOUT  # it outlasted the bare deadline by far
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), answer[:500]
    results = json.loads(payload)["results"]
    assert len(results) == 3
    print(f"\nuploaded {len(request)} bytes at {rate:.0f} B/s in {sent_in:.1f} s; answered 200")


def test_a_body_shorter_than_its_content_length_is_answered_408(served: Server) -> None:
    head = request_bytes("POST", "/api/recommend", {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": "1000"})
    with socket.create_connection((served.host, served.port), timeout=HANG_GUARD) as sock:
        sock.sendall(head + b"--x\r\n" + b"b" * 100)  # then nothing more
        answer = read_until_closed(sock, "a request with a short body")
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]


def test_an_oversize_body_sent_without_waiting_gets_a_readable_413(served: Server) -> None:
    length = 60 * 1024 * 1024
    head = request_bytes(
        "POST", "/api/recommend", {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(length)}
    )
    with socket.create_connection((served.host, served.port), timeout=HANG_GUARD) as sock:
        sock.sendall(head)
        try:
            for _ in range(64):  # 16 MB of the body, as a client that never waits for an answer sends it
                sock.sendall(b"b" * 256 * 1024)
        except OSError:
            pass  # the server may stop reading; what matters is that the answer can be read
        answer = read_until_closed(sock, "an oversize upload")
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]


def test_each_request_is_one_access_log_line(served: Server) -> None:
    requests.get(served.url + "/api/health?probe=access-log", timeout=HANG_GUARD)
    line = wait_for(
        lambda: next((ln for ln in served.log.read_text().splitlines() if "/api/health?probe=access-log" in ln), None),
        timeout=HANG_GUARD,
        what="the access-log line",
    )
    assert '"GET /api/health?probe=access-log HTTP/1.1" 200 ' in line
    assert line.endswith("ms")
