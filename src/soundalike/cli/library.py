"""Commands that fill and look after a library: ingest, index, stats, failures, check."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from soundalike.cli._common import (
    catalog_uri_option,
    json_option,
    library_option,
    main,
    open_library,
    printable,
    progress_bar,
    quiet_option,
    say_index,
)
from soundalike.settings import Settings
from soundalike.vocabulary import INDEX_CHOICES


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@library_option
@click.option("--workers", "-j", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores).")
@click.option("--from-list", "from_list", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Also ingest the paths listed in this file.")
@click.option("--prune", is_flag=True, help="Drop catalog entries under PATHS whose files are gone.")
@click.option("--retry-failed", is_flag=True, help="Analyse again files that failed before.")
@click.option("--index", "index_backend", type=click.Choice(INDEX_CHOICES), default=None, help="Index backend, remembered for later commands (default: the last chosen, else auto: ScaNN, or faiss for the largest libraries).")
@click.option("--no-index", is_flag=True, help="Do not build the index afterwards.")
@click.option("--style/--no-style", "style", default=None, help="With or without the learned style aspect (without: the fastest analysis); remembered for this library. --style also analyses again the tracks analysed without it (no PATHS needed).")
@quiet_option
@click.option("--dask", "dask_address", metavar="ADDRESS", default=None, help="Analyse on a Dask cluster: tcp://SCHEDULER:8786, or local[:N] to start N local worker processes.")
@click.option("--ship-bytes", is_flag=True, help="With --dask: send each file's bytes to the workers (they need not see the files).")
@catalog_uri_option
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
    style: bool | None,
    quiet: bool,
    dask_address: str | None,
    ship_bytes: bool,
    catalog_uri: str | None,
) -> None:
    """Analyse the audio files under PATHS into the library."""
    from soundalike import ingest as ingest_mod

    all_paths = [str(p) for p in paths] + (ingest_mod.read_list(from_list) if from_list else [])
    if not all_paths and style is not True:
        raise click.UsageError("give at least one PATH (or --from-list FILE, or --style alone)")
    if not prune:  # with --prune a vanished folder is what the user wants to drop
        ingest_mod.require_paths(paths)
    library = open_library(ctx, create=True, workers=workers, catalog=catalog_uri)
    settings = library.settings
    if style is not None:
        library.choose_style(style)
        if "style" in settings.given and settings.style != style:
            click.echo(
                f"note: the settings say style = {str(settings.style).lower()}, so later commands use that; "
                "change it there to keep this choice",
                err=True,
            )
    with_style = library.style if style is None else style
    if not with_style:
        library.note_unstyled()
    again = library.unstyled_paths() if with_style else []
    if again and not quiet:
        click.echo(
            f"{len(again)} tracks were analysed without the learned style aspect (--no-style): "
            "they are analysed again with it",
            err=True,
        )
    runner = ingest_mod.ProcessRunner(settings.workers) if settings.workers > 1 else ingest_mod.SerialRunner()
    options = ingest_mod.AnalysisOptions(
        max_duration=settings.max_duration, min_duration=settings.min_duration, style=with_style
    )
    stale = library.stats().stale
    if stale and not quiet:
        from soundalike.features import FEATURE_VERSION

        click.echo(
            f"{stale} tracks were analysed by an older feature version: they are analysed again "
            f"(feature version {FEATURE_VERSION} adds the learned style aspect)",
            err=True,
        )
    if all_paths or again:
        with _dask_runner(ctx, settings, dask_address, ship_bytes) as dask_runner, progress_bar("analysing", quiet) as progress:
            summary = ingest_mod.ingest(
                all_paths,
                library.catalog,
                runner=dask_runner or runner,
                options=options,
                batch_size=settings.batch_size,
                prune=prune,
                retry_failed=retry_failed,
                again=again,
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
            click.echo(f"  failed: {printable(path)}: {reason}")
    else:
        click.echo("every track is analysed with the learned style aspect: nothing to analyse again")
    if index_backend is not None:
        _note_settings(library, index_backend)
    if no_index or not library.stats().tracks:
        if index_backend is not None:
            library.choose_backend(index_backend)
        return
    loaded = library.index(backend=index_backend, progress=say_index(quiet))
    index = loaded.index
    if loaded.rebuilt:
        click.echo(f"index: {index.backend}, {index.count} tracks, built in {index.manifest.build_seconds['total']:.1f} s")
    else:
        click.echo(f"index: {index.backend}, {index.count} tracks, up to date")


def _note_settings(library: Any, backend: str) -> None:
    """Say so when the settings name another backend than the one just chosen."""
    if library.overridden_by_settings(backend):
        click.echo(
            f"note: the settings say index = {library.settings.index}, so commands without --backend use that; "
            "change it there to keep this choice",
            err=True,
        )


@contextmanager
def _dask_runner(ctx: click.Context, settings: Settings, address: str | None, ship_bytes: bool) -> Iterator[Any]:
    """The Dask runner ``--dask`` asks for (closed afterwards), or ``None`` to run locally."""
    if address is None:
        if ship_bytes:
            raise click.UsageError("--ship-bytes needs --dask ADDRESS")
        yield None
        return
    from soundalike.distributed import DaskRunner

    if not (ctx.obj or {}).get("verbose"):
        import distributed  # noqa: F401 - importing it sets its loggers to INFO; quieten them after

        logging.getLogger("distributed").setLevel(logging.WARNING)
    with DaskRunner(address, workers=settings.workers, ship_bytes=ship_bytes) as runner:
        yield runner


@main.command("index")
@library_option
@click.option("--backend", type=click.Choice(INDEX_CHOICES), default=None, help="Index backend, remembered for later commands (default: the last chosen, else auto: ScaNN, or faiss for the largest libraries).")
@click.pass_context
def index_cmd(ctx: click.Context, backend: str | None) -> None:
    """Rebuild the library's index now."""
    library = open_library(ctx)
    if backend is not None:
        _note_settings(library, backend)
    started = time.perf_counter()
    index = library.rebuild(backend=backend, progress=say_index(False))
    click.echo(f"index: {index.backend}, {index.count} tracks, {len(index.seg_vectors)} segments in {time.perf_counter() - started:.1f} s")


@main.command()
@library_option
@json_option
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Show the library: tracks, hours, failures, index."""
    library = open_library(ctx)
    s = library.stats(count_unstyled=True)
    if as_json:
        click.echo(json.dumps(s.to_dict(), indent=2))
        return
    click.echo(f"library:   {s.library}")
    click.echo(f"catalog:   {s.catalog}")
    click.echo(f"tracks:    {s.tracks} ({s.hours:.2f} hours)")
    click.echo(f"failures:  {s.failures}" + ("  (soundalike failures lists them)" if s.failures else ""))
    if s.stale:
        click.echo(f"stale:     {s.stale} tracks analysed by an older feature version (ingest again to update)")
    if s.without_style:
        click.echo(f"no style:  {s.without_style} tracks analysed without the learned style aspect (ingest --style adds it)")
    ix = s.index
    if ix is None:
        click.echo("index:     none (built by ingest, or `soundalike index`)")
        return
    reason = library.stale_reason()
    state = "up to date" if reason is None else f"rebuilt on next use, because {reason}"
    click.echo(f"index:     {ix.backend}, {ix.tracks} tracks, {ix.segments} segments, {ix.bytes / 1e6:.1f} MB, {state}")


@main.command()
@library_option
@json_option
@click.pass_context
def failures(ctx: click.Context, as_json: bool) -> None:
    """List files that failed analysis, with the reason."""
    rows = open_library(ctx).catalog.tracks(status="failed")
    if as_json:
        click.echo(json.dumps([{"path": t.display_path, "reason": t.error_reason, "error": t.error} for t in rows], indent=2))
        return
    if not rows:
        click.echo("no failures")
        return
    for t in rows:
        click.echo(f"{printable(t.path)}: [{t.error_reason}] {t.error}")
    click.echo(f"{len(rows)} failed")


@main.command()
@library_option
@click.pass_context
def check(ctx: click.Context) -> None:
    """Check the catalog's integrity (exit status 1 when a problem is found)."""
    library = open_library(ctx)
    problems = library.catalog.check()
    if problems:
        for p in problems:
            click.echo(f"problem: {p}")
        ctx.exit(1)
    s = library.stats()
    click.echo(f"ok: {s.tracks} tracks, {s.failures} failures, revision {s.catalog_revision}")
