"""Who may use a server: an optional password, a login page, bearer tokens, CSRF, failed-login limits.

``soundalike serve`` hands out the library's audio, its paths and upload analysis; on anything but
loopback that needs a lock (issue 11). It is the one self-hosted music servers use:

* **One password** (or token), from ``--password-file FILE`` or ``SOUNDALIKE_PASSWORD``. The file
  may hold the password itself or its hash (``python -m soundalike.web.auth`` prints one), so it
  need never be stored in the clear. The server keeps only a salted scrypt hash in memory (the
  password is hashed once at start-up) and compares in constant time.
* **Web pages**: a login page; a session cookie signed with a random secret made at start-up
  (``HttpOnly``, ``SameSite=Lax``; a restart logs everyone out).
* **The API**: ``Authorization: Bearer PASSWORD`` on every request (or the session cookie of a
  logged-in browser).
* **CSRF**: every state-changing request (``POST``…) that comes with an ``Origin`` (or, lacking it,
  ``Referer``) of another site is refused ``403``; one authenticated by the session cookie must also
  carry the session's CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``), which every
  form the pages serve holds. A bearer request needs none (no cookie is involved).
* **Failed logins** (a wrong password on the login page or in a bearer token) are counted per
  client address: after :data:`FREE_FAILURES`, each further attempt must wait twice as long as the
  one before (1 s, 2 s, 4 s … at most :data:`MAX_DELAY_S`); until then the client is answered
  ``429`` with ``Retry-After``, without the password being checked. One client's passwords are
  checked one at a time (a second sent meanwhile waits too), so parallel requests cannot multiply
  the rate. The table holds at most
  :data:`MAX_CLIENTS` addresses (the least recently failed are forgotten first).

``/api/health`` and the static files (style sheet, script) stay open. Without a password nothing
is asked for, and :func:`check_exposure` makes ``serve`` refuse a non-loopback address unless the
user says ``--public``.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import hashlib
import hmac
import ipaddress
import math
import os
import secrets
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from soundalike.errors import ConfigError

__all__ = [
    "ENV_PASSWORD",
    "FailedLogins",
    "PasswordHash",
    "check_exposure",
    "init_app",
    "load_password",
]

ENV_PASSWORD = "SOUNDALIKE_PASSWORD"
FREE_FAILURES = 3
"""Wrong passwords a client may send before it has to wait."""
MAX_DELAY_S = 300.0
"""Longest wait imposed after a wrong password."""
FORGET_AFTER_S = 900.0
"""A client that has not failed for this long starts again with :data:`FREE_FAILURES`."""
MAX_CLIENTS = 10_000
"""Client addresses remembered by :class:`FailedLogins`."""
AUTH = "soundalike.auth"
"""Key of the :class:`Auth` state in ``app.extensions``."""
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_OPEN_ENDPOINTS = frozenset({"api.health", "static", "auth.login"})


# -- the password ----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True, repr=False)
class PasswordHash:
    """A salted scrypt hash of the server's password: ``scrypt$N$r$p$SALT$HASH`` (base64)."""

    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def of(cls, password: str) -> PasswordHash:
        """Hash ``password`` with a fresh random salt."""
        salt = secrets.token_bytes(16)
        return cls(_SCRYPT["n"], _SCRYPT["r"], _SCRYPT["p"], salt, cls._derive(password, salt, **_SCRYPT))

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        """Read the form :meth:`__str__` writes.

        Raises
        ------
        ValueError
        """
        parts = text.strip().split("$")
        if len(parts) != 6 or parts[0] != "scrypt":
            raise ValueError("not a soundalike password hash (scrypt$N$r$p$SALT$HASH)")
        n, r, p = (int(x) for x in parts[1:4])
        if n < 2 or n & (n - 1) or n > 2**20 or not 1 <= r <= 32 or not 1 <= p <= 16:
            raise ValueError(f"scrypt parameters out of range: N={n}, r={r}, p={p}")
        return cls(n, r, p, base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True))

    @staticmethod
    def _derive(password: str, salt: bytes, *, n: int, r: int, p: int) -> bytes:
        return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)

    def verify(self, password: str) -> bool:
        """Whether ``password`` is the one hashed (compared in constant time)."""
        candidate = self._derive(password, self.salt, n=self.n, r=self.r, p=self.p)
        return hmac.compare_digest(candidate, self.digest)

    def __str__(self) -> str:
        return f"scrypt${self.n}${self.r}${self.p}${_b64(self.salt)}${_b64(self.digest)}"

    def __repr__(self) -> str:
        return "PasswordHash(scrypt, …)"  # never the hash in a log or traceback


def load_password(password_file: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None) -> PasswordHash | None:
    """The server's password, hashed: from ``password_file``, else ``$SOUNDALIKE_PASSWORD``, else None.

    The file holds the password (its first line, without the line break) or a hash printed by
    ``python -m soundalike.web.auth``.

    Raises
    ------
    ConfigError
        When the file cannot be read or the password is empty.
    """
    env = os.environ if environ is None else environ
    if password_file is not None:
        path = Path(password_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the password file ({exc.strerror})") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: the password file is not UTF-8 text") from exc
        line = text.splitlines()[0] if text.splitlines() else ""
        where = str(path)
    elif env.get(ENV_PASSWORD) is not None:
        line, where = env[ENV_PASSWORD], f"${ENV_PASSWORD}"
    else:
        return None
    if line.startswith("scrypt$"):
        try:
            return PasswordHash.parse(line)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    if not line.strip():
        raise ConfigError(f"{where}: the password is empty")
    return PasswordHash.of(line)


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` reaches this machine only (every address it names is loopback)."""
    if host.strip("[]") == "":
        return False  # every interface
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def check_exposure(host: str, *, password: bool, public: bool) -> None:
    """Refuse to serve a non-loopback address with no password unless the user said ``--public``.

    Raises
    ------
    ConfigError
        One line saying why and what to do.
    """
    if password or public or is_loopback(host):
        return
    raise ConfigError(
        f"refusing to serve on {host or 'every interface'} without a password: anyone who reaches the port "
        f"could fetch the library's audio and paths; set one with --password-file FILE or ${ENV_PASSWORD}, "
        "or say --public to serve it to everyone"
    )


# -- failed logins ---------------------------------------------------------------------------------


class FailedLogins:
    """Wrong passwords per client address, and how long each client must wait before the next try.

    Parameters
    ----------
    free : int
        Failures allowed before waits begin.
    max_delay_s, forget_after_s : float
    max_clients : int
        Addresses remembered (least recently failed forgotten first).
    clock : callable
        Seconds, monotonic.
    """

    def __init__(
        self,
        *,
        free: int = FREE_FAILURES,
        max_delay_s: float = MAX_DELAY_S,
        forget_after_s: float = FORGET_AFTER_S,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free, self.max_delay_s, self.forget_after_s, self.max_clients = free, max_delay_s, forget_after_s, max_clients
        self.clock = clock
        self._lock = threading.Lock()
        self._clients: OrderedDict[str, tuple[int, float]] = OrderedDict()  # address -> (failures, last failure)
        self._checking: set[str] = set()  # addresses whose password is being checked (at most one per thread)

    def wait_s(self, client: str) -> float:
        """Seconds ``client`` must still wait before its password is checked again (0: go ahead)."""
        with self._lock:
            return self._wait(client)

    def _wait(self, client: str) -> float:
        entry = self._clients.get(client)
        if entry is None:
            return 0.0
        failures, last = entry
        now = self.clock()
        if now - last > self.forget_after_s:
            del self._clients[client]
            return 0.0
        return max(0.0, last + self._delay(failures) - now)

    @contextlib.contextmanager
    def attempt(self, client: str) -> Iterator[float]:
        """Hold ``client``'s one password check for the block; yields the seconds to wait (0: check now).

        One check per client at a time: requests sent in parallel would otherwise all be checked
        before the first failure counts, multiplying the allowed rate by the server's threads.
        """
        with self._lock:
            wait = self._wait(client)
            if wait <= 0 and client in self._checking:
                wait = 1.0
            mine = wait <= 0
            if mine:
                self._checking.add(client)
        try:
            yield wait
        finally:
            if mine:
                with self._lock:
                    self._checking.discard(client)

    def _delay(self, failures: int) -> float:
        return 0.0 if failures <= self.free else min(self.max_delay_s, 2.0 ** (failures - self.free - 1))

    def failed(self, client: str) -> None:
        with self._lock:
            failures, last = self._clients.pop(client, (0, 0.0))
            now = self.clock()
            if now - last > self.forget_after_s:
                failures = 0
            self._clients[client] = (failures + 1, now)
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)

    def __len__(self) -> int:
        return len(self._clients)


# -- the app ---------------------------------------------------------------------------------------


class Auth:
    """The password hash, the failed-login table and the bearer tokens already checked."""

    def __init__(self, password: PasswordHash, failures: FailedLogins | None = None) -> None:
        self.password = password
        self.failures = failures if failures is not None else FailedLogins()  # an empty table is falsy
        self._key = secrets.token_bytes(32)
        self._good_tokens: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def _token_key(self, token: str) -> bytes:
        return hmac.new(self._key, token.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def known_token(self, token: str) -> bool:
        """Whether ``token`` was found right before (a keyed lookup, no scrypt)."""
        with self._lock:
            return self._token_key(token) in self._good_tokens

    def token_ok(self, token: str) -> bool:
        """Whether a bearer token is the password (scrypt once per distinct right token, then a lookup)."""
        if self.known_token(token):
            return True
        key = self._token_key(token)
        if not self.password.verify(token):
            return False
        with self._lock:
            self._good_tokens[key] = None
            while len(self._good_tokens) > 16:
                self._good_tokens.popitem(last=False)
        return True


bp = Blueprint("auth", __name__)


def init_app(app: Flask, password: PasswordHash | None, failures: FailedLogins | None = None) -> None:
    """Guard every route of ``app`` but health, static files and the login page (when ``password``).

    Without a password only the cross-site check of state-changing requests applies.
    """
    app.before_request(_guard)

    @app.context_processor
    def _auth_globals() -> dict[str, Any]:
        return {"csrf_token": csrf_token, "auth_enabled": AUTH in current_app.extensions}

    if password is None:
        return
    app.extensions[AUTH] = Auth(password, failures)
    app.secret_key = secrets.token_bytes(32)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_NAME="soundalike_session")
    app.register_blueprint(bp)


def _auth() -> Auth | None:
    value: Auth | None = current_app.extensions.get(AUTH)
    return value


def csrf_token() -> str:
    """This session's CSRF token, made on first use ("" when the server has no password)."""
    if _auth() is None:
        return ""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def _client() -> str:
    return request.remote_addr or "unknown"


def _refuse(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Response:
    from soundalike.web import error_response

    return error_response(status, message, headers)


def _too_many(wait: float) -> Response:
    seconds = max(1, math.ceil(wait))
    return _refuse(429, f"too many wrong passwords from this address; try again in {seconds} s", [("Retry-After", str(seconds))])


def _cross_site() -> bool:
    """Whether a request says it comes from a page of another site (``Origin``, else ``Referer``)."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if source is None:
        return False  # not from a browser page (curl, scripts): nothing to forge
    parts = urlsplit(source)
    return source == "null" or parts.netloc.lower() != (request.host or "").lower()


def _csrf_ok() -> bool:
    expected = session.get("csrf")
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
    return isinstance(expected, str) and hmac.compare_digest(sent.encode(), expected.encode())


def _guard() -> BaseResponse | None:
    """Runs before every request: cross-site refusal, then credentials, then the CSRF token."""
    if request.method in _UNSAFE and _cross_site():
        return _refuse(403, "refused: this form was sent from another site")
    auth = _auth()
    if auth is None or request.endpoint in _OPEN_ENDPOINTS:
        return None
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        token = header[7:].strip()
        if auth.known_token(token):
            return None  # found right before: no password check, so nothing to limit
        with auth.failures.attempt(_client()) as wait:
            if wait > 0:
                return _too_many(wait)
            if auth.token_ok(token):
                return None
            auth.failures.failed(_client())
        return _unauthorised("wrong bearer token")
    if session.get("auth") is True:
        if request.method in _UNSAFE and not _csrf_ok():
            return _refuse(403, "refused: the form is out of date or not from this site (no valid CSRF token); reload the page")
        return None
    return _unauthorised("log in first: this server has a password")


def _unauthorised(message: str) -> BaseResponse:
    api = request.path.startswith("/api/") or request.path == "/api"
    if not api and request.method in ("GET", "HEAD") and request.accept_mimetypes.best != "application/json":
        target = request.full_path if request.query_string else request.path
        return redirect(url_for("auth.login", next=target), code=303)
    return _refuse(401, message, [("WWW-Authenticate", 'Bearer realm="soundalike"')])


def _safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server, else the upload page."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or any(ord(c) < 32 for c in target):
        return url_for("pages.home")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> BaseResponse | tuple[str, int] | str:
    auth = _auth()
    assert auth is not None
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if session.get("auth") is True:
            return redirect(target, code=303)
        return render_template("login.html", next=target, error=None)
    if auth.failures.wait_s(_client()) <= 0 and not _csrf_ok():
        return _refuse(403, "refused: the login form is out of date or not from this site; reload the page")
    with auth.failures.attempt(_client()) as wait:
        if wait > 0:
            return _too_many(wait)
        if not auth.password.verify(request.form.get("password", "")):
            auth.failures.failed(_client())
            return render_template("login.html", next=target, error="That is not the password."), 401
        auth.failures.succeeded(_client())
    session.clear()
    session["auth"] = True
    session["csrf"] = secrets.token_urlsafe(32)  # a new token once logged in
    return redirect(target, code=303)


@bp.post("/logout")
def logout() -> BaseResponse:
    session.clear()
    return redirect(url_for("auth.login"), code=303)


def main() -> None:
    """``python -m soundalike.web.auth``: print the hash of a password typed twice (or piped)."""
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if password != getpass.getpass("again: "):
            sys.exit("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        sys.exit("the password is empty")
    sys.stdout.write(f"{PasswordHash.of(password)}\n")


if __name__ == "__main__":
    main()
