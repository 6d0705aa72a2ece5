"""Search: exact, Annoy and ScaNN at 10k, 100k and 1M vectors of the real dimensionality.

The vectors
-----------
Synthetic, but shaped like real features (:func:`synthetic_raw`). The raw vectors of the real
dev-music clips are standardised and decomposed by PCA. An *artist* is a random point between two
real clips in that latent space plus latent noise (half the real spread per component); a *track*
is its artist plus latent noise (again half the spread) plus independent noise in every dimension
(half a standard deviation); about 20 tracks per artist. The result is mapped back to raw feature
units and normalised by :class:`soundalike.features.normalise.Normaliser` fitted on the library,
exactly as an index build does. A random sample of 91 such tracks has the effective dimension,
spread of pairwise similarity and nearest-neighbour similarity of the 91 real clips (printed in
the results), so the neighbourhoods are as crowded as real ones: neither uniform noise (where
every neighbour is equally far) nor tight, easy clusters.

Queries are held-out tracks from the same artists (new songs by known artists), not library rows.
Recall@10 is measured against exact search for similar queries and for least-similar (negated)
queries, as ``soundalike tune`` does; latency and QPS are for one query per call on one thread.

Each backend at each size is built and measured in a fresh process, so that its peak memory is its
own. ScaNN and Annoy are measured with the parameters their documented rule gives
(:func:`soundalike.index.default_params`) and with query-time parameters tuned here on separate
queries: the fastest setting whose worse recall (similar, least similar) reaches 0.95 on the
tuning queries (ScaNN: leaves searched and candidates re-ranked; Annoy: ``search_k``). Build-time
parameters are left to the rule (``soundalike tune`` searches those on a real library).
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    CHUNK,
    LatentModel,
    Section,
    Target,
    dir_size,
    fmt_bytes,
    fmt_n,
    fmt_s,
    fmt_x,
    real_features,
    rss,
    run_job,
    sample_rss,
    synthetic_raw,
)
from benchmarks.endtoend import library

log = logging.getLogger(__name__)

K = 10
TARGET_RECALL = 0.95
TUNE_MARGIN = 0.005
"""The tuned setting must reach TARGET_RECALL + TUNE_MARGIN on the tuning queries."""


@dataclass(frozen=True)
class SearchConfig:
    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    queries: int = 1000
    """Held-out queries for recall (all) and latency (ScaNN, Annoy)."""
    tune_queries: int = 300
    latency_queries: int = 1000
    backends: tuple[str, ...] = ("exact", "scann", "annoy")
    tune: bool = True
    at_scale: int | None = 1_000_000
    """Size of the bundle-like library index build (None: skip)."""
    seed: int = 0
    real_clips: int | None = None
    """Real clips the latent model is fitted to (None: all)."""
    library_builds: tuple[int, ...] = (10_000, 100_000)
    """Sizes of real catalogs (synthetic records) indexed by ``bundle.build`` itself."""
    fresh_processes: bool = True
    """Measure each index in a new process (its own memory figures); False only for smoke tests."""


FULL = SearchConfig()
QUICK = SearchConfig(
    sizes=(10_000,), queries=300, tune_queries=200, latency_queries=300, at_scale=100_000, library_builds=(10_000,)
)


# -- the vectors ---------------------------------------------------------------------------------


def shape_stats(normalised: np.ndarray) -> dict[str, float]:
    """Effective dimension, spread of pairwise cosine and mean top-1/top-10 neighbour cosine."""
    x = np.asarray(normalised, dtype=np.float64)
    eig = np.clip(np.linalg.eigvalsh(np.cov(x.T)), 0, None)
    sims = x @ x.T
    upper = sims[np.triu_indices(len(x), 1)]
    np.fill_diagonal(sims, -np.inf)
    ordered = np.sort(sims, axis=1)
    return {
        "effective_dim": float(eig.sum() ** 2 / max((eig**2).sum(), 1e-12)),
        "pair_cos_std": float(upper.std()),
        "top1": float(ordered[:, -1].mean()),
        "top10": float(ordered[:, -K:].mean()),
    }


@dataclass
class Dataset:
    """Library rows ``[0, n)`` then evaluation and tuning queries, raw and normalised, on disk."""

    n: int
    eval_queries: int
    tune_queries: int
    raw: Path
    normalised: Path
    truth: Path  # (eval + tune, K) exact neighbours of the queries
    truth_least: Path  # the same for the negated queries
    seconds: dict[str, float] = field(default_factory=dict)


def dataset(cache: Path, model: LatentModel, n: int, config: SearchConfig) -> Dataset:
    """Generate (or reuse) the vectors and the exact answers for one library size."""
    from numpy.lib.format import open_memmap

    from soundalike.features import track_layout
    from soundalike.features.normalise import Normaliser
    from soundalike.index.exact import exact_search

    q = config.queries + config.tune_queries
    fitted = "all" if config.real_clips is None else config.real_clips
    folder = cache / "search" / f"n{n}-q{config.queries}+{config.tune_queries}-seed{config.seed}-real{fitted}"
    ds = Dataset(
        n, config.queries, config.tune_queries, folder / "raw.npy", folder / "normalised.npy",
        folder / "truth.npy", folder / "truth-least.npy",
    )  # fmt: skip
    marker = folder / "complete.json"
    if marker.is_file():
        ds.seconds = json.loads(marker.read_text())
        return ds
    folder.mkdir(parents=True, exist_ok=True)
    layout = track_layout()
    started = time.perf_counter()
    raw = open_memmap(ds.raw, mode="w+", dtype=np.float32, shape=(n + q, layout.dim))
    raw[:] = synthetic_raw(model, n + q, seed=config.seed * 7919 + n)
    raw.flush()
    # The library's statistics normalise the library and the queries, as an index build does.
    norm = Normaliser.fit((raw[s : min(n, s + CHUNK)] for s in range(0, n, CHUNK)), layout, {})
    out = open_memmap(ds.normalised, mode="w+", dtype=np.float32, shape=raw.shape)
    for s in range(0, n + q, CHUNK):
        out[s : s + CHUNK] = norm.transform(raw[s : s + CHUNK])
    out.flush()
    generated = time.perf_counter() - started
    started = time.perf_counter()
    library, queries = out[:n], np.ascontiguousarray(out[n:])
    np.save(ds.truth, exact_search(library, queries, K)[0])
    np.save(ds.truth_least, exact_search(library, -queries, K)[0])
    ds.seconds = {"generate": generated, "truth": time.perf_counter() - started}
    marker.write_text(json.dumps(ds.seconds))
    return ds


# -- measuring one backend (in a fresh process) ------------------------------------------------


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true ``k`` neighbours found, averaged over queries."""
    hits = [len(np.intersect1d(f, t)) for f, t in zip(found, truth, strict=True)]
    return float(np.sum(hits) / truth.size)


def _latencies(index: Any, queries: np.ndarray) -> np.ndarray:
    out = np.empty(len(queries))
    for i, q in enumerate(queries):
        started = time.perf_counter()
        index.query(q, K)
        out[i] = time.perf_counter() - started
    return out


def _measure(index: Any, queries: np.ndarray, truth: np.ndarray, truth_least: np.ndarray, latency_n: int) -> dict[str, Any]:
    if index.backend == "exact":
        recall = recall_least = 1.0  # the reference itself
    else:
        recall = recall_at_k(index.query(queries, K)[0], truth)
        recall_least = recall_at_k(index.query(-queries, K)[0], truth_least)
    lat = _latencies(index, queries[:latency_n])
    return {
        "recall": recall,
        "recall_least": recall_least,
        "latency_queries": len(lat),
        "qps": len(lat) / float(lat.sum()),
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
    }


def query_variants(backend: str, params: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Query-time settings tried when tuning (no rebuild needed)."""
    if backend == "scann" and params.get("algorithm") == "tree_ah":
        leaves = int(params["num_leaves"])
        searched = sorted({min(leaves, max(2, math.ceil(f * leaves))) for f in (0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.3)})
        return [
            {"leaves_to_search": s, "pre_reorder_num_neighbors": d, "pre_reorder_factor": 1}
            for s in searched
            for d in (30, 50, 100, 200)
        ]
    if backend == "annoy":
        trees = int(params["n_trees"])
        return [{"search_k": int(min(n * trees, f * trees * K))} for f in (3, 10, 20, 50, 100, 200, 400)]
    return []


def measure_backend(job: dict[str, Any]) -> dict[str, Any]:
    """Build one index on one dataset and measure it: run in a fresh process (see :func:`_in_process`)."""
    from soundalike.index import build_index

    n, backend = job["n"], job["backend"]
    data_all = np.load(job["normalised"], mmap_mode="r")
    data = data_all[:n]
    e, t = job["eval_queries"], job["tune_queries"]
    eval_q = np.ascontiguousarray(data_all[n : n + e])
    tune_q = np.ascontiguousarray(data_all[n + e : n + e + t])
    truth, truth_least = np.load(job["truth"]), np.load(job["truth_least"])
    float(np.asarray(data).sum(dtype=np.float64))  # page the vectors in: RSS growth below is the index's own
    rss0 = rss()
    started = time.perf_counter()
    with sample_rss() as memory:  # sampled: ru_maxrss may hold the parent's high-water mark
        index = build_index(backend, data, params=job.get("params"))
    build_seconds = time.perf_counter() - started
    rss1 = rss()
    with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
        index.save(Path(tmp))
        disk = dir_size(Path(tmp))
    result: dict[str, Any] = {
        "n": n,
        "backend": backend,
        "params": dict(index.params),
        "build_seconds": build_seconds,
        "kept_bytes": rss1 - rss0,
        "peak_bytes": memory.peak_delta,
        "disk_bytes": disk,
        "vector_bytes": int(data.nbytes),
    }
    latency_n = job["latency_queries"]
    result["default"] = _measure(index, eval_q, truth[:e], truth_least[:e], latency_n)
    if job.get("tune"):
        points = []
        base = dict(index.params)
        for variant in query_variants(backend, base, n):
            index.params.update(variant)  # query-time keys are read at every query
            m = _measure(index, tune_q, truth[e:], truth_least[e:], min(100, len(tune_q)))
            points.append({"variant": variant, **m})
        index.params.clear()
        index.params.update(base)
        good = [p for p in points if min(p["recall"], p["recall_least"]) >= TARGET_RECALL + TUNE_MARGIN]
        result["tune_points"] = points
        if good:
            best = max(good, key=lambda p: p["qps"])
            index.params.update(best["variant"])
            result["tuned_variant"] = best["variant"]
            result["tuned"] = _measure(index, eval_q, truth[:e], truth_least[:e], latency_n)
    return result


# -- the library index at scale ------------------------------------------------------------------


def _read_rows(path: Path, n: int, chunk: int, *, start: int = 0) -> Any:
    """Rows ``start .. start + n`` of a 2-d float32 ``.npy`` in chunks, read (not memory-mapped).

    Plain reads, like rows arriving from a database: a memory map would count the file's pages in
    this process's RSS and blur the build's own memory.
    """
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        fmt = np.lib.format
        shape, _, _ = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
        dim = int(shape[1])
        f.seek(f.tell() + start * dim * 4)
        for s in range(0, n, chunk):
            rows = min(chunk, n - s)
            yield np.fromfile(f, dtype=np.float32, count=rows * dim).reshape(rows, dim)


def bundle_like_build(job: dict[str, Any]) -> dict[str, Any]:
    """:func:`_bundle_like_build` with its peak RSS sampled (``ru_maxrss`` may hold the parent's peak)."""
    with sample_rss() as memory:
        out = _bundle_like_build(job)
    return {**out, "peak": memory.peak}


def _bundle_like_build(job: dict[str, Any]) -> dict[str, Any]:
    """Build a library's track index the way :func:`soundalike.index.bundle.build` does, from raw vectors.

    Raw vectors come in chunks of 4,096 (what ``catalog.iter_vectors`` yields) and are kept as
    chunks; the normaliser is fitted on them in one streaming pass; normalised rows go to a
    memory-mapped ``vectors.npy``; ScaNN is built on that memory map and saved; then everything is
    loaded back (memory-mapped) and queried once.
    """
    from numpy.lib.format import open_memmap

    from soundalike.features import track_layout
    from soundalike.features.normalise import Normaliser
    from soundalike.index import build_index, load_index

    n = job["n"]
    layout = track_layout()
    steps: dict[str, float] = {}
    memory: dict[str, int] = {"start": rss()}
    started = time.perf_counter()
    chunks = list(_read_rows(Path(job["raw"]), n, 4096))
    steps["read raw vectors (4,096-row chunks)"] = time.perf_counter() - started
    memory["raw vectors held"] = rss()
    t0 = time.perf_counter()
    norm = Normaliser.fit(chunks, layout, {})
    steps["fit the normaliser (one streaming pass)"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="bench-bundle-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        vectors = open_memmap(folder / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, layout.dim))
        row = 0
        for chunk in chunks:
            vectors[row : row + len(chunk)] = norm.transform(chunk)
            row += len(chunk)
        vectors.flush()
        del chunks
        steps["normalise into a memory-mapped vectors.npy"] = time.perf_counter() - t0
        memory["after normalising (raw chunks freed)"] = rss()
        t0 = time.perf_counter()
        index = build_index("scann", np.asarray(vectors))
        steps["build the ScaNN index"] = time.perf_counter() - t0
        memory["after the build"] = rss()
        t0 = time.perf_counter()
        (folder / "tracks").mkdir()
        index.save(folder / "tracks")
        steps["save it"] = time.perf_counter() - t0
        params = dict(index.params)
        del index, vectors
        files = {"vectors.npy": dir_size(folder / "vectors.npy"), "ScaNN files": dir_size(folder / "tracks")}
        t0 = time.perf_counter()
        loaded_vectors = np.load(folder / "vectors.npy", mmap_mode="r")
        loaded = load_index("scann", folder / "tracks", loaded_vectors, params)
        steps["load it (memory-mapped vectors)"] = time.perf_counter() - t0
        query = next(_read_rows(Path(job["raw"]), 1, 1, start=n))
        t0 = time.perf_counter()
        loaded.query(norm.transform(query)[0], K)
        steps["first query after loading"] = time.perf_counter() - t0
        memory["after load and one query"] = rss()
    return {"n": n, "steps": steps, "memory": memory, "files": files, "params": params}


# -- the section ---------------------------------------------------------------------------------


def _tuned_file_params(path: Path | None) -> dict[str, dict[str, Any]]:
    if path is None:
        return {}
    saved = json.loads(path.read_text())
    return {b: dict(p) for b, p in saved.items() if b in ("scann", "annoy") and isinstance(p, dict)}


def run(cache: Path, config: SearchConfig = FULL, *, tuned: Path | None = None) -> Section:
    """Measure search at every size; see the module docstring."""
    from tqdm import tqdm

    from soundalike.features import track_layout
    from soundalike.features.normalise import Normaliser

    raw_real, _, source = real_features(cache, config.real_clips)
    model = LatentModel.fit(raw_real)
    layout = track_layout()
    tuned_params = _tuned_file_params(tuned)

    sample = synthetic_raw(model, 20 * len(raw_real), seed=1)
    real_norm = Normaliser.fit([raw_real], layout, {}).transform(raw_real)
    sample_norm = Normaliser.fit([sample], layout, {}).transform(sample)[: len(raw_real)]
    shapes = {"real": shape_stats(real_norm), "synthetic": shape_stats(sample_norm)}

    jobs: list[tuple[str, dict[str, Any]]] = []
    datasets: dict[int, Dataset] = {}
    for n in tqdm(config.sizes, desc="search data", unit="size", leave=False):
        datasets[n] = ds = dataset(cache, model, n, config)
        for backend in config.backends:
            base = {
                "n": n, "backend": backend, "normalised": str(ds.normalised), "truth": str(ds.truth),
                "truth_least": str(ds.truth_least), "eval_queries": ds.eval_queries, "tune_queries": ds.tune_queries,
            }  # fmt: skip
            if backend == "exact":
                # One exact query reads every vector: fewer of them at large sizes keep the run short.
                lat = max(30, min(config.latency_queries, config.latency_queries * 25_000 // n))
                jobs.append(("exact", {**base, "latency_queries": lat}))
            else:
                jobs.append((backend, {**base, "latency_queries": config.latency_queries, "tune": config.tune}))
                if backend in tuned_params:
                    jobs.append((f"{backend} (tuned.json)", {**base, "latency_queries": config.latency_queries, "params": tuned_params[backend]}))
    results: list[tuple[str, dict[str, Any]]] = []
    for label, job in tqdm(jobs, desc="search", unit="index", leave=False):
        results.append((label, run_job(measure_backend, job, fresh=config.fresh_processes)))
    scale = None
    if config.at_scale:
        ds = datasets.get(config.at_scale) or dataset(cache, model, config.at_scale, config)
        scale = run_job(bundle_like_build, {"n": config.at_scale, "raw": str(ds.raw)}, fresh=config.fresh_processes)
    libraries = [
        library(cache, n, real_clips=config.real_clips, fresh=config.fresh_processes)[1] for n in config.library_builds
    ]
    return _section(config, source, shapes, datasets, results, scale, libraries, layout.dim)


def _row_label(label: str, result: dict[str, Any], which: str) -> str:
    p = {**result["params"], **(result.get("tuned_variant") or {} if which == "tuned" else {})}
    origin = {"default": "default rule", "tuned": "tuned here"}[which]
    if label.endswith("(tuned.json)"):
        origin = "tuned.json"
    if result["backend"] == "exact":
        return "exact (numpy, blocked)"
    if result["backend"] == "scann":
        if p.get("algorithm") != "tree_ah":
            return f"ScaNN {origin}: brute force"
        reranked = max(K, p["pre_reorder_num_neighbors"], p["pre_reorder_factor"] * K)
        return f"ScaNN {origin}: {p['leaves_to_search']}/{p['num_leaves']} leaves, {reranked} re-ranked"
    search_k = p["search_k"] if p.get("search_k") else p["search_k_factor"] * p["n_trees"] * K
    return f"Annoy {origin}: {p['n_trees']} trees, search_k {search_k:,}"


def _section(
    config: SearchConfig,
    source: str,
    shapes: dict[str, dict[str, float]],
    datasets: dict[int, Dataset],
    results: list[tuple[str, dict[str, Any]]],
    scale: dict[str, Any] | None,
    libraries: list[dict[str, Any]],
    dim: int,
) -> Section:
    section = Section(
        title="3. Search",
        intro=(
            f"{dim}-dimensional normalised track vectors, synthetic but shaped like real ones (fitted to {source}; "
            "see `benchmarks/search.py`). Held-out queries: "
            f"{config.queries} for recall; latency and QPS one query per call on one thread "
            "(fewer queries for exact search at large sizes). Recall@10 against exact search, for similar queries "
            "and for least-similar (negated) ones. Memory: RSS growth of a fresh process during the build "
            "(the vectors themselves, a memory-mapped `.npy` shared by every backend, are not counted), and the "
            "index's own files on disk."
        ),
        raw={"shapes": shapes, "results": [{"label": lb, **r} for lb, r in results], "scale": scale, "libraries": libraries,
             "datasets": {str(n): asdict(d) for n, d in datasets.items()}, "config": asdict(config)},  # fmt: skip
    )
    shape = section.table(
        "Are the synthetic vectors shaped like real ones? (91 tracks each)",
        ["vectors", "effective dimension", "std of pairwise cosine", "mean top-1 cosine", "mean top-10 cosine"],
    )
    for name, label in (("real", source), ("synthetic", "91 synthetic tracks (a random sample)")):
        s = shapes[name]
        shape.add(label, f"{s['effective_dim']:.1f}", f"{s['pair_cos_std']:.3f}", f"{s['top1']:.3f}", f"{s['top10']:.3f}")

    exact_qps = {r["n"]: r["default"]["qps"] for lb, r in results if lb == "exact"}
    by_n: dict[int, list[tuple[str, dict[str, Any]]]] = {}
    for label, r in results:
        by_n.setdefault(r["n"], []).append((label, r))
    for n, rows in by_n.items():
        table = section.table(
            f"N = {fmt_n(n)}",
            ["index", "build", "memory (peak / kept)", "files", "QPS", "× exact", "p50", "p99", "recall@10", "recall@10 least"],
        )
        for label, r in rows:
            for which in ("default", "tuned"):
                if which not in r:
                    continue
                m = r[which]
                memory = f"{fmt_bytes(r['peak_bytes'])} / {fmt_bytes(r['kept_bytes'])}"
                table.add(
                    _row_label(label, r, which),
                    fmt_s(r["build_seconds"]) if which == "default" else "(same)",
                    memory if which == "default" else "(same)",
                    fmt_bytes(r["disk_bytes"]) if which == "default" else "(same)",
                    f"{m['qps']:,.0f}",
                    fmt_x(m["qps"] / exact_qps[n]) if n in exact_qps else "–",
                    fmt_s(m["p50"]),
                    fmt_s(m["p99"]),
                    f"{m['recall']:.3f}",
                    f"{m['recall_least']:.3f}",
                )
        section.notes.append(
            f"N = {fmt_n(n)}: vectors {fmt_bytes(rows[0][1]['vector_bytes'])} (float32, memory-mapped); generating "
            f"them took {fmt_s(datasets[n].seconds.get('generate', 0))} and the exact answers "
            f"{fmt_s(datasets[n].seconds.get('truth', 0))}."
        )
    _targets(section, results, exact_qps)
    _scale_tables(section, scale, libraries, results, dim)
    return section


def _best(results: list[tuple[str, dict[str, Any]]], n: int, backend: str) -> dict[str, Any] | None:
    """The fastest measured setting of ``backend`` at ``n`` reaching the target recall (both kinds)."""
    found = None
    for _, r in results:
        if r["n"] != n or r["backend"] != backend:
            continue
        for which in ("default", "tuned"):
            m = r.get(which)
            if m and min(m["recall"], m["recall_least"]) >= TARGET_RECALL and (found is None or m["qps"] > found["qps"]):
                found = m
    return found


def _targets(section: Section, results: list[tuple[str, dict[str, Any]]], exact_qps: dict[int, float]) -> None:
    for n, factor in ((100_000, 10), (1_000_000, 50)):
        if n not in exact_qps:
            continue
        best = _best(results, n, "scann")
        if best is None:
            section.targets.append(Target(f"ScaNN at {fmt_n(n)}: recall@10 ≥ 0.95 and ≥ {factor}× exact QPS", "no setting reached recall 0.95", False))
            continue
        ratio = best["qps"] / exact_qps[n]
        section.targets.append(
            Target(
                f"ScaNN at {fmt_n(n)}: recall@10 ≥ 0.95 and ≥ {factor}× exact QPS",
                f"recall {best['recall']:.3f} (least similar {best['recall_least']:.3f}), {fmt_x(ratio)} exact "
                f"({best['qps']:,.0f} vs {exact_qps[n]:,.0f} QPS)",
                ratio >= factor,
            )
        )
    for n in sorted({r["n"] for _, r in results}):
        scann, annoy = _best(results, n, "scann"), _best(results, n, "annoy")
        if scann is None or annoy is None:
            continue
        section.targets.append(
            Target(
                f"ScaNN ahead of Annoy at equal recall (≥ 0.95), {fmt_n(n)}",
                f"ScaNN {scann['qps']:,.0f} QPS (recall {scann['recall']:.3f}) vs Annoy {annoy['qps']:,.0f} QPS "
                f"(recall {annoy['recall']:.3f}): {fmt_x(scann['qps'] / annoy['qps'])}",
                scann["qps"] > annoy["qps"],
            )
        )


def _scale_tables(
    section: Section,
    scale: dict[str, Any] | None,
    libraries: list[dict[str, Any]],
    results: list[tuple[str, dict[str, Any]]],
    dim: int,
) -> None:
    if scale is not None:
        n = scale["n"]
        steps = section.table(
            f"Index at scale: the track index built the way `bundle.build` builds it, N = {fmt_n(n)}",
            ["step", "time", "RSS after"],
        )
        memory = scale["memory"]
        marks = {
            "read raw vectors (4,096-row chunks)": "raw vectors held",
            "normalise into a memory-mapped vectors.npy": "after normalising (raw chunks freed)",
            "build the ScaNN index": "after the build",
            "first query after loading": "after load and one query",
        }
        for step, seconds in scale["steps"].items():
            mark = marks.get(step)
            steps.add(step, fmt_s(seconds), fmt_bytes(memory[mark]) if mark else "")
        build_total = sum(v for k, v in scale["steps"].items() if not k.startswith(("load", "first")))
        files = scale["files"]
        per_track = files["ScaNN files"] / n
        section.notes.append(
            f"At N = {fmt_n(n)} the track index takes {fmt_s(build_total)} from raw vectors to a saved index; the "
            f"process peaks at {fmt_bytes(scale['peak'])} RSS (it starts at {fmt_bytes(memory['start'])} with its "
            f"imports): the raw vectors held as {dim}-float chunks ({fmt_bytes(n * dim * 4)}, as `bundle.build` holds "
            "what `catalog.iter_vectors` yields: arrays, not Python objects per track), the memory-mapped "
            "normalised copy, and ScaNN's own working copies during its build. On disk: `vectors.npy` "
            f"{fmt_bytes(files['vectors.npy'])}, ScaNN's tree and 4-bit codes {fmt_bytes(files['ScaNN files'])} "
            f"({per_track:.0f} bytes per track). Loaded, the index maps the vectors and answers at once."
        )
    if libraries:
        table = section.table(
            "`bundle.build` on a real SQLite catalog (synthetic records of 30 s tracks, 11 segments each)",
            ["tracks", "segments", "time (tracks + segments)", "peak RSS growth", "index files", "catalog file"],
        )
        for made in libraries:
            table.add(
                f"{made['tracks']:,}", f"{made['segments']:,}", fmt_s(made["build_seconds"]),
                fmt_bytes(made["build_peak_bytes"]), fmt_bytes(made.get("index_bytes", 0)), fmt_bytes(made["catalog_bytes"]),
            )  # fmt: skip
        section.notes.append(_library_memory_note(libraries, scale))
    if scale is None:
        return
    scann_1m = next((r for _, r in results if r["backend"] == "scann" and r["n"] == scale["n"]), None)
    peak_per_track = (scann_1m["peak_bytes"] / scale["n"]) if scann_1m else float("nan")
    shard = 5_000_000
    growth = shard / scale["n"]
    section.notes.append(
        SHARDING.format(
            dim=dim,
            per_track=per_track,
            shard_vectors=fmt_bytes(shard * dim * 4),
            shard_codes=fmt_bytes(shard * per_track),
            shard_peak=fmt_bytes(shard * peak_per_track) if scann_1m else "(not measured)",
            n=fmt_n(scale["n"]),
            low=fmt_s(build_total * growth),
            high=fmt_s(build_total * growth**1.5),
        )
    )


def _library_memory_note(libraries: list[dict[str, Any]], scale: dict[str, Any] | None) -> str:
    """How `bundle.build`'s memory grows, and what a million tracks would need."""
    ordered = sorted(libraries, key=lambda m: m["tracks"])
    big = ordered[-1]
    text = (
        f"`bundle.build` itself peaks at {fmt_bytes(big['build_peak_bytes'])} for {fmt_n(big['tracks'])} tracks of "
        f"30 s. It holds every track's segments as separate arrays (`catalog.iter_segments` yields one object per "
        "track), concatenates and normalises them in memory, and builds one ScaNN index over all the windows, so "
        "its memory grows with the number of segments."
    )
    if len(ordered) < 2 or scale is None:
        return text
    small = ordered[0]
    per_track = (big["build_peak_bytes"] - small["build_peak_bytes"]) / (big["tracks"] - small["tracks"])
    track_part = (scale["peak"] - scale["memory"]["start"]) / scale["n"]  # the track index alone, measured at scale
    per_segment = max(0.0, per_track - track_part) / (big["segments"] / big["tracks"])
    three_minutes = 1_000_000 * (track_part + 71 * per_segment)
    return text + (
        f" From {fmt_n(small['tracks'])} to {fmt_n(big['tracks'])} tracks it grows by {fmt_bytes(per_track)} per track, "
        f"of which about {fmt_bytes(track_part)} is the track index (measured at {fmt_n(scale['n'])} above) and "
        f"{fmt_bytes(per_segment)} per segment the rest. A million 30 s tracks would need about "
        f"{fmt_bytes(1_000_000 * per_track)}; a million 3-minute tracks (71 windows each) about "
        f"{fmt_bytes(three_minutes)}, beyond this {_ram()} machine. Before libraries of that size, the segment "
        "part should stream into a memory-mapped file as the track vectors do, and beyond one machine be sharded "
        "as below."
    )


def _ram() -> str:
    import psutil

    return f"{psutil.virtual_memory().total / (1 << 30):.0f} GB"


SHARDING = """**A 100-million-track deployment.** One index cannot hold it: the normalised vectors alone are
100 M × {dim} × 4 B ≈ 156 GB and the segment vectors (71 per 3-minute track × 88 dims) about 2.5 TB. The
plan: **shard by track id** (hash of the id, so shards stay balanced as the catalog grows) into 20 shards
of about 5 M tracks. Each shard is one ScaNN index (√n ≈ 2,200 leaves, 4-bit AH codes: {shard_codes} at
the {per_track:.0f} bytes per track measured above) plus its memory-mapped `vectors.npy` ({shard_vectors})
for the exact re-ranking, served from local SSD and the page cache; building one takes a machine with
{shard_peak} of headroom for ScaNN's working copies (measured per track at {n}) and, from the {n} build
above, between {low} (if the cost grew linearly) and {high} (as n^1.5, the cost of assigning every
vector to one of √n leaves). Shards build independently and in parallel, e.g. one Dask task per shard
reading its id range from the (MongoDB) catalog. **One normaliser** (mean, std and family weights,
fitted in one streaming pass over the whole catalog) is shared by every shard, so every shard returns
the same exact dot products and a query's answer is the merge by score of each shard's top k: the
query fans out to all shards in parallel, and its latency is that of one 5 M-track shard plus the
merge. **Segments** are not indexed globally: the track index returns a few hundred candidates per
query and their segments, stored per shard beside the vectors, are scored exactly (as the ranking
already does for its candidates); a per-shard segment index of AH codes is the option if excerpts must
find tracks whose summary vector is far from the query. New tracks go to a small exact "delta" shard
searched with the others until the next rebuild of their shard.
"""
