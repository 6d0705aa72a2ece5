"""Fixtures for the web app: the app on the synthetic library, a real waitress server, clips, transports.

Every API test runs twice through the ``http`` fixture: once through Flask's test client and once
over a real TCP connection to waitress on a free loopback port (``requests``).
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from playwright.sync_api import Browser, Page, sync_playwright

from soundalike import audio, synth
from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.index.bundle import LibraryIndex
from soundalike.ingest import SerialRunner, ingest
from soundalike.web import create_app
from soundalike.web.server import ServerLimits, create_server

UPLOAD_LIMIT = 2 * 1024 * 1024
"""The test app's upload limit in bytes (small, so the oversize case is cheap to send)."""
PER_PAGE = 15


def library_folder(index: LibraryIndex) -> Path:
    """The library folder an index was published in (``LIBRARY/indexes/index-…``)."""
    return index.directory.parent.parent


def as_the_web_shows(doc: Any, music: Path) -> Any:
    """A ``to_dict()`` answer (CLI ``--json``) with its paths relative to ``music``, as the web API gives it."""
    return json.loads(json.dumps(doc).replace(json.dumps(str(music) + "/")[1:-1], ""))


@pytest.fixture(scope="session")
def web_index(indexes: dict[str, LibraryIndex]) -> LibraryIndex:
    return indexes["scann"]


@pytest.fixture(scope="session")
def app(synth_library: Any, web_index: LibraryIndex) -> Flask:
    """The app over the 40-track synthetic library and its ScaNN index."""
    return create_app(
        {
            "SOUNDALIKE_LIBRARY": library_folder(web_index),
            "SOUNDALIKE_CATALOG": synth_library.catalog,
            "SOUNDALIKE_INDEX": web_index,
            "MAX_CONTENT_LENGTH": UPLOAD_LIMIT,
            "SOUNDALIKE_PER_PAGE": PER_PAGE,
        }
    )


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


class LiveServer:
    """The server of ``soundalike serve`` (waitress with limits) running ``app`` in a thread on 127.0.0.1 and a free port."""

    def __init__(
        self, app: Flask, *, threads: int = 4, max_body_bytes: int | None = None, limits: ServerLimits | None = None
    ) -> None:
        self.server: Any = create_server(
            app, host="127.0.0.1", port=0, threads=threads, max_body_bytes=max_body_bytes, limits=limits
        )
        self.port = int(self.server.effective_port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.run, name="waitress", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        def close_all() -> None:  # runs in the server's own loop thread
            for channel in list(self.server._map.values()):
                channel.close()

        self.server.trigger.pull_trigger(close_all)
        self.thread.join(timeout=10)
        self.server.task_dispatcher.shutdown()
        assert not self.thread.is_alive(), "waitress did not stop"


@pytest.fixture(scope="session")
def server(app: Flask) -> Iterator[str]:
    """Base URL of a real waitress server running the test app."""
    with LiveServer(app) as live:
        yield live.url


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


class ClientTransport:
    """Requests through Flask's test client (no sockets)."""

    name = "test-client"

    def __init__(self, app: Flask) -> None:
        self.client = app.test_client()

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        r = self.client.get(path, headers=dict(headers or {}))
        return Reply(r.status_code, r.headers, r.get_data())

    raw_get = get

    def post(
        self,
        path: str,
        *,
        files: Mapping[str, tuple[str, bytes]] | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        form: dict[str, Any] = dict(data or {})
        for field, (filename, content) in (files or {}).items():
            form[field] = (io.BytesIO(content), filename)
        r = self.client.post(path, data=form, content_type="multipart/form-data", headers=dict(headers or {}))
        return Reply(r.status_code, r.headers, r.get_data())


class HttpTransport:
    """Requests over TCP to a real waitress server (``requests``; ``http.client`` for raw paths)."""

    name = "waitress"

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        r = self.session.get(self.base + path, headers=dict(headers or {}), timeout=60, allow_redirects=False)
        return Reply(r.status_code, r.headers, r.content)

    def raw_get(self, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        """GET with the path sent byte for byte (no client-side ``..`` normalisation)."""
        parts = urlsplit(self.base)
        conn = HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        try:
            conn.request("GET", path, headers=dict(headers or {}))
            r = conn.getresponse()
            return Reply(r.status, {k: v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def post(
        self,
        path: str,
        *,
        files: Mapping[str, tuple[str, bytes]] | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        r = self.session.post(
            self.base + path,
            files={k: (name, content) for k, (name, content) in (files or {}).items()} or None,
            data=dict(data or {}),
            headers=dict(headers or {}),
            timeout=120,
            allow_redirects=False,
        )
        return Reply(r.status_code, r.headers, r.content)


@pytest.fixture(params=["test-client", "waitress"])
def http(request: pytest.FixtureRequest, app: Flask) -> ClientTransport | HttpTransport:
    """The same requests through the test client and through a real server."""
    if request.param == "test-client":
        return ClientTransport(app)
    return HttpTransport(request.getfixturevalue("server"))


@dataclass(frozen=True)
class Clip:
    """An excerpt of a library track, re-encoded, with the track it was cut from."""

    path: Path
    source: Path
    spec: synth.TrackSpec

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()


@pytest.fixture(scope="session")
def clip(synth_library: Any, tmp_path_factory: pytest.TempPathFactory) -> Clip:
    """An 8-second MP3 cut from the middle of a library track."""
    source, spec = synth_library.tracks[13]
    y = audio.excerpt(synth.render(spec), sample_rate=22050, start_s=6.0, duration_s=8.0)
    out = audio.encode(tmp_path_factory.mktemp("clips") / "excerpt.mp3", y, sample_rate=22050, bitrate="128k")
    return Clip(path=out, source=source, spec=spec)


@pytest.fixture(scope="session")
def other_library(tmp_path_factory: pytest.TempPathFactory) -> SQLiteCatalog:
    """A catalog with no analysed track and one failure (a broken 'MP3')."""
    music = tmp_path_factory.mktemp("broken-music")
    (music / "broken.mp3").write_bytes(b"ID3" + bytes(range(256)) * 8)
    catalog = SQLiteCatalog(tmp_path_factory.mktemp("empty-library") / "catalog.sqlite")
    ingest([music], catalog, runner=SerialRunner())
    return catalog


# -- Chromium (Debian's, driven by Playwright) -------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@contextmanager
def chromium(args: Sequence[str] = CHROMIUM_ARGS) -> Iterator[Browser]:
    """Debian's chromium, headless, started with ``args`` and closed after the block."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(args))
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"
