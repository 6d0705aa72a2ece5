"""`soundalike serve` as a real process, and switching to an index another process publishes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from soundalike.index import bundle
from soundalike.web import create_app

from .conftest import LiveServer


def _copy_catalog(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(dest) as dst:
        src.backup(dst)


def _wait_for(predicate: Any, *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)  # polling interval, not synchronisation: the deadline decides
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _cli(*args: str, library: Path, **kw: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "GLOG_minloglevel": "2", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "soundalike.cli", "--library", str(library), *args], env=env, text=True, **kw
    )


def test_serve_command_serves_the_library_and_picks_up_a_new_index(synth_library, tmp_path):
    library = tmp_path / "library"
    _copy_catalog(synth_library.catalog.path, library / "catalog.sqlite")
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = _cli("serve", "--port", "0", "--threads", "2", library=library, stdout=out, stderr=subprocess.STDOUT)
    try:
        line = _wait_for(
            lambda: next((ln for ln in log.read_text().splitlines() if ln.startswith("serving ")), None),
            timeout=60,
            what="the serve command to print its URL",
        )
        assert "40 tracks, scann index" in line
        url = line.split(" at ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        health = requests.get(url + "api/health", timeout=30).json()
        assert (health["tracks"], health["index_backend"]) == (40, "scann")
        assert requests.get(url, timeout=30).status_code == 200
        assert requests.get(url + "library?q=pluck", timeout=30).status_code == 200

        # Another process rebuilds the index with another backend and publishes it.
        subprocess.run(
            [sys.executable, "-m", "soundalike.cli", "--library", str(library), "index", "--backend", "annoy"],
            check=True,
            capture_output=True,
            env={**os.environ, "GLOG_minloglevel": "2"},
        )
        _wait_for(
            lambda: requests.get(url + "api/health", timeout=30).json()["index_backend"] == "annoy",
            timeout=20,
            what="the server to switch to the annoy index",
        )
        similar = requests.get(url + "api/tracks/1/similar?k=3", timeout=30)
        assert similar.status_code == 200 and len(similar.json()["results"]) == 3
    finally:
        proc.send_signal(signal.SIGTERM)  # what a service manager sends; Ctrl+C (SIGINT) works the same
        proc.wait(timeout=20)
    assert proc.returncode == 0
    assert "stopped" in log.read_text()
    assert "Traceback" not in log.read_text()


def test_serve_without_a_catalog_says_run_ingest(tmp_path):
    proc = _cli("serve", "--port", "0", library=tmp_path / "nothing", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "no catalog here (run `soundalike ingest` first)" in err and "Traceback" not in err


def test_requests_keep_succeeding_while_indexes_are_swapped(synth_library, tmp_path):
    library = tmp_path / "library"
    first = bundle.build(library, synth_library.catalog, backend="exact")
    app = create_app(
        {
            "SOUNDALIKE_LIBRARY": library,
            "SOUNDALIKE_CATALOG": synth_library.catalog,
            "SOUNDALIKE_INDEX": first,
            "SOUNDALIKE_INDEX_CHECK_S": 0.02,
        }
    )
    statuses: list[int] = []
    stop = threading.Event()

    with LiveServer(app, threads=4) as live:

        def hammer() -> None:
            session = requests.Session()
            while not stop.is_set():
                statuses.append(session.get(live.url + "/api/tracks/2/similar?k=5", timeout=30).status_code)

        workers = [threading.Thread(target=hammer) for _ in range(3)]
        for w in workers:
            w.start()
        try:
            for backend in ("annoy", "exact", "scann"):
                bundle.build(library, synth_library.catalog, backend=backend)
                _wait_for(
                    lambda b=backend: requests.get(live.url + "/api/health", timeout=30).json()["index_backend"] == b,
                    timeout=20,
                    what=f"the switch to {backend}",
                )
        finally:
            stop.set()
            for w in workers:
                w.join(timeout=30)
    assert statuses and set(statuses) == {200}


def test_serve_takes_the_upload_settings_from_its_config_file(synth_library, clip, tmp_path):
    library = tmp_path / "library"
    _copy_catalog(synth_library.catalog.path, library / "catalog.sqlite")
    config = tmp_path / "serve.toml"
    config.write_text("upload_analysed_s = 3.0\nanalyses = 1\nanalysis_queue = 0\n")
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = _cli("--config", str(config), "serve", "--port", "0", library=library, stdout=out, stderr=subprocess.STDOUT)
    try:
        line = _wait_for(
            lambda: next((ln for ln in log.read_text().splitlines() if ln.startswith("serving ")), None),
            timeout=60,
            what="the serve command to print its URL",
        )
        url = line.split(" at ", 1)[1].split()[0]
        reply = requests.post(url + "api/recommend", files={"file": ("clip.mp3", clip.data)}, data={"k": "3"}, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert reply.status_code == 200, reply.text[:300]
    assert reply.json()["query"]["truncated_to_s"] == 3.0  # the 8-second clip, analysed for the file's 3 s
