"""A corpus of malformed inputs: each gets a named failure, the batch completes, memory stays bounded."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

from soundalike import audio, synth
from soundalike.catalog import FAILED, OK
from soundalike.catalog.sqlite import SQLiteCatalog

SR = 22050
PEAK_RSS_LIMIT_MB = 1500


def _music(seconds: float, seed: int = 0) -> np.ndarray:
    return synth.render(synth.TrackSpec("organ", "backbeat", "C", duration=seconds, seed=seed))


def _cut(src: Path, dst: Path, fraction: float | None = None, keep: int | None = None) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: keep if keep is not None else int(len(data) * fraction)])
    return dst


def build_corpus(folder: Path, rng: np.random.Generator) -> tuple[dict[str, str], list[str]]:
    """Write the malformed corpus.

    Returns ({file name: expected reason, alternatives split by "|"}, [names that must be analysed]).
    """
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "_sources"
    src.mkdir()
    y = _music(10.0)
    full = {ext: audio.encode(src / f"full.{ext}", y, sample_rate=SR) for ext in ("mp3", "ogg", "flac", "wav", "m4a", "opus")}
    expect: dict[str, str] = {}

    def bad(name: str, reason: str, data: bytes | None = None) -> Path:
        path = folder / name
        if data is not None:
            path.write_bytes(data)
        expect[name] = reason
        return path

    bad("zero.mp3", "empty", b"")
    for ext in ("mp3", "ogg", "flac", "wav", "m4a"):
        bad(f"random.{ext}", "not-audio|corrupt", rng.integers(0, 256, 40_000, dtype=np.uint8).tobytes())
    bad("text.mp3", "not-audio", b"Not music. " * 500)
    bad("image.flac", "not-audio", b"\x89PNG\r\n\x1a\n" + rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    # Truncated at different depths: inside the header, early, half-way.
    bad("cut-header.wav", "not-audio", full["wav"].read_bytes()[:30])
    bad("cut-header.flac", "not-audio", full["flac"].read_bytes()[:20])
    bad("cut-header.ogg", "not-audio", full["ogg"].read_bytes()[:40])
    _cut(full["wav"], bad("cut-half.wav", "truncated"), 0.5)
    _cut(full["flac"], bad("cut-half.flac", "truncated"), 0.5)
    _cut(full["m4a"], bad("cut-half.m4a", "not-audio|corrupt"), 0.5)
    _cut(full["mp3"], bad("cut-early.mp3", "too-short"), 0.05)
    _cut(full["ogg"], bad("cut-early.ogg", "too-short|not-audio"), 0.05)
    _cut(full["opus"], bad("cut-early.opus", "too-short|not-audio"), 0.05)
    # Valid headers, garbage payload.
    garbage = rng.integers(0, 256, 60_000, dtype=np.uint8).tobytes()
    bad("garbage.flac", "corrupt|truncated", full["flac"].read_bytes()[:8192] + garbage)
    bad("garbage.mp3", "corrupt|not-audio", full["mp3"].read_bytes()[:417] + garbage)
    bad("garbage.ogg", "corrupt|not-audio", full["ogg"].read_bytes()[:4000] + garbage)
    # Too short, silent, DC only, NaN samples.
    audio.encode(bad("short.wav", "too-short"), y[: int(0.3 * SR)], sample_rate=SR)
    audio.encode(bad("blip.mp3", "too-short"), y[: int(0.05 * SR)], sample_rate=SR)
    audio.encode(bad("silence.wav", "silent"), np.zeros(5 * SR, dtype=np.float32), sample_rate=SR)
    audio.encode(bad("silence.mp3", "silent"), np.zeros(5 * SR, dtype=np.float32), sample_rate=SR)
    sf.write(str(bad("dc.wav", "silent")), np.full(5 * SR, 0.7, dtype=np.float32), SR, subtype="FLOAT")
    nan = y[: 5 * SR].copy()
    nan[1000:2000] = np.nan
    sf.write(str(bad("nan.wav", "corrupt")), nan, SR, subtype="FLOAT")
    # Bombs: a tiny file whose header claims hours, and one that really decodes to hours.
    liar = bytearray(audio.encode(src / "liar.wav", y[: 2 * SR], sample_rate=SR).read_bytes())
    liar[4:8] = struct.pack("<I", 0x7FFF0000)
    pos = liar.find(b"data")
    liar[pos + 4 : pos + 8] = struct.pack("<I", 0x7FFE0000)
    bad("liar.wav", "too-long", bytes(liar))
    hours = np.zeros(8000 * 3600 * 2, dtype=np.int16)
    hours[::8000] = 1000  # clicks, so the file is not silent
    sf.write(str(bad("bomb.flac", "too-long")), hours, 8000, subtype="PCM_16")
    assert (folder / "bomb.flac").stat().st_size < 5_000_000  # 4 MB that decode to 635 MB at 22 kHz
    # File-system oddities.
    os.symlink(folder / "nowhere.mp3", bad("broken-link.mp3", "unreadable"))
    (folder / "folder.mp3").mkdir()  # a folder with an audio name: walked (empty), not a failure
    weird_bad = os.fsdecode(b"bad\nname-\xff\xfe.mp3")
    bad(weird_bad, "not-audio", b"nothing here" * 100)
    locked = bad("locked.mp3", "unreadable")
    shutil.copy(full["mp3"], locked)
    locked.chmod(0)
    # Odd but valid: these must be analysed.
    ok = []
    shutil.copy(full["flac"], folder / "flac-named.mp3")
    ok.append("flac-named.mp3")
    surround = np.repeat(_music(6.0, seed=3)[:, None], 8, axis=1) * np.linspace(0.2, 1, 8)
    sf.write(str(folder / "8ch-192k.wav"), np.repeat(surround, 192000 // SR + 1, axis=0)[: 6 * 192000], 192000, subtype="PCM_24")
    ok.append("8ch-192k.wav")
    weird_ok = os.fsdecode(b"good\nname-\xe9.ogg")
    shutil.copy(full["ogg"], folder / weird_ok)
    ok.append(weird_ok)
    shutil.rmtree(src)
    return expect, ok


def _as_ordinary_user(cmd: list[str]) -> list[str]:
    """Root reads anything; drop its override capabilities so a mode-000 file is unreadable to it too."""
    if os.geteuid() == 0 and shutil.which("setpriv"):
        return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *cmd]
    return cmd


def run_sampling_rss(cmd: list[str], *, timeout: float, interval: float = 0.01) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run ``cmd``; return its result and the largest RSS any process of its tree had, in bytes.

    Sampled every ``interval`` seconds, because ``ru_maxrss`` cannot tell: a process started by
    a fork and exec keeps its parent's high-water mark, so a child would report pytest's own peak.
    """
    peak = 0
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        root = psutil.Process(proc.pid)
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.extend(proc.communicate(timeout=timeout)))
        reader.start()
        while reader.is_alive():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                tree = []
            for p in tree:
                try:
                    peak = max(peak, p.memory_info().rss)
                except psutil.NoSuchProcess:
                    continue
            reader.join(interval)
    return subprocess.CompletedProcess(cmd, proc.returncode, *out), peak


def test_every_malformed_file_fails_by_name_and_the_batch_completes(tmp_path, rng):
    music, library = tmp_path / "music", tmp_path / "library"
    expect, ok = build_corpus(music, rng)
    assert len(expect) >= 30
    cmd = [sys.executable, "-m", "soundalike.cli", "--library", str(library), "ingest", str(music), "-j", "2", "-q", "--no-index"]
    proc, peak = run_sampling_rss(_as_ordinary_user(cmd), timeout=600)
    peak_mb = peak / (1 << 20)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    catalog = SQLiteCatalog(library / "catalog.sqlite")
    failed = {os.path.basename(t.path): t for t in catalog.tracks(status=FAILED)}
    analysed = {os.path.basename(t.path) for t in catalog.tracks(status=OK)}
    assert set(failed) == set(expect), f"unexpected: {set(failed) ^ set(expect)}"
    wrong = {n: (failed[n].error_reason, failed[n].error) for n, r in expect.items() if failed[n].error_reason not in r.split("|")}
    assert not wrong, "\n".join(f"{k}: {v}" for k, v in wrong.items())
    assert analysed == set(ok)
    # Every failure is listed on its own line, its name printable (newline escaped, bad bytes shown).
    assert proc.stdout.count("  failed: ") == len(expect)
    assert "bad\\nname-\ufffd\ufffd.mp3" in proc.stdout
    assert catalog.check() == []
    print(f"\n{len(expect)} malformed inputs, {len(ok)} odd-but-valid; peak RSS of any ingest process {peak_mb:.0f} MB (sampled)")
    assert peak_mb < PEAK_RSS_LIMIT_MB
