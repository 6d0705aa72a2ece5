"""The web app: upload a song, hear what sounds like it; and the same through a JSON API.

:func:`create_app` is the application factory (``soundalike serve`` runs it under waitress). Its
blueprints: :mod:`soundalike.web.pages` and :mod:`soundalike.web.radio_page` (server-rendered HTML),
:mod:`soundalike.web.api` and :mod:`soundalike.web.radio` (JSON, documented by
:mod:`soundalike.web.openapi` at ``/api/openapi.json``).

Configuration keys (``test_config`` or the defaults from :class:`~soundalike.settings.Settings`):

========================  ==============================================================
``SOUNDALIKE_LIBRARY``    library folder; its ``index.json`` is watched for new indexes
``SOUNDALIKE_CATALOG``    an open :class:`~soundalike.catalog.Catalog` (else opened here)
``SOUNDALIKE_INDEX``      a loaded :class:`~soundalike.index.bundle.LibraryIndex` or None
``SOUNDALIKE_K``          default number of recommendations
``SOUNDALIKE_MAX_DURATION``  longest upload accepted, in seconds
``SOUNDALIKE_INDEX_CHECK_S``  seconds between looks for a newly published index
``SOUNDALIKE_RESULT_TTL_S``   how long an upload's results page (and its clip) is kept
``SOUNDALIKE_PER_PAGE``   tracks per library page (default 50)
``SOUNDALIKE_UPLOAD_ANALYSED_S``  seconds of an upload analysed (default ``upload_analysed_s``, 600)
``SOUNDALIKE_ANALYSES``   uploads analysed at once (default ``analyses``: the cores)
``SOUNDALIKE_ANALYSIS_QUEUE``  uploads that may wait for a turn (default 2); then 503
``SOUNDALIKE_ANALYSIS_WAIT_S``  longest such a wait, in seconds (default 10)
``MAX_CONTENT_LENGTH``    largest request body in bytes (default ``max_upload_mb``)
``SOUNDALIKE_PASSWORD_HASH``  a :class:`~soundalike.web.auth.PasswordHash`: every route but
                          health and static files asks for it (:mod:`soundalike.web.auth`)
``SOUNDALIKE_FAILED_LOGINS``  the :class:`~soundalike.web.auth.FailedLogins` table to use
========================  ==============================================================
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, NotFound

from soundalike.errors import (
    AudioError,
    CatalogError,
    EmptyLibraryError,
    IndexMismatchError,
    NotAudioError,
    SoundalikeError,
    TrackNotFoundError,
)
from soundalike.index.bundle import LibraryIndex
from soundalike.library import Library
from soundalike.settings import Settings
from soundalike.web.common import EXTENSION, Shared, public_text
from soundalike.web.limits import AnalysisGate
from soundalike.web.state import LiveIndex, PictureCache, ResultStore

log = logging.getLogger(__name__)

MB = 1024 * 1024
# Pages load only their own script, styles, pictures and audio; the bars use inline style widths.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "media-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)

__all__ = ["create_app"]


class _Unset:
    """The type of :data:`UNSET`: ``index`` not given (None means "no index yet")."""


UNSET = _Unset()


def create_app(
    test_config: Mapping[str, Any] | None = None,
    *,
    library: Library | None = None,
    index: LibraryIndex | None | _Unset = UNSET,
    settings: Settings | None = None,
) -> Flask:
    """Create the Flask application.

    Parameters
    ----------
    test_config : mapping, optional
        Configuration overriding the defaults (see the module docstring).
    library : Library, optional
        The library to serve, with its settings (``soundalike serve`` passes it). Without it and
        without ``SOUNDALIKE_CATALOG``, the library of ``SOUNDALIKE_LIBRARY`` (or the one the settings
        name) is opened.
    index : LibraryIndex or None, optional
        The library's index when the caller has already loaded it (None: nothing analysed yet);
        otherwise it is loaded from the library, rebuilt first if it is out of date.
    settings : Settings, optional
        The settings the defaults come from (``soundalike serve`` passes its own, so that
        ``--config FILE`` and the environment count); default: the library's.

    Returns
    -------
    Flask

    Raises
    ------
    CatalogError
        When no catalog object is given and the library has none.
    """
    from soundalike.settings import load_settings

    app = Flask(__name__)
    config = dict(test_config or {})
    settings = settings or (library.settings if library is not None else None)
    upload_keys = ("SOUNDALIKE_UPLOAD_ANALYSED_S", "SOUNDALIKE_ANALYSES", "SOUNDALIKE_ANALYSIS_QUEUE")
    if settings is None and (
        "SOUNDALIKE_CATALOG" not in config or "MAX_CONTENT_LENGTH" not in config or not all(k in config for k in upload_keys)
    ):
        settings = load_settings({"library": config.get("SOUNDALIKE_LIBRARY")})
    app.config.from_mapping(
        SOUNDALIKE_LIBRARY=settings.library if settings else None,
        SOUNDALIKE_K=settings.k if settings else 10,
        SOUNDALIKE_MAX_DURATION=settings.max_duration if settings else 1800.0,
        SOUNDALIKE_INDEX_CHECK_S=1.0,
        SOUNDALIKE_RESULT_TTL_S=1800.0,
        SOUNDALIKE_PER_PAGE=50,
        SOUNDALIKE_UPLOAD_ANALYSED_S=settings.upload_analysed_s if settings else 600.0,
        SOUNDALIKE_ANALYSES=settings.analyses if settings else 2,
        SOUNDALIKE_ANALYSIS_QUEUE=settings.analysis_queue if settings else 8,
        SOUNDALIKE_ANALYSIS_WAIT_S=10.0,
        MAX_CONTENT_LENGTH=int((settings.max_upload_mb if settings else 50.0) * MB),
        JSON_SORT_KEYS=False,
    )
    app.config.from_mapping(config)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    if "SOUNDALIKE_CATALOG" in config:  # tests hand over a catalog and an index of their own
        catalog = config["SOUNDALIKE_CATALOG"]
        index = config.get("SOUNDALIKE_INDEX")
    else:
        if library is None:
            assert settings is not None
            library = Library.open(settings)
        catalog = library.catalog
        if isinstance(index, _Unset):
            index = _load_index(library)
    watched = library
    if watched is None and app.config["SOUNDALIKE_LIBRARY"] is not None:  # a test's own catalog and index
        watched = Library(load_settings({"library": app.config["SOUNDALIKE_LIBRARY"]}), catalog)
    live = LiveIndex(
        catalog,
        index,
        library=watched,
        max_duration=float(app.config["SOUNDALIKE_MAX_DURATION"]),
        check_every=float(app.config["SOUNDALIKE_INDEX_CHECK_S"]),
    )
    app.extensions[EXTENSION] = Shared(
        live,
        default_k=int(app.config["SOUNDALIKE_K"]),
        results=ResultStore(ttl=float(app.config["SOUNDALIKE_RESULT_TTL_S"])),
        pictures=PictureCache(),
        gate=AnalysisGate(
            slots=int(app.config["SOUNDALIKE_ANALYSES"]),
            queue=int(app.config["SOUNDALIKE_ANALYSIS_QUEUE"]),
            wait_s=float(app.config["SOUNDALIKE_ANALYSIS_WAIT_S"]),
        ),
        analysed_s=float(app.config["SOUNDALIKE_UPLOAD_ANALYSED_S"]),
    )

    from soundalike.web import api, auth, pages, radio, radio_page

    auth.init_app(app, config.get("SOUNDALIKE_PASSWORD_HASH"), config.get("SOUNDALIKE_FAILED_LOGINS"))
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp, url_prefix="/api")
    app.register_blueprint(radio.bp, url_prefix="/api")
    app.register_blueprint(radio_page.bp)
    _register_errors(app)

    @app.after_request
    def _security_headers(response: Response) -> Response:
        _relative_location(response)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            response.headers.setdefault("Content-Security-Policy", _CSP)
        return response

    return app


def _relative_location(response: Response) -> None:
    """Make a redirect's ``Location`` a path on this server, never a URL built from the request.

    Werkzeug's own redirects (``//x`` to ``/x``, a missing trailing slash) name the request's
    ``Host`` header, which the client chose: a proxy or cache could be made to send someone else
    to ``evil.example``. A path (always starting with exactly one ``/``) is resolved by the browser
    against the address it used, which is right behind any proxy too.
    """
    location = response.headers.get("Location")
    if not location:
        return
    parts = urlsplit(location)
    if parts.scheme or parts.netloc or location.startswith("//"):
        path = "/" + parts.path.lstrip("/\\")
        response.headers["Location"] = urlunsplit(("", "", path, parts.query, parts.fragment))


def _load_index(library: Library) -> LibraryIndex | None:
    """The library's index (rebuilt first when out of date, saying why in the log), or None."""
    try:
        loaded = library.index()
    except EmptyLibraryError:
        return None
    if loaded.rebuilt_because is not None:
        log.warning("index rebuilt (%s, %d tracks) because %s", loaded.index.backend, loaded.index.count, loaded.rebuilt_because)
    return loaded.index


# -- errors ----------------------------------------------------------------------------------

_TITLES = {
    400: "That request did not make sense",
    401: "Log in first",
    403: "Refused",
    404: "Not found",
    405: "Not allowed",
    413: "That file is too large",
    415: "That is not an audio file we can read",
    416: "That range is outside the file",
    429: "Too many tries",
    422: "That audio file cannot be analysed",
    503: "Not now",
}


def _wants_json() -> bool:
    if request.path.startswith("/api/") or request.path == "/api":
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def _status_of(exc: SoundalikeError) -> int:
    if isinstance(exc, NotAudioError):
        return 415
    if isinstance(exc, AudioError):
        return 422
    if isinstance(exc, TrackNotFoundError):
        return 404
    if isinstance(exc, EmptyLibraryError | IndexMismatchError | CatalogError):
        return 503
    return 400


def error_response(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Response:
    """A JSON (API, or when asked for) or HTML error answer."""
    try:  # a message naming a track's file names it as the pages do, without the server's folders
        message = public_text(message)
    except (SoundalikeError, OSError) as exc:
        log.warning("could not read the library's music folders for an error message: %s", exc)
    if _wants_json():
        response = jsonify({"error": message, "status": status})
    else:
        html = render_template("error.html", status=status, title=_TITLES.get(status, "Something went wrong"), message=message)
        response = Response(html, mimetype="text/html")
    response.status_code = status
    for name, value in headers or []:
        if name.lower() not in ("content-type", "content-length"):
            response.headers[name] = value
    return response


def _register_errors(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 404 and message == NotFound.description:
            message = f"nothing at {request.path[:200]}"
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"the upload is larger than the {limit / MB:g} MB limit" if limit else message
        if status == 416:
            message = f"the range {request.headers.get('Range', '')[:80]!r} lies outside the file"
        headers = list(exc.get_headers()) if status in (405, 416, 503) else None
        return error_response(status, message, headers)

    @app.errorhandler(SoundalikeError)
    def _expected(exc: SoundalikeError) -> Response:
        status = _status_of(exc)
        log.info("%s %s: %d %s", request.method, request.path, status, exc)
        return error_response(status, str(exc))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal error: the server could not answer this request (see its log)")

