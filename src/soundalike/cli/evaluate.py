"""Commands that measure: tune (index parameters), evaluate (quality, with a report), sample (FMA)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from soundalike.cli._common import library_option, loaded_index, main, open_library, stage_bars
from soundalike.vocabulary import TUNABLE_BACKENDS

_STAGES = {
    "tune": "tuning",
    "silhouette": "k-means",
    "precision": "precision@k",
    "excerpts": "excerpts",
    "index": "index recall",
}


@main.command()
@library_option
@click.option("--target-recall", type=click.FloatRange(0.0, 1.0), default=0.95, show_default=True, help="Recall@k the chosen configuration must reach.")
@click.option("-k", type=click.IntRange(min=1, max=1000), default=10, show_default=True, help="Neighbours per query.")
@click.option("--backend", type=click.Choice(TUNABLE_BACKENDS), default=None, help="Backend to tune (default: the library's index backend).")
@click.option("--queries", type=click.IntRange(min=2), default=500, show_default=True, help="Library tracks used as held-out queries.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Recall-versus-speed PNG (default LIBRARY/tune-BACKEND.png).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for choosing the queries.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def tune(
    ctx: click.Context, target_recall: float, k: int, backend: str | None, queries: int, plot: Path | None, seed: int, quiet: bool
) -> None:
    """Grid-search the index parameters and save the fastest configuration meeting the target recall."""
    from soundalike import evaluate as ev

    library = open_library(ctx)
    backend = backend or library.index_backend
    if backend not in TUNABLE_BACKENDS:
        raise click.UsageError(f"the {backend} index has nothing to tune; give --backend " + " or --backend ".join(TUNABLE_BACKENDS))
    index = loaded_index(library, quiet=quiet)
    with stage_bars(quiet, _STAGES) as progress:
        result = ev.tune_vectors(
            index.vectors, backend=backend, k=k, target=target_recall, queries=queries, seed=seed, progress=progress
        )
    click.echo(ev.format_tune_table(result))
    plot_path = ev.plot_tuning(result, plot or library.folder / f"tune-{backend}.png")
    plot_path.with_suffix(".json").write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    click.echo(f"plot: {plot_path} (table: {plot_path.with_suffix('.json')})")
    if result.chosen is None:
        raise ev.TuneError(f"no configuration reached recall@{result.k} {target_recall:g}; nothing saved")
    saved = library.save_tuned(backend, result.chosen.params)
    click.echo(f"saved {backend} parameters {json.dumps(result.chosen.params, sort_keys=True)} to {saved}")
    if backend == library.index_backend:
        current = index.manifest.params
        if index.backend == backend and all(current.get(key) == value for key, value in result.chosen.params.items()):
            click.echo("the current index already uses them")
        else:
            click.echo("the index is rebuilt with them on its next use (or now: soundalike index)")
    else:
        click.echo(f"they apply when the index backend is {backend} (soundalike index --backend {backend})")


@main.command()
@library_option
@click.option("--labels", "labels_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="CSV with path and label columns.")
@click.option("--label-tag", type=click.Choice(("genre", "artist", "album")), default=None, help="Use this tag as the label.")
@click.option("--fma-metadata", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="FMA tracks.csv (labels by track id in the file name).")
@click.option("--label-column", default=None, help="Label column of --labels (default 'label') or --fma-metadata (default genre_top).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Report folder (default LIBRARY/report).")
@click.option("-k", type=click.IntRange(min=1, max=1000), default=10, show_default=True, help="Cut-off of precision@k and recall@k.")
@click.option("--excerpts", type=click.IntRange(min=0), default=100, show_default=True, help="Tracks to cut a query excerpt from (0 skips).")
@click.option("--excerpt-seconds", type=click.FloatRange(min=1.0), default=10.0, show_default=True, help="Excerpt length.")
@click.option("--snr-db", type=float, default=30.0, show_default=True, help="Noise added to excerpts, dB below their RMS.")
@click.option("--bitrate", default="96k", show_default=True, help="MP3 bitrate of the excerpts.")
@click.option("--queries", type=click.IntRange(min=2), default=200, show_default=True, help="Held-out queries for index recall and latency.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling excerpts, noise and queries.")
@click.option(
    "--baseline", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="An earlier metrics.json of the same tracks: compare P@k and mAP with it query by query.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print metrics.json instead of the summary.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.pass_context
def evaluate(
    ctx: click.Context,
    labels_csv: Path | None,
    label_tag: str | None,
    fma_metadata: Path | None,
    label_column: str | None,
    report_dir: Path | None,
    k: int,
    excerpts: int,
    excerpt_seconds: float,
    snr_db: float,
    bitrate: str,
    queries: int,
    seed: int,
    baseline: Path | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Measure recommendation quality, clip robustness and the index; write a report with plots.

    With --baseline (e.g. a copy of LIBRARY/report/metrics.json made before a change of weights,
    settings or version), the summary says whether P@k and mAP moved by more than another draw of
    tracks could move them.
    """
    from soundalike import evaluate as ev
    from soundalike import labels as lab

    if sum(x is not None for x in (labels_csv, label_tag, fma_metadata)) > 1:
        raise click.UsageError("give at most one of --labels, --label-tag and --fma-metadata")
    # read first: it may be the metrics.json this run overwrites
    earlier = ev.read_baseline(baseline) if baseline is not None else None
    library = open_library(ctx)
    catalog = library.catalog
    labels = None
    if labels_csv is not None:
        labels = lab.labels_from_csv(labels_csv, catalog, column=label_column)
    elif fma_metadata is not None:
        labels = lab.labels_from_fma(fma_metadata, catalog, column=label_column or "genre_top")
    elif label_tag is not None:
        labels = lab.labels_from_tag(catalog, label_tag)
    if labels is not None and labels.unmatched:
        click.echo(f"labels: {len(labels.unmatched)} entries match no catalog track, e.g. {labels.unmatched[0]}", err=True)
    index = loaded_index(library, quiet=quiet)
    options = ev.EvalOptions(
        k=k, excerpts=excerpts, excerpt_seconds=excerpt_seconds, snr_db=snr_db, bitrate=bitrate,
        index_queries=queries, seed=seed, max_duration=library.settings.max_duration,
    )  # fmt: skip
    with stage_bars(quiet, _STAGES) as progress:
        evaluation = ev.evaluate_library(
            catalog, index, labels=labels, options=options, baseline=earlier, baseline_name=str(baseline), progress=progress
        )
    folder = report_dir or library.folder / "report"
    written = ev.write_report(evaluation, folder)
    if as_json:
        click.echo(json.dumps(evaluation.to_dict(), indent=2, ensure_ascii=False))
        return
    click.echo(ev.format_summary(evaluation))
    click.echo("  " + _fusion(index))
    click.echo(f"report: {folder / 'report.md'} ({len(written)} files)")


@main.command()
@click.option("--fma-metadata", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True, help="FMA tracks.csv.")
@click.option("--audio-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True, help="Audio folder (000/000123.mp3 layout).")
@click.option("--by", default="genre_top", show_default=True, help="Label column to stratify by (name or group.name).")
@click.option("--n", "-n", "n", type=click.IntRange(min=1), required=True, help="Tracks to draw.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="List file to write (for ingest --from-list).")
@click.option("--seed", type=int, default=0, show_default=True, help="The same seed draws the same sample.")
@click.option("--extension", default=".mp3", show_default=True, help="Audio file extension.")
def sample(fma_metadata: Path, audio_dir: Path, by: str, n: int, out: Path, seed: int, extension: str) -> None:
    """Draw a stratified sample of an FMA-format collection whose label proportions mirror the whole."""
    from soundalike.sample import sample_fma, write_list

    drawn = sample_fma(fma_metadata, audio_dir, n, by=by, seed=seed, extension=extension)
    total = sum(drawn.population.values())
    write_list(drawn, out, header=f"soundalike sample: {n} of {total} tracks of {fma_metadata} by {by}, seed {seed}")
    counts = drawn.counts
    width = max(len(label) for label in drawn.population)
    click.echo(f"{'label':<{width}}  {'whole':>7}  {'share':>6}  {'quota':>8}  {'drawn':>6}")
    for label, whole in sorted(drawn.population.items(), key=lambda kv: (-kv[1], kv[0])):
        click.echo(f"{label:<{width}}  {whole:>7}  {whole / total:>6.1%}  {drawn.quota[label]:>8.2f}  {counts[label]:>6}")
    missing = f" ({drawn.missing_audio} labelled tracks have no audio file)" if drawn.missing_audio else ""
    click.echo(f"wrote {len(drawn.paths)} of {total} paths to {out}{missing}; ingest them with: soundalike ingest --from-list {out}")


def _fusion(index: Any) -> str:
    """How the aspects combine into `all` for this library (weights and the windows' share)."""
    from soundalike.windows import WINDOW_WEIGHT

    weights = {f: w for f, w in index.track_norm.weights.items() if w > 0}
    total = sum(weights.values())
    shares = ", ".join(f"{f} {w:.3g} ({w / total:.0%})" for f, w in weights.items())
    return f"fusion: all = {1 - WINDOW_WEIGHT:g} × families [{shares}] + {WINDOW_WEIGHT:g} × windows"
