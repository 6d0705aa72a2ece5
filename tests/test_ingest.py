"""Ingest: incremental, resumable, and never stopped by a bad file."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3

import numpy as np
import pytest

from soundalike import audio, synth
from soundalike.catalog import FAILED
from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.ingest import ProcessRunner, SerialRunner, ingest, walk


def _small_music(synth_library, folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    for p, _ in synth_library.tracks[:n]:
        shutil.copy(p, folder / p.name)
    return folder


def test_whole_library_is_analysed_without_failures(synth_library):
    s = synth_library.summary
    assert (s.found, s.analysed, len(s.failed)) == (40, 40, 0)
    assert synth_library.catalog.count() == 40
    assert synth_library.catalog.check() == []


def test_second_run_skips_every_unchanged_file(synth_library):
    again = ingest([synth_library.music], synth_library.catalog, runner=SerialRunner())
    assert (again.unchanged, again.analysed, again.reused) == (40, 0, 0)


def test_changed_file_is_analysed_again(synth_library, tmp_path):
    music = _small_music(synth_library, tmp_path / "m", 3)
    catalog = SQLiteCatalog(tmp_path / "c.sqlite")
    ingest([music], catalog)
    target = music / synth_library.tracks[0][0].name
    before = catalog.get_by_path(str(target))
    y = synth.render(synth.TrackSpec("pad", "waltz", "F", duration=6.0, seed=5))
    target.unlink()
    audio.encode(target.with_suffix(target.suffix), y, sample_rate=22050)
    again = ingest([music], catalog)
    assert (again.analysed, again.unchanged) == (1, 2)
    after = catalog.get_by_path(str(target))
    assert after.content_hash != before.content_hash
    assert catalog.count() == 3


def test_copied_file_reuses_the_analysis(synth_library, tmp_path):
    music = _small_music(synth_library, tmp_path / "m", 2)
    catalog = SQLiteCatalog(tmp_path / "c.sqlite")
    ingest([music], catalog)
    first = music / synth_library.tracks[0][0].name
    shutil.copy(first, music / f"copy{first.suffix}")
    again = ingest([music], catalog)
    assert (again.reused, again.analysed) == (1, 0)
    a, b = catalog.get_by_path(str(first)), catalog.get_by_path(str(music / f"copy{first.suffix}"))
    np.testing.assert_array_equal(catalog.vectors([a.id]), catalog.vectors([b.id]))


def test_prune_drops_vanished_files_only_under_the_given_folder(synth_library, tmp_path):
    music = _small_music(synth_library, tmp_path / "m", 3)
    other = _small_music(synth_library, tmp_path / "other", 1)
    catalog = SQLiteCatalog(tmp_path / "c.sqlite")
    ingest([music, other], catalog)
    gone = music / synth_library.tracks[1][0].name
    gone.unlink()
    (other / synth_library.tracks[0][0].name).unlink()
    summary = ingest([music], catalog, prune=True)
    assert summary.pruned == 1
    assert catalog.get_by_path(str(gone)) is None
    assert catalog.count() == 3  # two left in music, one (vanished) kept in the folder not named


def test_bad_files_are_reported_and_the_batch_goes_on(synth_library, tmp_path):
    music = _small_music(synth_library, tmp_path / "m", 2)
    (music / "empty.mp3").write_bytes(b"")
    (music / "readme.ogg").write_text("not music at all\n" * 40)
    audio.encode(music / "silence.wav", np.zeros(22050 * 3, dtype=np.float32), sample_rate=22050)
    good = audio.encode(music / "cut.wav", synth.render(synth.TrackSpec("organ", "backbeat", "C", duration=6.0)), sample_rate=22050)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 3])
    os.symlink(music / "does-not-exist.mp3", music / "broken-link.mp3")
    catalog = SQLiteCatalog(tmp_path / "c.sqlite")
    summary = ingest([music], catalog, runner=ProcessRunner(2))
    assert summary.analysed == 2
    reasons = {os.path.basename(p): r for p, r in summary.failed}
    assert set(reasons) == {"empty.mp3", "readme.ogg", "silence.wav", "cut.wav", "broken-link.mp3"}
    assert "empty" in reasons["empty.mp3"]
    assert "not a recognised audio file" in reasons["readme.ogg"] or "no audio stream" in reasons["readme.ogg"]
    assert "silent" in reasons["silence.wav"]
    assert "truncated" in reasons["cut.wav"]
    assert "broken link" in reasons["broken-link.mp3"]
    stored = {os.path.basename(t.path): t.error_reason for t in catalog.tracks(status=FAILED)}
    assert stored == {"empty.mp3": "empty", "readme.ogg": "not-audio", "silence.wav": "silent", "cut.wav": "truncated", "broken-link.mp3": "unreadable"}
    again = ingest([music], catalog)
    assert (again.unchanged, again.analysed, len(again.failed)) == (7, 0, 0)
    retried = ingest([music], catalog, retry_failed=True)
    assert len(retried.failed) == 5


def test_walk_picks_audio_files_and_skips_hidden_and_other_files(tmp_path):
    (tmp_path / "a.mp3").write_bytes(b"x")
    (tmp_path / "cover.jpg").write_bytes(b"x")
    (tmp_path / ".hidden.mp3").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.FLAC").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    found = [os.path.relpath(c.path, tmp_path) for c in walk([tmp_path, tmp_path / "notes.txt"])]
    assert found == ["a.mp3", os.path.join("sub", "b.FLAC"), "notes.txt"]


def test_killed_ingest_resumes_without_duplicates_or_losses(synth_library, tmp_path, ingest_until):
    music = tmp_path / "m"
    shutil.copytree(synth_library.music, music)
    library = tmp_path / "lib"
    db = library / "catalog.sqlite"
    proc, written = ingest_until(["--library", str(library), "ingest", str(music), "-j", "1", "-q", "--no-index"], db, 6)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 6 <= written < 40, f"the kill came too late to test anything ({written} written)"
    catalog = SQLiteCatalog(db)
    assert catalog.check() == []
    partial = catalog.count()
    assert partial < 40
    resumed = ingest([music], catalog, runner=SerialRunner())
    assert resumed.unchanged == partial
    assert resumed.analysed == 40 - partial
    assert catalog.count() == 40
    rows = sqlite3.connect(db).execute("SELECT COUNT(*), COUNT(DISTINCT path) FROM tracks").fetchone()
    assert rows == (40, 40)


@pytest.mark.parametrize("workers", [1, 2])
def test_process_runner_matches_serial_analysis(synth_library, tmp_path, workers):
    music = _small_music(synth_library, tmp_path / "m", 4)
    a = SQLiteCatalog(tmp_path / "a.sqlite")
    b = SQLiteCatalog(tmp_path / "b.sqlite")
    ingest([music], a, runner=SerialRunner())
    ingest([music], b, runner=ProcessRunner(workers))
    paths = sorted(str(p) for p in music.iterdir())
    va = a.vectors([a.get_by_path(p).id for p in paths])
    vb = b.vectors([b.get_by_path(p).id for p in paths])
    np.testing.assert_allclose(va, vb, rtol=1e-5, atol=1e-5)


def test_worker_processes_run_blas_on_one_thread_each():
    import threadpoolctl

    with ProcessRunner(2)._pool(1) as pool:
        pool.submit(exec, "import scipy.linalg").result()  # a BLAS loaded after start-up too
        info = pool.submit(threadpoolctl.threadpool_info).result()
    blas = [(i["internal_api"], i["num_threads"]) for i in info if i["user_api"] in ("blas", "openmp")]
    assert blas and all(n == 1 for _, n in blas), blas
