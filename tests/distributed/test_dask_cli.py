"""``soundalike ingest --dask``: from the command line, and killed and resumed like a local ingest."""

from __future__ import annotations

import signal
import sqlite3

import psutil
from click.testing import CliRunner

from mongo_stand_in import StandInCatalog
from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.cli import main
from soundalike.ingest import ingest

from .conftest import copy_tracks


def test_cli_ingests_on_a_local_cluster_into_the_mongodb_stand_in(synth_library, tmp_path):
    music = copy_tracks(synth_library, tmp_path / "music", 4)
    uri = "mongomock://dask-cli/library"  # mongomock: an in-process stand-in for a MongoDB server
    result = CliRunner().invoke(
        main,
        ["--library", str(tmp_path / "lib"), "ingest", str(music), "--dask", "local:2", "--ship-bytes", "--catalog", uri, "-q", "--no-index"],
    )
    assert result.exit_code == 0, result.output
    assert "analysed 4, unchanged 0, reused 0, failed 0" in result.output
    catalog = StandInCatalog(uri, create=False)
    assert catalog.count() == 4 and catalog.check() == []
    assert {t.path for t in catalog.tracks()} == {str(p) for p in music.iterdir()}


def test_ship_bytes_without_dask_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["--library", str(tmp_path / "lib"), "ingest", str(tmp_path), "--ship-bytes"])
    assert result.exit_code == 2
    assert "--ship-bytes needs --dask" in result.output


def _children(pid: int) -> list[psutil.Process]:
    """The process tree under ``pid``; psutil's walk raises when a child ends mid-walk, so walk again."""
    for _ in range(20):
        try:
            return psutil.Process(pid).children(recursive=True)
        except psutil.NoSuchProcess as exc:
            if exc.pid == pid:
                raise
    return psutil.Process(pid).children(recursive=True)


def test_a_killed_dask_ingest_resumes_without_duplicates_or_losses(cluster, synth_library, tmp_path, ingest_until):
    music = copy_tracks(synth_library, tmp_path / "music", 40)
    library = tmp_path / "lib"
    db = library / "catalog.sqlite"
    proc, written = ingest_until(["--library", str(library), "ingest", str(music), "--dask", "local:2", "-q", "--no-index"], db, 6)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 6 <= written < 40, f"the kill came too late to test anything ({written} written)"
    assert workers, "the local cluster had no worker processes"
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, f"worker processes outlived the killed client: {[p.pid for p in alive]}"

    catalog = SQLiteCatalog(db)
    assert catalog.check() == []
    partial = catalog.count()
    resumed = ingest([music], catalog, runner=cluster)
    assert (resumed.unchanged, resumed.analysed) == (partial, 40 - partial)
    rows = sqlite3.connect(db).execute("SELECT COUNT(*), COUNT(DISTINCT path) FROM tracks").fetchone()
    assert rows == (40, 40)


def test_the_catalog_uri_may_come_from_the_environment(synth_library, tmp_path):
    uri = "mongomock://env-catalog/library"  # mongomock: an in-process stand-in for a MongoDB server
    music = copy_tracks(synth_library, tmp_path / "music", 2)
    result = CliRunner(env={"SOUNDALIKE_CATALOG": uri}).invoke(
        main, ["--library", str(tmp_path / "lib"), "ingest", str(music), "-j", "1", "-q", "--no-index"]
    )
    assert result.exit_code == 0, result.output
    assert StandInCatalog(uri, create=False).count() == 2
    assert not (tmp_path / "lib" / "catalog.sqlite").exists()
