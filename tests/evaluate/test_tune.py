"""Tuning: the grid search, its Pareto front and choice, and the saved parameters reaching the index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from soundalike import evaluate as ev
from soundalike.cli import main
from soundalike.index import build_index, bundle, default_params

TARGET = 0.95
# Two builds with four query-time variants each, plus brute force: the machinery, not the default
# grid's ~100 points.
SMALL_GRID: list[ev.GridGroup] = [
    ({"algorithm": "brute_force"}, [{}]),
    *[
        (
            {"algorithm": "tree_ah", "num_leaves": leaves, "dimensions_per_block": 2},
            [
                {"leaves_to_search": s, "pre_reorder_num_neighbors": d, "pre_reorder_factor": 1}
                for s in (2, max(3, leaves // 3))
                for d in (20, 100)
            ],
        )
        for leaves in (30, 55)
    ],
]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def scann_result(vectors_3000: np.ndarray) -> ev.TuneResult:
    return ev.tune_vectors(vectors_3000, backend="scann", k=10, target=TARGET, queries=150, grid=SMALL_GRID)


def test_grid_search_measures_every_point_and_forces_the_tree(scann_result: ev.TuneResult) -> None:
    assert len(scann_result.points) == 1 + 2 * 4
    algorithms = [p.resolved["algorithm"] for p in scann_result.points]
    assert algorithms.count("brute_force") == 1 and algorithms.count("tree_ah") == 8
    brute = next(p for p in scann_result.points if p.resolved["algorithm"] == "brute_force")
    assert brute.recall == pytest.approx(1.0) and brute.recall_least == pytest.approx(1.0)
    for p in scann_result.points:
        assert 0.0 <= p.recall_least <= 1.0 and 0.0 <= p.recall <= 1.0 and p.qps > 0 and p.build_seconds >= 0
    # searching 2 of 55 leaves with 20 candidates must lose neighbours: the grid really varies the index
    shallow = next(
        p for p in scann_result.points
        if p.resolved.get("num_leaves") == 55 and p.resolved["leaves_to_search"] == 2 and p.resolved["pre_reorder_num_neighbors"] == 20
    )  # fmt: skip
    assert shallow.worst < TARGET


def test_pareto_front_holds_exactly_the_undominated_points(scann_result: ev.TuneResult) -> None:
    pts = scann_result.points

    def dominated(p: ev.TunePoint) -> bool:
        return any(q.worst >= p.worst and q.qps >= p.qps and (q.worst > p.worst or q.qps > p.qps) for q in pts)

    assert [p.pareto for p in pts] == [not dominated(p) for p in pts]
    assert any(p.pareto for p in pts)


def test_chosen_configuration_is_the_fastest_meeting_the_target(scann_result: ev.TuneResult) -> None:
    chosen = scann_result.chosen
    assert chosen is not None and chosen.worst >= TARGET
    assert chosen.qps == max(p.qps for p in scann_result.points if p.worst >= TARGET)
    assert chosen.pareto


def test_chosen_parameters_rebuild_an_index_with_the_same_recall(
    scann_result: ev.TuneResult, vectors_3000: np.ndarray
) -> None:
    chosen = scann_result.chosen
    assert chosen is not None
    rebuilt = build_index("scann", vectors_3000, params=chosen.params)
    assert {k: rebuilt.params[k] for k in chosen.params} == chosen.params
    again = ev.tune_vectors(vectors_3000, backend="scann", queries=150, grid=[(chosen.params, [{}])])
    assert again.points[0].worst >= TARGET


def test_no_configuration_meeting_the_target_chooses_nothing(vectors_3000: np.ndarray) -> None:
    shallow = [({"n_trees": 2}, [{"search_k": 10}])]
    result = ev.tune_vectors(vectors_3000, backend="annoy", queries=100, target=0.999, grid=shallow)
    assert result.chosen is None and result.points[0].worst < 0.999


def test_default_grid_has_brute_force_and_tree_points_from_256_vectors() -> None:
    small = ev.default_grid("scann", 200)
    assert small == [({"algorithm": "brute_force"}, [{}])]
    large = ev.default_grid("scann", 3000)
    builds = [b for b, _ in large]
    assert {"algorithm": "brute_force"} in builds and {} in builds  # the default rule is tree_ah at 3,000
    trees = [b for b in builds if b.get("algorithm") == "tree_ah"]
    assert {b["dimensions_per_block"] for b in trees} == {2, 4}
    assert all(b["num_leaves"] <= 3000 // 50 for b in trees)
    variants = next(v for b, v in large if b.get("algorithm") == "tree_ah")
    assert {v["pre_reorder_num_neighbors"] for v in variants} == {20, 50, 100, 200}
    annoy = ev.default_grid("annoy", 3000)
    assert {b.get("n_trees") for b, _ in annoy} == {None, 5, 10, 20, 50}
    with pytest.raises(ev.TuneError, match="nothing|no parameters"):
        ev.default_grid("exact", 3000)


def test_tune_on_a_real_library_saves_the_choice_and_the_rebuilt_index_uses_it(library_copy: Path, assert_png) -> None:
    lib = str(library_copy)
    code, out = run("--library", lib, "tune", "--backend", "annoy", "--target-recall", "0.95", "-q")
    assert code == 0, out
    assert "<- chosen" in out and "*" in out
    saved = json.loads((library_copy / "tuned.json").read_text())["annoy"]
    # On a small library every point reaches the target, so the fastest one wins by a timing margin:
    # a grid point (n_trees and search_k) or the default rule (saved as {}). Both are a real choice.
    assert set(saved) in ({"n_trees", "search_k"}, set())
    table = json.loads((library_copy / "tune-annoy.json").read_text())
    chosen = table["points"][table["chosen"]]
    assert chosen["params"] == saved and min(chosen["recall"], chosen["recall_least"]) >= 0.95
    assert chosen["qps"] == max(p["qps"] for p in table["points"] if min(p["recall"], p["recall_least"]) >= 0.95)
    assert_png(library_copy / "tune-annoy.png")

    code, out = run("--library", lib, "index", "--backend", "annoy")
    assert code == 0, out
    manifest = bundle.read_manifest(library_copy)
    assert manifest is not None and manifest.backend == "annoy"
    expected = saved or {
        key: value
        for key, value in default_params("annoy", manifest.count, manifest.dim).items()
        if key in ("n_trees", "search_k", "search_k_factor")
    }
    assert {k: manifest.params[k] for k in expected} == expected


def test_tune_scann_on_a_small_library_saves_brute_force(library_copy: Path) -> None:
    # the library may remember annoy from the test above, so both commands name scann
    code, out = run("--library", str(library_copy), "tune", "--backend", "scann", "-q")
    assert code == 0, out
    assert "too few for a ScaNN tree" in out
    tuned = json.loads((library_copy / "tuned.json").read_text())
    assert tuned["scann"] == {"algorithm": "brute_force"}
    assert "annoy" in tuned  # tuning one backend keeps the other's entry
    code, out = run("--library", str(library_copy), "index", "--backend", "scann")
    assert code == 0, out
    manifest = bundle.read_manifest(library_copy)
    assert manifest is not None and manifest.backend == "scann"
    assert manifest.params == {"algorithm": "brute_force"}


def test_tune_on_3000_tracks_saves_tree_parameters_that_the_next_build_uses(vector_library: Path) -> None:
    lib = str(vector_library)
    code, out = run("--library", lib, "tune", "--queries", "50", "-q")
    assert code == 0, out
    saved = json.loads((vector_library / "tuned.json").read_text())["scann"]
    table = json.loads((vector_library / "tune-scann.json").read_text())
    assert any(p["resolved"]["algorithm"] == "tree_ah" for p in table["points"])
    code, out = run("--library", lib, "index")
    assert code == 0, out
    manifest = bundle.read_manifest(vector_library)
    assert manifest is not None
    assert {k: manifest.params[k] for k in saved} == saved


def test_tuning_the_exact_index_is_refused_in_one_line(library_copy: Path) -> None:
    code, out = run("--library", str(library_copy), "tune", "--backend", "exact")
    assert code == 2 and "Traceback" not in out
