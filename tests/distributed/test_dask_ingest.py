"""Ingest on a real Dask cluster: the same catalog as a local ingest, and nothing lost when workers die."""

from __future__ import annotations

import os
import signal
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from soundalike.catalog import FAILED, OK
from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.distributed import ClusterError, DaskRunner, parse_address
from soundalike.features import FEATURE_VERSION
from soundalike.ingest import SerialRunner, ingest

from .conftest import copy_tracks


def assert_same_catalog(a, b):
    """Same paths, statuses, hashes, tags and errors; vectors and segments equal within float32 noise."""
    ta, tb = _tracks(a), _tracks(b)
    assert sorted(ta) == sorted(tb)
    for path, x in ta.items():
        y = tb[path]
        assert (x.status, x.content_hash, x.size, x.error_reason, x.error, x.title, x.duration) == (
            y.status, y.content_hash, y.size, y.error_reason, y.error, y.title, y.duration
        ), path
    ok = sorted(p for p, t in ta.items() if t.status == OK)
    va = a.vectors([ta[p].id for p in ok])
    vb = b.vectors([tb[p].id for p in ok])
    np.testing.assert_allclose(va, vb, rtol=1e-5, atol=1e-6)
    sa = {s.track_id: s for batch in a.iter_segments(FEATURE_VERSION) for s in batch}
    sb = {s.track_id: s for batch in b.iter_segments(FEATURE_VERSION) for s in batch}
    for p in ok:
        np.testing.assert_allclose(sa[ta[p].id].vectors, sb[tb[p].id].vectors, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(sa[ta[p].id].starts, sb[tb[p].id].starts)


def _tracks(catalog):
    return {t.path: t for t in catalog.tracks(status=None)}


def _with_bad_files(folder):
    (folder / "empty.mp3").write_bytes(b"")
    (folder / "notes.ogg").write_text("not music at all\n" * 40)
    return folder


def test_local_cluster_builds_the_same_catalog_as_a_local_ingest(cluster, synth_library, tmp_path):
    music = _with_bad_files(copy_tracks(synth_library, tmp_path / "music", 12))
    local = SQLiteCatalog(tmp_path / "local.sqlite")
    on_dask = SQLiteCatalog(tmp_path / "dask.sqlite")
    ingest([music], local, runner=SerialRunner())
    summary = ingest([music], on_dask, runner=cluster, batch_size=4)
    assert (summary.found, summary.analysed, len(summary.failed)) == (14, 12, 2)
    assert_same_catalog(local, on_dask)
    assert on_dask.check() == []


def test_shipped_bytes_give_the_same_catalog_as_shared_paths(cluster, synth_library, tmp_path):
    music = _with_bad_files(copy_tracks(synth_library, tmp_path / "music", 8, start=12))
    shared = SQLiteCatalog(tmp_path / "shared.sqlite")
    shipped = SQLiteCatalog(tmp_path / "shipped.sqlite")
    ingest([music], shared, runner=cluster)
    # A second client, connected to the running scheduler by address as `--dask tcp://…` does.
    with DaskRunner(cluster.client.scheduler.address, ship_bytes=True) as remote:
        summary = ingest([music], shipped, runner=remote)
    assert (summary.analysed, len(summary.failed)) == (8, 2)
    assert_same_catalog(shared, shipped)
    tagged = [t for t in shipped.tracks() if t.artist == "The Dask Tests"]
    assert len(tagged) >= 4, "tags read from the shipped bytes"


def test_killing_a_worker_mid_run_loses_nothing(cluster, synth_library, tmp_path):
    music = copy_tracks(synth_library, tmp_path / "music", 12, start=20)
    client = cluster.client
    pids = client.run(os.getpid)
    killed: list[tuple[str, int]] = []
    yielded: list[str] = []

    def suspicious() -> int:
        return client.run_on_scheduler(lambda dask_scheduler: sum(p.suspicious for p in dask_scheduler.task_prefixes.values()))

    before = suspicious()

    def progress(event: str, done: int, total: int) -> None:
        # Called by the driver after each record: once some have arrived, kill a worker that is busy.
        if event == "file" and done >= 3 and not killed:
            busy = [w for w, keys in client.processing().items() if keys and w in pids]
            assert busy, "no worker was analysing a file when the kill was due"
            killed.append((busy[0], pids[busy[0]]))
            os.kill(pids[busy[0]], signal.SIGKILL)

    catalog = SQLiteCatalog(tmp_path / "dask.sqlite")

    class Recording:
        def run(self, candidates, options):
            for record in cluster.run(candidates, options):
                yielded.append(record.path)
                yield record

    summary = ingest([music], catalog, runner=Recording(), batch_size=2, progress=progress)
    assert killed, "the run ended before a worker could be killed"
    assert suspicious() > before, "the killed worker was not running a file"
    assert (summary.analysed, summary.failed) == (12, [])
    assert Counter(yielded) == Counter(str(music / p.name) for p, _ in synth_library.tracks[20:32])
    assert catalog.count() == 12 and catalog.check() == []
    assert killed[0][1] not in client.run(os.getpid).values()


def test_a_file_that_kills_every_worker_is_recorded_as_failed(cluster, synth_library, tmp_path):
    # A real crash: 25 minutes of audio need about 1.6 GB to analyse; each worker has 800 MB, so
    # its nanny kills it whenever it tries. After two deaths the scheduler gives the file up.
    music = copy_tracks(synth_library, tmp_path / "music", 3, start=32)
    rate = 8000
    t = np.arange(rate * 60 * 25) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
    sf.write(music / "huge.wav", tone.astype(np.float32), rate, subtype="PCM_16")
    catalog = SQLiteCatalog(tmp_path / "dask.sqlite")
    summary = ingest([music], catalog, runner=cluster)
    assert summary.analysed == 3
    ((path, message),) = summary.failed
    assert path == str(music / "huge.wav")
    assert message.startswith("killed the worker 2 times")
    (failed,) = catalog.tracks(status=FAILED)
    assert (failed.path, failed.error_reason) == (path, "crash")


def test_addresses_are_read_as_local_clusters_or_schedulers():
    assert parse_address("local").local and parse_address("local").workers is None
    assert parse_address("local:3").workers == 3
    assert parse_address("tcp://10.0.0.5:8786").scheduler == "tcp://10.0.0.5:8786"
    with pytest.raises(ClusterError, match="local:N"):
        parse_address("local:0")


def test_an_unreachable_scheduler_is_one_clear_error():
    with pytest.raises(ClusterError, match=r"tcp://127\.0\.0\.1:9: cannot start or reach the cluster"):
        DaskRunner("tcp://127.0.0.1:9", connect_timeout_s=2).client  # noqa: B018
