"""Helpers shared by the API and the pages: request validation, track lookup, audio responses."""

from __future__ import annotations

import mimetypes
import os
import re
import threading
from collections.abc import Sequence
from typing import Any

from flask import Flask, Response, current_app, g, send_file, url_for
from werkzeug.exceptions import BadRequest, NotFound

from soundalike.catalog import ROOTS_META, Track, music_roots
from soundalike.errors import EmptyLibraryError
from soundalike.recommend import Recommender
from soundalike.vocabulary import ASPECTS, distinct_labels, relative_path
from soundalike.web.limits import AnalysisGate
from soundalike.web.state import LiveIndex, PictureCache, ResultStore

MAX_K = 100
PER_PAGE = 50
MAX_PER_PAGE = 200
MAX_PAGE = 1_000_000
MAX_TRACK_ID = 2**63 - 1
EMPTY_LIBRARY = "no tracks yet — run `soundalike ingest PATH` to analyse some music"
EXTENSION = "soundalike"


class Shared:
    """Everything the app shares between requests (stored in ``app.extensions['soundalike']``)."""

    def __init__(
        self,
        live: LiveIndex,
        *,
        default_k: int,
        results: ResultStore,
        pictures: PictureCache,
        gate: AnalysisGate,
        analysed_s: float,
    ) -> None:
        self.live = live
        self.default_k = default_k
        self.results = results
        self.pictures = pictures
        self.gate = gate
        self.analysed_s = analysed_s
        self._roots: tuple[tuple[int, str | None], list[str]] | None = None
        self._roots_lock = threading.Lock()

    @property
    def catalog(self) -> Any:
        return self.live.catalog

    def music_roots(self) -> list[str]:
        """The library's music folders (:func:`soundalike.catalog.music_roots`), read again when the catalog
        or the folders it remembers change (a catalog without them is scanned once per revision)."""
        key = (self.catalog.revision(), self.catalog.get_meta(ROOTS_META))
        with self._roots_lock:
            if self._roots is None or self._roots[0] != key:
                self._roots = (key, music_roots(self.catalog))
            return self._roots[1]


def shared(app: Flask | None = None) -> Shared:
    """The :class:`Shared` state of ``app`` (default: the current app)."""
    value: Shared = (app or current_app).extensions[EXTENSION]
    return value


def recommender() -> Recommender:
    """The current recommender.

    Raises
    ------
    EmptyLibraryError
        When the library has no index yet.
    """
    rec = shared().live.get()
    if rec is None:
        raise EmptyLibraryError(EMPTY_LIBRARY)
    return rec


def parse_int(value: str | None, name: str, *, default: int, low: int, high: int) -> int:
    """A whole number from a query or form field, within ``[low, high]``.

    Raises
    ------
    BadRequest
        With a message naming the field, the accepted range and what was sent.
    """
    if value is None or value.strip() == "":
        return default
    text = value.strip()
    if not re.fullmatch(r"[+-]?\d{1,12}", text) or not low <= int(text) <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}, got {value[:40]!r}")
    return int(text)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_QUERY = 200


def parse_search(value: str | None) -> str | None:
    """The text of a library search (``q``), or None for no search.

    Surrounding white space is dropped and the text cut to :data:`MAX_QUERY` characters.

    Raises
    ------
    BadRequest
        When the text holds a control character (SQLite's ``LIKE`` reads a pattern only up to a NUL,
        so ``q=%00`` used to match every track).
    """
    text = (value or "").strip()[:MAX_QUERY]
    found = _CONTROL.search(text)
    if found:
        raise BadRequest(f"q must not contain control characters, got {found.group()!r} at position {found.start()}")
    return text or None


def parse_k(value: str | None, default: int) -> int:
    return parse_int(value, "k", default=min(max(default, 1), MAX_K), low=1, high=MAX_K)


def parse_aspect(value: str | None) -> str:
    if value is None or value.strip() == "":
        return "all"
    if value.strip() not in ASPECTS:
        raise BadRequest(f"unknown aspect {value[:40]!r}; expected one of {', '.join(ASPECTS)}")
    return value.strip()


def get_track(track_id: int) -> Track:
    """The catalog track with this id.

    Raises
    ------
    NotFound
    """
    track = shared().catalog.get(track_id) if 0 < track_id <= MAX_TRACK_ID else None
    if track is None:
        raise NotFound(f"no track {track_id} in the catalog")
    return track


def _roots() -> list[str]:
    if "soundalike_roots" not in g:
        g.soundalike_roots = shared().music_roots()
    roots: list[str] = g.soundalike_roots
    return roots


def public_path(path: str) -> str:
    """A track path as the pages and the API show it: relative to the library's music folders
    (:func:`soundalike.vocabulary.relative_path`), never the server's file system."""
    return relative_path(path, _roots())


def public(doc: Any) -> Any:
    """A ``to_dict()`` answer (recommendations, radio) with every ``path`` field made :func:`public_path`."""
    if isinstance(doc, dict):
        return {k: public_path(v) if k == "path" and isinstance(v, str) else public(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [public(v) for v in doc]
    return doc


def public_text(message: str) -> str:
    """A message (an error naming a file) with the library's folders cut from the paths in it, as
    :func:`public_path` cuts them."""
    roots = _roots()
    for root in sorted(roots, key=len, reverse=True):
        cut = (os.path.dirname(root.rstrip(os.sep)) if len(roots) > 1 else root).rstrip(os.sep)
        if cut:  # never the file system's root: that would take every separator out of the message
            message = message.replace(cut + os.sep, "")
    return message


def track_labels(tracks: Sequence[Track]) -> dict[int, str]:
    """What to call each track in one list: its title or file name, with folders where two look alike
    (:func:`soundalike.vocabulary.distinct_labels`)."""
    unique = list({t.id: t for t in tracks}.values())
    labels = distinct_labels([t.name for t in unique], [public_path(t.path) for t in unique])
    return {t.id: label for t, label in zip(unique, labels, strict=True)}


def track_dict(track: Track) -> dict[str, Any]:
    """The JSON form of a catalog track (``path`` relative to the library's music folders)."""
    return {
        "id": track.id,
        "path": public_path(track.path),
        "file_name": file_name(track),
        "title": track.title,
        "artist": track.artist,
        "album": track.album,
        "genre": track.genre,
        "duration": round(track.duration, 3) if track.duration is not None else None,
        "status": track.status,
        "error": public_text(track.error) if track.error else track.error,
        "error_reason": track.error_reason,
        "feature_version": track.feature_version,
        "audio_url": url_for("api.track_audio", track_id=track.id),
        "page_url": url_for("pages.track", track_id=track.id),
    }


def file_name(track: Track) -> str:
    return os.path.basename(track.display_path)


_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"ID3", "audio/mpeg"),
    (0, b"OggS", "audio/ogg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"\x1aE\xdf\xa3", "audio/webm"),
    (4, b"ftyp", "audio/mp4"),
)


def sniff_mimetype(head: bytes, fallback_name: str = "") -> str:
    """The audio media type of a file from its first bytes (its name only when they say nothing)."""
    for offset, magic, mimetype in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return mimetype
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio/aiff"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "audio/aac"  # ADTS
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "audio/mpeg"  # MPEG audio frame sync without an ID3 tag
    guessed, _ = mimetypes.guess_type(fallback_name)
    return guessed if guessed and guessed.startswith("audio/") else "application/octet-stream"


def send_track_audio(track: Track) -> Response:
    """Stream a catalog track's file with HTTP Range support.

    Only the path stored in the catalog is opened; nothing from the request reaches the file system.

    Raises
    ------
    NotFound
        When the file is gone from disk or cannot be read.
    """
    try:
        with open(track.path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise NotFound(f"track {track.id}: its file {public_path(track.path)} cannot be read ({exc.strerror})") from exc
    mimetype = sniff_mimetype(head, track.display_path)  # the name only helps guess the type; it is not sent
    try:
        return send_file(
            track.path,
            mimetype=mimetype,
            conditional=True,
            download_name=f"{track.id}-{file_name(track)}",
            max_age=3600,
        )
    except OSError as exc:
        raise NotFound(f"track {track.id}: its file {public_path(track.path)} cannot be read ({exc.strerror})") from exc
