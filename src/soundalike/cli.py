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
    given = {k: v for k, v in cli.items() if v is not None}  # an option left out keeps the group's value
    return load_settings({"library": obj.get("library"), "catalog": obj.get("catalog"), **given}, config_file=obj.get("config"))


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
@click.option("--catalog", default=None, metavar="URI", help="Catalog: a SQLite file or mongodb://HOST/DB (default LIBRARY/catalog.sqlite or $SOUNDALIKE_CATALOG).")
@click.option("--verbose", "-v", is_flag=True, help="Log details and show tracebacks.")
@click.pass_context
def main(ctx: click.Context, library: Path | None, config: Path | None, catalog: str | None, verbose: bool) -> None:
    """Recommend music that sounds alike."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("GLOG_minloglevel", "2")  # ScaNN's C++ logging
    ctx.obj = {"library": library, "config": config, "verbose": verbose, "catalog": catalog}


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
@click.option("--dask", "dask_address", metavar="ADDRESS", default=None, help="Analyse on a Dask cluster: tcp://SCHEDULER:8786, or local[:N] to start N local worker processes.")
@click.option("--ship-bytes", is_flag=True, help="With --dask: send each file's bytes to the workers (they need not see the files).")
@click.option("--catalog", "catalog_uri", default=None, metavar="URI", help="Catalog: a SQLite file or mongodb://HOST/DB.")
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
    dask_address: str | None,
    ship_bytes: bool,
    catalog_uri: str | None,
) -> None:
    """Analyse the audio files under PATHS into the library."""
    from soundalike import ingest as ingest_mod

    settings = _settings(ctx, workers=workers, index=index_backend, catalog=catalog_uri)
    all_paths = [str(p) for p in paths] + (ingest_mod.read_list(from_list) if from_list else [])
    if not all_paths:
        raise click.UsageError("give at least one PATH (or --from-list FILE)")
    if not prune:  # with --prune a vanished folder is what the user wants to drop
        ingest_mod.require_paths(paths)
    catalog = _open_catalog(settings, create=True)
    runner = ingest_mod.ProcessRunner(settings.workers) if settings.workers > 1 else ingest_mod.SerialRunner()
    options = ingest_mod.AnalysisOptions(max_duration=settings.max_duration, min_duration=settings.min_duration)
    with _dask_runner(ctx, settings, dask_address, ship_bytes) as dask_runner, _progress_bar("analysing", quiet) as progress:
        summary = ingest_mod.ingest(
            all_paths,
            catalog,
            runner=dask_runner or runner,
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


@main.command()
@_library_option
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1; 0.0.0.0 for every interface, which needs a password or --public).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port (default 8000; 0 picks a free one).")
@click.option("--threads", type=click.IntRange(min=1), default=4, show_default=True, help="Request threads.")
@click.option("--idle-timeout", type=click.IntRange(min=1), default=30, show_default=True, help="Seconds a connection may send nothing before it is closed.")
@click.option("--request-timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True, help="Seconds a request may take to arrive, plus 1 s per 500 bytes received (slow clients are answered 408).")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File holding the password (or its hash from `python -m soundalike.web.auth`) every page and API call asks for; default $SOUNDALIKE_PASSWORD, else none.")
@click.option("--public", is_flag=True, help="Serve a non-loopback --host without a password (to everyone who reaches it).")
@click.pass_context
def serve(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    threads: int,
    idle_timeout: int,
    request_timeout: float,
    password_file: Path | None,
    public: bool,
) -> None:
    """Serve the web app and JSON API with waitress (a production WSGI server)."""
    import signal

    from soundalike.errors import EmptyLibraryError
    from soundalike.web import auth, create_app
    from soundalike.web.server import ServerLimits, create_server

    settings = _settings(ctx, host=host, port=port)
    password = auth.load_password(password_file)
    auth.check_exposure(settings.host, password=password is not None, public=public)
    catalog = _open_catalog(settings, create=False)
    try:
        index, rebuilt = _build_index(settings, catalog, force=False, quiet=False)
    except EmptyLibraryError:
        index, rebuilt = None, False
        click.echo("no tracks yet: run `soundalike ingest PATH`; the app picks up the index once it is built", err=True)
    if rebuilt:
        click.echo(f"index: rebuilt ({index.backend}, {index.count} tracks) because the catalog changed", err=True)
    upload_limit = int(settings.max_upload_mb * 1024 * 1024)
    app = create_app(
        {
            "SOUNDALIKE_LIBRARY": settings.library,
            "SOUNDALIKE_CATALOG": catalog,
            "SOUNDALIKE_INDEX": index,
            "SOUNDALIKE_K": settings.k,
            "SOUNDALIKE_MAX_DURATION": settings.max_duration,
            "MAX_CONTENT_LENGTH": upload_limit,
            "SOUNDALIKE_PASSWORD_HASH": password,
        },
        settings=settings,
    )
    limits = ServerLimits(idle_timeout=idle_timeout, request_timeout=request_timeout)
    try:
        # waitress with bounds on slow clients, body and header sizes (see soundalike.web.server)
        server: Any = create_server(
            app, host=settings.host, port=settings.port, threads=threads, max_body_bytes=upload_limit, limits=limits
        )
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {settings.host}:{settings.port} ({exc.strerror or exc})") from exc
    listening = getattr(server, "effective_listen", None) or [(server.effective_host, server.effective_port)]
    urls = ", ".join(f"http://{f'[{h}]' if ':' in str(h) else h}:{p}/" for h, p in listening)
    what = f"{index.count} tracks, {index.backend} index" if index is not None else "empty library"
    click.echo(f"serving {settings.library} ({what}) at {urls}  (Ctrl+C stops)")
    sys.stdout.flush()

    def _stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # waitress's loop stops on it, as on Ctrl+C

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    click.echo("stopped")


# -- tuning and evaluation (issue 4) ----------------------------------------------------------

_STAGES = {
    "tune": "tuning",
    "silhouette": "k-means",
    "precision": "precision@k",
    "excerpts": "excerpts",
    "index": "index recall",
}


@contextmanager
def _stage_bars(quiet: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A ``progress(stage, done, total)`` callback drawing one tqdm bar per stage."""
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if quiet:
            return
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(
                total=total, desc=_STAGES.get(stage, stage), unit="step", file=sys.stderr, mininterval=0.5, dynamic_ncols=True
            )
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield update
    finally:
        for bar in bars.values():
            bar.close()


@main.command()
@_library_option
@click.option("--target-recall", type=click.FloatRange(0.0, 1.0), default=0.95, show_default=True, help="Recall@k the chosen configuration must reach.")
@click.option("-k", type=click.IntRange(min=1, max=1000), default=10, show_default=True, help="Neighbours per query.")
@click.option("--backend", type=click.Choice(("scann", "annoy")), default=None, help="Backend to tune (default: the configured index).")
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

    settings = _settings(ctx)
    backend = backend or settings.index
    if backend == "exact":
        raise click.UsageError("the exact index has nothing to tune; give --backend scann or --backend annoy")
    catalog = _open_catalog(settings, create=False)
    index, _ = _build_index(settings, catalog, force=False, quiet=quiet)
    with _stage_bars(quiet) as progress:
        result = ev.tune_vectors(
            index.vectors, backend=backend, k=k, target=target_recall, queries=queries, seed=seed, progress=progress
        )
    click.echo(ev.format_tune_table(result))
    plot_path = ev.plot_tuning(result, plot or Path(settings.library) / f"tune-{backend}.png")
    plot_path.with_suffix(".json").write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    click.echo(f"plot: {plot_path} (table: {plot_path.with_suffix('.json')})")
    if result.chosen is None:
        raise ev.TuneError(f"no configuration reached recall@{result.k} {target_recall:g}; nothing saved")
    saved = ev.save_tuned(settings.library, backend, result.chosen.params)
    click.echo(f"saved {backend} parameters {json.dumps(result.chosen.params, sort_keys=True)} to {saved}")
    if backend == settings.index:
        current = index.manifest.get("params") or {}
        if index.backend == backend and all(current.get(key) == value for key, value in result.chosen.params.items()):
            click.echo("the current index already uses them")
        else:
            click.echo("the index is rebuilt with them on its next use (or now: soundalike index)")
    else:
        click.echo(f"they apply when the index backend is {backend} (soundalike index --backend {backend})")


@main.command()
@_library_option
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
    as_json: bool,
    quiet: bool,
) -> None:
    """Measure recommendation quality, clip robustness and the index; write a report with plots."""
    from soundalike import evaluate as ev
    from soundalike import labels as lab

    if sum(x is not None for x in (labels_csv, label_tag, fma_metadata)) > 1:
        raise click.UsageError("give at most one of --labels, --label-tag and --fma-metadata")
    settings = _settings(ctx)
    catalog = _open_catalog(settings, create=False)
    labels = None
    if labels_csv is not None:
        labels = lab.labels_from_csv(labels_csv, catalog, column=label_column)
    elif fma_metadata is not None:
        labels = lab.labels_from_fma(fma_metadata, catalog, column=label_column or "genre_top")
    elif label_tag is not None:
        labels = lab.labels_from_tag(catalog, label_tag)
    if labels is not None and labels.unmatched:
        click.echo(f"labels: {len(labels.unmatched)} entries match no catalog track, e.g. {labels.unmatched[0]}", err=True)
    index, _ = _build_index(settings, catalog, force=False, quiet=quiet)
    options = ev.EvalOptions(
        k=k, excerpts=excerpts, excerpt_seconds=excerpt_seconds, snr_db=snr_db, bitrate=bitrate,
        index_queries=queries, seed=seed, max_duration=settings.max_duration,
    )  # fmt: skip
    with _stage_bars(quiet) as progress:
        evaluation = ev.evaluate_library(catalog, index, labels=labels, options=options, progress=progress)
    folder = report_dir or Path(settings.library) / "report"
    written = ev.write_report(evaluation, folder)
    m = evaluation.metrics
    if as_json:
        click.echo(json.dumps(m, indent=2, ensure_ascii=False))
        return
    _echo_evaluation(m)
    click.echo(f"report: {folder / 'report.md'} ({len(written)} files)")


def _echo_evaluation(m: dict[str, Any]) -> None:
    def f(v: Any, d: int = 3) -> str:
        return "n/a" if v is None else f"{v:.{d}f}"

    labels = m["labels"]
    source = f"; labels {labels['source']}, {labels['labelled']} labelled" if labels else "; no labels"
    click.echo(f"evaluated {m['tracks']} tracks{source}")
    r = m["retrieval"]
    if r:
        a = r["aspects"]["all"]
        click.echo(
            f"  P@{r['k']} {f(a['precision_at_k'])}  mAP {f(a['map'])}  (chance P@{r['k']} {f(r['chance_precision'])}; "
            f"leave-one-out on {r['queries']} tracks, exact search)"
        )
        click.echo("  by aspect (P@k / mAP): " + ", ".join(
            f"{name} {f(v['precision_at_k'], 2)}/{f(v['map'], 2)}" for name, v in r["aspects"].items()
        ))  # fmt: skip
        for name, v in a["by_label"].items():
            click.echo(f"    {name}: P@{r['k']} {f(v['precision_at_k'])}  AP {f(v['map'])}  ({v['queries']} queries)")
    c = m["clips"]
    if c:
        click.echo(
            f"  excerpts: top-1 {f(c['top1'])}  top-10 {f(c['top10'])}  ({c['excerpts']} excerpts of {c['excerpt_seconds']:g} s, "
            f"{c['snr_db']:g} dB SNR, {c['bitrate']} MP3" + (f"; {len(c['skipped'])} skipped" if c["skipped"] else "") + ")"
        )
    s = m["silhouette"]
    extra = f"; labels {f(s['label_silhouette'])}, adjusted Rand {f(s['adjusted_rand'])}" if s.get("label_silhouette") is not None else ""
    click.echo(f"  silhouette {f(s['score'])} (k-means, k = {s['k']} chosen by {s['chosen_by']}{extra})")
    ix = m["index"]
    click.echo(
        f"  {ix['backend']} recall@{ix['k']} {f(ix['recall_at_k'])} (least similar {f(ix['recall_least'])}), "
        f"latency p50 {f(ix['latency_ms']['p50'], 2)} ms, p95 {f(ix['latency_ms']['p95'], 2)} ms"
        + (f"; whole query p50 {f(ix['recommend_latency_ms']['p50'], 1)} ms" if ix.get("recommend_latency_ms") else "")
    )


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


# -- distributed ingest and MongoDB catalog (issue 5) -----------------------------------------


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


def _catalog_uri_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--catalog", "catalog_uri", default=None, metavar="URI", help="Catalog: a SQLite file or mongodb://HOST/DB.")(f)


@main.group("catalog")
def catalog_group() -> None:
    """Move a catalog between SQLite and MongoDB without loss (export, import, copy)."""


def _moved(summary: Any) -> str:
    return f"{summary.tracks} tracks ({summary.analysed} analysed, {summary.failed} failed, revision {summary.revision})"


@catalog_group.command("export")
@click.argument("file", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@_library_option
@_catalog_uri_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def catalog_export(ctx: click.Context, file: Path, catalog_uri: str | None, quiet: bool) -> None:
    """Write the whole catalog (tracks, failures, vectors, segments, meta) to FILE (.jsonl.gz)."""
    from soundalike.catalog import transfer

    settings = _settings(ctx, catalog=catalog_uri)
    catalog = _open_catalog(settings, create=False)
    with _progress_bar("exporting", quiet) as progress:
        summary = transfer.export_catalog(catalog, file, progress=progress)
    click.echo(f"exported {_moved(summary)} from {catalog.location} to {file}")


@catalog_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_library_option
@_catalog_uri_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def catalog_import(ctx: click.Context, file: Path, catalog_uri: str | None, quiet: bool) -> None:
    """Load FILE (from `catalog export`) into an empty catalog and verify every record and vector."""
    from soundalike.catalog import transfer

    settings = _settings(ctx, catalog=catalog_uri)
    catalog = _open_catalog(settings, create=True)
    with _progress_bar("importing", quiet) as progress:
        summary = transfer.import_catalog(file, catalog, progress=progress)
    click.echo(f"imported {_moved(summary)} into {catalog.location}; every record and vector matches {file}")


@catalog_group.command("copy")
@_library_option
@click.option("--from", "source_uri", default=None, metavar="URI", help="Source catalog (default: the library's).")
@click.option("--to", "target_uri", required=True, metavar="URI", help="Target catalog: a SQLite file or mongodb://HOST/DB (must be empty).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def catalog_copy(ctx: click.Context, source_uri: str | None, target_uri: str, quiet: bool) -> None:
    """Copy the catalog into another backend and verify every record and vector."""
    from soundalike.catalog import open_catalog, transfer

    settings = _settings(ctx, catalog=source_uri)
    source = _open_catalog(settings, create=False)
    target = open_catalog(settings.library, target_uri, create=True)
    with _progress_bar("copying", quiet) as progress:
        summary = transfer.copy_catalog(source, target, progress=progress)
    click.echo(f"copied {_moved(summary)} from {source.location} to {target.location}; every record and vector matches")


if __name__ == "__main__":  # pragma: no cover
    main()
