"""Evaluation on the synthetic library with known labels: retrieval quality, silhouette, clips, report.

Figures measured on the session's synthetic library (40 tracks, 4 instruments × 5 grooves × 2 keys,
20 s each), labels = instrument (chance P@10 = 9/39 = 0.231): P@10 0.68, mAP 0.81 for ``all``;
timbre alone 0.89; rhythm alone 0.23 (the groove, not the instrument, drives rhythm); silhouette of
k-means (k = 4) about 0.2; 8 excerpts of 10 s at 30 dB SNR as 96 kbit/s MP3 all found first. The
assertions leave a wide margin below those figures and well above chance.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from soundalike import evaluate as ev
from soundalike.cli import main
from soundalike.labels import LabelError, labels_from_csv
from soundalike.windows import WINDOW_WEIGHT, window_similarities

CHANCE_P10 = 9 / 39


def write_labels(path: Path, synth_library, column: str = "instrument") -> Path:
    """A path,label CSV from the synthetic library's ground truth (paths relative to the CSV's folder)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        for file, spec in synth_library.tracks:
            writer.writerow([os.path.relpath(file, path.parent), getattr(spec, column)])
    return path


@pytest.fixture(scope="module")
def evaluated(synth_library, library_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    """``soundalike evaluate`` run once on the synthetic library, with instrument labels."""
    labels = write_labels(tmp_path_factory.mktemp("labels") / "instrument.csv", synth_library)
    report = tmp_path_factory.mktemp("report") / "out"
    result = CliRunner().invoke(
        main,
        ["--library", str(library_copy), "evaluate", "--labels", str(labels), "--report", str(report),
         "--excerpts", "8", "--queries", "40", "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return report, json.loads((report / "metrics.json").read_text()), result.output


def test_the_summary_says_how_the_aspects_are_fused(evaluated) -> None:
    _, _, out = evaluated
    fusion = next(line for line in out.splitlines() if "fusion:" in line)
    assert "all = 0.8 × families [" in fusion and "style 3.33 (40%)" in fusion and "+ 0.2 × windows" in fusion


def test_precision_at_10_is_well_above_chance(evaluated) -> None:
    _, m, out = evaluated
    r = m["retrieval"]
    assert r["k"] == 10 and r["queries"] == 40 and r["singletons"] == 0
    assert r["chance_precision"] == pytest.approx(CHANCE_P10, abs=1e-9)
    overall = r["aspects"]["all"]
    assert overall["precision_at_k"] >= 0.5  # measured 0.68
    assert overall["map"] >= 0.6  # measured 0.81
    assert r["aspects"]["timbre"]["precision_at_k"] >= 0.75  # measured 0.89: instrument is timbre
    assert f"P@10 {overall['precision_at_k']:.3f}" in out


def test_silhouette_uses_one_cluster_per_label(evaluated) -> None:
    _, m, out = evaluated
    s = m["silhouette"]
    assert s["k"] == 4 and s["chosen_by"] == "labels"
    assert -1.0 <= s["score"] <= 1.0 and s["score"] > 0.05  # measured about 0.2
    assert s["by_k"]["4"] == pytest.approx(s["score"], abs=1e-3)
    assert s["adjusted_rand"] > 0.2  # measured 0.64: clusters follow the instruments
    assert "silhouette" in out


def test_excerpts_of_library_tracks_find_their_source(evaluated) -> None:
    _, m, _ = evaluated
    c = m["clips"]
    assert c["excerpts"] == 8 and c["skipped"] == []
    assert (c["excerpt_seconds"], c["snr_db"], c["bitrate"]) == (10.0, 30.0, "96k")
    assert c["top1"] >= 0.75 and c["top10"] >= c["top1"]


def test_metrics_json_follows_the_schema(evaluated) -> None:
    _, m, _ = evaluated
    assert m["schema"] == ev.METRICS_SCHEMA
    assert set(m) == {
        "schema", "generated_at", "tracks", "k", "options", "labels", "silhouette", "retrieval", "clips", "index", "comparison",
    }  # fmt: skip
    assert m["comparison"] is None  # no --baseline
    assert m["tracks"] == 40 and m["k"] == 10
    assert set(m["labels"]) == {"source", "labelled", "unlabelled", "unmatched", "counts"}
    assert m["labels"]["counts"] == {"organ": 10, "pad": 10, "pluck": 10, "square": 10}
    assert set(m["silhouette"]) == {"score", "k", "chosen_by", "by_k", "label_silhouette", "adjusted_rand"}
    r = m["retrieval"]
    assert set(r) == {
        "k", "queries", "singletons", "chance_precision", "chance_by_label", "aspects", "precision_interval",
        "map_interval", "per_query",
    }  # fmt: skip
    # Each query's own scores, by path, average to the overall figures; the intervals hold them.
    per_query = r["per_query"]
    assert len(per_query["paths"]) == len(set(per_query["paths"])) == 40
    assert np.mean(per_query["precision_at_k"]) == pytest.approx(r["aspects"]["all"]["precision_at_k"], abs=1e-9)
    assert np.mean(per_query["average_precision"]) == pytest.approx(r["aspects"]["all"]["map"], abs=1e-9)
    for key, figure in (("precision_interval", "precision_at_k"), ("map_interval", "map")):
        interval = r[key]
        assert interval["level"] == 0.95
        assert interval["low"] < r["aspects"]["all"][figure] < interval["high"]
    assert list(r["aspects"]) == ["all", "timbre", "spectral", "rhythm", "harmony", "loudness", "style"]
    for aspect in r["aspects"].values():
        assert set(aspect) == {"precision_at_k", "map", "by_label"}
        assert set(aspect["by_label"]) == {"organ", "pad", "pluck", "square"}
        for v in aspect["by_label"].values():
            assert set(v) == {"queries", "precision_at_k", "map"} and v["queries"] == 10
            assert 0.0 <= v["precision_at_k"] <= 1.0 and 0.0 <= v["map"] <= 1.0
    assert set(m["clips"]) == {
        "excerpts", "excerpt_seconds", "snr_db", "bitrate", "start_fraction", "top1", "top10", "mrr",
        "seconds_per_query", "precision", "skipped", "misses",
    }  # fmt: skip
    print("excerpt recommendations P@10", m["clips"]["precision"])
    # The excerpts' other results are mostly tracks of their source's instrument (chance 9/39).
    assert 0.5 < m["clips"]["precision"] <= 1.0
    ix = m["index"]
    assert set(ix) == {
        "backend", "params", "k", "queries", "recall_at_k", "recall_least", "latency_ms", "exact_latency_ms",
        "recommend_latency_ms",
    }  # fmt: skip
    assert ix["queries"] == 40 and ix["recall_at_k"] >= 0.95
    for key in ("latency_ms", "exact_latency_ms", "recommend_latency_ms"):
        assert set(ix[key]) == {"p50", "p95", "mean"} and 0 < ix[key]["p50"] <= ix[key]["p95"]


def test_report_folder_has_markdown_and_readable_plots(evaluated, assert_png) -> None:
    report, m, _ = evaluated
    names = {"map.png", "silhouette.png", "precision_by_label.png", "precision_by_aspect.png", "recall_latency.png"}
    for name in names:
        assert_png(report / name)
    text = (report / "report.md").read_text()
    for name in names:
        assert f"]({name})" in text
    assert f"{m['retrieval']['aspects']['all']['precision_at_k']:.3f}" in text


def test_leave_one_out_matches_the_recommender_on_the_exact_index(synth_library, recommender, indexes) -> None:
    index = indexes["exact"]
    truth = {str(p): s.instrument for p, s in synth_library.tracks}
    labels = [truth[synth_library.catalog.get(int(i)).path] for i in index.ids]
    layout = index.track_norm.layout
    window = window_similarities(index, np.arange(index.count))  # `similar` blends the windows into `all`
    got = ev.retrieval_quality(
        index.vectors, labels, k=10, families=dict(layout.slices), window=window, window_weight=WINDOW_WEIGHT
    )
    by_id = dict(zip((int(i) for i in index.ids), labels, strict=True))
    for aspect in ("all", "rhythm"):
        precisions = []
        for track_id, label in by_id.items():
            recs = recommender.similar_to_track(track_id, k=10, aspect=aspect).results
            precisions.append(sum(by_id[r.track.id] == label for r in recs) / 10)
        assert got.aspects[aspect].precision_at_k == pytest.approx(np.mean(precisions), abs=1e-9)


def test_average_precision_is_one_when_labels_follow_the_vectors() -> None:
    x = np.array([[1, 0], [0.99, 0.14], [0, 1], [0.14, 0.99]], dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    got = ev.retrieval_quality(x, ["a", "a", "b", "b"], k=1)
    assert got.aspects["all"].precision_at_k == 1.0 and got.aspects["all"].map == 1.0
    flipped = ev.retrieval_quality(x, ["a", "b", "a", "b"], k=1)
    # rows 0 and 2 find their one relevant track third of three (AP 1/3), rows 1 and 3 second (AP 1/2)
    assert flipped.aspects["all"].precision_at_k == 0.0
    assert flipped.aspects["all"].map == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert flipped.aspects["all"].by_label["a"].map == pytest.approx((1 / 3 + 1 / 3) / 2)


def test_without_labels_k_means_picks_the_best_k(indexes) -> None:
    metrics, clusters = ev.silhouette_analysis(indexes["exact"].vectors, None)
    assert metrics.chosen_by == "best" and metrics.label_silhouette is None
    best = max(metrics.by_k.values())
    assert metrics.score == pytest.approx(best, abs=1e-3) and metrics.by_k[metrics.k] == pytest.approx(best)
    assert clusters is not None and len(set(clusters.tolist())) == metrics.k


def test_labels_csv_matches_tracks_ingested_from_another_place(synth_library, tmp_path: Path) -> None:
    # A labels file elsewhere, naming the files as "somewhere/<name>": matched by trailing components.
    other = tmp_path / "labels.csv"
    with open(other, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "instrument", "groove"])
        for file, spec in synth_library.tracks[:6]:
            writer.writerow([f"somewhere/{Path(file).name}", spec.instrument, spec.groove])
        writer.writerow(["somewhere/not-in-the-library.mp3", "organ", "waltz"])
    labels = labels_from_csv(other, synth_library.catalog, column="groove")
    assert len(labels.by_track) == 6 and labels.unmatched == ["somewhere/not-in-the-library.mp3"]
    assert labels.unlabelled == 34
    with pytest.raises(LabelError, match="no 'label' column; choose one of instrument, groove"):
        labels_from_csv(other, synth_library.catalog)


def test_expected_evaluate_errors_are_one_line(library_copy: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["--library", str(library_copy), "evaluate", "--label-tag", "genre", "--excerpts", "0", "-q"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: tag:genre: no catalog track got a label")
    assert "Traceback" not in result.output
    empty = tmp_path / "empty.csv"
    empty.write_text("file,label\n")
    result = runner.invoke(main, ["--library", str(library_copy), "evaluate", "--labels", str(empty), "-q"])
    assert result.exit_code == 1 and "expected a header row with a 'path' column" in result.output
    both = runner.invoke(main, ["--library", str(library_copy), "evaluate", "--labels", str(empty), "--label-tag", "genre"])
    assert both.exit_code == 2 and "at most one of" in both.output


def test_baseline_compares_the_same_queries(evaluated, synth_library, library_copy: Path, tmp_path: Path) -> None:
    # The same library evaluated again against the first run: every query is matched by path and
    # nothing moved, so the change is exactly 0 and the verdict says the runs cannot be told apart.
    report, m, _ = evaluated
    baseline = tmp_path / "before.json"
    baseline.write_text((report / "metrics.json").read_text())
    labels = write_labels(tmp_path / "instrument.csv", synth_library)
    result = CliRunner().invoke(
        main,
        ["--library", str(library_copy), "evaluate", "--labels", str(labels), "--report", str(tmp_path / "again"),
         "--excerpts", "0", "--queries", "10", "--baseline", str(baseline), "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    c = json.loads((tmp_path / "again" / "metrics.json").read_text())["comparison"]
    assert (c["queries"], c["only_here"], c["only_there"], c["k"]) == (40, 0, 0, 10)
    assert c["precision_delta"] == 0.0 and c["map_delta"] == 0.0 and (c["better"], c["worse"]) == (0, 0)
    assert c["precision_interval"] == {"low": 0.0, "high": 0.0, "level": 0.95}
    assert c["verdict"] == "indistinguishable" and c["baseline"] == str(baseline)
    assert f"against {baseline} (40 common queries): P@10 +0.000" in result.output
    assert "not distinguishable from the baseline" in result.output
    assert "## Against the baseline" in (tmp_path / "again" / "report.md").read_text()


def test_a_baseline_must_be_comparable(evaluated, library_copy: Path, tmp_path: Path) -> None:
    report, m, _ = evaluated
    runner = CliRunner()

    def run(*extra: str) -> str:
        result = runner.invoke(main, ["--library", str(library_copy), "evaluate", "--excerpts", "0", "-q", *extra])
        assert result.exit_code != 0 and "Traceback" not in result.output
        return result.output

    assert "does not exist" in run("--baseline", str(tmp_path / "missing.json"))
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    assert "is not a metrics.json" in run("--baseline", str(junk))
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**m, "retrieval": {**m["retrieval"], "per_query": None}}))
    assert "no per-query scores" in run("--baseline", str(old))
    assert "give -k 10 to compare" in run("--baseline", str(report / "metrics.json"), "-k", "5")
    assert "a comparison needs labels" in run("--baseline", str(report / "metrics.json"))
