"""A body the server refuses is still answered readably: 413 for 60 MB, chunked or not (issue 11).

A 60 MB chunked upload got a connection reset instead of a readable 413, and so did a plain one
from a client that does not wait for ``100 Continue``: the server answered and closed while the
body was still arriving, and the kernel reset the connection. The server now drains (discards) a
bounded amount after answering (``soundalike.web.server``'s lingering close), so a client that
sends its whole body before reading reads the 413. (``requests`` read it even before the drain:
urllib3 reads the answer after a failed send; these tests use a raw socket, which does not.)
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from benchmarks.endtoend import Server

from .conftest import request_bytes, serve_copy

BODY = 60 * 1024 * 1024
"""Bytes sent: more than the default 50 MB upload limit."""
PIECE = 256 * 1024
HANG_GUARD = 60.0


@pytest.fixture(scope="module")
def served(synth_library: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`soundalike serve` with its default 50 MB upload limit."""
    with serve_copy(synth_library.catalog.path, tmp_path_factory.mktemp("refused-bodies-library"), "--threads", "2") as server:
        yield server


def _pieces() -> Iterator[bytes]:
    for _ in range(BODY // PIECE):
        yield b"b" * PIECE


def _check_413(status: int, body: bytes) -> None:
    assert status == 413, (status, body[:300])
    error = json.loads(body)
    assert error["status"] == 413 and "50 MB" in error["error"], error


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_a_60_mb_upload_sent_whole_without_waiting_reads_its_413(served: Server, framing: str) -> None:
    headers = {"Content-Type": "multipart/form-data; boundary=x"}
    headers.update({"Transfer-Encoding": "chunked"} if framing == "chunked" else {"Content-Length": str(BODY)})
    with socket.create_connection((served.host, served.port), timeout=HANG_GUARD) as sock:
        sock.sendall(request_bytes("POST", "/api/recommend", headers))
        # The whole body, never reading before it is out (as a simple client does; no 100 Continue):
        # a send that fails with a reset fails the test.
        for piece in _pieces():
            sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n" if framing == "chunked" else piece)
        if framing == "chunked":
            sock.sendall(b"0\r\n\r\n")
        answer = bytearray()
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = bytes(answer).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), bytes(answer[:300])
    _check_413(413, body)
