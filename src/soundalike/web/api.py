"""The JSON API (mounted at ``/api``); documented in :mod:`soundalike.web.openapi`.

Every answer is JSON except the audio stream and the segment CSV; every error is JSON
``{"error": message, "status": code}`` with a 4xx code for bad input (see ``web/__init__.py``).
Recommendations have exactly the shape of the CLI's ``--json``
(:meth:`soundalike.recommend.Recommendations.to_dict`), except that every ``path`` is relative to the
library's music folders (:func:`soundalike.web.common.public_path`): the API never shows the server's
file system.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import BadRequest, NotFound

from soundalike import __version__
from soundalike.catalog import OK, Track
from soundalike.features import FEATURE_VERSION
from soundalike.recommend import SEGMENT_CSV_FIELDS, Recommendations
from soundalike.web import openapi
from soundalike.web.common import (
    MAX_PAGE,
    MAX_PER_PAGE,
    PER_PAGE,
    get_track,
    parse_aspect,
    parse_int,
    parse_k,
    parse_search,
    public,
    public_path,
    public_text,
    recommender,
    send_track_audio,
    shared,
    track_dict,
)

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__)

STATUSES = {"ok": "ok", "failed": "failed", "all": None}


def upload_from_request() -> FileStorage:
    """The uploaded file of a multipart request (field ``file``).

    Raises
    ------
    BadRequest
        When the request carries no file.
    RequestEntityTooLarge
        When the body is larger than ``MAX_CONTENT_LENGTH`` (raised by Werkzeug on access).
    """
    upload = request.files.get("file")
    if upload is None:
        raise BadRequest("no audio file in the request: send it as the multipart/form-data field 'file'")
    return upload


def upload_label(upload: FileStorage) -> str:
    """How to name an upload in messages: the base name the client sent, shortened; never a path."""
    name = os.path.basename((upload.filename or "").replace("\\", "/")).strip()
    name = "".join(ch for ch in name if ch.isprintable())[:120]
    return name or "upload"


def read_upload(upload: FileStorage) -> tuple[bytes, str]:
    """The upload's bytes (its spool file closed) and the label to name it by in messages."""
    label = upload_label(upload)
    try:
        return upload.stream.read(), label
    finally:
        upload.close()


def analyse_upload(
    upload: FileStorage, *, k: int, aspect: str, segments: bool
) -> tuple[Recommendations, bytes, str, float]:
    """Decode and search an uploaded file held in memory; returns results, bytes, label and seconds.

    The bytes are only ever in memory (Werkzeug spools large bodies to an anonymous temporary file,
    which is closed here); the format is recognised by decoding, whatever the file is called. Only
    the first ``analysed_s`` seconds are analysed, one of a bounded number of analyses at once
    (:mod:`soundalike.web.limits`).

    Raises
    ------
    BusyError
        503 when every analysis slot and queue place is taken.
    """
    state = shared()
    rec = recommender()
    data, label = read_upload(upload)
    started = time.perf_counter()
    with state.gate.turn():
        result = rec.similar_to_file(
            data, k=k, aspect=aspect, segments=segments, name=label, truncate_to=state.analysed_s
        )
    seconds = time.perf_counter() - started
    log.info("analysed upload %r (%d bytes) in %.2f s", label, len(data), seconds)
    return result, data, label, seconds


def analysed_track(track_id: int) -> Track:
    """A catalog track that was analysed (so it can be searched from).

    Raises
    ------
    NotFound
        When there is no such track, or its analysis failed.
    """
    track = get_track(track_id)
    if track.status != OK:
        raise NotFound(
            f"track {track.id} ({public_path(track.path)}) failed analysis, so it has no neighbours: {public_text(track.error or '')}"
        )
    return track


@bp.post("/recommend")
def recommend() -> Response:
    upload = upload_from_request()
    k = parse_k(request.form.get("k"), shared().default_k)
    aspect = parse_aspect(request.form.get("aspect"))
    result, data, _, _ = analyse_upload(upload, k=k, aspect=aspect, segments=False)
    del data  # nothing of the upload outlives the request
    return jsonify(public(result.to_dict()))


@bp.get("/tracks")
def tracks() -> Response:
    catalog = shared().catalog
    query = parse_search(request.args.get("q"))
    status_name = (request.args.get("status") or "ok").strip()
    if status_name not in STATUSES:
        raise BadRequest(f"unknown status {status_name[:40]!r}; expected one of {', '.join(STATUSES)}")
    status = STATUSES[status_name]
    page = parse_int(request.args.get("page"), "page", default=1, low=1, high=MAX_PAGE)
    default = int(current_app.config.get("SOUNDALIKE_PER_PAGE", PER_PAGE))
    per_page = parse_int(request.args.get("per_page"), "per_page", default=default, low=1, high=MAX_PER_PAGE)
    total, rows = catalog.page(status=status, query=query, offset=(page - 1) * per_page, limit=per_page)
    return jsonify(
        {
            "query": query or "",
            "status": status_name,
            "page": page,
            "per_page": per_page,
            "total": total,
            "pages": max(1, math.ceil(total / per_page)),
            "tracks": [track_dict(t) for t in rows],
        }
    )


@bp.get("/tracks/<int:track_id>")
def track(track_id: int) -> Response:
    return jsonify(track_dict(get_track(track_id)))


@bp.get("/tracks/<int:track_id>/similar")
def similar(track_id: int) -> Response:
    k = parse_k(request.args.get("k"), shared().default_k)
    aspect = parse_aspect(request.args.get("aspect"))
    analysed_track(track_id)
    result = recommender().similar_to_track(track_id, k=k, aspect=aspect)
    return jsonify(public(result.to_dict()))


@bp.get("/tracks/<int:track_id>/audio")
def track_audio(track_id: int) -> Response:
    return send_track_audio(get_track(track_id))


@bp.get("/tracks/<int:track_id>/segments.csv")
def track_segments(track_id: int) -> Response:
    analysed_track(track_id)
    result = recommender().similar_to_track(track_id, k=1, segments=True)
    return csv_response(result, f"track-{track_id}-segments.csv")


def csv_response(result: Recommendations, filename: str) -> Response:
    """The segment matches of ``result`` as a CSV download (paths as :func:`public_path` shows them)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=SEGMENT_CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for match in result.segment_matches:
        writer.writerow({**match.to_row(), "path": public_path(match.track.path)})
    response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.get("/health")
def health() -> Response:
    state = shared()
    stats = state.catalog.stats(FEATURE_VERSION)
    rec = state.live.get()
    index: dict[str, Any] | None = None
    if rec is not None:
        manifest = rec.index.manifest
        index = {
            "backend": manifest.backend,
            "tracks": manifest.count,
            "segments": manifest.segment_count,
            "feature_version": manifest.feature_version,
            "catalog_revision": manifest.catalog_revision,
            "up_to_date": manifest.catalog_revision == stats.revision,
            "built_at": manifest.built_at,
        }
    return jsonify(
        {
            "status": "ok" if rec is not None else "empty",
            "version": __version__,
            "feature_version": FEATURE_VERSION,
            "tracks": stats.tracks,
            "failures": stats.failed,
            "hours": round(stats.seconds / 3600, 3),
            "index_backend": index["backend"] if index else None,
            "index": index,
        }
    )


@bp.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(openapi.document())
