"""The vector-index backends against the exact reference, on clustered synthetic vectors.

The data imitate normalised audio features: 30 gaussian cluster centres (genres, instruments) in a
12-dimensional latent space, mapped to 390 dimensions by a random linear map, plus independent
noise per dimension, then scaled to unit length; a few rows are all zero (tracks without a value).
Real features are strongly correlated (MFCC means, spectral centroid and loudness move together),
so they lie near a low-dimensional subspace and a negated query points at an existing opposite
region. With centres drawn independently in all 390 dimensions instead, every cluster is
orthogonal to every other and the "least similar" tracks are scattered evenly across all of them,
which no partitioning index can find without scanning most of the library.

Recall figures are recorded as junit properties and logged at INFO (``pytest -o log_cli=true``).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from soundalike.errors import IndexMismatchError
from soundalike.index import (
    BACKENDS,
    VectorIndex,
    build_index,
    default_params,
    load_index,
)
from soundalike.index.exact import exact_search

logger = logging.getLogger(__name__)

DIM = 390
ASPECT = slice(126, 252)  # one 126-dimensional family block
APPROXIMATE = ("scann", "annoy", "faiss")
KINDS = ("full", "aspect", "negated")
RECALL_TARGET = 0.95
SCORE_TOLERANCE = 1e-4
SEED = 20261122


def clustered(
    rng: np.random.Generator, n: int, *, dim: int = DIM, zero_rows: int = 0
) -> np.ndarray:
    """Unit rows around 30 cluster centres in a 12-d latent space; see the module docstring."""
    rank, centres = 12, 30
    mixing = rng.normal(size=(rank, dim)) / np.sqrt(rank)
    centre = rng.normal(size=(centres, rank))
    latent = centre[rng.integers(0, centres, n)] + 0.6 * rng.normal(size=(n, rank))
    x = latent @ mixing + 0.5 * rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[:zero_rows] = 0.0
    return x.astype(np.float32)


def make_queries(queries: np.ndarray, kind: str) -> np.ndarray:
    """Full queries, one aspect (all but a 126-d block zeroed), or negated (least similar)."""
    if kind == "full":
        return queries
    if kind == "aspect":
        masked = np.zeros_like(queries)
        masked[:, ASPECT] = queries[:, ASPECT]
        return masked
    return -queries


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each true top-k found."""
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


class Case:
    """A library, held-out queries and an index per backend, built once per library size."""

    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(SEED + n)
        both = clustered(rng, n + 200, zero_rows=3)
        self.vectors = np.ascontiguousarray(both[:n])
        self.queries = np.ascontiguousarray(both[n:][3:])  # the zero rows stay in the library
        self.indexes: dict[str, VectorIndex] = {}
        self.build_seconds: dict[str, float] = {}
        for backend in BACKENDS:
            started = time.perf_counter()
            self.indexes[backend] = build_index(backend, self.vectors)
            self.build_seconds[backend] = time.perf_counter() - started


@pytest.fixture(scope="module", params=[3000, 40], ids=lambda n: f"n{n}")
def case(request: pytest.FixtureRequest) -> Case:
    return Case(request.param)


@pytest.fixture
def small(rng: np.random.Generator) -> np.ndarray:
    return clustered(rng, 300)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", APPROXIMATE)
def test_recall_at_10_against_exact_is_at_least_095(
    case: Case, backend: str, kind: str, record_property: Any
) -> None:
    queries = make_queries(case.queries, kind)
    truth, _ = case.indexes["exact"].query(queries, 10)
    started = time.perf_counter()
    found, _ = case.indexes[backend].query(queries, 10)
    per_query_ms = (time.perf_counter() - started) / len(queries) * 1e3
    recall = recall_at(found, truth)
    record_property(f"recall_{backend}_{kind}_n{case.vectors.shape[0]}", round(recall, 4))
    logger.info(
        "%s n=%d %s: recall@10 %.3f, %.3f ms/query, build %.2f s",
        backend,
        case.vectors.shape[0],
        kind,
        recall,
        per_query_ms,
        case.build_seconds[backend],
    )
    assert recall >= RECALL_TARGET


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_scores_are_exact_dot_products_sorted_descending(
    case: Case, backend: str, kind: str
) -> None:
    queries = make_queries(case.queries, kind)
    positions, scores = case.indexes[backend].query(queries, 10)
    expected = np.einsum(
        "qd,qkd->qk", queries.astype(np.float64), case.vectors[positions].astype(np.float64)
    )
    assert positions.dtype == np.int64
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, expected, atol=SCORE_TOLERANCE, rtol=0)
    assert np.all(np.diff(scores, axis=1) <= 0)
    assert all(len(set(row)) == len(row) for row in positions)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_save_and_load_give_identical_results(case: Case, backend: str, tmp_path: Path) -> None:
    index = case.indexes[backend]
    index.save(tmp_path)
    np.save(tmp_path / "vectors.npy", case.vectors)
    params = json.loads(json.dumps(index.params))  # as the manifest stores them
    mapped = np.load(tmp_path / "vectors.npy", mmap_mode="r")
    loaded = load_index(backend, tmp_path, mapped, params)
    queries = np.concatenate([case.queries, -case.queries])
    before = index.query(queries, 10)
    after = loaded.query(queries, 10)
    assert (loaded.backend, loaded.dim, loaded.count) == (backend, index.dim, index.count)
    assert loaded.params == index.params
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_params_are_json_serialisable_and_follow_the_rule(case: Case, backend: str) -> None:
    index = case.indexes[backend]
    n, dim = case.vectors.shape
    assert json.loads(json.dumps(index.params)) == index.params
    assert index.params == default_params(backend, n, dim)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_one_query_gives_k_and_a_batch_gives_n_by_k(small: np.ndarray, backend: str) -> None:
    index = build_index(backend, small)
    one = index.query(small[0], 7)
    batch = index.query(small[:4], 7)
    assert one[0].shape == one[1].shape == (7,)
    assert batch[0].shape == batch[1].shape == (4, 7)
    assert one[0][0] == 0  # a stored row is its own best match
    np.testing.assert_array_equal(batch[0][0], one[0])


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_k_larger_than_the_library_returns_every_row(small: np.ndarray, backend: str) -> None:
    index = build_index(backend, small[:25])
    positions, scores = index.query(small[:3], 100)
    assert positions.shape == scores.shape == (3, 25)
    assert all(sorted(row) == list(range(25)) for row in positions)


@pytest.mark.parametrize("n", [1, 2, 5])
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_tiny_libraries_work(
    rng: np.random.Generator, backend: str, n: int, tmp_path: Path
) -> None:
    vectors = clustered(rng, n)
    index = build_index(backend, vectors)
    positions, scores = index.query(-vectors, 10)
    expected = np.argsort(-(-vectors @ vectors.T), axis=1, kind="stable")
    assert positions.shape == (n, n)
    np.testing.assert_array_equal(positions, expected)
    index.save(tmp_path)
    loaded = load_index(backend, tmp_path, vectors, index.params)
    np.testing.assert_array_equal(loaded.query(vectors, 3)[0], index.query(vectors, 3)[0])


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_all_zero_query_scores_zero(small: np.ndarray, backend: str) -> None:
    positions, scores = build_index(backend, small).query(np.zeros(DIM, np.float32), 5)
    assert positions.shape == (5,)
    np.testing.assert_array_equal(scores, np.zeros(5, np.float32))


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_query_of_wrong_dimension_is_refused(small: np.ndarray, backend: str) -> None:
    index = build_index(backend, small)
    with pytest.raises(ValueError, match=f"expected dim {DIM}, found 126"):
        index.query(small[:2, :126], 5)
    with pytest.raises(ValueError, match=f"expected dim {DIM}, found 391"):
        index.query(np.zeros(391, np.float32), 5)


@pytest.mark.parametrize("k", [0, -3])
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_non_positive_k_is_refused(small: np.ndarray, backend: str, k: int) -> None:
    with pytest.raises(ValueError, match="k must be a positive integer"):
        build_index(backend, small).query(small[0], k)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_empty_library_is_refused(backend: str) -> None:
    with pytest.raises(ValueError, match="cannot build an index of 0 vectors"):
        build_index(backend, np.zeros((0, DIM), np.float32))


def test_unknown_backend_is_refused_naming_the_allowed_ones(small: np.ndarray) -> None:
    with pytest.raises(ValueError, match="expected one of exact, scann, annoy, faiss"):
        build_index("hnswlib", small)
    with pytest.raises(ValueError, match="expected one of exact, scann, annoy, faiss"):
        default_params("hnswlib", 10, DIM)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_unknown_parameter_is_refused(small: np.ndarray, backend: str) -> None:
    with pytest.raises(ValueError, match="unknown .* index parameter.*num_trees"):
        build_index(backend, small, params={"num_trees": 3})


def test_scann_uses_overridden_query_parameters(rng: np.random.Generator) -> None:
    vectors = clustered(rng, 3000)
    index = build_index(
        "scann", vectors, params={"leaves_to_search": 30, "pre_reorder_num_neighbors": 300}
    )
    assert index.params["algorithm"] == "tree_ah"
    assert index.params["num_leaves"] == 30
    assert index.params["leaves_to_search"] == 30
    truth, _ = exact_search(vectors, -vectors[:50], 10)
    found, _ = index.query(-vectors[:50], 10)
    assert recall_at(found, truth) >= 0.99  # every leaf searched, 300 candidates re-scored


def test_scann_answers_exactly_when_the_searched_leaves_hold_fewer_than_k(
    rng: np.random.Generator,
) -> None:
    vectors = clustered(rng, 3000)
    index = build_index("scann", vectors, params={"leaves_to_search": 1})
    truth, truth_scores = exact_search(vectors, vectors[:5], 1000)
    found, scores = index.query(vectors[:5], 1000)  # one leaf holds ~100 rows
    assert found.shape == (5, 1000)
    np.testing.assert_allclose(scores, truth_scores, atol=SCORE_TOLERANCE)
    assert recall_at(found, truth) == 1.0


def test_scann_tree_falls_back_to_brute_force_below_256_vectors(small: np.ndarray) -> None:
    index = build_index("scann", small[:100], params={"algorithm": "tree_ah"})
    assert index.params == {"algorithm": "brute_force"}


def test_annoy_fixed_search_k_is_used(small: np.ndarray) -> None:
    index = build_index("annoy", small, params={"search_k": 100_000})
    truth, _ = exact_search(small, -small[:20], 10)
    assert index.params["search_k"] == 100_000
    assert recall_at(index.query(-small[:20], 10)[0], truth) == 1.0


def test_faiss_searches_a_batch_on_two_threads_and_answers_as_row_by_row(rng: np.random.Generator) -> None:
    import os

    from soundalike.index import faiss as faiss_backend

    data = clustered(rng, 6000, dim=88)
    index = build_index("faiss", data, params={"algorithm": "ivf_pq4", "pq_dims": 1})
    queries = data[:24] + 0.05 * rng.normal(size=(24, 88)).astype(np.float32)
    openmp = faiss_backend._faiss()
    batch = index.query(queries, 20)
    assert openmp.omp_get_max_threads() == min(faiss_backend.BATCH_THREADS, os.cpu_count() or 1)
    rows = [index.query(q, 20) for q in queries]
    assert openmp.omp_get_max_threads() == index.params["threads"] == 1
    np.testing.assert_array_equal(batch[0], np.stack([r[0] for r in rows]))
    np.testing.assert_allclose(batch[1], np.stack([r[1] for r in rows]), atol=1e-6)


def test_exact_search_in_small_blocks_matches_one_block(small: np.ndarray) -> None:
    queries = np.concatenate([small[:37], -small[:37]])
    one = exact_search(small, queries, 12, query_chunk=1000, block_rows=1000)
    blocked = exact_search(small, queries, 12, query_chunk=5, block_rows=7)
    np.testing.assert_array_equal(blocked[0], one[0])
    np.testing.assert_allclose(blocked[1], one[1], atol=1e-6)  # BLAS sums differ by block shape


@pytest.mark.parametrize("backend", APPROXIMATE)
def test_loading_against_other_vectors_is_refused(
    small: np.ndarray, backend: str, tmp_path: Path
) -> None:
    index = build_index(backend, small)
    index.save(tmp_path)
    with pytest.raises(IndexMismatchError, match="expected 299 vectors, found 300"):
        load_index(backend, tmp_path, small[:299], index.params)


@pytest.mark.parametrize("backend", APPROXIMATE)
def test_loading_from_an_empty_folder_is_refused(
    small: np.ndarray, backend: str, tmp_path: Path
) -> None:
    with pytest.raises(IndexMismatchError, match="missing"):
        load_index(backend, tmp_path, small, default_params(backend, *small.shape))


def test_scann_build_parameters_are_checked_on_load(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    vectors = clustered(rng, 3000)
    index = build_index("scann", vectors)
    index.save(tmp_path)
    with pytest.raises(IndexMismatchError, match="num_leaves expected 40, found 30"):
        load_index("scann", tmp_path, vectors, {**index.params, "num_leaves": 40})
    relaxed = load_index("scann", tmp_path, vectors, {"leaves_to_search": 3})
    assert relaxed.params["num_leaves"] == 30
    assert relaxed.params["leaves_to_search"] == 3


def test_importing_the_package_does_not_import_scann_or_annoy() -> None:
    code = "import sys, soundalike.index; print(sorted({'scann', 'annoy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_scann_logs_nothing_to_stderr(tmp_path: Path) -> None:
    code = (
        "import numpy as np; from soundalike.index import build_index; "
        "v = np.random.default_rng(0).normal(size=(3000, 64)).astype('float32'); "
        "v /= np.linalg.norm(v, axis=1, keepdims=True); build_index('scann', v).query(v[:3], 5)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr == ""
