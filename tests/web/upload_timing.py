"""Measure the time from upload to results (not a test; run by hand).

Starts ``soundalike serve`` on a library, then uploads one file N times: through the JSON API
(``requests``) and through the upload page in headless Chromium (Playwright), from the click on
"Find what sounds like it" to the results page showing its recommendations, and to its picture.

    .venv/bin/python tests/web/upload_timing.py --library /tmp/devlib FILE [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _start(library: Path) -> tuple[subprocess.Popen[str], str, Path]:
    log = Path(tempfile.mkstemp(prefix="serve-", suffix=".log")[1])
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "soundalike.cli", "--library", str(library), "serve", "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "GLOG_minloglevel": "2", "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith("serving "):
                return proc, line.split(" at ", 1)[1].split()[0].rstrip("/"), log
        if proc.poll() is not None:
            raise SystemExit(f"serve exited: {log.read_text()}")
        time.sleep(0.1)
    raise SystemExit("serve did not start")


def _summary(name: str, values: list[float]) -> str:
    return f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} | {len(values)} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, required=True)
    parser.add_argument("file", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    data = args.file.read_bytes()
    proc, url, log = _start(args.library)
    try:
        health = requests.get(url + "/api/health", timeout=60).json()
        api: list[float] = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            r = requests.post(url + "/api/recommend", files={"file": (args.file.name, data)}, data={"k": "10"}, timeout=300)
            api.append(time.perf_counter() - t0)
            r.raise_for_status()
        duration = r.json()["query"]["duration"]
        page_times: list[float] = []
        picture_times: list[float] = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for _ in range(args.runs):
                page.goto(url + "/")
                page.set_input_files("#file", str(args.file))
                t0 = time.perf_counter()
                page.click("#submit")
                page.wait_for_selector("li.rec", timeout=300_000)
                page_times.append(time.perf_counter() - t0)
                page.wait_for_function(
                    "() => { const i = document.querySelector('img.picture'); return i.complete && i.naturalWidth > 0; }",
                    timeout=300_000,
                )
                picture_times.append(time.perf_counter() - t0)
            browser.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.unlink(missing_ok=True)
    print(f"library: {args.library} ({health['tracks']} tracks, {health['index_backend']} index)")
    print(f"file: {args.file} ({len(data) / 1e6:.2f} MB, {duration:.1f} s of audio); machine: {os.cpu_count()} CPUs")
    print("\n| seconds from upload to … | median | min | max | runs |\n|---|---|---|---|---|")
    print(_summary("JSON answer (POST /api/recommend)", api))
    print(_summary("results page with recommendations (browser)", page_times))
    print(_summary("… and its spectrogram picture (browser)", picture_times))


if __name__ == "__main__":
    main()
