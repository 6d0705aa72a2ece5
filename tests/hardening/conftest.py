"""Helpers for the hardening tests of the web app: raw HTTP, catalog copies, polling.

The benchmark package (repository root, beside ``src``) is made importable, so these tests use its
helpers instead of copies: ``benchmarks.endtoend.Server`` (``soundalike serve`` as a process) and
the load test's library.
"""

from __future__ import annotations

import http.client
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], *, timeout: float, what: str, every: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)  # polling interval, not synchronisation: the deadline decides
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def copy_catalog(source: Path, dest: Path) -> None:
    """Copy a SQLite catalog with the backup API (consistent even while it is open)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(dest) as dst:
        src.backup(dst)


@contextmanager
def serve_copy(catalog: Path, library: Path, *args: str) -> Iterator[Any]:
    """A real ``soundalike serve`` (with ``args``) on a copy of ``catalog`` in ``library``; its log
    must hold no traceback when it stops."""
    from benchmarks.endtoend import Server

    copy_catalog(catalog, library / "catalog.sqlite")
    with Server(library, *args, log=library / "serve.log") as server:
        yield server
        log = server.stop()
    assert "Traceback" not in log, log[-3000:]


def cli_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "GLOG_minloglevel": "2", "PYTHONUNBUFFERED": "1", **extra}


@dataclass
class RawReply:
    status: int
    headers: Mapping[str, str]
    body: bytes


def raw_request(host: str, port: int, request: bytes, *, timeout: float = 30.0) -> RawReply:
    """Send ``request`` byte for byte (nothing normalised or validated) and read one answer.

    Raises
    ------
    TimeoutError
        When the server does not answer within ``timeout`` seconds (a hang).
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock, method=request.split(b" ", 1)[0].decode("latin-1"))
        response.begin()
        body = response.read()
        return RawReply(response.status, {k.lower(): v for k, v in response.getheaders()}, body)


def request_bytes(method: str, target: bytes | str, headers: Mapping[str, str] | None = None, body: bytes = b"") -> bytes:
    """An HTTP/1.1 request with ``Connection: close``; ``target`` is sent as given."""
    raw_target = target.encode("latin-1") if isinstance(target, str) else target
    lines = [method.encode("latin-1") + b" " + raw_target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}".encode("latin-1"))
    if body and not any(n.lower() in ("content-length", "transfer-encoding") for n in (headers or {})):
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def response_ok(reply: Any, what: str) -> str | None:
    """None when ``reply`` (a requests response) is a 200; else a one-line description."""
    if reply.status_code != 200:
        return f"{what}: HTTP {reply.status_code} {reply.text[:200]}"
    return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


Json = dict[str, Any]
