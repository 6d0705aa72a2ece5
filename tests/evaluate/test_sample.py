"""FMA metadata (three header rows) and stratified sampling of an FMA-format collection."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from soundalike import synth
from soundalike.audio import encode
from soundalike.catalog import OK, TrackRecord
from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.cli import main
from soundalike.labels import (
    LabelError,
    fma_audio_path,
    fma_track_id,
    labels_from_fma,
    read_fma_tracks,
)
from soundalike.sample import allocate, sample_fma, stratified_sample

# Uneven proportions, as in FMA: Rock and Electronic dominate, a few genres are rare.
GENRES = {"Rock": 61, "Electronic": 47, "Hip-Hop": 23, "Folk": 11, "Jazz": 5, "Blues": 3}


@pytest.fixture
def collection(tmp_path: Path, write_fma) -> tuple[Path, Path, dict[int, str]]:
    """tracks.csv for 150 labelled tracks (+10 without genre_top); audio files for all but 12."""
    rng = np.random.default_rng(3)
    ids = sorted(rng.choice(np.arange(2, 160_000), size=160, replace=False).tolist())
    genres = [g for g, n in GENRES.items() for _ in range(n)] + [""] * 10
    rng.shuffle(genres)
    rows = {tid: {"track.genre_top": g, "track.title": f"Title {tid}", "set.subset": "large"} for tid, g in zip(ids, genres, strict=True)}
    meta = write_fma(tmp_path / "tracks.csv", rows)
    audio = tmp_path / "fma_large"
    missing = set(ids[::13])  # 13 tracks whose audio was never downloaded
    for tid in ids:
        if tid not in missing:
            f = fma_audio_path(audio, tid)
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"ID3")  # sampling only checks that the file exists
    available = {tid: g for tid, g in zip(ids, genres, strict=True) if g and tid not in missing}
    return meta, audio, available


def test_fma_tracks_csv_with_three_header_rows_is_read(collection) -> None:
    meta, _, available = collection
    lines = meta.read_text().splitlines()
    assert lines[0].startswith(",album,album,") and lines[1].startswith(",comments,date_created,")
    assert lines[2].startswith("track_id,,,")
    genres = read_fma_tracks(meta)
    assert len(genres) == 150  # the 10 tracks without genre_top are left out
    assert all(genres[tid] == g for tid, g in available.items())
    some = next(iter(available))
    assert read_fma_tracks(meta, column="title")[some] == f"Title {some}"  # track.title, not album.title
    assert set(read_fma_tracks(meta, column="set.subset").values()) == {"large"}


def test_fma_header_problems_are_named(tmp_path: Path, write_fma) -> None:
    plain = tmp_path / "plain.csv"
    plain.write_text("track_id,genre_top\n2,Hip-Hop\n")
    with pytest.raises(LabelError, match="not an FMA tracks.csv: expected three header rows"):
        read_fma_tracks(plain)
    meta = write_fma(tmp_path / "tracks.csv", {2: {"track.genre_top": "Hip-Hop"}})
    with pytest.raises(LabelError, match="no column 'mood'"):
        read_fma_tracks(meta, column="mood")
    with pytest.raises(LabelError, match="'id' is ambiguous; use one of album.id, artist.id"):
        read_fma_tracks(meta, column="id")


def test_fma_labels_are_keyed_by_the_track_id_in_the_file_name(tmp_path: Path, write_fma) -> None:
    assert fma_track_id("/x/fma_large/000/000123.mp3") == 123 and fma_track_id("/x/song.mp3") is None
    assert fma_audio_path("/x", 123) == Path("/x/000/000123.mp3")
    assert fma_audio_path("/x", 155066) == Path("/x/155/155066.mp3")
    meta = write_fma(tmp_path / "tracks.csv", {2: {"track.genre_top": "Hip-Hop"}, 123: {"track.genre_top": "Rock"}})
    catalog = SQLiteCatalog(tmp_path / "catalog.sqlite")
    catalog.write(
        [
            TrackRecord(path=p, content_hash=f"{i:032x}", size=1, mtime=1.0, status=OK, duration=30.0, feature_version=1,
                        vector=np.zeros(4, np.float32))
            for i, p in enumerate(["/m/000/000002.mp3", "/m/000/000123.mp3", "/m/000/000999.mp3", "/m/cover.mp3"])
        ]
    )  # fmt: skip
    labels = labels_from_fma(meta, catalog)
    by_path = {catalog.get(tid).path: label for tid, label in labels.by_track.items()}
    assert by_path == {"/m/000/000002.mp3": "Hip-Hop", "/m/000/000123.mp3": "Rock"}
    assert labels.unmatched == ["999"] and labels.unlabelled == 2


def test_allocation_is_within_one_track_of_the_proportional_share() -> None:
    for n in (1, 7, 20, 50, 149, 150):
        got = allocate(GENRES, n)
        assert sum(got.values()) == n
        total = sum(GENRES.values())
        for genre, count in got.items():
            assert abs(count - n * GENRES[genre] / total) < 1 and count <= GENRES[genre]


def test_sample_preserves_label_proportions_within_one_track(collection) -> None:
    meta, audio, available = collection
    drawn = sample_fma(meta, audio, 40, seed=0)
    population = Counter(available.values())
    assert drawn.population == dict(sorted(population.items()))
    assert drawn.missing_audio == 150 - len(available)
    total = sum(population.values())
    counts = Counter(drawn.labels.values())
    assert sum(counts.values()) == 40 and len(drawn.paths) == 40
    for genre, whole in population.items():
        assert abs(counts.get(genre, 0) - 40 * whole / total) <= 1, genre
    assert all(p.is_file() and fma_track_id(p) in available for p in drawn.paths)


def test_sample_is_reproducible_with_a_seed(collection) -> None:
    meta, audio, _ = collection
    first = sample_fma(meta, audio, 40, seed=5).track_ids
    assert sample_fma(meta, audio, 40, seed=5).track_ids == first
    assert sample_fma(meta, audio, 40, seed=6).track_ids != first


def test_sampling_more_than_the_population_is_refused() -> None:
    with pytest.raises(LabelError, match="cannot draw 5 tracks: the population has 3"):
        stratified_sample({1: "a", 2: "a", 3: "b", 4: "b"}, 5, exists=lambda tid: tid != 4)


def test_sample_command_writes_a_list_that_ingest_takes_exactly(tmp_path: Path, write_fma) -> None:
    # A small real collection: 9 short tracks in FMA layout, 3 genres with 5, 3 and 1 tracks.
    audio = tmp_path / "fma"
    plan = {10: "Rock", 11: "Rock", 12: "Rock", 13: "Rock", 1004: "Rock", 1005: "Jazz", 2006: "Jazz", 2007: "Jazz", 3008: "Folk"}
    for i, tid in enumerate(plan):
        path = fma_audio_path(audio, tid)
        path.parent.mkdir(parents=True, exist_ok=True)
        spec = synth.TrackSpec(instrument=synth.INSTRUMENTS[i % 4], groove="backbeat", key="C", duration=3.0, seed=i)
        encode(path, synth.render(spec), sample_rate=22050, bitrate="64k")
    meta = write_fma(tmp_path / "tracks.csv", {tid: {"track.genre_top": g} for tid, g in plan.items()})
    out = tmp_path / "list.txt"
    runner = CliRunner()
    result = runner.invoke(main, ["sample", "--fma-metadata", str(meta), "--audio-dir", str(audio), "--by", "genre_top",
                                  "--n", "5", "--out", str(out), "--seed", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    listed = [line for line in out.read_text().splitlines() if not line.startswith("#")]
    genres = Counter(plan[fma_track_id(p)] for p in listed)
    assert genres == {"Rock": 3, "Jazz": 2}  # quotas 2.78, 1.67, 0.56 by largest remainder
    assert "Rock" in result.output and f"wrote 5 of 9 paths to {out}" in result.output
    library = tmp_path / "library"
    result = runner.invoke(main, ["--library", str(library), "ingest", "--from-list", str(out), "-j", "1", "-q", "--no-index"])
    assert result.exit_code == 0, result.output
    catalog = SQLiteCatalog(library / "catalog.sqlite", create=False)
    assert sorted(t.path for t in catalog.tracks(status=None)) == sorted(listed)
    # and the sample is evaluated with labels read from the same tracks.csv, by track id
    result = runner.invoke(main, ["--library", str(library), "evaluate", "--fma-metadata", str(meta), "--excerpts", "0",
                                  "--report", str(tmp_path / "report"), "-q", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert metrics["labels"]["counts"] == {"Rock": 3, "Jazz": 2} and metrics["labels"]["unmatched"] == 0
    assert metrics["retrieval"]["queries"] == 5 and metrics["silhouette"]["k"] == 2


def test_sample_of_a_missing_audio_folder_is_one_line(tmp_path: Path, write_fma) -> None:
    meta = write_fma(tmp_path / "tracks.csv", {2: {"track.genre_top": "Rock"}})
    result = CliRunner().invoke(main, ["sample", "--fma-metadata", str(meta), "--audio-dir", str(tmp_path / "nope"), "--n", "1", "--out", str(tmp_path / "l.txt")])
    assert result.exit_code == 2 and "does not exist" in result.output
