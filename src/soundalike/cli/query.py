"""Commands that ask the library what sounds alike: query (any audio file) and similar (a track)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from soundalike.cli._common import (
    answering_index,
    json_option,
    library_option,
    main,
    open_library,
    track_names,
)
from soundalike.vocabulary import ASPECTS


def _query_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--segments-csv", type=click.Path(dir_okay=False, writable=True, path_type=Path), help="Write segment matches to this CSV.")(f)
    f = json_option(f)
    f = click.option("--aspect", "-a", type=click.Choice(ASPECTS), default="all", show_default=True, help="Which kind of similarity.")(f)
    f = click.option("-k", type=click.IntRange(min=1, max=1000), default=10, show_default=True, help="How many results.")(f)
    return library_option(f)


def _recommender(ctx: click.Context) -> Any:
    library = open_library(ctx)
    return library.recommender(answering_index(library))


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
    if result.identified is not None:
        ident = result.identified
        click.echo(f"{ident.sentence} (track {ident.track.id}; best window match {ident.score:.3f}, ahead by {ident.margin:.3f})")
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
    names = track_names([r.track for r in recs])
    for r, who in zip(recs, names, strict=True):
        cells = "  ".join(f"{r.aspects[f]:8.3f}" for f in families)
        click.echo(f"  {r.rank:>3}  {r.similarity:5.3f}  {cells}  [{r.track.id}] {who}")
        if r.why is not None:  # the reasons in words, on a line of their own (the row is wide already)
            click.echo(f"  {'':>3}  why: {r.why.text}")


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@_query_options
@click.pass_context
def query(ctx: click.Context, file: Path, k: int, aspect: str, as_json: bool, segments_csv: Path | None) -> None:
    """Recommend library tracks that sound like FILE (any audio file)."""
    result = _recommender(ctx).similar_to_file(file, k=k, aspect=aspect, segments=segments_csv is not None)
    _output(result, as_json, segments_csv)


@main.command()
@click.argument("track")
@_query_options
@click.pass_context
def similar(ctx: click.Context, track: str, k: int, aspect: str, as_json: bool, segments_csv: Path | None) -> None:
    """Recommend tracks that sound like catalog TRACK (an id or a path)."""
    result = _recommender(ctx).similar_to_track(track, k=k, aspect=aspect, segments=segments_csv is not None)
    _output(result, as_json, segments_csv)
