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
its bound.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher

log = logging.getLogger(__name__)

BODY_MARGIN = 1024 * 1024
"""Bytes a request body may exceed the upload limit by (multipart boundaries, other form fields)."""

__all__ = ["BODY_MARGIN", "ServerLimits", "create_server"]


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
        body = _json_error(error.code, f"{error.reason.lower()}: {error.body}")
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
        super().maintenance(now)  # closes connections idle for longer than channel_timeout
        for channel in list(self.active_channels.values()):
            began = getattr(channel, "request_began", None)
            if began is None or channel.will_close or channel.close_when_flushed:
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
        ``waitress.create_server`` returns.

    Raises
    ------
    OSError
        When the address cannot be bound.
    """
    limits = limits or ServerLimits()
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "threads": threads,
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
    for sockinfo in adj.listen:
        server = _Server(app, socket_map, dispatcher=dispatcher, adj=adj, sockinfo=sockinfo)
        server.limits = limits
        servers.append(server)
    if len(servers) == 1:
        return servers[0]
    listening = [(s.effective_host, s.effective_port) for s in servers]
    return MultiSocketServer(socket_map, adj, listening, dispatcher, servers[-1].log_info)
