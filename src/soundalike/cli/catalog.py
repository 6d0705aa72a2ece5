"""``soundalike catalog``: move a catalog between SQLite and MongoDB without loss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from soundalike.cli._common import (
    catalog_uri_option,
    library_option,
    main,
    open_library,
    progress_bar,
    quiet_option,
)


@main.group("catalog")
def catalog_group() -> None:
    """Move a catalog between SQLite and MongoDB without loss (export, import, copy)."""


def _moved(summary: Any) -> str:
    return f"{summary.tracks} tracks ({summary.analysed} analysed, {summary.failed} failed, revision {summary.revision})"


@catalog_group.command("export")
@click.argument("file", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@library_option
@catalog_uri_option
@quiet_option
@click.pass_context
def catalog_export(ctx: click.Context, file: Path, catalog_uri: str | None, quiet: bool) -> None:
    """Write the whole catalog (tracks, failures, vectors, segments, meta) to FILE (.jsonl.gz)."""
    from soundalike.catalog import transfer

    catalog = open_library(ctx, catalog=catalog_uri).catalog
    with progress_bar("exporting", quiet) as progress:
        summary = transfer.export_catalog(catalog, file, progress=progress)
    click.echo(f"exported {_moved(summary)} from {catalog.location} to {file}")


@catalog_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@library_option
@catalog_uri_option
@quiet_option
@click.pass_context
def catalog_import(ctx: click.Context, file: Path, catalog_uri: str | None, quiet: bool) -> None:
    """Load FILE (from `catalog export`) into an empty catalog and verify every record and vector."""
    from soundalike.catalog import transfer

    catalog = open_library(ctx, create=True, catalog=catalog_uri).catalog
    with progress_bar("importing", quiet) as progress:
        summary = transfer.import_catalog(file, catalog, progress=progress)
    click.echo(f"imported {_moved(summary)} into {catalog.location}; every record and vector matches {file}")


@catalog_group.command("copy")
@library_option
@click.option("--from", "source_uri", default=None, metavar="URI", help="Source catalog (default: the library's).")
@click.option("--to", "target_uri", required=True, metavar="URI", help="Target catalog: a SQLite file or mongodb://HOST/DB (must be empty).")
@quiet_option
@click.pass_context
def catalog_copy(ctx: click.Context, source_uri: str | None, target_uri: str, quiet: bool) -> None:
    """Copy the catalog into another backend and verify every record and vector."""
    from soundalike.catalog import open_catalog, transfer

    library = open_library(ctx, catalog=source_uri)
    source = library.catalog
    target = open_catalog(library.folder, target_uri, create=True)
    with progress_bar("copying", quiet) as progress:
        summary = transfer.copy_catalog(source, target, progress=progress)
    click.echo(f"copied {_moved(summary)} from {source.location} to {target.location}; every record and vector matches")
