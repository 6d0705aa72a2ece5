"""The radio API: ``GET /api/radio`` from catalog seeds, ``POST /api/radio`` with an uploaded clip.

Answers are exactly what ``soundalike radio --json`` prints (:meth:`soundalike.radio.Playlist.to_dict`),
with every ``path`` relative to the library's music folders (:func:`soundalike.web.common.public`);
bad input is a JSON 400, an unknown seed a 404 (see ``web/__init__.py``). ``exclude=ID`` (repeated)
names tracks never to play, nor copies of them: what the radio page has played already.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest

from soundalike.radio import SPREAD_KINDS, Playlist, Spread, make_radio, seed_from_file
from soundalike.vocabulary import ASPECTS, FAMILIES
from soundalike.web.api import analysed_track, read_upload, upload_from_request
from soundalike.web.common import parse_aspect, parse_int, public, recommender, shared

log = logging.getLogger(__name__)

bp = Blueprint("radio_api", __name__)

MAX_N = 500
"""Longest radio the API makes."""
DEFAULT_N = 50
MAX_SEEDS = 20
MAX_EXCLUDE = 1000
"""Most track ids one request may exclude (what a listener has heard already)."""


def _drift(value: str | None) -> float:
    if value is None or value.strip() == "":
        return 0.5
    try:
        drift = float(value.strip()[:40])
    except ValueError:
        drift = math.nan
    if not (0.0 <= drift <= 1.0):
        raise BadRequest(f"drift must be a number from 0 to 1, got {value[:40]!r}")
    return drift


def _spread(value: str | None) -> Spread | None:
    """``artist:3`` → Spread("artist", 3)."""
    if value is None or value.strip() == "":
        return None
    kind, _, within = value.strip().partition(":")
    if kind not in SPREAD_KINDS or not within.isdigit() or not 1 <= int(within) <= 1000:
        raise BadRequest(f"spread must be KIND:N with KIND one of {', '.join(SPREAD_KINDS)} and N from 1 to 1000, got {value[:40]!r}")
    return Spread(kind, int(within))


def _weights(value: str | None) -> dict[str, float] | None:
    """``timbre:2,rhythm:1`` → {"timbre": 2.0, "rhythm": 1.0}."""
    if value is None or value.strip() == "":
        return None
    out: dict[str, float] = {}
    for part in value.split(",")[: len(FAMILIES) + 1]:
        family, _, number = part.strip().partition(":")
        try:
            weight = float(number[:20])
        except ValueError:
            weight = math.nan
        if family not in FAMILIES or not math.isfinite(weight) or weight < 0:
            raise BadRequest(f"weights must be ASPECT:W,… with ASPECT one of {', '.join(FAMILIES)} and W ≥ 0, got {value[:80]!r}")
        out[family] = weight
    return out


def parse_seeds(values: list[str]) -> list[int]:
    """Seed track ids (analysed catalog tracks), at most :data:`MAX_SEEDS`; 400 for a bad one, 404 for an unknown one."""
    if len(values) > MAX_SEEDS:
        raise BadRequest(f"at most {MAX_SEEDS} seeds, got {len(values)}")
    ids = []
    for v in values:
        if not v.strip().isdigit() or len(v.strip()) > 18:
            raise BadRequest(f"seed must be a track id (a positive whole number), got {v[:40]!r}")
        ids.append(analysed_track(int(v.strip())).id)
    return ids


def parse_exclude(values: list[str]) -> list[int]:
    """Track ids never to play (``exclude=ID``, repeated; ``,`` also separates); unknown ids are ignored.

    Raises
    ------
    BadRequest
        For more than :data:`MAX_EXCLUDE` ids, or one that is not a whole number.
    """
    parts = [p for v in values for p in v.split(",") if p.strip()]
    if len(parts) > MAX_EXCLUDE:
        raise BadRequest(f"exclude at most {MAX_EXCLUDE} tracks, got {len(parts)}")
    for p in parts:
        if not p.strip().isdigit() or len(p.strip()) > 18:
            raise BadRequest(f"exclude must be track ids (positive whole numbers), got {p[:40]!r}")
    return [int(p) for p in parts]


def radio_options(fields: MultiDict[str, str]) -> dict[str, Any]:
    aspect = parse_aspect(fields.get("aspect"))
    assert aspect in ASPECTS
    return {
        "n": parse_int(fields.get("n"), "n", default=DEFAULT_N, low=1, high=MAX_N),
        "drift": _drift(fields.get("drift")),
        "aspect": aspect,
        "weights": _weights(fields.get("weights")),
        "spread": _spread(fields.get("spread")),
        "exclude": parse_exclude(fields.getlist("exclude")),
    }


@bp.get("/radio")
def radio_from_seeds() -> Response:
    options = radio_options(request.args)
    seeds = parse_seeds(request.args.getlist("seed"))
    if not seeds:
        raise BadRequest("give at least one seed: /api/radio?seed=TRACK_ID (repeat for several)")
    rec = recommender()
    playlist: Playlist = make_radio(rec.index, rec.catalog, seeds=seeds, resolve=rec.resolve, **options)
    return jsonify(public(playlist.to_dict()))


@bp.post("/radio")
def radio_from_upload() -> Response:
    upload = upload_from_request()
    options = radio_options(request.form)
    seeds = parse_seeds(request.form.getlist("seed"))
    state = shared()
    rec = recommender()
    data, label = read_upload(upload)
    started = time.perf_counter()
    with state.gate.turn():
        clip = seed_from_file(rec.index, data, max_duration=rec.max_duration, name=label, truncate_to=state.analysed_s)
    del data  # nothing of the upload outlives the request
    log.info("analysed radio seed %r in %.2f s", label, time.perf_counter() - started)
    playlist = make_radio(rec.index, rec.catalog, seeds=seeds, clip=clip, resolve=rec.resolve, **options)
    return jsonify(public(playlist.to_dict()))
