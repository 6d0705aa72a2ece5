"""The ``soundalike`` command line: thin commands over the library.

Expected failures (a bad file, an empty library, a wrong setting) print one line ``error: …`` and
exit with status 1; ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from soundalike import __version__
from soundalike.errors import SoundalikeError
from soundalike.settings import FAMILIES, INDEX_BACKENDS, Settings, load_settings

ASPECT_CHOICES = ("all", *FAMILIES)


class _Group(click.Group):
    """Turns expected errors into one line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SoundalikeError as exc:
            if ctx.obj and ctx.obj.get("verbose"):
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted; what was written so far is kept (run the same command to resume)", err=True)
            ctx.exit(130)


def _settings(ctx: click.Context, **cli: Any) -> Settings:
    obj = ctx.obj or {}
    return load_settings({"library": obj.get("library"), **cli}, config_file=obj.get("config"))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="soundalike")
@click.option(
    "--library",
    "-L",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Library folder (catalog and index). Default ./soundalike-library or $SOUNDALIKE_LIBRARY.",
)
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Settings TOML file.")
@click.option("--verbose", "-v", is_flag=True, help="Log details and show tracebacks.")
@click.pass_context
def main(ctx: click.Context, library: Path | None, config: Path | None, verbose: bool) -> None:
    """Recommend music that sounds alike."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("GLOG_minloglevel", "2")  # ScaNN's C++ logging
    ctx.obj = {"library": library, "config": config, "verbose": verbose}


def _library_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """Also accept ``--library`` after the command name."""

    def store(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
        if value is not None:
            ctx.ensure_object(dict)["library"] = value

    return click.option(
        "--library",
        "-L",
        type=click.Path(file_okay=False, path_type=Path),
        expose_value=False,
        callback=store,
        help="Library folder.",
    )(f)


def _open_catalog(settings: Settings, *, create: bool) -> Any:
    from soundalike.catalog import open_catalog

    return open_catalog(settings.library, settings.catalog, create=create)


@contextmanager
def _progress_bar(label: str, quiet: bool) -> Iterator[Callable[[str, int, int], None]]:
    from tqdm import tqdm

    bar: Any = None

    def update(event: str, done: int, total: int) -> None:
        nonlocal bar
        if quiet:
            return
        if event == "start":
            bar = tqdm(total=total, initial=done, desc=label, unit="file", file=sys.stderr, mininterval=0.5, dynamic_ncols=True)
        elif bar is not None:
            bar.n = done
            bar.refresh() if event == "done" else bar.update(0)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


def _build_index(settings: Settings, catalog: Any, *, force: bool, quiet: bool) -> Any:
    from soundalike.index import bundle

    def say(message: str) -> None:
        if not quiet:
            click.echo(f"index: {message}", err=True)

    params = _tuned_params(settings)
    if force:
        index = bundle.build(
            settings.library, catalog, backend=settings.index, params=params, weights=settings.family_weights, progress=say
        )
        return index, True
    return bundle.ensure(
        settings.library, catalog, backend=settings.index, params=params, weights=settings.family_weights, progress=say
    )


def _tuned_params(settings: Settings) -> dict[str, Any] | None:
    """Index parameters saved by ``soundalike tune`` for this backend, if any."""
    path = Path(settings.library) / "tuned.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    params = saved.get(settings.index)
    return dict(params) if isinstance(params, dict) else None


def _load_recommender(settings: Settings) -> Any:
    from soundalike.recommend import Recommender

    catalog = _open_catalog(settings, create=False)
    index, rebuilt = _build_index(settings, catalog, force=False, quiet=True)
    if rebuilt:
        click.echo(f"index: rebuilt ({index.backend}, {index.count} tracks) because the catalog changed", err=True)
    return Recommender(catalog, index, max_duration=settings.max_duration)


# -- ingest ----------------------------------------------------------------------------------


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@_library_option
@click.option("--workers", "-j", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores).")
@click.option("--from-list", "from_list", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Also ingest the paths listed in this file.")
@click.option("--prune", is_flag=True, help="Drop catalog entries under PATHS whose files are gone.")
@click.option("--retry-failed", is_flag=True, help="Analyse again files that failed before.")
@click.option("--index", "index_backend", type=click.Choice(INDEX_BACKENDS), default=None, help="Index backend (default scann).")
@click.option("--no-index", is_flag=True, help="Do not build the index afterwards.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def ingest(
    ctx: click.Context,
    paths: tuple[Path, ...],
    workers: int | None,
    from_list: Path | None,
    prune: bool,
    retry_failed: bool,
    index_backend: str | None,
    no_index: bool,
    quiet: bool,
) -> None:
    """Analyse the audio files under PATHS into the library."""
    from soundalike import ingest as ingest_mod

    settings = _settings(ctx, workers=workers, index=index_backend)
    all_paths = [str(p) for p in paths] + (ingest_mod.read_list(from_list) if from_list else [])
    if not all_paths:
        raise click.UsageError("give at least one PATH (or --from-list FILE)")
    catalog = _open_catalog(settings, create=True)
    runner = ingest_mod.ProcessRunner(settings.workers) if settings.workers > 1 else ingest_mod.SerialRunner()
    options = ingest_mod.AnalysisOptions(max_duration=settings.max_duration, min_duration=settings.min_duration)
    with _progress_bar("analysing", quiet) as progress:
        summary = ingest_mod.ingest(
            all_paths,
            catalog,
            runner=runner,
            options=options,
            batch_size=settings.batch_size,
            prune=prune,
            retry_failed=retry_failed,
            progress=progress,
        )
    rate = f" ({summary.rate:.1f} files/s, {summary.audio_seconds / max(summary.seconds, 1e-9):.0f}× real time)" if summary.analysed else ""
    click.echo(
        f"found {summary.found} files: analysed {summary.analysed}, unchanged {summary.unchanged}, "
        f"reused {summary.reused}, failed {len(summary.failed)}"
        + (f", pruned {summary.pruned}" if prune else "")
        + f" in {summary.seconds:.1f} s{rate}"
    )
    for path, reason in summary.failed:
        click.echo(f"  failed: {_printable(path)}: {reason}")
    if not no_index:
        stats = catalog.stats(_feature_version())
        if stats.tracks:
            index, rebuilt = _build_index(settings, catalog, force=False, quiet=quiet)
            if rebuilt:
                click.echo(f"index: {index.backend}, {index.count} tracks, built in {index.manifest['build_seconds']['total']:.1f} s")
            else:
                click.echo(f"index: {index.backend}, {index.count} tracks, up to date")


def _feature_version() -> int:
    from soundalike.features import FEATURE_VERSION

    return FEATURE_VERSION


def _printable(path: str) -> str:
    from soundalike.catalog import display_path

    return display_path(path).replace("\n", "\\n")


@main.command()
@_library_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def failures(ctx: click.Context, as_json: bool) -> None:
    """List files that failed analysis, with the reason."""
    settings = _settings(ctx)
    catalog = _open_catalog(settings, create=False)
    rows = catalog.tracks(status="failed")
    if as_json:
        click.echo(json.dumps([{"path": t.display_path, "reason": t.error_reason, "error": t.error} for t in rows], indent=2))
        return
    if not rows:
        click.echo("no failures")
        return
    for t in rows:
        click.echo(f"{_printable(t.path)}: [{t.error_reason}] {t.error}")
    click.echo(f"{len(rows)} failed")


# -- queries ---------------------------------------------------------------------------------


def _query_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--segments-csv", type=click.Path(dir_okay=False, writable=True, path_type=Path), help="Write segment matches to this CSV.")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)
    f = click.option("--aspect", "-a", type=click.Choice(ASPECT_CHOICES), default="all", show_default=True, help="Which kind of similarity.")(f)
    f = click.option("-k", type=click.IntRange(min=1, max=1000), default=10, show_default=True, help="How many results.")(f)
    return _library_option(f)


def _output(result: Any, as_json: bool, segments_csv: Path | None) -> None:
    from soundalike.recommend import write_segment_csv

    if segments_csv is not None:
        with open(segments_csv, "w", encoding="utf-8", newline="") as out:
            n = write_segment_csv(result.segment_matches, out)
        click.echo(f"wrote {n} segment matches to {segments_csv}", err=True)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return
    q = result.query
    what = q["path"] if q["type"] == "file" else f"track {q['track_id']}: {q['path']}"
    click.echo(f"sounds like {what}  (aspect: {q['aspect']})")
    _table("most similar", result.results)
    _table("least similar", result.least_similar)


def _table(title: str, recs: list[Any]) -> None:
    click.echo(f"\n{title}:")
    if not recs:
        click.echo("  (none)")
        return
    families = list(recs[0].aspects)
    head = f"  {'#':>3}  {'sim':>5}  " + "  ".join(f"{f:>8}" for f in families) + "  track"
    click.echo(head)
    for r in recs:
        who = " — ".join(x for x in (r.track.artist, r.track.title) if x) or os.path.basename(r.track.display_path)
        cells = "  ".join(f"{r.aspects[f]:8.3f}" for f in families)
        click.echo(f"  {r.rank:>3}  {r.similarity:5.3f}  {cells}  [{r.track.id}] {who}")


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@_query_options
@click.pass_context
def query(ctx: click.Context, file: Path, k: int, aspect: str, as_json: bool, segments_csv: Path | None) -> None:
    """Recommend library tracks that sound like FILE (any audio file)."""
    settings = _settings(ctx)
    recommender = _load_recommender(settings)
    result = recommender.similar_to_file(file, k=k, aspect=aspect, segments=segments_csv is not None)
    _output(result, as_json, segments_csv)


@main.command()
@click.argument("track")
@_query_options
@click.pass_context
def similar(ctx: click.Context, track: str, k: int, aspect: str, as_json: bool, segments_csv: Path | None) -> None:
    """Recommend tracks that sound like catalog TRACK (an id or a path)."""
    settings = _settings(ctx)
    recommender = _load_recommender(settings)
    result = recommender.similar_to_track(track, k=k, aspect=aspect, segments=segments_csv is not None)
    _output(result, as_json, segments_csv)


# -- library ---------------------------------------------------------------------------------


@main.command()
@_library_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Show the library: tracks, hours, failures, index."""
    from soundalike.index import bundle

    settings = _settings(ctx)
    catalog = _open_catalog(settings, create=False)
    s = catalog.stats(_feature_version())
    manifest = bundle.read_manifest(settings.library)
    index_size = _folder_size(bundle.current_dir(settings.library))
    info = {
        "library": str(settings.library),
        "catalog": catalog.location,
        "tracks": s.tracks,
        "hours": round(s.seconds / 3600, 3),
        "failures": s.failed,
        "stale": s.stale,
        "catalog_revision": s.revision,
        "index": None
        if manifest is None
        else {
            "backend": manifest["backend"],
            "tracks": manifest["count"],
            "segments": manifest["segment_count"],
            "bytes": index_size,
            "up_to_date": manifest["catalog_revision"] == s.revision,
            "feature_version": manifest["feature_version"],
        },
    }
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"library:   {info['library']}")
    click.echo(f"catalog:   {info['catalog']}")
    click.echo(f"tracks:    {s.tracks} ({s.seconds / 3600:.2f} hours)")
    click.echo(f"failures:  {s.failed}" + ("  (soundalike failures lists them)" if s.failed else ""))
    if s.stale:
        click.echo(f"stale:     {s.stale} tracks analysed by an older feature version (ingest again to update)")
    if manifest is None:
        click.echo("index:     none (built by ingest, or `soundalike index`)")
    else:
        state = "up to date" if manifest["catalog_revision"] == s.revision else "out of date (rebuilt on next query)"
        click.echo(
            f"index:     {manifest['backend']}, {manifest['count']} tracks, {manifest['segment_count']} segments, "
            f"{index_size / 1e6:.1f} MB, {state}"
        )


def _folder_size(path: Path | None) -> int:
    if path is None:
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@main.command("index")
@_library_option
@click.option("--backend", type=click.Choice(INDEX_BACKENDS), default=None, help="Index backend (default scann).")
@click.pass_context
def index_cmd(ctx: click.Context, backend: str | None) -> None:
    """Rebuild the library's index now."""
    settings = _settings(ctx, index=backend)
    catalog = _open_catalog(settings, create=False)
    started = time.perf_counter()
    index, _ = _build_index(settings, catalog, force=True, quiet=False)
    click.echo(f"index: {index.backend}, {index.count} tracks, {len(index.seg_vectors)} segments in {time.perf_counter() - started:.1f} s")


@main.command()
@_library_option
@click.pass_context
def check(ctx: click.Context) -> None:
    """Check the catalog's integrity (exit status 1 when a problem is found)."""
    settings = _settings(ctx)
    catalog = _open_catalog(settings, create=False)
    problems = catalog.check()
    if problems:
        for p in problems:
            click.echo(f"problem: {p}")
        ctx.exit(1)
    s = catalog.stats(_feature_version())
    click.echo(f"ok: {s.tracks} tracks, {s.failed} failures, revision {s.revision}")


# -- web app (issue 3) -------------------------------------------------------------------------


# -- tuning and evaluation (issue 4) ----------------------------------------------------------


# -- distributed ingest and MongoDB catalog (issue 5) -----------------------------------------


if __name__ == "__main__":  # pragma: no cover
    main()
