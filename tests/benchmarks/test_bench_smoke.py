"""Every benchmark runs in its tiniest configuration and fills its tables (no timing is asserted)."""

from __future__ import annotations

import math

import pytest

from benchmarks import analysis, common, endtoend, ingest, search


def _rendered(section: common.Section) -> str:
    text = common.render([section], {"date": "today", "cpu": "test"}, mode="smoke", seconds=1.0)
    for table in section.tables:
        assert table.rows, f"{table.title}: no rows"
        assert all(len(row) == len(table.columns) for row in table.rows)
        assert table.title in text
    return text


def test_analysis_times_every_stage_and_the_naive_implementation_matches(bench_cache):
    config = analysis.AnalysisConfig(clips=1, full_tracks=1, full_seconds=12.0, repeats=1, librosa_clips=1)
    section = analysis.run(bench_cache, config)
    _rendered(section)
    for files in ("clips", "full"):
        stages = section.raw[files]["stages"]
        assert set(stages) == {key for key, _ in analysis.STAGES}
        assert all(s["per_track"] > 0 for key, s in stages.items() if key != "resampling")  # a difference
        assert section.raw[files]["deviation"] <= 1.0  # the optimised features equal the naive ones
    assert section.raw["full"]["audio_seconds"] == pytest.approx(12.0, abs=0.1)
    assert [t.name for t in section.targets] == [
        "whole tracks: full analysis with the learned aspect ≥ 200× real time on one core",
        "whole tracks: full analysis without it (`--no-style`) ≥ 500× real time on one core",
        "whole tracks: full analysis without it within 3× of decode-only",
    ]


def test_ingest_analyses_the_whole_library_with_each_runner(bench_cache):
    section = ingest.run(bench_cache, ingest.IngestConfig(tracks=4, seconds=4.0, workers=(1, 2)))
    _rendered(section)
    runs = section.raw["runs"]
    assert set(runs) == {"serial", "1", "2"}
    assert all(r["tracks"] == 4 and r["failed"] == 0 for r in runs.values())
    assert len(section.tables[0].rows) == 3


def test_search_measures_every_backend_against_exact(bench_cache):
    config = search.SearchConfig(
        sizes=(2000,), queries=20, tune_queries=20, latency_queries=20, at_scale=2000, library_builds=(300,),
        real_clips=12, fresh_processes=False,
    )  # fmt: skip
    section = search.run(bench_cache, config)
    text = _rendered(section)
    results = {r["label"]: r for r in section.raw["results"]}
    assert set(results) == {"exact", "scann", "annoy"}
    assert results["exact"]["default"]["recall"] == 1.0
    for label in ("scann", "annoy"):
        for which in ("default", "tuned"):
            if which in results[label]:
                assert 0.0 <= results[label][which]["recall"] <= 1.0
                assert results[label][which]["qps"] > 0
    assert section.raw["scale"]["files"]["vectors.npy"] > 2000 * 389 * 4
    assert "100-million-track deployment" in text
    assert [m["tracks"] for m in section.raw["libraries"]] == [300]
    shapes = section.raw["shapes"]
    assert all(math.isfinite(v) for s in shapes.values() for v in s.values())


def test_end_to_end_answers_every_upload_over_http(bench_cache):
    config = endtoend.EndToEndConfig(
        tracks=300, sequential=2, clients=2, per_client=1, in_process=1, real_clips=12, fresh_processes=False
    )
    section = endtoend.run(bench_cache, config)
    _rendered(section)
    assert section.raw["library"]["tracks"] == 300
    assert [e for _, e in section.raw["sequential"]] == [None, None]
    assert [e for _, e in section.raw["concurrent"]] == [None, None]


def test_radio_times_radios_and_scores_smoothness_and_duplicates(bench_cache):
    from benchmarks import radio

    config = radio.RadioConfig(
        sizes=(2000,), radios=2, naive_radios=1, n=20, smooth_seeds=3, duplicates_tracks=600, real_clips=12,
        clips=10, fresh_processes=False,
    )  # fmt: skip
    section = radio.run(bench_cache, config)
    _rendered(section)
    (scale,) = section.raw["scale"]
    assert scale["n"] == 2000 and len(scale["radio"]) == 2 and len(scale["naive"]) == 1
    assert section.raw["duplicates_scale"]["n"] == 600
    assert 0.0 <= section.raw["duplicates_scale"]["precision"] <= 1.0
    assert [t.name for t in section.targets][:2] == [
        "50-track radio on 100k tracks ≤ 1 s p50 (one core)",
        "50-track radio on 1M tracks ≤ 3 s p50 (one core)",
    ]


def test_scale_builds_serves_and_measures_recall_at_every_size(bench_cache, tmp_path):
    from benchmarks import scale

    section = scale.run(bench_cache, (600, 2500), work=tmp_path, clips=12)
    scale.run_anchors(bench_cache, (2500,), work=tmp_path, section=section, clips=12)
    text = _rendered(section)
    for n in ("600", "2500"):
        row = section.raw[n]
        assert row["build"]["segments"] == int(n) * scale.SEGMENTS_PER_TRACK
        assert 0.0 <= row["recall"]["tracks"] <= 1.0 and 0.0 <= row["recall"]["segments"] <= 1.0
        assert row["serve"]["p50"] > 0 and row["build"]["peak"] > 0
    assert set(section.raw["anchors-2500"]) == set(scale.ANCHORS)
    assert "The curve" in text and "Anchors" in text


def test_clips_times_clip_queries_and_every_track_as_a_candidate_gives_the_exact_ranking(bench_cache):
    from benchmarks import clips

    config = clips.ClipsConfig(sizes=(600,), timed=2, queries=10, candidates=((16, 20), (60, 20)), clips=12)
    section = clips.run(bench_cache, config)
    _rendered(section)
    size = section.raw["sizes"][0]
    assert len(size["query"]["total"]) == len(size["query"]["floor"]) == 2
    default, everything = size["recall"]["settings"]
    assert 0.0 <= default["recall"] <= 1.0
    assert everything["recall"] == 1.0  # 600 track candidates of 600: the path scores exactly as the brute force
    assert [t.name for t in section.targets] == [
        "10-s clip query p50 ≤ 150 ms (600 tracks, full file path)",
        "recall@10 of the window-set path ≥ 0.95 against exact scoring (600 tracks)",
        "recall@10 of the window-set path ≥ 0.95 against exact scoring (100k tracks)",
    ]


def test_tree_peak_counts_a_child_started_inside_the_block():
    import subprocess
    import sys
    import time

    from benchmarks.scale import tree_peak

    size = 300 * 2**20
    hold = f"import sys; b = b'x' * {size}; print('ready', flush=True); sys.stdin.read()"
    with tree_peak(rescan=0.2) as mem:
        before = mem["peak"]
        child = subprocess.Popen([sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            deadline = time.monotonic() + 30
            while mem["peak"] < before + size and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            child.communicate("")
    assert mem["peak"] >= before + size
