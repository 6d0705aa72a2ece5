"""Waitress, with the limits a server on a network needs (``soundalike serve`` uses this).

Waitress reads each request, headers and body, in its event loop before a request thread sees it,
so a slow client holds a socket, never a thread. Its own guard against slow clients is
``channel_timeout``: a connection is closed after that many seconds *without a byte*. A client
that trickles a byte every few seconds (slowloris) never trips it, so :func:`create_server` adds
a deadline for each request to arrive whole, in the manner of Apache's ``mod_reqtimeout``:
``request_timeout`` seconds from its first byte, extended by one second for every ``min_rate``
bytes received, so that a large upload over a slow but honest link is not cut off. A request that
misses it is answered ``408`` and its connection closed. The other limits are waitress's own,
tightened: the body may not exceed the upload limit by more than :data:`BODY_MARGIN` (waitress
answers ``413`` without reading it), headers are bounded, connections are counted, and the event
loop uses ``poll()`` (``select()`` fails past 1,024 open files). The server's own refusals (400 for
a malformed request, 408, 413, 431, 501 for an unknown transfer coding) are JSON
``{"error": message, "status": code}``, like the app's.

=====================  =======  ===============================================================
limit                  default  meaning
=====================  =======  ===============================================================
``idle_timeout``       30 s     close a connection that sent nothing for this long
``request_timeout``    30 s     a request must arrive within this many seconds from its first
                                byte, plus one second for every ``min_rate`` bytes received
``min_rate``           500 B/s  (a client sending slower than this is closed after about
                                ``request_timeout``; an upload at 1 Mbit/s is never cut off)
``max_header_bytes``   64 KiB   request line and headers together (431 beyond)
``connection_limit``   100      open connections; further clients wait in the listen backlog
=====================  =======  ===============================================================

Deadlines are checked every second, so a connection is closed at most about two seconds after
its bound. A request that stops arriving part-way (a body shorter than its ``Content-Length``) is
answered ``408`` once it has been idle for ``idle_timeout``, not closed without a word.

Every answer of the server's own, and every close it decides on, is a *lingering close* (as
Apache's): the answer is sent, the sending half of the connection shut, and whatever the client
still sends is read and discarded, up to :data:`LINGER_BYTES` or :data:`LINGER_S` seconds, before
the socket is closed. Closing at once with unread data would make the kernel reset the connection
and the client, still sending a large body, would never read its ``413`` (or ``408``).

The app gets ``threads`` request threads *plus* as many as its analysis gate can hold
(:mod:`soundalike.web.limits`), so uploads being analysed or waiting never take the threads that
everything else is answered on.

Logging: one access-log line per request on the ``soundalike.access`` logger, in the Combined Log
Format followed by the time taken in milliseconds (the request line's path and query, never a
body); and waitress's "Task queue depth" warning at most once every :data:`QUEUE_WARNING_EVERY_S`
seconds, with a count of the ones left out.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from waitress.adjustments import Adjustments
from waitress.buffers import ReadOnlyFileBasedBuffer
from waitress.channel import HTTPChannel
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher

log = logging.getLogger(__name__)

BODY_MARGIN = 1024 * 1024
"""Bytes a request body may exceed the upload limit by (multipart boundaries, other form fields)."""

LINGER_BYTES = 128 * 1024 * 1024
"""Most a client may still send, discarded, after the server decided to close its connection."""
LINGER_S = 10.0
"""Longest the server reads and discards after deciding to close a connection."""
QUEUE_WARNING_EVERY_S = 60.0
"""Least seconds between two of waitress's "Task queue depth" warnings."""

__all__ = ["BODY_MARGIN", "LINGER_BYTES", "LINGER_S", "ServerLimits", "access_log_app", "create_server"]


@dataclass(frozen=True)
class ServerLimits:
    """How long and how much one client may take; see the module docstring for each limit."""

    idle_timeout: int = 30
    request_timeout: float = 30.0
    min_rate: float = 500.0
    max_header_bytes: int = 64 * 1024
    connection_limit: int = 100

    def __post_init__(self) -> None:
        if self.idle_timeout < 1 or self.request_timeout <= 0 or self.min_rate <= 0:
            raise ValueError(f"server limits must be positive (idle timeout at least 1 s), got {self}")


def _json_error(status: int, message: str) -> bytes:
    """The body of an error answer, in the JSON API's form ``{"error": message, "status": code}``."""
    return json.dumps({"error": message, "status": status}).encode()


class _JsonErrorTask(ErrorTask):
    """Waitress's own refusals (malformed request, body or headers too large) as JSON errors.

    Waitress answers these before the app sees the request, in plain text; this keeps every error
    from the server in the form the API documents.
    """

    def execute(self) -> None:
        error = self.request.error
        message = f"{error.reason.lower()}: {error.body}"
        if error.code == 413:
            # Say the limit as the app does, not waitress's byte count (which includes the margin).
            limit = (self.channel.adj.max_request_body_size - BODY_MARGIN) / (1024 * 1024)
            message = f"the upload is larger than the {limit:g} MB limit"
        body = _json_error(error.code, message)
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):
    """A waitress connection that remembers when the request it is receiving began."""

    error_task_class = _JsonErrorTask
    request: Any = None
    """The request being received (waitress's parser), as in :class:`HTTPChannel`."""

    request_began: float | None = None
    """``time.time()`` of the first byte of the request being received; None between requests."""
    request_bytes = 0

    def received(self, data: bytes) -> bool:
        pending = self.request
        now = time.time()
        if pending is None:
            self.request_began, self.request_bytes = now, 0
        done: bool = super().received(data)
        if self.request is None:
            self.request_began = None  # every byte so far belonged to whole requests
        elif self.request is not pending and pending is not None:
            self.request_began, self.request_bytes = now, len(data)  # a new request began in this chunk
        else:
            self.request_bytes += len(data)
        return done

    linger_until: float | None = None
    """``time.monotonic()`` until which a closing connection is drained; None until it closes."""
    linger_left = 0

    def handle_close(self) -> None:
        """Close lingeringly: shut the sending half, then discard what the client still sends."""
        if self.linger_until is not None or not self.connected:
            super().handle_close()
            return
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError:
            super().handle_close()
            return
        self.linger_until = time.monotonic() + LINGER_S
        self.linger_left = LINGER_BYTES
        self.will_close = self.close_when_flushed = False

    def readable(self) -> bool:
        return True if self.linger_until is not None else bool(super().readable())

    def writable(self) -> bool:
        return False if self.linger_until is not None else bool(super().writable())

    def handle_read(self) -> None:
        if self.linger_until is None:
            super().handle_read()
            return
        try:
            data = self.recv(65536)  # an empty read (the client closed) closes it for good
        except OSError:
            super().handle_close()
            return
        self.linger_left -= len(data)
        if data and (self.linger_left <= 0 or time.monotonic() > self.linger_until):
            super().handle_close()

    def request_timed_out(self) -> None:
        """Answer 408 now and close once it is sent (runs in the event loop, like ``received``).

        Only called while no request of this connection is being served, so nothing else writes.
        """
        body = _json_error(408, "the request did not arrive in time; send it again faster")
        answer = (
            "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        with self.requests_lock:
            if self.request is not None:
                self.request.close()  # frees a partly received body
            self.request = None
            self.close_when_flushed = True  # read nothing more; close once the answer is out
        self.request_began = None
        with self.outbuf_lock:
            self.outbufs[-1].append(answer)
            self.current_outbuf_count += len(answer)
            self.total_outbufs_len += len(answer)
            # Send it at once rather than on the loop's next turn (up to a second away), so the
            # client has its answer before the close; what is left goes out when writable.
            self._flush_exception(self._flush_some)


class _Server(TcpWSGIServer):
    """A waitress TCP server whose connections must deliver each request by a deadline."""

    channel_class = _Channel
    limits = ServerLimits()

    def maintenance(self, now: float) -> None:
        mono = time.monotonic()
        idle_cutoff = now - self.adj.channel_timeout
        for channel in list(self.active_channels.values()):
            until = getattr(channel, "linger_until", None)
            if until is not None:
                if mono > until:
                    HTTPChannel.handle_close(channel)
                continue
            began = getattr(channel, "request_began", None)
            if (
                began is not None
                and not channel.requests
                and not (channel.will_close or channel.close_when_flushed)
                and channel.last_activity < idle_cutoff
            ):
                # Part of a request came and then nothing: answer it rather than close in silence.
                log.warning(
                    "%s: request stopped arriving (%d bytes, then %d s of nothing); closing the connection",
                    channel.addr[0] if channel.addr else "client", channel.request_bytes, self.adj.channel_timeout,
                )  # fmt: skip
                channel.request_timed_out()
        super().maintenance(now)  # closes connections idle for longer than channel_timeout
        for channel in list(self.active_channels.values()):
            began = getattr(channel, "request_began", None)
            if began is None or channel.will_close or channel.close_when_flushed or channel.linger_until is not None:
                continue
            if channel.requests:
                # A pipelined request cannot be read while the ones before it are served: its
                # clock starts again when they are done, however long they take.
                channel.request_began = now
                continue
            allowed = self.limits.request_timeout + channel.request_bytes / self.limits.min_rate
            if now - began > allowed:
                log.warning(
                    "%s: request not received within %.0f s (%d bytes so far); closing the connection",
                    channel.addr[0] if channel.addr else "client", allowed, channel.request_bytes,
                )  # fmt: skip
                channel.request_timed_out()


def create_server(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    threads: int = 4,
    max_body_bytes: int | None = None,
    limits: ServerLimits | None = None,
) -> Any:
    """A waitress server for ``app`` with the limits above; call ``.run()`` on it.

    Parameters
    ----------
    app : WSGI application
    host, port : str, int
        Where to listen (port 0 picks a free one; a host name may give several sockets).
    threads : int
        Request threads.
    max_body_bytes : int, optional
        The upload limit in bytes (the app's ``MAX_CONTENT_LENGTH``); waitress refuses bodies
        larger than this plus :data:`BODY_MARGIN` before reading them. None: waitress's 1 GB.
    limits : ServerLimits, optional

    Returns
    -------
    server
        A ``waitress`` TCP server (one socket) or ``MultiSocketServer`` (several), as
        ``waitress.create_server`` returns. It serves ``app`` through :func:`access_log_app`,
        with ``threads`` plus the app's analysis-gate capacity request threads.

    Raises
    ------
    OSError
        When the address cannot be bound.
    """
    limits = limits or ServerLimits()
    _quiet_queue_warnings()
    gate = _gate_of(app)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "threads": threads + (gate.capacity if gate is not None else 0),
        "channel_timeout": limits.idle_timeout,
        "cleanup_interval": 1,
        "connection_limit": limits.connection_limit,
        "max_request_header_size": limits.max_header_bytes,
        "asyncore_use_poll": True,
    }
    if max_body_bytes is not None:
        options["max_request_body_size"] = max_body_bytes + BODY_MARGIN
    adj = Adjustments(**options)
    socket_map: dict[int, Any] = {}
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    servers = []
    wsgi = access_log_app(app)
    for sockinfo in adj.listen:
        server = _Server(wsgi, socket_map, dispatcher=dispatcher, adj=adj, sockinfo=sockinfo)
        server.limits = limits
        servers.append(server)
    if len(servers) == 1:
        return servers[0]
    listening = [(s.effective_host, s.effective_port) for s in servers]
    return MultiSocketServer(socket_map, adj, listening, dispatcher, servers[-1].log_info)


def _gate_of(app: Any) -> Any:
    """The analysis gate of a soundalike app (None for another WSGI app)."""
    shared = getattr(app, "extensions", {}).get("soundalike")
    return getattr(shared, "gate", None)


# -- logging ---------------------------------------------------------------------------------------

access_log = logging.getLogger("soundalike.access")


class _OncePerInterval(logging.Filter):
    """Let one record through every ``every`` seconds; say how many were left out in between."""

    def __init__(self, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every = every
        self.clock = clock
        self._next = 0.0
        self._dropped = 0
        self._lock = threading.Lock()

    def use_clock(self, clock: Callable[[], float]) -> None:
        """Measure intervals with ``clock`` from now on, forgetting what was counted before."""
        with self._lock:
            self.clock, self._next, self._dropped = clock, 0.0, 0

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            now = self.clock()
            if now < self._next:
                self._dropped += 1
                return False
            self._next = now + self.every
            dropped, self._dropped = self._dropped, 0
        if dropped:
            record.msg = f"{record.msg} ({dropped} more such warnings in the last {self.every:.0f} s not logged)"
        return True


def _quiet_queue_warnings() -> None:
    """Waitress's "Task queue depth is N" at most once every :data:`QUEUE_WARNING_EVERY_S` seconds."""
    queue_log = logging.getLogger("waitress.queue")
    if not any(isinstance(f, _OncePerInterval) for f in queue_log.filters):
        queue_log.addFilter(_OncePerInterval(QUEUE_WARNING_EVERY_S))
    if not access_log.handlers:
        # Access lines go to stderr whatever the root logger's level (the CLI shows only warnings).
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO)
        access_log.propagate = False


def _clf_quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')[:500]


def access_log_app(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """``app`` logging one line per request on ``soundalike.access`` once its answer is sent.

    The line is the Combined Log Format plus milliseconds::

        127.0.0.1 - - [02/Dec/2026:10:00:00 +0000] "GET /api/health HTTP/1.1" 200 512 "-" "curl/8" 3ms

    Bytes are those of the body sent (``-`` for none); the request's body is never logged.
    """

    def line(environ: dict[str, Any], status: str, sent: int | None, started: float) -> None:
        path = environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        target = (environ.get("SCRIPT_NAME", "") + path + (f"?{query}" if query else "")).encode("latin-1", "replace")
        request_line = f"{environ.get('REQUEST_METHOD', '-')} {target.decode('ascii', 'backslashreplace')} {environ.get('SERVER_PROTOCOL', '-')}"
        access_log.info(
            '%s - - [%s] "%s" %s %s "%s" "%s" %dms',
            environ.get("REMOTE_ADDR", "-"),
            time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            _clf_quote(request_line),
            status,
            sent or "-",
            _clf_quote(environ.get("HTTP_REFERER", "-")),
            _clf_quote(environ.get("HTTP_USER_AGENT", "-")),
            round((time.perf_counter() - started) * 1000),
        )

    def logged(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        status = ["-"]
        length: list[int | None] = [None]

        def start(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = status_line.split(" ", 1)[0]
            for name, value in headers:
                if name.lower() == "content-length" and value.isdigit():
                    length[0] = int(value)
            return start_response(status_line, headers, exc_info) if exc_info else start_response(status_line, headers)

        body = app(environ, start)
        if isinstance(body, ReadOnlyFileBasedBuffer):
            # A file sent by waitress itself (send_file): keep its fast path; the length is the header's.
            line(environ, status[0], length[0], started)
            return body

        def chunks() -> Iterator[bytes]:
            sent = 0
            try:
                for chunk in body:
                    sent += len(chunk)
                    yield chunk
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()
                line(environ, status[0], sent, started)

        return chunks()

    return logged
