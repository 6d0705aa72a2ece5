"""Playlists: their records (seeds, spacing rule, entries) and the files any player reads, M3U8
(extended M3U, UTF-8) and XSPF. :mod:`soundalike.radio` makes them.

Paths in an M3U8 are relative to the playlist's folder when the playlist sits inside the library's
music root (the folder holding every track, or the root given), so the folder can move as a whole;
otherwise they are absolute. XSPF locations are always absolute ``file://`` URIs, percent-encoded
(RFC 8089), as the XSPF specification asks.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soundalike.catalog import Track
from soundalike.errors import RadioError

SPREAD_KINDS = ("artist", "album", "folder")


@dataclass(frozen=True)
class Spread:
    """No two tracks with the same ``kind`` (artist, album or folder) within ``within`` places."""

    kind: str
    within: int

    def __post_init__(self) -> None:
        if self.kind not in SPREAD_KINDS:
            raise RadioError(f"spread: unknown kind {self.kind!r}; expected one of {', '.join(SPREAD_KINDS)}")
        if self.within < 1:
            raise RadioError(f"spread: the distance must be at least 1, got {self.within}")

    def key(self, track: Track) -> str | None:
        """What two tracks must not share (None: the track has no such tag and is never held back)."""
        if self.kind == "folder":
            return os.path.dirname(track.path)
        if self.kind == "artist":
            return track.artist.strip().casefold() if track.artist and track.artist.strip() else None
        if not track.album or not track.album.strip():
            return None
        return f"{(track.artist or '').strip().casefold()}\x00{track.album.strip().casefold()}"


@dataclass(frozen=True)
class Seed:
    """Where a radio starts: a catalog track, or an audio file that need not be in the library.

    Attributes
    ----------
    vector : np.ndarray [shape=(dim,)]
        Normalised track vector (``aspect="all"``).
    label : str
        How to name the seed.
    track : Track or None
        The catalog track, when the seed is one.
    row : int or None
        Its row in the index.
    segments, segment_starts : np.ndarray or None
        Normalised segment vectors and start times of a file seed (to recognise its copies).
    """

    vector: np.ndarray
    label: str
    track: Track | None = None
    row: int | None = None
    segments: np.ndarray | None = None
    segment_starts: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.track is None:
            return {"type": "file", "path": self.label}
        return {
            "type": "track",
            "track_id": self.track.id,
            "path": self.track.display_path,
            "title": self.track.title,
            "artist": self.track.artist,
        }


@dataclass(frozen=True)
class PlaylistEntry:
    """One track of a playlist.

    Attributes
    ----------
    position : int
        1-based.
    track : Track
    to_previous : float
        Similarity ``(1 + c) / 2`` to the track before (the last seed for the first track).
    to_seeds : float
        Mean similarity to the seeds (for a path: to the target point of this step).
    distance : float
        ``sqrt(2 − 2c)`` to the track before, over all families (what smoothness is measured in).
    relaxed : bool
        The spacing rule could not be kept for this place.
    """

    position: int
    track: Track
    to_previous: float
    to_seeds: float
    distance: float
    relaxed: bool = False

    def to_dict(self) -> dict[str, Any]:
        t = self.track
        return {
            "position": self.position,
            "track_id": t.id,
            "path": t.display_path,
            "title": t.title,
            "artist": t.artist,
            "album": t.album,
            "duration": None if t.duration is None else round(t.duration, 3),
            "to_previous": round(self.to_previous, 6),
            "to_seeds": round(self.to_seeds, 6),
            "distance": round(self.distance, 6),
            "relaxed": self.relaxed,
        }


@dataclass(frozen=True)
class Playlist:
    """A radio or a path: the seeds, how it was made, and the tracks in order."""

    kind: str  # "radio" or "path"
    seeds: list[Seed]
    entries: list[PlaylistEntry]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def tracks(self) -> list[Track]:
        return [e.track for e in self.entries]

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "seeds": [s.to_dict() for s in self.seeds],
            "options": dict(self.options),
            "tracks": [e.to_dict() for e in self.entries],
        }



__all__ = ["common_root", "entry_location", "m3u8_text", "write_m3u8", "write_xspf", "xspf_text"]

XSPF_NS = "http://xspf.org/ns/0/"


def common_root(tracks: Sequence[Track]) -> Path | None:
    """The deepest folder holding every track (None for no tracks or different drives)."""
    folders = [os.path.dirname(os.path.abspath(t.path)) for t in tracks]
    if not folders:
        return None
    try:
        return Path(os.path.commonpath(folders))
    except ValueError:
        return None


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def entry_location(track: Track, playlist: Path, root: Path | None) -> str:
    """How an M3U8 names ``track``: relative to the playlist's folder when it lies inside ``root``."""
    target = Path(os.path.abspath(track.path))
    folder = Path(os.path.abspath(playlist)).parent
    if root is not None and _inside(folder, Path(os.path.abspath(root))):
        return Path(os.path.relpath(target, folder)).as_posix()
    return str(target)


def _who(track: Track) -> str:
    """``artist – title``, or what there is of it, else the file name without extension."""
    if track.artist and track.title:
        return f"{track.artist} – {track.title}"
    if track.title:
        return track.title
    name = os.path.splitext(os.path.basename(track.display_path))[0]
    return f"{track.artist} – {name}" if track.artist else name


def _one_line(text: str) -> str:
    return " ".join(text.replace("\r", " ").replace("\n", " ").split())


def m3u8_text(
    tracks: Sequence[Track],
    playlist: str | os.PathLike[str] | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    locate: Callable[[Track], str] | None = None,
) -> str:
    """The text of an extended M3U playlist (``#EXTM3U``, one ``#EXTINF:seconds,artist – title`` per track).

    Parameters
    ----------
    tracks : sequence of Track
    playlist : path-like, optional
        Where the playlist will be written (paths are made relative to its folder). Not needed with
        ``locate``.
    root : path-like, optional
        The library's music root; default: the deepest folder holding every track.
    locate : callable, optional
        How to name each track instead of by its path, e.g. the http(s) URL a server plays it at (a
        listener's player is not on the server's file system; the web app's download never names a
        server path).

    Raises
    ------
    RadioError
        With neither ``playlist`` nor ``locate``.
    """
    if locate is None:
        if playlist is None:
            raise RadioError("an M3U8 names its tracks relative to where it is written, or by locate(): give one")
        base = Path(root) if root is not None else common_root(tracks)
        where = Path(playlist)

        def locate(t: Track) -> str:
            return entry_location(t, where, base)

    lines = ["#EXTM3U"]
    for t in tracks:
        seconds = -1 if t.duration is None else round(t.duration)
        lines.append(f"#EXTINF:{seconds},{_one_line(_who(t))}")
        lines.append(_one_line(locate(t)))
    return "\n".join(lines) + "\n"


def write_m3u8(tracks: Sequence[Track], playlist: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None) -> Path:
    """Write :func:`m3u8_text` to ``playlist`` (UTF-8); returns the path written."""
    out = Path(playlist)
    text = m3u8_text(tracks, out, root=root)
    out.write_text(text, encoding="utf-8", errors="surrogateescape")
    return out


def xspf_text(tracks: Sequence[Track], *, title: str = "soundalike radio") -> str:
    """An XSPF 1 document: one ``<track>`` per track with ``location``, ``title``, ``creator``, ``album``, ``duration`` (ms)."""
    ET.register_namespace("", XSPF_NS)
    root = ET.Element(f"{{{XSPF_NS}}}playlist", {"version": "1"})
    ET.SubElement(root, f"{{{XSPF_NS}}}title").text = title
    track_list = ET.SubElement(root, f"{{{XSPF_NS}}}trackList")
    for t in tracks:
        item = ET.SubElement(track_list, f"{{{XSPF_NS}}}track")
        # as_uri percent-encodes the path's bytes, so undecodable names still resolve to the file
        ET.SubElement(item, f"{{{XSPF_NS}}}location").text = Path(os.path.abspath(t.path)).as_uri()
        ET.SubElement(item, f"{{{XSPF_NS}}}title").text = t.title or os.path.splitext(os.path.basename(t.display_path))[0]
        if t.artist:
            ET.SubElement(item, f"{{{XSPF_NS}}}creator").text = t.artist
        if t.album:
            ET.SubElement(item, f"{{{XSPF_NS}}}album").text = t.album
        if t.duration is not None:
            ET.SubElement(item, f"{{{XSPF_NS}}}duration").text = str(round(t.duration * 1000))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_xspf(tracks: Sequence[Track], playlist: str | os.PathLike[str], *, title: str = "soundalike radio") -> Path:
    """Write :func:`xspf_text` to ``playlist`` (UTF-8); returns the path written."""
    out = Path(playlist)
    out.write_text(xspf_text(tracks, title=title), encoding="utf-8")
    return out
