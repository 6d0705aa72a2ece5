"""The HTML pages: upload, results, library, track.

Server-rendered with Jinja; ``static/upload.js`` adds drag-and-drop and an upload progress bar but the
form works without it (a plain POST answered with a redirect to the results page).
"""

from __future__ import annotations

import io
import math
import os
import re

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from werkzeug.exceptions import BadRequest, NotFound
from werkzeug.wrappers import Response as BaseResponse

from soundalike.catalog import FAILED, OK, Track
from soundalike.features import FEATURE_VERSION
from soundalike.recommend import Recommendations
from soundalike.web.api import analyse_upload, csv_response, upload_from_request
from soundalike.web.common import (
    ASPECTS,
    EMPTY_LIBRARY,
    MAX_PAGE,
    PER_PAGE,
    file_name,
    get_track,
    parse_aspect,
    parse_int,
    parse_k,
    parse_search,
    public_path,
    public_text,
    recommender,
    shared,
    sniff_mimetype,
    track_labels,
)
from soundalike.web.state import UploadResult

bp = Blueprint("pages", __name__)

_RESULT_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


@bp.app_template_filter("duration")
def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@bp.app_template_filter("basename")
def _basename(path: str) -> str:
    return os.path.basename(path)


@bp.app_template_filter("public_path")
def _public_path(path: str) -> str:
    return public_path(path)


@bp.app_template_filter("public_text")
def _public_text(text: str) -> str:
    return public_text(text)


@bp.app_template_global("track_label")
def _track_label(track: Track) -> str:
    """The track's name in the lists of this page: title or file name, with folders where two look alike."""
    labels: dict[int, str] = g.get("track_labels") or {}
    return labels.get(track.id) or track.name


def _label_tracks(*lists: Recommendations | None, tracks: list[Track] | None = None) -> None:
    """Name every track this page shows (:func:`soundalike.web.common.track_labels`) for :func:`_track_label`."""
    shown = list(tracks or [])
    for rec in lists:
        if rec is not None:
            shown += [r.track for r in (*rec.results, *rec.least_similar)]
            shown += [rec.identified.track] if rec.identified is not None else []
    g.track_labels = track_labels(shown)


@bp.app_template_filter("shortpath")
def _shortpath(path: str) -> str:
    """The file name with its folder, enough to tell apart files of the same name."""
    parent = os.path.basename(os.path.dirname(path))
    return f"{parent}/{os.path.basename(path)}" if parent else os.path.basename(path)


@bp.app_context_processor
def _globals() -> dict[str, object]:
    return {"aspects": ASPECTS, "families": ASPECTS[1:]}


def _library_counts() -> tuple[int, int]:
    stats = shared().catalog.stats(FEATURE_VERSION)
    return stats.tracks, stats.failed


@bp.get("/")
def home() -> str:
    state = shared()
    tracks, failures = _library_counts()
    limit = request.max_content_length or 0
    return render_template(
        "home.html",
        tracks=tracks,
        failures=failures,
        empty=state.live.get() is None,
        default_k=min(state.default_k, 100),
        max_bytes=limit,
        max_mb=f"{limit / (1024 * 1024):g}",
    )


def _wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"


@bp.post("/upload")
def upload() -> BaseResponse:
    state = shared()
    file = upload_from_request()
    k = parse_k(request.form.get("k"), state.default_k)
    aspect = parse_aspect(request.form.get("aspect"))
    result, data, label, seconds = analyse_upload(file, k=k, aspect=aspect, segments=True)
    entry = UploadResult(
        id=state.results.new_id(),
        name=label,
        clip=data,
        mimetype=sniff_mimetype(data[:16]),
        recommendations=result,
    )
    state.results.add(entry)
    url = url_for("pages.results", result_id=entry.id)
    if _wants_json():
        response = jsonify({"results_url": url, "seconds": round(seconds, 3)})
        response.status_code = 201
        return response
    return redirect(url, code=303)


def _result(result_id: str) -> UploadResult:
    entry = shared().results.get(result_id) if _RESULT_ID.fullmatch(result_id) else None
    if entry is None:
        raise NotFound("these results have expired (uploads are kept for a while only): upload the file again")
    return entry


@bp.get("/results/<result_id>")
def results(result_id: str) -> str:
    entry = _result(result_id)
    rec: Recommendations = entry.recommendations
    _label_tracks(rec)
    return render_template("results.html", entry=entry, rec=rec, query=rec.query)


@bp.get("/results/<result_id>/audio")
def result_audio(result_id: str) -> Response:
    entry = _result(result_id)
    return send_file(io.BytesIO(entry.clip), mimetype=entry.mimetype, conditional=True, etag=entry.id, max_age=600)


@bp.get("/results/<result_id>/picture.png")
def result_picture(result_id: str) -> Response:
    entry = _result(result_id)
    if entry.picture is None:
        from soundalike.audio import decode
        from soundalike.web.pictures import feature_picture

        state = shared()
        with state.gate.turn():
            audio = decode(entry.clip, max_duration=state.live.max_duration, name=entry.name, truncate_to=state.analysed_s)
            entry.picture = feature_picture(audio.samples, audio.sample_rate)
    return _png(entry.picture)


@bp.get("/results/<result_id>/segments.csv")
def result_segments(result_id: str) -> Response:
    entry = _result(result_id)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(entry.name)[0])[:60] or "upload"
    return csv_response(entry.recommendations, f"{stem}-segments.csv")


@bp.get("/library")
def library() -> str:
    catalog = shared().catalog
    query = parse_search(request.args.get("q")) or ""
    status = request.args.get("status") or OK
    if status not in (OK, FAILED):
        raise BadRequest(f"unknown status {status[:40]!r}; expected ok or failed")
    page = parse_int(request.args.get("page"), "page", default=1, low=1, high=MAX_PAGE)
    per_page = int(current_app.config.get("SOUNDALIKE_PER_PAGE", PER_PAGE))
    total, rows = catalog.page(status=status, query=query or None, offset=(page - 1) * per_page, limit=per_page)
    pages = max(1, math.ceil(total / per_page))
    tracks, failures = _library_counts()
    _label_tracks(tracks=rows)
    return render_template(
        "library.html",
        rows=rows,
        query=query,
        status=status,
        page=page,
        pages=pages,
        total=total,
        tracks=tracks,
        failures=failures,
        first=(page - 1) * per_page + 1,
    )


@bp.get("/tracks/<int:track_id>")
def track(track_id: int) -> str:
    t = get_track(track_id)
    k = parse_k(request.args.get("k"), shared().default_k)
    aspect = parse_aspect(request.args.get("aspect"))
    neighbours: Recommendations | None = None
    note = None
    if t.status != OK:
        note = f"This file failed analysis ({t.error_reason}): {public_text(t.error or '')}"
    elif shared().live.get() is None:
        note = EMPTY_LIBRARY
    else:
        neighbours = recommender().similar_to_track(t.id, k=k, aspect=aspect)
    _label_tracks(neighbours, tracks=[t])
    return render_template(
        "track.html", track=t, file_name=file_name(t), neighbours=neighbours, note=note, k=k, aspect=aspect
    )


@bp.get("/tracks/<int:track_id>/picture.png")
def track_picture(track_id: int) -> Response:
    t = get_track(track_id)
    state = shared()
    key = (t.id, t.content_hash)
    png = state.pictures.get(key)
    if png is None:
        if not os.path.isfile(t.path):
            raise NotFound(f"track {t.id}: its file {public_path(t.path)} is gone")
        from soundalike.audio import decode
        from soundalike.web.pictures import feature_picture

        with state.gate.turn():
            # As for an upload, only the analysed duration is decoded: a long track must not cost more.
            audio = decode(t.path, max_duration=state.live.max_duration, truncate_to=state.analysed_s)
            png = feature_picture(audio.samples, audio.sample_rate)
        state.pictures.put(key, png)
    return _png(png)


def _png(png: bytes) -> Response:
    response = Response(png, mimetype="image/png")
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response
