"""Commands that make playlists and find copies: radio (and --path) and duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import click

from soundalike.cli._common import (
    answering_index,
    json_option,
    library_option,
    loaded_index,
    main,
    open_library,
    printable,
    track_names,
)
from soundalike.vocabulary import ASPECTS, FAMILIES


def _weights(values: tuple[str, ...]) -> dict[str, float] | None:
    """``--weight timbre=2 --weight rhythm=1`` as a dict (None when not given)."""
    if not values:
        return None
    out: dict[str, float] = {}
    for text in values:
        family, sep, number = text.partition("=")
        family = family.strip()
        if not sep or family not in FAMILIES:
            raise click.BadParameter(f"expected ASPECT=WEIGHT with ASPECT one of {', '.join(FAMILIES)}, got {text!r}", param_hint="--weight")
        try:
            out[family] = float(number)
        except ValueError:
            raise click.BadParameter(f"{text!r}: the weight is not a number", param_hint="--weight") from None
    return out


@main.command()
@click.argument("seeds", nargs=-1)
@click.option("-n", type=click.IntRange(min=1, max=10000), default=None, help="Tracks in the playlist (default 50; 10 for --path, ends included).")
@click.option("--from-file", "clip", type=click.Path(dir_okay=False, path_type=Path), default=None, help="An audio file (need not be in the library) as a seed.")
@click.option("--path", "ends", nargs=2, default=None, metavar="FROM TO", help="A sequence moving from track FROM to track TO in even steps.")
@click.option("--drift", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True, help="Closeness to the previous track (1) against closeness to the seeds (0).")
@click.option("--aspect", "-a", type=click.Choice(ASPECTS), default="all", show_default=True, help="Which kind of similarity.")
@click.option("--weight", "weight", multiple=True, metavar="ASPECT=W", help="Per-aspect weight (repeatable), e.g. --weight rhythm=2 --weight timbre=1.")
@click.option("--spread", nargs=2, type=(click.Choice(["artist", "album", "folder"]), click.IntRange(min=1)), default=None, metavar="KIND N", help="No two tracks of one artist, album or folder within N places.")
@click.option("--m3u", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the playlist as M3U8.")
@click.option("--xspf", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the playlist as XSPF.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None, help="Music root: M3U8 paths are relative when the playlist is inside it (default: the folder holding every track of the library).")
@json_option
@library_option
@click.pass_context
def radio(
    ctx: click.Context,
    seeds: tuple[str, ...],
    n: int | None,
    clip: Path | None,
    ends: tuple[str, str] | None,
    drift: float,
    aspect: str,
    weight: tuple[str, ...],
    spread: tuple[str, int] | None,
    m3u: Path | None,
    xspf: Path | None,
    root: Path | None,
    as_json: bool,
) -> None:
    """An ordered playlist after SEEDS (track ids or paths): each track close to the one before and to the seeds.

    Never a seed, a copy of one (byte-identical or transcoded), or a track already played.
    With --path FROM TO, a sequence of -n tracks moving from FROM to TO instead.
    """
    from soundalike.playlists import write_m3u8, write_xspf
    from soundalike.radio import Spread

    weights = _weights(weight)
    rule = Spread(spread[0], spread[1]) if spread else None
    library = open_library(ctx)
    index = answering_index(library)
    if ends is not None:
        if seeds or clip is not None:
            raise click.UsageError("--path takes its two tracks only: give no SEEDS or --from-file with it")
        playlist = library.path(ends[0], ends[1], n=n or 10, aspect=aspect, weights=weights, spread=rule, index=index)
    else:
        if not seeds and clip is None:
            raise click.UsageError("give at least one SEED (a track id or path) or --from-file CLIP")
        playlist = library.radio(
            list(seeds), clip=clip, n=n or 50, drift=drift, aspect=aspect, weights=weights, spread=rule, index=index
        )
    if m3u is not None:
        write_m3u8(playlist.tracks, m3u, root=root or library.music_root())
        click.echo(f"wrote {len(playlist.entries)} tracks to {m3u}", err=True)
    if xspf is not None:
        write_xspf(playlist.tracks, xspf, title=f"soundalike {playlist.kind}")
        click.echo(f"wrote {len(playlist.entries)} tracks to {xspf}", err=True)
    if as_json:
        click.echo(json.dumps(playlist.to_dict(), indent=2, ensure_ascii=False))
        return
    shown = [s.track for s in playlist.seeds if s.track is not None] + [e.track for e in playlist.entries]
    who = dict(zip((t.id for t in shown), track_names(shown), strict=True))
    seeds_text = ", ".join(s.label if s.track is None else f"[{s.track.id}] {who[s.track.id]}" for s in playlist.seeds)
    click.echo(f"{'path' if playlist.kind == 'path' else 'radio'} from {seeds_text}  (aspect: {aspect})")
    click.echo(f"  {'#':>3}  {'prev':>5}  {'seeds':>5}  track")
    for e in playlist.entries:
        mark = "  (spacing relaxed)" if e.relaxed else ""
        click.echo(f"  {e.position:>3}  {e.to_previous:5.3f}  {e.to_seeds:5.3f}  [{e.track.id}] {who[e.track.id]}{mark}")
    if len(playlist.entries) < (n or (10 if ends else 50)):
        click.echo(f"  (only {len(playlist.entries)} tracks: the library has no more that may be played)")


@main.command()
@json_option
@click.option("--quiet", "-q", is_flag=True, help="No progress messages.")
@library_option
@click.pass_context
def duplicates(ctx: click.Context, as_json: bool, quiet: bool) -> None:
    """Groups of tracks that are the same recording: byte copies, transcodes, other bit rates, trimmed silence."""
    library = open_library(ctx)
    index = loaded_index(library, quiet=quiet)
    found = library.duplicates(index=index, progress=None if quiet else lambda msg: click.echo(f"duplicates: {msg}", err=True))
    if as_json:
        click.echo(json.dumps(found.to_dict(), indent=2, ensure_ascii=False))
        return
    if not found.groups:
        click.echo(f"no duplicates among {found.tracks} tracks")
        return
    click.echo(f"{len(found.groups)} groups of duplicates among {found.tracks} tracks")
    for i, group in enumerate(found.groups, start=1):
        click.echo(f"\ngroup {i}:")
        for t in group.tracks:
            duration = "" if t.duration is None else f"{t.duration:7.1f} s"
            click.echo(f"  [{t.id}] {duration}  {printable(t.path)}")
        for p in group.pairs:
            if p.alignment is None:
                click.echo(f"    {p.a.id} = {p.b.id}: byte-identical")
            else:
                a = p.alignment
                click.echo(
                    f"    {p.a.id} ~ {p.b.id}: {a.matched} windows match at offset {a.offset:+.1f} s "
                    f"({a.coverage_a:.0%} / {a.coverage_b:.0%} of each), mean cosine {a.mean_cos:.3f}"
                )
