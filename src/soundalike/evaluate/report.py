"""What an evaluation or a tuning run shows: the report folder, its plots, and the text summaries.

The only module of :mod:`soundalike.evaluate` that imports matplotlib (on the Agg backend, when a
plot is drawn).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from soundalike.evaluate.compare import CONFIDENCE
from soundalike.evaluate.records import (
    Comparison,
    Evaluation,
    IndexQuality,
    Interval,
    LabelSummary,
    Retrieval,
    Silhouette,
)
from soundalike.evaluate.tuning import TunePoint, TuneResult

_TITLES = {
    "map": "Library map",
    "silhouette": "Silhouette per k",
    "precision_by_label": "Precision by label",
    "precision_by_aspect": "Precision by label and aspect",
    "recall_latency": "Index recall and latency",
}


def write_report(evaluation: Evaluation, directory: str | os.PathLike[str]) -> list[Path]:
    """Write ``report.md``, ``metrics.json`` and the plots into ``directory`` (created if needed).

    Plots: ``map.png`` (2-D PCA map coloured by label, or by k-means cluster without labels),
    ``silhouette.png`` (silhouette per k), ``precision_by_label.png`` and
    ``precision_by_aspect.png`` (with labels), ``recall_latency.png``.

    Returns
    -------
    list of Path
        Every file written.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    metrics = out / "metrics.json"
    metrics.write_text(json.dumps(evaluation.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    written = [metrics]
    plots: dict[str, Path] = {}
    plt = _pyplot()
    if evaluation.pca is not None:
        plots["map"] = _plot_map(plt, evaluation, out / "map.png")
    if evaluation.silhouette.by_k:
        plots["silhouette"] = _plot_silhouette(plt, evaluation.silhouette, out / "silhouette.png")
    r = evaluation.retrieval
    if r:
        plots["precision_by_label"] = _plot_precision_by_label(plt, r, evaluation.labels, out / "precision_by_label.png")
        plots["precision_by_aspect"] = _plot_precision_by_aspect(plt, r, out / "precision_by_aspect.png")
    plots["recall_latency"] = _plot_recall_latency(plt, evaluation.index, evaluation.latencies, out / "recall_latency.png")
    written += list(plots.values())
    report = out / "report.md"
    report.write_text(_markdown(evaluation, plots), encoding="utf-8")
    written.append(report)
    return written


def _fmt(value: Any, digits: int = 3) -> str:
    """A number for the report; ``n/a`` for None."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _markdown(ev: Evaluation, plots: dict[str, Path]) -> str:
    """The text of ``report.md``."""
    lines = ["# soundalike evaluation", "", f"{ev.tracks} tracks, generated {ev.generated_at}.", ""]
    labels = ev.labels
    if labels:
        lines += [
            f"Labels: `{labels.source}` — {labels.labelled} tracks labelled, {labels.unlabelled} "
            f"unlabelled, {labels.unmatched} label entries matched no track.",
            "",
        ]
    lines += ["## Headline", "", "| metric | value |", "|---|---|"]
    r, c, s, ix = ev.retrieval, ev.clips, ev.silhouette, ev.index
    if r:
        a = r.aspects["all"]
        lines.append(
            f"| P@{r.k} (leave-one-out, exact; [{_level(r.precision_interval)} bootstrap interval over the queries]) | "
            f"{_fmt(a.precision_at_k)}{_interval(r.precision_interval)} (chance {_fmt(r.chance_precision)}) |"
        )
        lines.append(f"| mAP | {_fmt(a.map)}{_interval(r.map_interval)} |")
    if c:
        lines.append(
            f"| excerpt top-1 / top-10 ({_fmt(c.excerpt_seconds, 0)} s, {_fmt(c.snr_db, 0)} dB SNR, "
            f"{c.bitrate} MP3; {c.excerpts} excerpts) | {_fmt(c.top1)} / {_fmt(c.top10)} |"
        )
        if c.precision is not None:
            lines.append(f"| excerpt recommendations P@10 (results other than the source) | {_fmt(c.precision)} |")
    lines.append(f"| silhouette (k-means, k = {s.k}, chosen by {s.chosen_by}) | {_fmt(_finite(s.score))} |")
    if _finite(s.label_silhouette) is not None:
        lines.append(
            f"| silhouette of the labels / adjusted Rand (clusters vs labels) | {_fmt(_finite(s.label_silhouette))} / "
            f"{_fmt(_finite(s.adjusted_rand))} |"
        )
    lines.append(f"| {ix.backend} recall@{ix.k} vs exact (similar / least similar) | {_fmt(_finite(ix.recall_at_k))} / {_fmt(_finite(ix.recall_least))} |")
    lat = ix.latency_ms
    lines.append(f"| {ix.backend} index latency p50 / p95 | {_fmt(_finite(lat.p50))} / {_fmt(_finite(lat.p95))} ms |")
    if ix.recommend_latency_ms:
        rl = ix.recommend_latency_ms
        lines.append(f"| whole similar_to_track p50 / p95 | {_fmt(_finite(rl.p50), 1)} / {_fmt(_finite(rl.p95), 1)} ms |")
    lines.append("")
    if r:
        lines += ["## Retrieval by aspect", "", "| aspect | P@k | mAP |", "|---|---|---|"]
        lines += [f"| {name} | {_fmt(a.precision_at_k)} | {_fmt(a.map)} |" for name, a in r.aspects.items()]
        lines += ["", "## Retrieval by label (aspect all)", "", "| label | tracks | P@k | mAP | chance P@k |", "|---|---|---|---|---|"]
        for label, v in r.aspects["all"].by_label.items():
            count = labels.counts.get(label, v.queries) if labels else v.queries
            lines.append(
                f"| {label} | {count} | {_fmt(v.precision_at_k)} | {_fmt(v.map)} | {_fmt(r.chance_by_label.get(label))} |"
            )
        lines.append("")
    if ev.comparison:
        lines += ["## Against the baseline", "", comparison_sentence(ev.comparison), ""]
    if c:
        lines += [
            "## Clip robustness",
            "",
            f"{c.excerpts} excerpts of {_fmt(c.excerpt_seconds, 0)} s starting at {c.start_fraction:.0%} of the "
            f"track, white noise at {_fmt(c.snr_db, 0)} dB SNR, MP3 {c.bitrate}: top-1 {_fmt(c.top1)}, "
            f"top-10 {_fmt(c.top10)}, MRR {_fmt(c.mrr)}, {_fmt(c.seconds_per_query, 2)} s per query"
            + (f"; P@10 of the recommendations other than the source {_fmt(c.precision)}." if c.precision is not None else "."),
            "",
        ]
        if c.misses:
            lines += ["| source | rank | ranked first |", "|---|---|---|"]
            lines += [f"| {x.path} | {x.rank or '> 10'} | {x.first} |" for x in c.misses[:30]]
            lines.append("")
        if c.skipped:
            lines += [f"Skipped {len(c.skipped)} sources, e.g. {c.skipped[0].path}: {c.skipped[0].reason}", ""]
    lines += ["## Plots", ""]
    for key, path in plots.items():
        lines += [f"### {_TITLES[key]}", "", f"![{_TITLES[key]}]({path.name})", ""]
    return "\n".join(lines)


def _finite(value: float | None) -> float | None:
    """None for NaN, as in ``metrics.json``."""
    return None if value is None or value != value else value


def _interval(i: Interval | None, *, signed: bool = False) -> str:
    """`` [0.512, 0.613]`` (the interval's ends), or nothing without an interval."""
    if i is None:
        return ""
    fmt = "+.3f" if signed else ".3f"
    return f" [{i.low:{fmt}}, {i.high:{fmt}}]"


def _level(i: Interval | None) -> str:
    return f"{(i.level if i is not None else CONFIDENCE):.0%}"


def comparison_sentence(c: Comparison) -> str:
    """What a :class:`~soundalike.evaluate.records.Comparison` found, in one sentence."""
    said = {
        "better": "better than the baseline",
        "worse": "worse than the baseline",
        "mixed": "better on one figure and worse on the other",
        "indistinguishable": "not distinguishable from the baseline on these tracks",
    }[c.verdict]
    rest = f"; {c.only_here} queries only here, {c.only_there} only there" if c.only_here or c.only_there else ""
    return (
        f"against {c.baseline} ({c.queries} common queries{rest}): P@{c.k} {c.precision_delta:+.3f}"
        f"{_interval(c.precision_interval, signed=True)}, mAP {c.map_delta:+.3f}{_interval(c.map_interval, signed=True)}; "
        f"average precision rose for {c.better} queries and fell for {c.worse} "
        f"([ ]: {_level(c.precision_interval)} paired bootstrap interval of the change): {said}"
    )


def format_summary(evaluation: Evaluation) -> str:
    """The few lines ``soundalike evaluate`` prints: headline figures of each measurement."""

    def f(v: float | None, d: int = 3) -> str:
        v = _finite(v)
        return "n/a" if v is None else f"{v:.{d}f}"

    labels = evaluation.labels
    source = f"; labels {labels.source}, {labels.labelled} labelled" if labels else "; no labels"
    lines = [f"evaluated {evaluation.tracks} tracks{source}"]
    r = evaluation.retrieval
    if r:
        a = r.aspects["all"]
        lines.append(
            f"  P@{r.k} {f(a.precision_at_k)}{_interval(r.precision_interval)}  mAP {f(a.map)}{_interval(r.map_interval)}"
            f"  (chance P@{r.k} {f(r.chance_precision)}; leave-one-out on {r.queries} tracks, exact search; "
            f"[ ]: {_level(r.precision_interval)} bootstrap interval over the queries)"
        )
        if evaluation.comparison:
            lines.append("  " + comparison_sentence(evaluation.comparison))
        lines.append("  by aspect (P@k / mAP): " + ", ".join(
            f"{name} {f(v.precision_at_k, 2)}/{f(v.map, 2)}" for name, v in r.aspects.items()
        ))  # fmt: skip
        for name, v in a.by_label.items():
            lines.append(f"    {name}: P@{r.k} {f(v.precision_at_k)}  AP {f(v.map)}  ({v.queries} queries)")
    c = evaluation.clips
    if c:
        lines.append(
            f"  excerpts: top-1 {f(c.top1)}  top-10 {f(c.top10)}"
            + (f"  recommendations P@10 {f(c.precision)}" if c.precision is not None else "")
            + f"  ({c.excerpts} excerpts of {c.excerpt_seconds:g} s, "
            f"{c.snr_db:g} dB SNR, {c.bitrate} MP3" + (f"; {len(c.skipped)} skipped" if c.skipped else "") + ")"
        )
    s = evaluation.silhouette
    label_sil = _finite(s.label_silhouette)
    extra = f"; labels {f(label_sil)}, adjusted Rand {f(s.adjusted_rand)}" if label_sil is not None else ""
    lines.append(f"  silhouette {f(s.score)} (k-means, k = {s.k} chosen by {s.chosen_by}{extra})")
    ix = evaluation.index
    lines.append(
        f"  {ix.backend} recall@{ix.k} {f(ix.recall_at_k)} (least similar {f(ix.recall_least)}), "
        f"latency p50 {f(ix.latency_ms.p50, 2)} ms, p95 {f(ix.latency_ms.p95, 2)} ms"
        + (f"; whole query p50 {f(ix.recommend_latency_ms.p50, 1)} ms" if ix.recommend_latency_ms else "")
    )
    return "\n".join(lines)


def format_tune_table(result: TuneResult) -> str:
    """The measured points as a text table, fastest first; ``*`` marks the Pareto front."""
    lines = [
        f"{result.backend}: {result.count} vectors × {result.dim}, {result.queries} held-out queries, "
        f"recall@{result.k} target {result.target:g} (the worse of similar and least-similar queries)",
        f"  {'front':5}  {'recall':>6}  {'least':>6}  {'q/s':>9}  {'build s':>7}  configuration",
    ]
    for p in sorted(result.points, key=lambda p: -p.qps):
        mark = "*" if p.pareto else ""
        meets = "" if p.worst >= result.target else "  (below target)"
        chosen = "   <- chosen" if p is result.chosen else ""
        lines.append(
            f"  {mark:^5}  {p.recall:6.3f}  {p.recall_least:6.3f}  {p.qps:9.0f}  {p.build_seconds:7.2f}  "
            f"{p.describe()}{meets}{chosen}"
        )
    if result.note:
        lines.append(f"note: {result.note}")
    return "\n".join(lines)


# -- plots ----------------------------------------------------------------------------------------


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plain_log_x(ax: Any) -> None:
    """A logarithmic x axis labelled 1, 2, 5, 10 … instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_tuning(result: TuneResult, path: str | os.PathLike[str]) -> Path:
    """Recall versus queries per second, the Pareto front, the target and the choice, as a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    families: dict[str, list[TunePoint]] = {}
    for p in result.points:
        families.setdefault(p.family(), []).append(p)
    colours = plt.get_cmap("tab10")
    for i, (name, pts) in enumerate(families.items()):  # grid order: default, then by size
        ax.scatter([p.qps for p in pts], [p.worst for p in pts], s=28, alpha=0.75, color=colours(i % 10), label=name)
    front = sorted((p for p in result.points if p.pareto), key=lambda p: p.qps)
    if front:
        ax.plot(
            [p.qps for p in front], [p.worst for p in front], "-o", color="black", lw=1.2, ms=7, mfc="none",
            label="Pareto front", zorder=4,
        )
    ax.axhline(result.target, color="firebrick", ls="--", lw=1, label=f"target {result.target:g}")
    qps = [p.qps for p in result.points]
    if qps and max(qps) / max(min(qps), 1e-9) > 20:
        _plain_log_x(ax)
    if result.chosen is not None:
        c = result.chosen
        ax.scatter([c.qps], [c.worst], s=220, marker="*", color="gold", edgecolor="black", zorder=5, label="chosen")
        # the label goes towards the middle of the plot so that it stays inside the axes
        right_half = len(qps) > 1 and c.qps >= float(np.median(qps))
        ax.annotate(
            f"chosen: {c.describe()}", (c.qps, c.worst), xytext=(-14 if right_half else 14, -26), textcoords="offset points",
            ha="right" if right_half else "left", fontsize=9, bbox={"boxstyle": "round", "fc": "white", "alpha": 0.9},
            arrowprops={"arrowstyle": "-", "color": "0.4"},
        )
    lowest = min([p.worst for p in result.points] + [result.target])
    ax.set_ylim(max(0.0, lowest - 0.05), 1.01)
    ax.set_xlabel("queries per second (one thread, one query at a time)")
    ax.set_ylabel(f"recall@{result.k} against exact search (worse of similar / least similar)")
    ax.set_title(f"Tuning {result.backend} on {result.count} vectors ({result.queries} held-out queries)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return _save(plt, fig, path)


def _save(plt: Any, fig: Any, path: str | os.PathLike[str], **savefig: Any) -> Path:
    """Lay the figure out, write it as a PNG and close it."""
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, **savefig)
    plt.close(fig)
    return out


def _label_colours(plt: Any, names: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _plot_map(plt: Any, ev: Evaluation, path: Path) -> Path:
    assert ev.pca is not None
    xy = ev.pca
    fig, ax = plt.subplots(figsize=(9, 7), dpi=110)
    if any(lab is not None for lab in ev.row_labels):
        groups = [str(lab) if lab is not None else "(unlabelled)" for lab in ev.row_labels]
        title = "coloured by label"
    elif ev.clusters is not None:
        groups = [f"cluster {int(c) + 1}" for c in ev.clusters]
        title = "coloured by k-means cluster (no labels)"
    else:
        groups = ["track"] * len(xy)
        title = ""
    counts = Counter(groups)
    names = sorted(counts, key=lambda g: (-counts[g], g))
    colours = _label_colours(plt, [g for g in names if g != "(unlabelled)"])
    colours["(unlabelled)"] = (0.6, 0.6, 0.6, 0.5)
    markers = "osD^v<>Pp*h"
    g_arr = np.array(groups, dtype=object)
    for i, name in enumerate(names):
        mask = g_arr == name
        ax.scatter(
            xy[mask, 0], xy[mask, 1], s=34, alpha=0.8, color=colours[name], marker=markers[i % len(markers)],
            edgecolor="white", linewidth=0.4, label=f"{name} ({counts[name]})",
        )
    v1, v2 = ev.pca_variance
    ax.set_xlabel(f"PC 1 ({v1:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({v2:.0%} of variance)")
    ax.set_title(f"Library map: PCA of the normalised track features, {title}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _save(plt, fig, path, bbox_inches="tight")


def _plot_silhouette(plt: Any, sil: Silhouette, path: Path) -> Path:
    ks = list(sil.by_k)
    values = [v if v is not None else float("nan") for v in sil.by_k.values()]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(ks, values, marker="o", color="tab:blue")
    if sil.k is not None:
        ax.axvline(sil.k, color="firebrick", ls="--", lw=1, label=f"k = {sil.k} ({sil.chosen_by}): {_fmt(_finite(sil.score))}")
        ax.legend(fontsize=9)
    ax.set_xlabel("k (k-means clusters)")
    ax.set_ylabel("silhouette")
    ax.set_xticks(ks)
    ax.set_title("Silhouette of k-means on the normalised features")
    ax.grid(True, alpha=0.3)
    return _save(plt, fig, path)


def _plot_precision_by_label(plt: Any, r: Retrieval, labels: LabelSummary | None, path: Path) -> Path:
    by_label = r.aspects["all"].by_label
    counts = labels.counts if labels else {}
    names = sorted(by_label, key=lambda lab: (-counts.get(lab, 0), lab))
    names = [n for n in names if by_label[n].precision_at_k is not None]
    y = np.arange(len(names))
    prec = [by_label[n].precision_at_k or 0.0 for n in names]
    ap = [by_label[n].map or 0.0 for n in names]
    chance = [r.chance_by_label.get(n) or 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.55 * len(names) + 1.6)), dpi=110)
    ax.barh(y - 0.2, prec, height=0.38, color="tab:blue", label=f"P@{r.k}")
    ax.barh(y + 0.2, ap, height=0.38, color="tab:orange", label="AP (mean)")
    ax.scatter(chance, y - 0.2, marker="|", s=260, color="black", zorder=3, label="chance P@k")
    for yi, p, a in zip(y, prec, ap, strict=True):
        ax.text(p + 0.01, yi - 0.2, f"{p:.2f}", va="center", fontsize=8)
        ax.text(a + 0.01, yi + 0.2, f"{a:.2f}", va="center", fontsize=8)
    ax.set_yticks(y, [f"{n} ({counts.get(n, by_label[n].queries)})" for n in names])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.08)
    overall = r.aspects["all"]
    ax.set_title(
        f"Leave-one-out P@{r.k} and AP per label: overall {_fmt(overall.precision_at_k)} / {_fmt(overall.map)} "
        f"(chance {_fmt(r.chance_precision)})",
        fontsize=10,
    )
    ax.set_xlabel("share of the ranking with the query's label")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(plt, fig, path)


def _plot_precision_by_aspect(plt: Any, r: Retrieval, path: Path) -> Path:
    aspects = list(r.aspects)
    names = list(r.aspects["all"].by_label)
    grid = np.array(
        [[r.aspects[a].by_label[n].precision_at_k or np.nan for a in aspects] for n in names]
        + [[r.aspects[a].precision_at_k or np.nan for a in aspects]]
    )
    rows = [*names, "overall"]
    fig, ax = plt.subplots(figsize=(1.3 * len(aspects) + 3.5, 0.5 * len(rows) + 1.8), dpi=110)
    image = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(aspects)):
            v = grid[i, j]
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=9, color="white" if v < 0.6 else "black")
    ax.set_xticks(range(len(aspects)), aspects)
    ax.set_yticks(range(len(rows)), rows)
    ax.axhline(len(names) - 0.5, color="white", lw=2)
    ax.set_title(f"Leave-one-out P@{r.k} by label and aspect")
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    return _save(plt, fig, path)


def _plot_recall_latency(plt: Any, ix: IndexQuality, latencies: dict[str, np.ndarray], path: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110, gridspec_kw={"width_ratios": [2.2, 1]})
    names = list(latencies)
    data = [np.asarray(latencies[n]) * 1e3 for n in names]
    if data:
        left.boxplot(data, vert=False, showfliers=True, whis=(5, 95))
        left.set_yticks(
            range(1, len(names) + 1),
            [f"{n}\np50 {np.percentile(d, 50):.2f} ms, p95 {np.percentile(d, 95):.2f} ms" for n, d in zip(names, data, strict=True)],
        )
        if max(float(d.max()) for d in data if len(d)) / max(min(float(np.median(d)) for d in data if len(d)), 1e-9) > 30:
            _plain_log_x(left)
    left.set_xlabel("milliseconds per query (whiskers: p5–p95)")
    left.set_title(f"Query latency, {ix.queries} held-out queries")
    left.grid(True, axis="x", alpha=0.3)
    values = [_finite(ix.recall_at_k) or 0.0, _finite(ix.recall_least) or 0.0]
    bars = right.bar(["similar", "least similar"], values, color=["tab:blue", "tab:purple"])
    for b, v in zip(bars, values, strict=True):
        right.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.3f}", ha="center", fontsize=9)
    right.set_ylim(0, 1.1)
    right.set_title(f"{ix.backend} recall@{ix.k} vs exact")
    right.grid(True, axis="y", alpha=0.3)
    return _save(plt, fig, path)
