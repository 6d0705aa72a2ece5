"""Labels for evaluation: which catalog tracks belong together (same soundtrack, genre, instrument).

Three sources, each giving a label to some catalog tracks:

* a CSV file with a ``path`` column and a label column (``label`` by default; any other column may be
  chosen, e.g. ``instrument`` in the ground-truth file :func:`soundalike.synth.write_library` writes).
  Relative paths are relative to the CSV's folder. A row whose path is not in the catalog is matched by
  its trailing path components instead, so a labels file still works when the music was ingested from
  another place (a copy, a mount point);
* a tag read at ingest (``genre``, ``artist`` or ``album``);
* the Free Music Archive metadata file ``tracks.csv`` (:func:`read_fma_tracks`): a column such as
  ``genre_top``, keyed by the integer track id that names each audio file (``000123.mp3`` is track
  123).

The FMA file has three header rows: the column group (``album``, ``artist``, ``set``, ``track``), the
column name within the group (``genre_top``, ``title`` …) and a row naming the index (``track_id``);
its fields may hold quoted commas and line breaks.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from soundalike.catalog import OK, Catalog, Track
from soundalike.errors import LabelError

log = logging.getLogger(__name__)

TAGS = ("genre", "artist", "album")
"""Catalog tags usable as labels."""

FMA_INDEX = "track_id"
_FMA_ID = re.compile(r"^0*(\d+)$")


@dataclass(frozen=True)
class LabelSet:
    """Labels of catalog tracks.

    Attributes
    ----------
    source : str
        Where the labels came from, e.g. ``"csv:labels.csv (label)"``.
    by_track : dict of int to str
        Catalog track id → label; tracks without a label are absent.
    unmatched : list of str
        Entries of the source that name no catalog track (paths or FMA ids).
    unlabelled : int
        Analysed catalog tracks that got no label.
    """

    source: str
    by_track: dict[int, str]
    unmatched: list[str] = field(default_factory=list)
    unlabelled: int = 0

    @property
    def counts(self) -> dict[str, int]:
        """Tracks per label, largest first."""
        return dict(Counter(self.by_track.values()).most_common())

    def summary(self) -> dict[str, object]:
        """JSON-ready description (source, counts, unmatched)."""
        return {
            "source": self.source,
            "labelled": len(self.by_track),
            "unlabelled": self.unlabelled,
            "unmatched": len(self.unmatched),
            "counts": self.counts,
        }


def _ok_tracks(catalog: Catalog) -> list[Track]:
    return [t for t in catalog.tracks(status=OK) if t.status == OK]


def _finish(source: str, tracks: Sequence[Track], by_track: dict[int, str], unmatched: list[str]) -> LabelSet:
    if not by_track:
        raise LabelError(f"{source}: no catalog track got a label ({len(unmatched)} entries matched nothing)")
    unlabelled = sum(1 for t in tracks if t.id not in by_track)
    if unmatched:
        log.warning("%s: %d entries name no catalog track, e.g. %s", source, len(unmatched), unmatched[0])
    return LabelSet(source=source, by_track=by_track, unmatched=unmatched, unlabelled=unlabelled)


# -- CSV ---------------------------------------------------------------------------------------


def read_label_csv(path: str | os.PathLike[str], *, column: str | None = None) -> tuple[list[tuple[str, str]], str]:
    """Read ``(path, label)`` pairs from a CSV file with a header row.

    Parameters
    ----------
    path : path-like
        A CSV with a ``path`` column.
    column : str, optional
        The label column. By default ``label``, or the only other column when there are two.

    Returns
    -------
    rows : list of (str, str)
        File paths as written (relative ones are relative to the CSV's folder) and their labels;
        rows with an empty label are left out.
    column : str
        The label column used.

    Raises
    ------
    LabelError
        When the file cannot be read or has no such columns.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            body = list(reader)
    except OSError as exc:
        raise LabelError(f"{path}: cannot read the labels file ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise LabelError(f"{path}: not a UTF-8 CSV file ({exc})") from exc
    lowered = [h.lower() for h in header]
    if "path" not in lowered:
        raise LabelError(f"{path}: expected a header row with a 'path' column, found {header or 'nothing'}")
    path_at = lowered.index("path")
    if column is None:
        others = [h for i, h in enumerate(header) if i != path_at]
        if "label" in lowered:
            column = header[lowered.index("label")]
        elif len(others) == 1:
            column = others[0]
        else:
            raise LabelError(f"{path}: no 'label' column; choose one of {', '.join(others)} (--label-column)")
    if column.lower() not in lowered:
        raise LabelError(f"{path}: no column {column!r}; found {', '.join(header)}")
    label_at = lowered.index(column.lower())
    rows = []
    for line in body:
        if len(line) <= max(path_at, label_at):
            continue
        file, label = line[path_at].strip(), line[label_at].strip()
        if file and label:
            rows.append((file, label))
    return rows, column


def labels_from_csv(
    path: str | os.PathLike[str], catalog: Catalog, *, column: str | None = None
) -> LabelSet:
    """Label catalog tracks from a ``path,label`` CSV file (see the module docstring).

    Raises
    ------
    LabelError
        When the file cannot be read or no catalog track gets a label.
    """
    rows, column = read_label_csv(path, column=column)
    base = Path(path).resolve().parent
    tracks = _ok_tracks(catalog)
    by_path: dict[str, Track] = {}
    for t in tracks:
        by_path[t.path] = t
        by_path.setdefault(os.path.realpath(t.path), t)
    by_track: dict[int, str] = {}
    unmatched: list[str] = []
    suffixes = _Suffixes(tracks)
    for file, label in rows:
        absolute = file if os.path.isabs(file) else str(base / file)
        track = by_path.get(os.path.normpath(absolute)) or by_path.get(os.path.realpath(absolute))
        if track is None:
            track = suffixes.match(file)
        if track is None:
            unmatched.append(file)
        else:
            by_track[track.id] = label
    return _finish(f"csv:{path} ({column})", tracks, by_track, unmatched)


class _Suffixes:
    """Finds the catalog track whose path ends like a labels-file path.

    The longest run of trailing components that names exactly one track wins (``a/b/c.mp3``, then
    ``b/c.mp3``, then ``c.mp3``); as soon as a run names several tracks the path is ambiguous and
    matches nothing.
    """

    def __init__(self, tracks: Sequence[Track]) -> None:
        self._tracks = tracks
        self._by_length: dict[int, dict[tuple[str, ...], list[Track]]] = {}

    def _table(self, length: int) -> dict[tuple[str, ...], list[Track]]:
        if length not in self._by_length:
            table: dict[tuple[str, ...], list[Track]] = {}
            for t in self._tracks:
                parts = Path(t.path).parts
                if len(parts) >= length:
                    table.setdefault(tuple(parts[-length:]), []).append(t)
            self._by_length[length] = table
        return self._by_length[length]

    def match(self, file: str) -> Track | None:
        parts = tuple(p for p in Path(file).parts if p not in ("", ".", "..", os.sep))
        for length in range(len(parts), 0, -1):
            found = self._table(length).get(parts[-length:], [])
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                return None
        return None


# -- tags --------------------------------------------------------------------------------------


def labels_from_tag(catalog: Catalog, tag: str) -> LabelSet:
    """Label catalog tracks by a tag read at ingest (``genre``, ``artist`` or ``album``).

    Raises
    ------
    LabelError
        For an unknown tag, or when no track carries it.
    """
    if tag not in TAGS:
        raise LabelError(f"unknown label tag {tag!r}; expected one of {', '.join(TAGS)}")
    tracks = _ok_tracks(catalog)
    by_track = {t.id: str(getattr(t, tag)).strip() for t in tracks if getattr(t, tag) and str(getattr(t, tag)).strip()}
    return _finish(f"tag:{tag}", tracks, by_track, [])


# -- Free Music Archive ------------------------------------------------------------------------


def read_fma_tracks(path: str | os.PathLike[str], *, column: str = "genre_top") -> dict[int, str]:
    """Read one column of the FMA metadata file ``tracks.csv``, keyed by track id.

    Parameters
    ----------
    path : path-like
        ``fma_metadata/tracks.csv``: three header rows (column group, column name, ``track_id``),
        then one row per track starting with its integer id.
    column : str
        A column name from the second header row (``genre_top``), or ``group.name`` when the name
        occurs in several groups (``set.subset``, ``album.title``). A bare name that several groups
        share means the one in the ``track`` group.

    Returns
    -------
    dict of int to str
        Track id → value; tracks with an empty value are left out.

    Raises
    ------
    LabelError
        When the file cannot be read, does not have the FMA header or lacks the column.
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return _read_fma(csv.reader(fh), path, column)
    except OSError as exc:
        raise LabelError(f"{path}: cannot read the FMA metadata file ({exc.strerror or exc})") from exc


def _read_fma(reader: Iterator[list[str]], path: str | os.PathLike[str], column: str) -> dict[int, str]:
    """The body of :func:`read_fma_tracks` once the file is open."""
    try:
        groups = next(reader, [])
        names = next(reader, [])
        index_row = next(reader, [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise LabelError(f"{path}: not a UTF-8 CSV file ({exc})") from exc
    if not index_row or index_row[0].strip() != FMA_INDEX or len(groups) != len(names):
        raise LabelError(
            f"{path}: not an FMA tracks.csv: expected three header rows (column groups, column "
            f"names, '{FMA_INDEX}'), found {index_row[:1] or 'fewer rows'} in the third"
        )
    at = _fma_column(path, groups, names, column)
    out: dict[int, str] = {}
    try:
        for line_no, row in enumerate(reader, start=4):
            if not row:
                continue
            found = _FMA_ID.match(row[0].strip())
            if found is None:
                raise LabelError(f"{path}: row {line_no}: track id {row[0]!r} is not a whole number")
            value = row[at].strip() if at < len(row) else ""
            if value:
                out[int(found.group(1))] = value
    except (UnicodeDecodeError, csv.Error) as exc:
        raise LabelError(f"{path}: unreadable CSV after {len(out)} tracks ({exc})") from exc
    return out


def _fma_column(path: str | os.PathLike[str], groups: list[str], names: list[str], column: str) -> int:
    group, _, name = column.rpartition(".")
    hits = [i for i, n in enumerate(names) if n.strip() == name and (not group or groups[i].strip() == group)]
    if len(hits) > 1:
        in_track = [i for i in hits if groups[i].strip() == "track"]
        if len(in_track) == 1:
            return in_track[0]
        choices = ", ".join(f"{groups[i]}.{names[i]}" for i in hits)
        raise LabelError(f"{path}: column {column!r} is ambiguous; use one of {choices}")
    if not hits:
        raise LabelError(f"{path}: no column {column!r} in the FMA header")
    return hits[0]


def fma_track_id(path: str | os.PathLike[str]) -> int | None:
    """The FMA track id a file is named by (``.../000/000123.mp3`` → 123), or None."""
    found = _FMA_ID.match(Path(os.fspath(path)).stem)
    return int(found.group(1)) if found else None


def fma_audio_path(audio_dir: str | os.PathLike[str], track_id: int, *, extension: str = ".mp3") -> Path:
    """Where the FMA archives keep a track: ``audio_dir/000/000123.mp3`` for track 123."""
    name = f"{track_id:06d}"
    return Path(audio_dir) / name[:3] / f"{name}{extension}"


def labels_from_fma(
    path: str | os.PathLike[str], catalog: Catalog, *, column: str = "genre_top"
) -> LabelSet:
    """Label catalog tracks named by FMA track id from ``tracks.csv`` (see :func:`read_fma_tracks`).

    Raises
    ------
    LabelError
        When the file cannot be read or no catalog track gets a label.
    """
    values = read_fma_tracks(path, column=column)
    tracks = _ok_tracks(catalog)
    by_track: dict[int, str] = {}
    unmatched: list[str] = []
    for t in tracks:
        tid = fma_track_id(t.path)
        if tid is None:
            continue
        if tid in values:
            by_track[t.id] = values[tid]
        else:
            unmatched.append(str(tid))
    return _finish(f"fma:{path} ({column})", tracks, by_track, unmatched)
