"""The OpenAPI 3.1 description of the JSON API, served at ``/api/openapi.json``.

``tests/web`` validates it with openapi-spec-validator, checks that its paths are exactly the app's
``/api`` routes, and checks real answers against its schemas.
"""

from __future__ import annotations

import copy
from typing import Any

from soundalike import __version__
from soundalike.vocabulary import ASPECTS, FAMILIES, LEARNED_FAMILIES
from soundalike.web.common import MAX_PAGE

ASPECT_ENUM = list(ASPECTS)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


PATH = {
    "type": "string",
    "description": "The track's file relative to the library's music folders (the folders given to `soundalike ingest`; "
    "led by the folder's own name when there are several), never the server's absolute path; the CLI's --json shows the real path.",
}
"""Every ``path`` field of a track (the pages and the API show no server path; see web.common.public_path)."""


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


_TRACK_ID = {
    "name": "track_id",
    "in": "path",
    "required": True,
    "description": "Catalog track id (a positive whole number).",
    "schema": {"type": "integer", "minimum": 1},
}
_K = {
    "name": "k",
    "in": "query",
    "description": "How many tracks to return in each list.",
    "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
}
_ASPECT = {
    "name": "aspect",
    "in": "query",
    "description": "Which kind of similarity: all feature families, or one of them.",
    "schema": {"type": "string", "enum": ASPECT_ENUM, "default": "all"},
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "status"],
        "properties": {
            "error": {"type": "string", "description": "What went wrong, naming the file, track or field."},
            "status": {"type": "integer", "description": "The HTTP status code."},
        },
    },
    "Aspects": {
        "type": "object",
        "description": "Closeness per feature family, (1 + cosine) / 2, in [0, 1]; `style` is absent when the library was analysed with --no-style.",
        "required": [f for f in FAMILIES if f not in LEARNED_FAMILIES],
        "properties": {f: {"type": "number", "minimum": 0, "maximum": 1} for f in FAMILIES},
        "additionalProperties": False,
    },
    "Recommendation": {
        "type": "object",
        "required": ["rank", "track_id", "path", "title", "artist", "similarity", "distance", "aspects", "windows", "why", "why_parts"],
        "properties": {
            "rank": {"type": "integer", "minimum": 1},
            "track_id": {"type": "integer"},
            "path": PATH,
            "title": {"type": ["string", "null"]},
            "artist": {"type": ["string", "null"]},
            "similarity": {"type": "number", "minimum": 0, "maximum": 1, "description": "(1 + c) / 2; 0.5 means unrelated."},
            "distance": {"type": "number", "minimum": 0, "maximum": 2, "description": "sqrt(2 - 2c)."},
            "aspects": _ref("Aspects"),
            "windows": {
                "type": ["number", "null"],
                "minimum": 0,
                "maximum": 1,
                "description": "How alike the 5-second windows of the two are, (1 + w) / 2; null where the score does not use them (one aspect, least similar).",
            },
            "why": {
                "type": ["string", "null"],
                "description": "Why, in plain words: at most 4 phrases joined by ' · ', agreements first, then the most notable difference, e.g. 'same tempo (~124 BPM) · similar instruments · different key (A minor → C major)'.",
                "example": "same tempo (~124 BPM) · similar instruments · different key (A minor → C major)",
            },
            "why_parts": {**_ref("WhyParts"), "description": "What the `why` line was built from."},
        },
        "additionalProperties": False,
    },
    "WhyParts": {
        "type": ["object", "null"],
        "description": (
            "Tempo and key of the query and the result ([query, result]; null where the pulse or key is not clear, "
            "read from the stored analysis, so tracks analysed before this field existed have them too) and the "
            "verdict per aspect. Thresholds: `soundalike.why.SIMILAR` and `soundalike.why.DIFFERENT`."
        ),
        "required": ["phrases", "tempo_bpm", "tempo", "key", "key_relation", "aspects"],
        "properties": {
            "phrases": {"type": "array", "items": {"type": "string"}, "maxItems": 4},
            "tempo_bpm": {"type": "array", "items": {"type": ["number", "null"]}, "minItems": 2, "maxItems": 2, "example": [124.0, 123.0]},
            "tempo": {
                "type": ["string", "null"],
                "enum": ["same", "close", "double", "half", "different", None],
                "description": "The result's tempo against the query's: same within 4 %, close within 8 %, double or half within 4 % of twice or half; null when either tempo is unknown.",
            },
            "key": {"type": "array", "items": {"type": ["string", "null"]}, "minItems": 2, "maxItems": 2, "example": ["A minor", "C major"]},
            "key_relation": {
                "type": ["string", "null"],
                "enum": ["same", "relative", "different", None],
                "description": "relative: a major key and the minor key with its notes (C major, A minor); null when either key is unknown.",
            },
            "aspects": {
                "type": "object",
                "description": "similar, neutral or different per aspect.",
                "additionalProperties": {"type": "string", "enum": ["similar", "neutral", "different"]},
            },
        },
        "additionalProperties": False,
    },
    "Recommendations": {
        "type": "object",
        "description": "What `soundalike query|similar --json` prints, with every path relative to the library's music folders.",
        "required": ["query", "results", "least_similar"],
        "properties": {
            "query": {
                "type": "object",
                "required": ["type", "path", "aspect", "k"],
                "properties": {
                    "type": {"type": "string", "enum": ["file", "track"]},
                    "path": {**PATH, "description": "An uploaded file's name, or a track's path as in `path` below."},
                    "track_id": {"type": "integer"},
                    "title": {"type": ["string", "null"]},
                    "artist": {"type": ["string", "null"]},
                    "duration": {"type": "number"},
                    "format": {"type": "string"},
                    "aspect": {"type": "string", "enum": ASPECT_ENUM},
                    "k": {"type": "integer"},
                },
            },
            "results": {"type": "array", "items": _ref("Recommendation")},
            "least_similar": {"type": "array", "items": _ref("Recommendation")},
            "identified": _ref("Identification"),
        },
        "additionalProperties": False,
    },
    "Identification": {
        "type": "object",
        "description": "For a file query: the catalog track the clip is, or was cut from, when its best window match is unambiguous or its bytes are those of the track's file (it is then results[0]).",
        "required": ["track_id", "path", "title", "artist", "at_s", "score", "margin", "whole", "same_file", "says"],
        "properties": {
            "track_id": {"type": "integer"},
            "path": PATH,
            "title": {"type": ["string", "null"]},
            "artist": {"type": ["string", "null"]},
            "at_s": {"type": "number", "minimum": 0, "description": "Seconds into the track where the clip starts."},
            "score": {"type": "number", "description": "Cosine of the best window match."},
            "margin": {"type": "number", "description": "Its lead over the best match in any other recording."},
            "whole": {"type": "boolean", "description": "The clip is the whole track: its very file, or the same recording from start to end."},
            "same_file": {"type": "boolean", "description": "The clip has exactly the bytes of the track's file (then score is 1 and margin 0 unless the windows also matched)."},
            "says": {"type": "string", "description": "\"this clip is TITLE\" (whole) or \"this clip is from TITLE at M:SS\""},
        },
        "additionalProperties": False,
    },
    "Track": {
        "type": "object",
        "required": ["id", "path", "file_name", "status", "audio_url", "page_url"],
        "properties": {
            "id": {"type": "integer"},
            "path": PATH,
            "file_name": {"type": "string"},
            "title": {"type": ["string", "null"]},
            "artist": {"type": ["string", "null"]},
            "album": {"type": ["string", "null"]},
            "genre": {"type": ["string", "null"]},
            "duration": {"type": ["number", "null"], "description": "Seconds."},
            "status": {"type": "string", "enum": ["ok", "failed"]},
            "error": {"type": ["string", "null"]},
            "error_reason": {"type": ["string", "null"]},
            "feature_version": {"type": ["integer", "null"]},
            "audio_url": {"type": "string"},
            "page_url": {"type": "string"},
        },
        "additionalProperties": False,
    },
    "TrackPage": {
        "type": "object",
        "required": ["query", "status", "page", "per_page", "total", "pages", "tracks"],
        "properties": {
            "query": {"type": "string"},
            "status": {"type": "string", "enum": ["ok", "failed", "all"]},
            "page": {"type": "integer", "minimum": 1},
            "per_page": {"type": "integer", "minimum": 1},
            "total": {"type": "integer", "minimum": 0},
            "pages": {"type": "integer", "minimum": 1},
            "tracks": {"type": "array", "items": _ref("Track")},
        },
        "additionalProperties": False,
    },
    "Health": {
        "type": "object",
        "required": ["status", "version", "feature_version", "tracks", "failures", "index_backend", "index"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "empty"], "description": "`empty`: nothing analysed yet."},
            "version": {"type": "string"},
            "feature_version": {"type": "integer"},
            "tracks": {"type": "integer", "description": "Analysed tracks in the library."},
            "failures": {"type": "integer"},
            "hours": {"type": "number"},
            "index_backend": {"type": ["string", "null"], "enum": ["scann", "annoy", "exact", "faiss", None]},
            "index": {
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": ["backend", "tracks", "feature_version", "up_to_date"],
                        "properties": {
                            "backend": {"type": "string"},
                            "tracks": {"type": "integer"},
                            "segments": {"type": "integer"},
                            "feature_version": {"type": "integer"},
                            "catalog_revision": {"type": "integer"},
                            "up_to_date": {"type": "boolean"},
                            "built_at": {"type": ["number", "null"]},
                        },
                    },
                ]
            },
        },
    },
}

_PATHS: dict[str, Any] = {
    "/api/recommend": {
        "post": {
            "operationId": "recommend",
            "summary": "Tracks that sound like an uploaded audio file",
            "description": "The file is recognised by decoding its content (any format FFmpeg reads), "
            "analysed in memory and discarded.",
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {
                                "file": {"type": "string", "format": "binary"},
                                "k": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                                "aspect": {"type": "string", "enum": ASPECT_ENUM, "default": "all"},
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": _json("Recommendations", "Recommendations"),
                "400": _error("No file, or a bad `k` or `aspect`"),
                "413": _error("The upload is larger than the configured limit (default 50 MB)"),
                "415": _error("Not an audio file"),
                "422": _error("An audio file that cannot be analysed (empty, corrupt, truncated, too short, too long, silent)"),
                "503": _error("The library has no tracks yet"),
            },
        }
    },
    "/api/tracks": {
        "get": {
            "operationId": "listTracks",
            "summary": "Browse or search the catalog",
            "parameters": [
                {
                    "name": "q",
                    "in": "query",
                    "description": "Text found in the title, artist, album, genre or path (no control characters: 400).",
                    "schema": {"type": "string"},
                },
                {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1}},
                {
                    "name": "per_page",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                },
                {
                    "name": "status",
                    "in": "query",
                    "description": "Analysed tracks (`ok`, default), failures, or both.",
                    "schema": {"type": "string", "enum": ["ok", "failed", "all"], "default": "ok"},
                },
            ],
            "responses": {"200": _json("One page of tracks", "TrackPage"), "400": _error("Bad `q`, `page`, `per_page` or `status`")},
        }
    },
    "/api/tracks/{track_id}": {
        "get": {
            "operationId": "getTrack",
            "summary": "One catalog track",
            "parameters": [_TRACK_ID],
            "responses": {"200": _json("The track", "Track"), "404": _error("No such track")},
        }
    },
    "/api/tracks/{track_id}/similar": {
        "get": {
            "operationId": "similarTracks",
            "summary": "Tracks that sound like a catalog track (never itself or byte-identical copies)",
            "parameters": [_TRACK_ID, _K, _ASPECT],
            "responses": {
                "200": _json("Recommendations", "Recommendations"),
                "400": _error("Bad `k` or `aspect`"),
                "404": _error("No such track, or it failed analysis"),
                "503": _error("The library has no tracks yet"),
            },
        }
    },
    "/api/tracks/{track_id}/audio": {
        "get": {
            "operationId": "trackAudio",
            "summary": "The track's audio file, streamed; supports HTTP Range requests",
            "parameters": [
                _TRACK_ID,
                {"name": "Range", "in": "header", "schema": {"type": "string"}, "example": "bytes=0-1023"},
            ],
            "responses": {
                "200": {"description": "The whole file", "content": {"audio/*": {"schema": {"type": "string", "format": "binary"}}}},
                "206": {"description": "The requested byte range", "content": {"audio/*": {"schema": {"type": "string", "format": "binary"}}}},
                "404": _error("No such track, or its file is gone"),
                "416": _error("The range lies outside the file"),
            },
        }
    },
    "/api/tracks/{track_id}/segments.csv": {
        "get": {
            "operationId": "trackSegments",
            "summary": "For each 5-second window of the track, the best-matching windows of other tracks",
            "parameters": [_TRACK_ID],
            "responses": {
                "200": {
                    "description": "CSV: query_start_s,query_end_s,track_id,path,track_start_s,track_end_s,similarity (path relative to the library's music folders)",
                    "content": {"text/csv": {"schema": {"type": "string"}}},
                },
                "404": _error("No such track, or it failed analysis"),
                "503": _error("The library has no tracks yet"),
            },
        }
    },
    "/api/health": {
        "get": {
            "operationId": "health",
            "summary": "Library size, index backend and feature version",
            "responses": {"200": _json("State of the library", "Health")},
        }
    },
    "/api/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {"200": {"description": "OpenAPI 3.1 document", "content": {"application/json": {"schema": {"type": "object"}}}}},
        }
    },
}


_OPEN_OPERATIONS = frozenset({"health"})
"""Operations that never ask for credentials (see :mod:`soundalike.web.auth`)."""
_SECURITY_SCHEMES = {
    "password": {
        "type": "http",
        "scheme": "bearer",
        "description": "When the server has a password (`serve --password-file FILE` or `$SOUNDALIKE_PASSWORD`), "
        "every operation but `health` needs `Authorization: Bearer PASSWORD` (or a logged-in browser's session "
        "cookie). After 3 wrong passwords from one address, each further try must wait twice as long as the one "
        "before (429 with `Retry-After`). Without a password, nothing is asked for.",
    }
}


def _secured(paths: dict[str, Any]) -> dict[str, Any]:
    """Add the password requirement and its answers to every operation but the open ones."""
    for methods in paths.values():
        for method, spec in methods.items():
            if spec["operationId"] in _OPEN_OPERATIONS:
                spec["security"] = []
                continue
            spec["security"] = [{"password": []}, {}]  # {}: a server without a password asks for nothing
            spec["responses"]["401"] = _error("The server has a password and the request has no right credentials")
            spec["responses"]["429"] = _error("Too many wrong passwords from this address (see `Retry-After`)")
            if method in ("post", "put", "patch", "delete"):
                spec["responses"]["403"] = _error(
                    "Sent from a page of another site (`Origin`), or with a session cookie but no CSRF token"
                )
    return paths


# -- radio (issue 14): GET /api/radio from catalog seeds, POST with an uploaded clip -------------

_RADIO_FIELDS: dict[str, Any] = {
    "n": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50, "description": "Tracks in the playlist."},
    "drift": {
        "type": "number", "minimum": 0, "maximum": 1, "default": 0.5,
        "description": "Each next track scores drift × similarity to the previous track + (1 − drift) × mean "
        "similarity to the seeds: 0 stays by the seeds, 1 follows the previous track wherever it leads.",
    },
    "aspect": {"type": "string", "enum": ASPECT_ENUM, "default": "all"},
    "weights": {
        "type": "string", "pattern": "^[a-z]+:[0-9.eE+-]+(,[a-z]+:[0-9.eE+-]+)*$", "example": "timbre:2,rhythm:1",
        "description": f"Per-aspect weights ASPECT:W,… (aspects: {', '.join(FAMILIES)}); missing aspects weigh 0.",
    },
    "spread": {
        "type": "string", "pattern": "^(artist|album|folder):[0-9]+$", "example": "artist:3",
        "description": "KIND:N — no two tracks of one artist, album or folder within N places (relaxed, and marked, "
        "only when no other track is left).",
    },
}  # fmt: skip
_SCHEMAS["PlaylistEntry"] = {
    "type": "object",
    "required": ["position", "track_id", "path", "title", "artist", "album", "duration", "to_previous", "to_seeds", "distance", "relaxed"],
    "properties": {
        "position": {"type": "integer", "minimum": 1},
        "track_id": {"type": "integer"},
        "path": PATH,
        "title": {"type": ["string", "null"]},
        "artist": {"type": ["string", "null"]},
        "album": {"type": ["string", "null"]},
        "duration": {"type": ["number", "null"], "description": "Seconds."},
        "to_previous": {"type": "number", "minimum": 0, "maximum": 1, "description": "Similarity to the track before (the last seed for the first)."},
        "to_seeds": {"type": "number", "minimum": 0, "maximum": 1, "description": "Mean similarity to the seeds."},
        "distance": {"type": "number", "minimum": 0, "maximum": 2, "description": "sqrt(2 - 2c) to the track before, all aspects."},
        "relaxed": {"type": "boolean", "description": "The spacing rule could not be kept at this place."},
    },
    "additionalProperties": False,
}
_SCHEMAS["Playlist"] = {
    "type": "object",
    "description": "What `soundalike radio --json` prints (paths relative to the library's music folders). Never a seed, a byte-identical or transcoded copy "
    "of a seed, or a track twice.",
    "required": ["type", "seeds", "options", "tracks"],
    "properties": {
        "type": {"type": "string", "enum": ["radio", "path"]},
        "seeds": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "path"],
                "properties": {
                    "type": {"type": "string", "enum": ["track", "file"]},
                    "track_id": {"type": "integer"},
                    "path": {**PATH, "description": "An uploaded file's name, or a track's path as in `path` below."},
                    "title": {"type": ["string", "null"]},
                    "artist": {"type": ["string", "null"]},
                },
            },
        },
        "options": {"type": "object"},
        "tracks": {"type": "array", "items": _ref("PlaylistEntry")},
    },
    "additionalProperties": False,
}
_RADIO_ERRORS = {
    "400": _error("Bad `n`, `drift`, `aspect`, `weights`, `spread`, `seed` or `exclude`, or no seed"),
    "404": _error("A seed is not in the catalog, or failed analysis"),
    "503": _error("The library has no tracks yet"),
}
_PATHS["/api/radio"] = {
    "get": {
        "operationId": "radio",
        "summary": "An ordered playlist after one or more catalog tracks",
        "parameters": [
            {
                "name": "seed", "in": "query", "required": True, "style": "form", "explode": True,
                "description": "A seed's track id; repeat for several (at most 20).",
                "schema": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1, "maxItems": 20},
            },
            *({"name": name, "in": "query", "schema": schema} for name, schema in _RADIO_FIELDS.items()),
            {
                "name": "exclude", "in": "query", "style": "form", "explode": True,
                "description": "A track id never to play, nor any copy of it (what the listener has heard already, "
                "as the radio page sends when it asks for more); repeat for several (at most 1000). Ids not in the "
                "index are ignored.",
                "schema": {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": 1000},
            },
        ],
        "responses": {"200": _json("The playlist", "Playlist"), **_RADIO_ERRORS},
    },
    "post": {
        "operationId": "radioFromUpload",
        "summary": "An ordered playlist after an uploaded audio file (and any catalog seeds)",
        "description": "The file is analysed in memory and discarded, like `/api/recommend`; catalog copies of it "
        "(the same recording) are never played.",
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "seed": {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": 20},
                            "exclude": {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": 1000,
                                        "description": "Track ids never to play, nor copies of them."},
                            **_RADIO_FIELDS,
                        },
                    }
                }
            },
        },
        "responses": {
            "200": _json("The playlist", "Playlist"),
            **_RADIO_ERRORS,
            "400": _error("No file, or a bad field"),
            "413": _error("The upload is larger than the configured limit"),
            "415": _error("Not an audio file"),
            "422": _error("An audio file that cannot be analysed"),
        },
    },
}  # fmt: skip


def document() -> dict[str, Any]:
    """The OpenAPI document (a fresh copy)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "soundalike",
            "version": __version__,
            "description": "Recommend music that sounds alike. Similarities are (1 + cosine) / 2 in [0, 1]; "
            "errors are JSON `{error, status}` with a 4xx code for bad input.",
        },
        "paths": _secured(copy.deepcopy(_PATHS)),
        "components": {"schemas": copy.deepcopy(_SCHEMAS), "securitySchemes": copy.deepcopy(_SECURITY_SCHEMES)},
    }
