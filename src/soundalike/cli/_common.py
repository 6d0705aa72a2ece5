"""The ``soundalike`` group and what every command shares: settings, the library, errors, progress."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from soundalike import __version__
from soundalike.errors import SoundalikeError
from soundalike.settings import Settings, load_settings
from soundalike.vocabulary import Progress, display_path, distinct_labels

if TYPE_CHECKING:
    from soundalike.library import Library


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


def settings_of(ctx: click.Context, **cli: Any) -> Settings:
    """The settings: defaults < TOML file < environment < this command's options (``None`` = not given)."""
    obj = ctx.obj or {}
    given = {k: v for k, v in cli.items() if v is not None}  # an option left out keeps the group's value
    return load_settings({"library": obj.get("library"), "catalog": obj.get("catalog"), **given}, config_file=obj.get("config"))


def open_library(ctx: click.Context, *, create: bool = False, **cli: Any) -> Library:
    """The library the options name (see :class:`soundalike.library.Library`)."""
    from soundalike.library import Library

    return Library.open(settings_of(ctx, **cli), create=create)


def library_option(f: Callable[..., Any]) -> Callable[..., Any]:
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


def catalog_uri_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--catalog", "catalog_uri", default=None, metavar="URI", help="Catalog: a SQLite file or mongodb://HOST/DB.")(f)


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)


def quiet_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--quiet", "-q", is_flag=True, help="No progress bar.")(f)


def say_index(quiet: bool) -> Callable[[str], None]:
    """A progress callback for index builds: ``index: STEP`` on stderr."""

    def say(message: str) -> None:
        if not quiet:
            click.echo(f"index: {message}", err=True)

    return say


def loaded_index(library: Library, *, quiet: bool = False) -> Any:
    """The library's index, saying on stderr why it was rebuilt when it was (and only then; never
    with ``quiet``)."""
    loaded = library.index()
    if loaded.rebuilt_because is not None and not quiet:
        index = loaded.index
        click.echo(f"index: rebuilt ({index.backend}, {index.count} tracks) because {loaded.rebuilt_because}", err=True)
    return loaded.index


def answering_index(library: Library) -> Any:
    """:func:`loaded_index` for a command that answers queries, then BLAS and OpenMP on one thread
    for the answering (:func:`soundalike.threads.one_math_thread`; after the index, whose rebuild
    may use more)."""
    from soundalike.threads import one_math_thread

    index = loaded_index(library)
    one_math_thread()
    return index


def printable(path: str) -> str:
    """A path for one terminal line."""
    return display_path(path).replace("\n", "\\n")


def track_names(tracks: Sequence[Any]) -> list[str]:
    """What a table calls each track: "artist — title", else the file name, with as much of the folder
    as tells apart two that would read the same (:func:`soundalike.vocabulary.distinct_labels`)."""
    names = [" — ".join(x for x in (t.artist, t.title) if x) or os.path.basename(display_path(t.path)) for t in tracks]
    return [printable(label) for label in distinct_labels(names, [t.path for t in tracks])]


@contextmanager
def progress_bar(label: str, quiet: bool) -> Iterator[Progress]:
    """A ``progress(event, done, total)`` callback drawing one tqdm bar (count, rate, ETA)."""
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


@contextmanager
def stage_bars(quiet: bool, names: dict[str, str]) -> Iterator[Progress]:
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
                total=total, desc=names.get(stage, stage), unit="step", file=sys.stderr, mininterval=0.5, dynamic_ncols=True
            )
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield update
    finally:
        for bar in bars.values():
            bar.close()
