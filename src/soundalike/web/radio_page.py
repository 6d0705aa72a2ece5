"""The radio page (``/radio?seed=ID``) and its M3U8 download (``/radio.m3u8``), issue 14.

The page is server-rendered: the now-playing track, one ``<audio>`` player and the queue as a plain
list, so it reads (and the first track plays) without JavaScript. ``static/radio.js`` then plays the
queue in order, with previous/next, "play now", remove, "more like this" and more tracks fetched from
``GET /api/radio`` (with what was played as ``exclude``) when the queue runs low.

Both go the way ``/api/radio`` goes (:func:`soundalike.radio.make_radio` on the live index), so the
page, the download and the API make the same radio from the same seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

from flask import Blueprint, Response, render_template, request, url_for
from werkzeug.exceptions import BadRequest

from soundalike.catalog import Track
from soundalike.playlists import m3u8_text
from soundalike.radio import make_radio
from soundalike.web.api import analysed_track
from soundalike.web.common import EMPTY_LIBRARY, parse_int, recommender, shared
from soundalike.web.radio import MAX_N, parse_exclude, parse_seeds

bp = Blueprint("radio_page", __name__)

PAGE_N = 20
"""Tracks the page queues at first (``n``, at most :data:`~soundalike.web.radio.MAX_N`)."""
MORE_N = 10
"""Tracks ``radio.js`` asks for when the queue runs low."""
LOW = 3
"""The queue is topped up when fewer than this many tracks are left in it."""
NO_SEED = "give at least one seed: /radio?seed=TRACK_ID (repeat for several), or press “Start radio” on a track's page"


def _radio_tracks(seed_ids: Sequence[int], n: int, exclude: Sequence[int] = ()) -> list[Track]:
    rec = recommender()
    return make_radio(rec.index, rec.catalog, seeds=seed_ids, resolve=rec.resolve, n=n, exclude=exclude).tracks


@bp.get("/radio")
def radio() -> str:
    n = parse_int(request.args.get("n"), "n", default=PAGE_N, low=1, high=MAX_N)
    if shared().live.get() is None:
        return render_template("radio.html", empty=True, note=EMPTY_LIBRARY)
    seed_ids = parse_seeds(request.args.getlist("seed"))
    if not seed_ids:
        raise BadRequest(NO_SEED)
    tracks = _radio_tracks(seed_ids, n)
    return render_template(
        "radio.html",
        empty=False,
        seeds=[analysed_track(i) for i in seed_ids],
        tracks=tracks,
        n=n,
        more_n=min(MORE_N, n),
        low=LOW,
        m3u8_url=url_for("radio_page.m3u8", seed=seed_ids, n=n),
        track_page=url_for("pages.track", track_id=0)[:-1],
    )


@bp.get("/radio.m3u8")
def m3u8() -> Response:
    """The queue as an M3U8 file of absolute audio URLs on this server.

    ``?track=ID&track=ID…``: exactly these tracks in this order (what the page holds now, after skips,
    removals and "more like this"); else ``?seed=ID…&n=N[&exclude=ID…]``: the radio the page starts with.
    """
    recommender()  # an empty library is 503 "no tracks yet", whatever was asked
    listed = [p for v in request.args.getlist("track") for p in v.split(",") if p.strip()]
    if listed:
        if len(listed) > MAX_N:
            raise BadRequest(f"at most {MAX_N} tracks in a playlist, got {len(listed)}")
        if not all(p.strip().isdigit() and len(p.strip()) <= 18 for p in listed):
            raise BadRequest("track must be track ids (positive whole numbers)")
        tracks = [analysed_track(int(p)) for p in listed]
    else:
        n = parse_int(request.args.get("n"), "n", default=PAGE_N, low=1, high=MAX_N)
        seed_ids = parse_seeds(request.args.getlist("seed"))
        if not seed_ids:
            raise BadRequest(NO_SEED)
        tracks = _radio_tracks(seed_ids, n, parse_exclude(request.args.getlist("exclude")))
    # A listener's player is not on this server: every entry is the audio endpoint's absolute URL.
    text = m3u8_text(tracks, locate=lambda t: url_for("api.track_audio", track_id=t.id, _external=True))
    response = Response(text.encode("utf-8"), content_type="audio/x-mpegurl")
    response.headers["Content-Disposition"] = 'attachment; filename="soundalike-radio.m3u8"'
    response.headers["Cache-Control"] = "private, no-store"  # the URLs name the host this client asked for
    return response
