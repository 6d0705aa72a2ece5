"""Access control (issue 11): a password, a login page, bearer tokens, CSRF and slowed wrong passwords.

Requests go over TCP to a real waitress server running an app with a password; the ``serve``
options are tested on the command itself, as a process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from soundalike.web import create_app
from soundalike.web.auth import FailedLogins, PasswordHash
from soundalike.web.openapi import document

from .conftest import UPLOAD_LIMIT, LiveServer, library_folder

PASSWORD = "correct horse battery staple"
OPEN_ENDPOINTS = {"api.health", "static", "auth.login"}


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def password_hash() -> PasswordHash:
    return PasswordHash.of(PASSWORD)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def locked_app(synth_library: Any, web_index: Any, password_hash: PasswordHash, clock: Clock) -> Flask:
    """The test library's app with a password (its own failed-login table, on a hand-moved clock)."""
    return create_app(
        {
            "SOUNDALIKE_LIBRARY": library_folder(web_index),
            "SOUNDALIKE_CATALOG": synth_library.catalog,
            "SOUNDALIKE_INDEX": web_index,
            "MAX_CONTENT_LENGTH": UPLOAD_LIMIT,
            "SOUNDALIKE_PASSWORD_HASH": password_hash,
            "SOUNDALIKE_FAILED_LOGINS": FailedLogins(clock=clock),
        }
    )


@pytest.fixture
def locked(locked_app: Flask) -> Iterator[str]:
    """Base URL of a real server running the app with a password."""
    with LiveServer(locked_app) as live:
        yield live.url


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:2000]
    return match.group(1)


def _login(base: str, password: str = PASSWORD, **headers: str) -> tuple[requests.Session, requests.Response]:
    session = requests.Session()
    token = _csrf(session.get(base + "/login", timeout=30).text)
    reply = session.post(
        base + "/login",
        data={"password": password, "csrf_token": token, "next": "/library"},
        headers=headers,
        timeout=30,
        allow_redirects=False,
    )
    return session, reply


def _routes(app: Flask) -> list[tuple[str, str, str]]:
    """(method, path, endpoint) for every route of the app, with a real track id and a results id."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in OPEN_ENDPOINTS:
            continue
        path = rule.rule.replace("<int:track_id>", "1").replace("<result_id>", "A" * 22)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((method, path, rule.endpoint))
    return found


def test_every_route_refuses_without_credentials_when_a_password_is_set(locked: str, locked_app: Flask, synth_library):
    documented = {
        (method.upper(), template.replace("{track_id}", "1"))
        for template, methods in document()["paths"].items()
        for method, spec in methods.items()
        if spec["security"]  # every operation but health
    }
    routes = _routes(locked_app)
    assert documented <= {(m, p) for m, p, _ in routes}, "an operation of the OpenAPI document is not a route"
    assert len(routes) >= 14
    names = [Path(p).stem for p, _ in synth_library.tracks]
    for method, path, endpoint in routes:
        reply = requests.request(method, locked + path, timeout=30, allow_redirects=False)
        if path.startswith("/api/") or method != "GET":
            assert reply.status_code == 401, (method, path, reply.status_code, reply.text[:200])
            assert reply.headers["WWW-Authenticate"] == 'Bearer realm="soundalike"'
        else:
            assert reply.status_code == 303, (method, path, reply.status_code)
            assert reply.headers["Location"].startswith("/login?next="), reply.headers["Location"]
        assert not any(name in reply.text for name in names), (endpoint, reply.text[:300])


def test_health_and_static_files_stay_open(locked: str):
    assert requests.get(locked + "/api/health", timeout=30).json()["tracks"] == 40
    assert requests.get(locked + "/static/style.css", timeout=30).status_code == 200


def test_the_api_takes_the_password_as_a_bearer_token(locked: str):
    good = requests.get(locked + "/api/tracks?per_page=5", headers={"Authorization": f"Bearer {PASSWORD}"}, timeout=30)
    assert good.status_code == 200 and len(good.json()["tracks"]) == 5
    bad = requests.get(locked + "/api/tracks", headers={"Authorization": "Bearer guess"}, timeout=30)
    assert bad.status_code == 401 and bad.json()["error"] == "wrong bearer token"


def test_an_api_upload_with_a_bearer_token_needs_no_csrf_token(locked: str, clip):
    reply = requests.post(
        locked + "/api/recommend",
        files={"file": ("clip.mp3", clip.data)},
        data={"k": "3"},
        headers={"Authorization": f"Bearer {PASSWORD}"},
        timeout=60,
    )
    assert reply.status_code == 200 and len(reply.json()["results"]) == 3


def test_logging_in_opens_the_pages_and_the_form_upload(locked: str, clip):
    session, reply = _login(locked)
    assert reply.status_code == 303 and reply.headers["Location"] == "/library"
    cookie = reply.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "40" in session.get(locked + "/library", timeout=30).text
    home = session.get(locked + "/", timeout=30)
    assert home.status_code == 200
    upload = session.post(
        locked + "/upload",
        files={"file": ("clip.mp3", clip.data)},
        data={"k": "3", "csrf_token": _csrf(home.text)},
        timeout=60,
        allow_redirects=False,
    )
    assert upload.status_code == 303 and upload.headers["Location"].startswith("/results/")
    assert session.get(locked + upload.headers["Location"], timeout=30).status_code == 200


def test_a_form_upload_without_the_csrf_token_is_refused(locked: str, clip):
    session, _ = _login(locked)
    reply = session.post(locked + "/upload", files={"file": ("clip.mp3", clip.data)}, timeout=60, allow_redirects=False)
    assert reply.status_code == 403 and "CSRF" in reply.text


def test_a_cross_site_form_post_is_refused(locked: str, clip):
    session, _ = _login(locked)
    token = _csrf(session.get(locked + "/", timeout=30).text)
    reply = session.post(
        locked + "/upload",
        files={"file": ("clip.mp3", clip.data)},
        data={"csrf_token": token},
        headers={"Origin": "http://evil.example"},
        timeout=60,
        allow_redirects=False,
    )
    assert reply.status_code == 403 and "another site" in reply.text


def test_a_cross_site_login_is_refused(locked: str):
    _, reply = _login(locked, Origin="http://evil.example")
    assert reply.status_code == 403


def test_logging_out_closes_the_pages_again(locked: str):
    session, _ = _login(locked)
    token = _csrf(session.get(locked + "/", timeout=30).text)
    assert session.post(locked + "/logout", data={"csrf_token": token}, timeout=30, allow_redirects=False).status_code == 303
    assert session.get(locked + "/library", timeout=30, allow_redirects=False).status_code == 303


def test_a_login_redirects_only_to_a_path_on_this_server(locked: str):
    session = requests.Session()
    token = _csrf(session.get(locked + "/login", timeout=30).text)
    for target in ("http://evil.example/", "//evil.example/", "/\\evil.example"):
        session.cookies.clear()
        token = _csrf(session.get(locked + "/login", timeout=30).text)
        reply = session.post(
            locked + "/login", data={"password": PASSWORD, "csrf_token": token, "next": target}, timeout=30, allow_redirects=False
        )
        assert reply.status_code == 303 and reply.headers["Location"] == "/", (target, reply.headers["Location"])


def test_a_wrong_password_is_slowed(locked: str, clock: Clock):
    for attempt in range(4):  # three free failures, then the waits begin
        _, reply = _login(locked, "wrong")
        assert reply.status_code == 401, attempt
        assert "That is not the password." in reply.text
    _, reply = _login(locked)  # the right password, too soon: not even checked
    assert reply.status_code == 429 and reply.headers["Retry-After"] == "1"
    bearer = requests.get(locked + "/api/tracks", headers={"Authorization": f"Bearer {PASSWORD}"}, timeout=30)
    assert bearer.status_code == 429

    clock.now += 1.0
    _, reply = _login(locked, "wrong again")
    assert reply.status_code == 401
    _, reply = _login(locked)
    assert reply.status_code == 429 and reply.headers["Retry-After"] == "2"  # each wait twice the one before

    clock.now += 2.0
    _, reply = _login(locked)
    assert reply.status_code == 303  # the right password once the wait is over
    _, reply = _login(locked, "wrong")
    assert reply.status_code == 401  # and the count starts again


def test_wrong_bearer_tokens_count_as_wrong_passwords(locked: str):
    for _ in range(4):
        assert requests.get(locked + "/api/tracks", headers={"Authorization": "Bearer x"}, timeout=30).status_code == 401
    reply = requests.get(locked + "/api/tracks", headers={"Authorization": f"Bearer {PASSWORD}"}, timeout=30)
    assert reply.status_code == 429 and reply.json()["status"] == 429


def test_a_clients_password_checks_run_one_at_a_time():
    table = FailedLogins(clock=Clock())
    with table.attempt("10.0.0.1") as first, table.attempt("10.0.0.1") as second, table.attempt("10.0.0.2") as other:
        assert (first, second, other) == (0.0, 1.0, 0.0)  # the second check of 10.0.0.1 waits for the first
    with table.attempt("10.0.0.1") as again:
        assert again == 0.0


def test_the_failed_login_table_is_bounded():
    table = FailedLogins(max_clients=3, clock=Clock())
    for n in range(10):
        table.failed(f"10.0.0.{n}")
    assert len(table) == 3


def test_the_password_hash_never_shows_in_a_repr(password_hash: PasswordHash):
    assert str(password_hash).startswith("scrypt$16384$8$1$")
    assert "scrypt$" not in repr(password_hash)
    assert PasswordHash.parse(str(password_hash)).verify(PASSWORD)
    assert not password_hash.verify(PASSWORD + " ")


# -- the serve command -----------------------------------------------------------------------------


def _serve(library: Path, *args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "soundalike.cli", "--library", str(library), "serve", "--port", "0", *args],
        env={**os.environ, "GLOG_minloglevel": "2", "PYTHONUNBUFFERED": "1", **(env or {})},
        text=True,
        **kw,
    )


@pytest.fixture
def served_library(synth_library: Any, tmp_path: Path) -> Path:
    from .test_web_serve import _copy_catalog

    library = tmp_path / "library"
    _copy_catalog(synth_library.catalog.path, library / "catalog.sqlite")
    return library


def _url(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("serving "):
            return line.split(" at ", 1)[1].split()[0].rstrip("/")
    raise AssertionError(f"serve exited with {proc.wait()} before printing its URL")


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_serve_on_a_public_address_without_a_password_refuses_in_one_line(tmp_path: Path, host: str):
    proc = _serve(tmp_path / "library", "--host", host, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "without a password" in err and "--password-file" in err and "--public" in err and "SOUNDALIKE_PASSWORD" in err


def test_serve_on_a_public_address_starts_when_told_public(served_library: Path):
    proc = _serve(served_library, "--host", "0.0.0.0", "--public", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = _url(proc)
        port = url.rsplit(":", 1)[1]
        assert requests.get(f"http://127.0.0.1:{port}/api/tracks", timeout=30).status_code == 200
    finally:
        _stop(proc)


def test_serve_with_a_password_file_holding_a_hash_asks_for_the_password(served_library: Path, tmp_path: Path):
    made = subprocess.run(
        [sys.executable, "-m", "soundalike.web.auth"], input=PASSWORD + "\n", capture_output=True, text=True, check=True
    )
    hashed = made.stdout.strip()
    assert hashed.startswith("scrypt$") and PASSWORD not in hashed
    password_file = tmp_path / "password"
    password_file.write_text(hashed + "\n")
    proc = _serve(
        served_library, "--host", "0.0.0.0", "--password-file", str(password_file), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        url = _url(proc)
        assert requests.get(url + "/api/tracks", timeout=30).status_code == 401
        assert requests.get(url + "/api/health", timeout=30).status_code == 200
        ok = requests.get(url + "/api/tracks", headers={"Authorization": f"Bearer {PASSWORD}"}, timeout=30)
        assert ok.status_code == 200
    finally:
        _stop(proc)


def test_serve_takes_the_password_from_the_environment(served_library: Path):
    proc = _serve(served_library, env={"SOUNDALIKE_PASSWORD": PASSWORD}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = _url(proc)
        assert requests.get(url + "/", timeout=30, allow_redirects=False).status_code == 303
        ok = requests.get(url + "/api/tracks/1", headers={"Authorization": f"Bearer {PASSWORD}"}, timeout=30)
        assert ok.status_code == 200
    finally:
        _stop(proc)
