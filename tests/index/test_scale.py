"""Issue 15: the streamed build, compressed search vectors, faiss for large segment sets, serving from disk.

The catalogs here are real SQLite files filled with synthetic raw vectors (clustered like real
features: a low-rank latent space, see tests/index/test_backends.py), so the build reads them the
way it reads an ingested library.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from soundalike.catalog import OK, TrackRecord
from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.errors import IndexMismatchError
from soundalike.features import FEATURE_VERSION, segment_layout, track_layout
from soundalike.features.normalise import PRIOR_TRACKS, Normaliser, reference
from soundalike.index import build_index, bundle
from soundalike.index.exact import exact_search
from soundalike.index.storage import Int8Matrix

SEED = 20261215


def _raw(rng: np.random.Generator, n: int, dim: int, centres: np.ndarray, mixing: np.ndarray) -> np.ndarray:
    latent = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.normal(size=(n, mixing.shape[0]))
    return (3.0 + latent @ mixing + 0.5 * rng.normal(size=(n, dim))).astype(np.float32)


def fill_catalog(path: Path, tracks: int, *, segments: int = 6, seed: int = SEED) -> SQLiteCatalog:
    """A SQLite catalog of ``tracks`` analysed tracks with ``segments`` windows each (2.5 s apart)."""
    rng = np.random.default_rng(seed)
    tdim, sdim = track_layout().dim, segment_layout().dim
    t_mix, s_mix = rng.normal(size=(12, tdim)), rng.normal(size=(8, sdim))
    t_centres, s_centres = rng.normal(size=(30, 12)), rng.normal(size=(40, 8))
    catalog = SQLiteCatalog(path)
    for start in range(0, tracks, 500):
        n = min(500, tracks - start)
        vectors = _raw(rng, n, tdim, t_centres, t_mix)
        segs = _raw(rng, n * segments, sdim, s_centres, s_mix).reshape(n, segments, sdim)
        catalog.write(
            [
                TrackRecord(
                    path=f"/music/{start + i:07d}.mp3", content_hash=f"h{start + i}", size=1, mtime=1.0, status=OK,
                    duration=2.5 * segments + 2.5, feature_version=FEATURE_VERSION, vector=vectors[i],
                    segments=segs[i], segment_starts=np.arange(segments, dtype=np.float32) * 2.5,
                )
                for i in range(n)
            ]
        )
    return catalog


def in_memory_reference(catalog: SQLiteCatalog) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What the build used to do: every raw vector in one matrix, normalised at once."""
    ids, raw = zip(*catalog.iter_vectors(FEATURE_VERSION), strict=True)
    tracks = np.concatenate(raw)
    segs = [s for batch in catalog.iter_segments(FEATURE_VERSION) for s in batch]
    seg_matrix = np.concatenate([s.vectors for s in segs])
    t_norm = Normaliser.fit([tracks], track_layout(), {}, prior=reference("track"))
    seg_prior = dataclasses.replace(reference("segment"), pseudo_count=PRIOR_TRACKS * len(seg_matrix) / len(tracks))
    s_norm = Normaliser.fit([seg_matrix], segment_layout(), {}, prior=seg_prior)
    return np.concatenate(ids), t_norm.transform(tracks), s_norm.transform(seg_matrix), np.concatenate([s.starts for s in segs])


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory: pytest.TempPathFactory) -> SQLiteCatalog:
    return fill_catalog(tmp_path_factory.mktemp("small") / "catalog.sqlite", 300)


@pytest.fixture(scope="module")
def large_catalog(tmp_path_factory: pytest.TempPathFactory) -> SQLiteCatalog:
    """2,500 tracks × 40 windows: 100,000 segments, enough for int8 storage and a faiss tree."""
    return fill_catalog(tmp_path_factory.mktemp("large") / "catalog.sqlite", 2_500, segments=40)


def test_a_build_streamed_in_small_chunks_answers_exactly_like_the_in_memory_build(
    small_catalog: SQLiteCatalog, tmp_path: Path
) -> None:
    streamed = bundle.build(tmp_path, small_catalog, backend="exact", chunk=7)
    ids, vectors, seg_vectors, starts = in_memory_reference(small_catalog)
    np.testing.assert_array_equal(np.asarray(streamed.ids), ids)
    np.testing.assert_allclose(np.asarray(streamed.vectors), vectors, atol=1e-6)
    np.testing.assert_allclose(np.asarray(streamed.seg_vectors), seg_vectors, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(streamed.seg_starts), starts)
    queries = vectors[:40]
    pos, score = streamed.tracks.query(queries, 10)
    ref_pos, ref_score = exact_search(vectors, queries, 10)
    np.testing.assert_array_equal(pos, ref_pos)
    np.testing.assert_allclose(score, ref_score, atol=1e-5)
    seg_pos, _ = streamed.segments.query(seg_vectors[:40], 10)
    np.testing.assert_array_equal(seg_pos, exact_search(seg_vectors, seg_vectors[:40], 10)[0])


def test_the_segment_offsets_rows_and_starts_of_a_streamed_build_agree(small_catalog: SQLiteCatalog, tmp_path: Path) -> None:
    index = bundle.build(tmp_path, small_catalog, backend="exact", chunk=7)
    assert index.seg_offsets[-1] == len(index.seg_vectors) == 300 * 6
    for row in (0, 150, 299):
        lo, hi = int(index.seg_offsets[row]), int(index.seg_offsets[row + 1])
        assert set(np.asarray(index.seg_rows[lo:hi]).tolist()) == {row}
        np.testing.assert_array_equal(index.segments_of(row)[1], np.arange(6, dtype=np.float32) * 2.5)


def test_a_segment_stride_of_two_indexes_every_other_catalog_window(small_catalog: SQLiteCatalog, tmp_path: Path) -> None:
    index = bundle.build(tmp_path, small_catalog, backend="exact", segment_stride=2)
    assert index.manifest.segment_stride == 2
    assert len(index.seg_vectors) == 300 * 3
    np.testing.assert_array_equal(index.segments_of(7)[1], np.array([0.0, 5.0, 10.0], dtype=np.float32))


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth, strict=True)]))


@pytest.mark.parametrize(("storage", "fraction", "recall", "tolerance"), [("float16", 2, 0.99, 1e-3), ("int8", 4, 0.95, 0.02)])
def test_compact_storage_shrinks_the_search_vectors_and_keeps_exact_recall_at_10(
    large_catalog: SQLiteCatalog, tmp_path: Path, storage: str, fraction: int, recall: float, tolerance: float
) -> None:
    full = bundle.build(tmp_path / "f32", large_catalog, backend="exact", storage="float32")
    small = bundle.build(tmp_path / storage, large_catalog, backend="exact", storage=storage)
    assert small.manifest.storage == {"tracks": storage, "segments": storage}
    assert (small.directory / "seg_vectors.npy").stat().st_size * fraction < (full.directory / "seg_vectors.npy").stat().st_size + 4096
    rng = np.random.default_rng(SEED)
    for exact, compressed, rows in ((full.tracks, small.tracks, full.vectors), (full.segments, small.segments, full.seg_vectors)):
        queries = np.asarray(rows[np.sort(rng.choice(len(rows), 200, replace=False))])
        truth, truth_scores = exact.query(queries, 10)
        found, scores = compressed.query(queries, 10)
        assert _recall(found, truth) >= recall
        np.testing.assert_allclose(scores, truth_scores, atol=tolerance)


def test_int8_rows_read_back_within_half_a_step_of_float32(large_catalog: SQLiteCatalog, tmp_path: Path) -> None:
    full = bundle.build(tmp_path / "f32", large_catalog, backend="exact", storage="float32")
    small = bundle.build(tmp_path / "int8", large_catalog, backend="exact", storage="int8")
    assert isinstance(small.seg_vectors, Int8Matrix)
    error = np.abs(np.asarray(small.seg_vectors) - np.asarray(full.seg_vectors))
    assert (error <= small.seg_vectors.scales / 2 + 1e-7).all()


def test_a_faiss_segment_index_over_float16_rows_reaches_recall_at_10_of_0_95_against_float32_exact(
    large_catalog: SQLiteCatalog, tmp_path: Path
) -> None:
    full = bundle.build(tmp_path / "f32", large_catalog, backend="exact", storage="float32")
    index = bundle.build(tmp_path / "faiss", large_catalog, backend="scann", segment_backend="faiss", storage="float16")
    assert index.manifest.segment_backend == "faiss"
    assert index.manifest.segment_params["algorithm"] == "ivf_sq8"
    rng = np.random.default_rng(SEED)
    queries = np.asarray(full.seg_vectors[np.sort(rng.choice(len(full.seg_vectors), 300, replace=False))])
    queries = queries + 0.05 * rng.normal(size=queries.shape).astype(np.float32)  # a clip is never a stored window
    truth, _ = exact_search(np.asarray(full.seg_vectors), queries, 10)
    found, _ = index.segments.query(queries, 10)
    assert _recall(found, truth) >= 0.95


def test_a_large_faiss_segment_index_holds_fast_scan_codes_and_reaches_recall_at_10_of_0_95(
    large_catalog: SQLiteCatalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundle, "SEGMENT_FAST_SCAN_FROM", 50_000)  # the rule's 10 million, scaled to this catalog
    full = bundle.build(tmp_path / "f32", large_catalog, backend="exact", storage="float32")
    index = bundle.build(tmp_path / "faiss", large_catalog, backend="scann", segment_backend="faiss", storage="float16")
    assert index.manifest.segment_params["algorithm"] == "ivf_pq4"
    assert index.manifest.segment_params["pq_dims"] == 1
    rng = np.random.default_rng(SEED)
    queries = np.asarray(full.seg_vectors[np.sort(rng.choice(len(full.seg_vectors), 300, replace=False))])
    queries = queries + 0.05 * rng.normal(size=queries.shape).astype(np.float32)
    truth, _ = exact_search(np.asarray(full.seg_vectors), queries, 10)
    served = bundle.load(tmp_path / "faiss")
    found, _ = served.segments.query(queries, 10)
    assert _recall(found, truth) >= 0.95
    if Path("/proc/self/smaps").exists():  # served rows are read without readahead (see storage.advise_random)
        assert "rr" in _vm_flags(served.directory / "seg_vectors.npy")
        assert "rr" in _vm_flags(served.directory / "vectors.npy")


def test_a_faiss_track_index_saved_and_memory_mapped_answers_like_the_built_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(SEED)
    vectors = rng.normal(size=(5_000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    built = build_index("faiss", vectors)
    built.save(tmp_path)
    from soundalike.index import load_index

    loaded = load_index("faiss", tmp_path, vectors, built.params)
    a, sa = built.query(vectors[:20], 10)
    b, sb = loaded.query(vectors[:20], 10)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(sa, sb)


def test_auto_is_scann_below_the_track_size_rule_and_faiss_ivf_pq_from_it() -> None:
    at = bundle.TRACK_FAISS_FROM
    assert bundle.resolve_backend("auto", at - 1) == ("scann", None)
    rerank = {"pre_reorder_factor": 10}  # max(400, 10 k) candidates re-scored, not ivf_pq4's max(400, 40 k)
    assert bundle.resolve_backend("auto", at) == ("faiss", {"algorithm": "ivf_pq4", "nprobe": 32, **rerank})
    assert bundle.resolve_backend("auto", 1_000_000) == ("faiss", {"algorithm": "ivf_pq4", "nprobe": 34, **rerank})  # of 1,000 lists
    assert bundle.resolve_backend("annoy", 10 * at) == ("annoy", None)  # a named backend is kept at any size
    with pytest.raises(ValueError, match="expected one of auto, scann, annoy, exact, faiss"):
        bundle.resolve_backend("hnsw", 10)


def test_auto_builds_a_large_library_s_track_index_with_faiss_and_keeps_it_until_the_rule_says_otherwise(
    large_catalog: SQLiteCatalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundle, "TRACK_FAISS_FROM", 2_000)  # the rule's size, scaled to this catalog's 2,500 tracks
    index = bundle.build(tmp_path, large_catalog)
    assert index.manifest.backend == "faiss" and index.backend == "faiss"
    assert (index.manifest.params["algorithm"], index.manifest.params["nprobe"]) == ("ivf_pq4", 25)  # every list of 25
    rng = np.random.default_rng(SEED)
    rows = np.asarray(index.vectors, dtype=np.float32)
    queries = rows[np.sort(rng.choice(len(rows), 200, replace=False))]
    queries = queries + 0.1 * rng.normal(size=queries.shape).astype(np.float32)
    loaded = bundle.load(tmp_path, backend="auto")
    assert loaded.tracks.params["pre_reorder_factor"] == 10
    for q in (queries, -queries):  # most and least similar
        truth, _ = exact_search(rows, q, 10)
        assert _recall(loaded.tracks.query(q, 10)[0], truth) >= 0.95
    truth, _ = exact_search(rows, queries, 160)  # the pool a clip query asks for: 1,600 candidates re-scored
    assert _recall(loaded.tracks.query(queries, 160)[0], truth) >= 0.95
    assert bundle.stale_reason(tmp_path, large_catalog, backend="auto") is None
    assert bundle.ensure(tmp_path, large_catalog)[1] is None  # the default choice: loaded, not rebuilt
    assert bundle.stale_reason(tmp_path, large_catalog, backend="scann") == "the backend changed (faiss → scann)"
    monkeypatch.setattr(bundle, "TRACK_FAISS_FROM", 2_501)
    assert bundle.stale_reason(tmp_path, large_catalog, backend="auto") == "the backend changed (faiss → scann)"
    with pytest.raises(IndexMismatchError, match="backend mismatch: expected scann, found faiss"):
        bundle.load(tmp_path, backend="auto")
    assert bundle.ensure(tmp_path, large_catalog)[0].backend == "scann"


SERVE = textwrap.dedent(
    """
    import sys
    import numpy as np
    from soundalike.index import bundle
    index = bundle.load(sys.argv[1])
    total = 0.0
    for start in range(0, len(index.seg_vectors), 65536):  # touch every page, as queries over time do
        total += float(np.asarray(index.seg_vectors[start:start + 65536]).sum())
    total += float(np.asarray(index.vectors[:]).sum()) + float(np.asarray(index.seg_rows).sum())
    index.tracks.query(np.asarray(index.vectors[0]), 5)
    index.segments.query(np.asarray(index.seg_vectors[:5]), 5)
    print("ready", flush=True)
    sys.stdin.readline()
    """
)


def _smaps(pid: int | str) -> Iterator[tuple[str, list[list[str]]]]:
    """Each mapping in ``/proc/PID/smaps``: its file (``""`` for none) and its lines, split."""
    path: str | None = None
    lines: list[list[str]] = []
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):  # address range, perms, …
            if path is not None:
                yield path, lines
            path, lines = (fields[-1] if len(fields) >= 6 else ""), []
        else:
            lines.append(fields)
    if path is not None:
        yield path, lines


def _mapping(pid: int, name: str) -> dict[str, int]:
    """The smaps counters (kB) of the mapping of a file whose name ends with ``name``."""
    out: dict[str, int] = {}
    for path, lines in _smaps(pid):
        if path.endswith(name):
            for fields in lines:
                if fields[0].endswith(":") and len(fields) >= 2 and fields[1].isdigit():
                    out[fields[0][:-1]] = out.get(fields[0][:-1], 0) + int(fields[1])
    return out


def test_two_server_processes_share_the_memory_mapped_pages_of_one_index(large_catalog: SQLiteCatalog, tmp_path: Path) -> None:
    bundle.build(tmp_path, large_catalog, backend="scann", segment_backend="faiss")
    procs = [
        subprocess.Popen([sys.executable, "-c", SERVE, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            for name in ("seg_vectors.npy", "/vectors.npy", "seg_rows.npy"):
                mapped = _mapping(p.pid, name)
                # Every resident page is mapped by both processes: each is charged half of it.
                assert mapped["Rss"] > 0
                assert mapped["Private_Clean"] == mapped["Private_Dirty"] == 0
                assert mapped["Pss"] <= 0.51 * mapped["Rss"]
            assert _mapping(p.pid, "index.faiss").get("Size", 0) > 0  # the faiss lists are mapped, not read
    finally:
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("\n")
            p.stdin.flush()
            p.wait(timeout=60)


def test_a_query_fanned_out_over_shards_and_merged_answers_like_one_index(tmp_path: Path) -> None:
    from soundalike.index.shards import ShardedIndex

    rng = np.random.default_rng(SEED)
    vectors = rng.normal(size=(3_000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.normal(size=(25, 32)).astype(np.float32)
    whole = build_index("exact", vectors)
    sharded = ShardedIndex([build_index("exact", vectors[a:b]) for a, b in ((0, 1_000), (1_000, 1_700), (1_700, 3_000))])
    pos, score = sharded.query(queries, 10)
    ref_pos, ref_score = whole.query(queries, 10)
    np.testing.assert_array_equal(pos, ref_pos)
    np.testing.assert_allclose(score, ref_score, atol=1e-6)


def test_shards_queried_on_a_dask_local_cluster_answer_like_one_index() -> None:
    from distributed import Client, LocalCluster

    from soundalike.index.shards import ShardedIndex

    rng = np.random.default_rng(SEED + 1)
    vectors = rng.normal(size=(2_000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.normal(size=(10, 16)).astype(np.float32)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        shards = [build_index("exact", vectors[a : a + 500]) for a in range(0, 2_000, 500)]
        sharded = ShardedIndex(shards, submit=client.submit)
        pos, _ = sharded.query(queries, 10)
    np.testing.assert_array_equal(pos, build_index("exact", vectors).query(queries, 10)[0])


def _vm_flags(path: Path) -> set[str]:
    """The kernel's VmFlags of this process's mappings of ``path``."""
    return {
        flag
        for mapped, lines in _smaps("self")
        if mapped == str(path)
        for fields in lines
        if fields[0] == "VmFlags:"
        for flag in fields[1:]
    }


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux's /proc/self/smaps")
def test_a_served_matrix_is_mapped_for_random_reads_and_a_built_one_is_not(tmp_path: Path) -> None:
    from soundalike.index.storage import open_matrix, scanning

    rng = np.random.default_rng(0)
    rows = rng.standard_normal((4096, 88)).astype(np.float16)
    np.save(tmp_path / "built.npy", rows)
    np.save(tmp_path / "served.npy", rows)
    np.save(tmp_path / "codes.npy", rng.integers(-127, 128, size=(4096, 88), dtype=np.int8))
    np.save(tmp_path / "codes.scales.npy", np.full(88, 0.01, np.float32))
    built = open_matrix(tmp_path, "built")
    served = open_matrix(tmp_path, "served", random_access=True)
    codes = open_matrix(tmp_path, "codes", random_access=True)
    assert isinstance(codes, Int8Matrix)
    np.testing.assert_array_equal(np.asarray(served[[5, 4000]]), rows[[5, 4000]])
    assert np.asarray(codes[[7]]).shape == (1, 88)
    # "rr" is the kernel's VM_RAND_READ, which madvise(MADV_RANDOM) sets: no readahead around a row.
    assert _vm_flags(tmp_path / "built.npy") and "rr" not in _vm_flags(tmp_path / "built.npy")
    assert "rr" in _vm_flags(tmp_path / "served.npy")
    assert "rr" in _vm_flags(tmp_path / "codes.npy")
    # An exact search reads every row in order: read ahead ("sr", VM_SEQ_READ) during it only.
    with scanning(served):
        assert "sr" in _vm_flags(tmp_path / "served.npy") and "rr" not in _vm_flags(tmp_path / "served.npy")
    assert "rr" in _vm_flags(tmp_path / "served.npy")
    with scanning(built):  # never advised: left alone
        assert not {"sr", "rr"} & _vm_flags(tmp_path / "built.npy")
    positions, _ = exact_search(served, np.asarray(served[[9]], dtype=np.float32), 1)
    assert positions[0, 0] == 9 and "rr" in _vm_flags(tmp_path / "served.npy")
    del built, served, codes
