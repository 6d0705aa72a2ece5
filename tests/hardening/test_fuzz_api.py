"""Property-based fuzzing of every route of the web app (issue 7, hostile requests).

The operations and their parameters are read from the OpenAPI document the app serves, so a new
endpoint is fuzzed as soon as it is documented. Requests go mostly through Flask's test client (for
volume) and some byte for byte over a socket to the real server (:mod:`soundalike.web.server`).

Properties, for every answer:

* the status is never 5xx and is one the document lists for the operation (405 for another method);
* a JSON body matches the document's schema for that status; an API error is ``{"error", "status"}``
  with a message;
* a request the document calls valid succeeds, and one with a documented parameter out of its
  schema is a 400;
* no body contains bytes of a file outside the catalog: sentinel files next to the library, the
  catalog database itself, ``/etc/passwd``; any audio served is a catalog file or a slice of one;
* a Range header gets 200, 206 or 416, and a 206 carries exactly the bytes it names;
* an upload that is not well-formed multipart with a ``file`` part is a 4xx.

Examples are derandomised (the same every run) and bounded so the file runs in well under a
minute; ``make stress`` runs each property with ten times as many.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_from_bytes, unquote

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_schema_validator import OAS31Validator

from soundalike.web import create_app
from soundalike.web.openapi import ASPECT_ENUM, document
from soundalike.web.server import ServerLimits

from ..web.conftest import LiveServer
from .conftest import raw_request, request_bytes

FAST = settings(
    max_examples=800,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
PROFILES = {"fast": FAST, "stress": settings(FAST, max_examples=FAST.max_examples * 10)}
profiles = pytest.mark.parametrize("profile", ["fast", pytest.param("stress", marks=pytest.mark.stress)])

UPLOAD_LIMIT = 256 * 1024
"""The fuzzed app's upload limit (small, so an oversize body is cheap)."""
DOCUMENT = document()
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
PASSWD = b"root:x:0:0:"
SQLITE_HEADER = b"SQLite format 3\x00"


# -- the app, the catalog's files and the secrets next to them --------------------------------------


@dataclass(frozen=True)
class Operation:
    """One documented operation: method, path template, parameters, responses."""

    method: str
    template: str
    spec: Mapping[str, Any]

    def params(self, where: str) -> list[Mapping[str, Any]]:
        return [p for p in self.spec.get("parameters", []) if p["in"] == where]

    @property
    def statuses(self) -> set[int]:
        return {int(code) for code in self.spec["responses"]}


OPERATIONS = [
    Operation(method.upper(), template, spec)
    for template, methods in DOCUMENT["paths"].items()
    for method, spec in methods.items()
]
OPERATIONS_BY_ID = {op.spec["operationId"]: op for op in OPERATIONS}


@dataclass
class Target:
    """What the fuzzed app serves, and what it must never serve."""

    app: Flask
    files: dict[int, bytes]
    """The catalog's files by track id."""
    secrets: tuple[bytes, ...]
    secret_paths: tuple[Path, ...]
    music: Path

    def check_not_leaked(self, body: bytes) -> None:
        for secret in self.secrets:
            assert secret not in body, f"the answer holds bytes of a file outside the catalog: {secret[:20]!r}"

    def check_audio(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        """Audio served is a whole catalog file (200) or exactly the slice Content-Range names (206)."""
        kind = headers.get("content-type", "").split(";")[0]
        if status not in (200, 206) or not (kind.startswith("audio/") or kind == "application/octet-stream"):
            return
        if status == 200:
            assert any(body == data for data in self.files.values()), "audio served that is not a catalog file"
            return
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", headers.get("content-range", ""))
        assert match, headers
        first, last, size = (int(g) for g in match.groups())
        assert 0 <= first <= last < size and len(body) == last - first + 1
        assert any(len(data) == size and data[first : last + 1] == body for data in self.files.values())


@pytest.fixture(scope="module")
def target(synth_library: Any, indexes: Any, tmp_path_factory: pytest.TempPathFactory) -> Target:
    """The app over the 40-track synthetic library, with sentinel files planted beside it."""
    beside = synth_library.music.parent  # the folder that holds the music folder
    planted = []
    for i, folder in enumerate((beside, beside / "private")):
        folder.mkdir(exist_ok=True)
        path = folder / f"secret-{i}.mp3"
        path.write_bytes(b"ID3 SENTINEL-" + str(path).encode() + b"-never-serve-this")
        planted.append(path)
    index = indexes["scann"]
    app = create_app(
        {
            "SOUNDALIKE_LIBRARY": index.directory.parent.parent,
            "SOUNDALIKE_CATALOG": synth_library.catalog,
            "SOUNDALIKE_INDEX": index,
            "MAX_CONTENT_LENGTH": UPLOAD_LIMIT,
            "SOUNDALIKE_PER_PAGE": 15,
        }
    )
    tracks = synth_library.catalog.tracks(status=None)
    files = {t.id: Path(t.path).read_bytes() for t in tracks}
    secrets = (*(p.read_bytes() for p in planted), SQLITE_HEADER, PASSWD)
    return Target(app, files, secrets, tuple(planted), synth_library.music)


@pytest.fixture(scope="module")
def live(target: Target) -> Iterator[LiveServer]:
    """The real server of ``soundalike serve`` (waitress with limits) on a free port, in a thread."""
    limits = ServerLimits(idle_timeout=5, request_timeout=2.0)
    with LiveServer(target.app, threads=2, max_body_bytes=UPLOAD_LIMIT, limits=limits) as server:
        yield server


# -- strategies ------------------------------------------------------------------------------------

Labelled = tuple[str, bool | None]
"""A parameter value as sent, and whether the document calls it valid (None: arguable)."""

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
HUGE_INTS = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**12, 10**13, 10**100]),
)
ODD_NUMBERS = st.sampled_from(
    ["", " ", "1.5", "1e3", "0x10", "+3", "-0", " 7 ", "1_0", "３", "٣", "1 2", "NaN", "inf", "5\x00", "١٠", "00000000000000000005"]
)


def integer_values(schema: Mapping[str, Any]) -> st.SearchStrategy[Labelled]:
    low, high = schema.get("minimum", -(10**100)), schema.get("maximum", 10**100)

    def label(value: int) -> Labelled:
        return str(value), low <= value <= high

    return st.one_of(
        st.integers(low, min(high, low + 300)).map(label),
        HUGE_INTS.map(label),
        st.one_of(ODD_NUMBERS, TEXT).map(lambda s: (s, None if s.strip() == "" else _decided(s, low, high))),
    )


def _decided(text: str, low: int, high: int) -> bool | None:
    """Whether a text is an integer in range: False when plainly not, None when arguable."""
    if re.fullmatch(r"[0-9]{1,12}", text):
        return low <= int(text) <= high
    if re.fullmatch(r"\s*[+-]?[0-9]+\s*", text) or any(ch.isdigit() for ch in text):
        return None  # signs, padding, long or non-ASCII digits: the document does not say
    return False


def enum_values(choices: list[str]) -> st.SearchStrategy[Labelled]:
    def label(text: str) -> Labelled:
        if text in choices:
            return text, True
        return text, None if text.strip() in choices or text.strip() == "" else False

    variants = st.sampled_from(choices).flatmap(
        lambda c: st.sampled_from([c, c.upper(), f" {c} ", c[:-1], c + "x", c + "\x00"])
    )
    return st.one_of(st.sampled_from(choices), variants, TEXT).map(label)


CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""Control characters: refused in a search (``q=%00`` used to match every track)."""


def string_values() -> st.SearchStrategy[Labelled]:
    return st.one_of(TEXT, st.sampled_from(["%", "_", "\\", "'", '"; DROP TABLE tracks; --', "\x00", "a" * 500])).map(
        lambda s: (s, not CONTROL.search(s.strip()[:200]))
    )


def values_for(schema: Mapping[str, Any]) -> st.SearchStrategy[Labelled]:
    if "enum" in schema:
        return enum_values(list(schema["enum"]))
    if schema.get("type") == "integer":
        return integer_values(schema)
    return string_values()


def encode(text: str) -> str:
    """Percent-encode a query value as UTF-8 (so it survives any client)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


TRAVERSALS = (
    "..", ".", "%2e%2e", "..%2f..%2f..%2fetc%2fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "..%5c..%5c",
    "%252e%252e%252f", "%00", "1%00", "1%00.mp3", "%2fetc%2fpasswd", "1%2f..%2f2", "1;x", "1%3b", "0x1",
    "1e3", "+1", "-1", "%201", "1%20", "%EF%BC%91", "%D9%A3", "01", "00000000000000000001", "%ff", "*",
)  # fmt: skip


def track_segments(target: Target) -> st.SearchStrategy[str]:
    """What goes where a track id belongs: real ids, any integer, traversal and encoding tricks."""
    return st.one_of(
        st.sampled_from(sorted(target.files)).map(str),
        HUGE_INTS.map(str),
        st.sampled_from(TRAVERSALS),
        secret_routes(target),
        TEXT.map(lambda s: quote(s, safe="")),
        st.binary(max_size=12).map(lambda b: quote_from_bytes(b, safe="")),
    )


def secret_routes(target: Target) -> st.SearchStrategy[str]:
    """Ways to name a planted secret file: absolute, or relative to the music folder or deeper."""
    names = [str(p) for p in target.secret_paths] + [os.path.relpath(p, target.music) for p in target.secret_paths]
    return st.tuples(st.sampled_from(names), st.integers(0, 3), st.sampled_from(["", "/"])).map(
        lambda t: quote("../" * t[1] + t[0], safe=t[2])
    )


@dataclass
class Request:
    """A generated request and what the document says of its answer."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    operation: Operation | None
    expect: set[int] | None
    """Exactly the statuses the document allows for this request, when it decides; else None."""

    @property
    def target(self) -> str:
        return self.path + ("?" + self.query if self.query else "")


@st.composite
def documented_requests(draw: st.DrawFn, target: Target) -> Request:
    """A request to a documented operation: its parameters valid, hostile or missing, maybe another method."""
    op = draw(st.sampled_from([o for o in OPERATIONS if "requestBody" not in o.spec] + OPERATIONS))
    segment = draw(track_segments(target)) if "{track_id}" in op.template else ""
    path = op.template.replace("{track_id}", segment)
    pairs: list[tuple[str, str]] = []
    labels: list[bool | None] = []
    for param in op.params("query"):
        if draw(st.booleans()):
            value, valid = draw(values_for(param["schema"]))
            pairs.append((param["name"], value))
            labels.append(valid)
    for name, value in draw(st.lists(st.tuples(st.sampled_from(["ids", "k", "x", "aspect", "page", ""]) | TEXT, TEXT), max_size=2)):
        pairs.append((name, value))  # unknown or repeated names: ignored, or the first counts
        labels.append(None if any(name == p["name"] for p in op.params("query")) else True)
    headers = {}
    if op.params("header") and draw(st.booleans()):
        headers["Range"] = draw(range_headers())
    method = op.method if draw(st.integers(0, 5)) else draw(st.sampled_from(METHODS))
    query = "&".join(f"{encode(name)}={encode(value)}" for name, value in pairs)
    expect: set[int] | None = None
    canonical = segment.isascii() and segment.isdigit() and segment == str(int(segment))
    known = canonical and int(segment) in target.files
    routed = "{track_id}" not in op.template or canonical
    if method != op.method and any(o.template == op.template and o.method == method for o in OPERATIONS):
        pass  # another documented operation of the same path (GET and POST /api/radio): drawn on its own
    elif method != op.method and method not in ("HEAD", "OPTIONS"):
        expect = {405} if routed else {404, 405}  # a non-canonical id may or may not route
    elif method == op.method and routed and "requestBody" not in op.spec:
        if False in labels:
            expect = {400}
        elif None not in labels and "Range" not in headers and decidable(op):
            expect = {200} if known or "{track_id}" not in op.template else {404}
    return Request(method, path, query, headers, op if method == op.method else None, expect)


def decidable(op: Operation) -> bool:
    """Whether these strategies' labels decide success: no required query parameter, none with a
    pattern or an array of track ids (``/api/radio``'s ``seed``, ``weights``, ``spread``), whose
    validity and existence the labels do not know. Such operations are still held to no 5xx, a
    documented status, the documented schemas, and 400 for a parameter out of its schema."""
    return not any(
        p.get("required") or "pattern" in p["schema"] or p["schema"].get("type") == "array" for p in op.params("query")
    )


def range_headers() -> st.SearchStrategy[str]:
    number = st.one_of(st.integers(0, 2000), st.integers(0, 2_000_000), HUGE_INTS).map(str)  # files: 0.1–1 MB
    spec = st.one_of(
        st.tuples(number, number).map(lambda t: f"{t[0]}-{t[1]}"),
        number.map(lambda n: f"{n}-"),
        number.map(lambda n: f"-{n}"),
        st.sampled_from(["-", "--1", "1--2", "", " ", "0-0", "-0", "a-b", "5-1"]),
    )
    unit = st.sampled_from(["bytes", "bytes", "bytes", "BYTES", "bytes ", "items", "", "bytes=bytes"])
    specs = st.one_of(spec.map(lambda one: [one]), st.lists(spec, min_size=1, max_size=3))
    structured = st.tuples(unit, specs).map(lambda t: f"{t[0]}={','.join(t[1])}")
    latin1 = st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=40)
    return st.one_of(structured, structured, latin1)


# -- checking answers ------------------------------------------------------------------------------


def validate(schema: Mapping[str, Any], body: Any) -> None:
    validator = OAS31Validator({**schema, "components": DOCUMENT["components"]})
    errors = [e.message for e in validator.iter_errors(body)]
    assert not errors, errors


def check_answer(
    target: Target, method: str, path: str, status: int, headers: Mapping[str, str], body: bytes, op: Operation | None
) -> None:
    """The properties every answer has (see the module docstring)."""
    assert status < 500, (method, path, status, body[:300])
    target.check_not_leaked(body)
    if method != "HEAD":
        target.check_audio(status, headers, body)
    kind = headers.get("content-type", "").split(";")[0]
    is_api = path.startswith("/api/")
    if op is not None:
        assert status in op.statuses, (method, path, status, sorted(op.statuses), body[:300])
        documented = op.spec["responses"][str(status)].get("content", {})
        assert not documented or any(kind == t or (t.endswith("/*") and kind.startswith(t[:-1])) for t in documented), (
            path, status, kind, list(documented)
        )  # fmt: skip
    if method == "HEAD" or status in (204, 304) or (method == "OPTIONS" and status == 200):
        return
    if status >= 400 and (is_api or kind == "application/json"):
        assert kind == "application/json", (method, path, status, headers, body[:300])
        error = json.loads(body)
        validate({"$ref": "#/components/schemas/Error"}, error)
        assert error["status"] == status and error["error"].strip(), error
    elif op is not None and kind == "application/json":
        validate(op.spec["responses"][str(status)]["content"]["application/json"]["schema"], json.loads(body))


def client_answer(app: Flask, method: str, target_: str, headers: Mapping[str, str], **kw: Any) -> tuple[int, dict[str, str], bytes]:
    path, _, query = target_.partition("?")
    reply = app.test_client().open(path, method=method, query_string=query, headers=dict(headers), **kw)
    return reply.status_code, {k.lower(): v for k, v in reply.headers.items()}, reply.get_data()


def run(profile: str, strategy: st.SearchStrategy[Any], check: Callable[[Any], int]) -> None:
    """Run ``check`` on examples of ``strategy`` under the named settings profile."""
    started, statuses = time.perf_counter(), Counter[int]()

    @PROFILES[profile]
    @given(strategy)
    def prop(example: Any) -> None:
        statuses[check(example)] += 1

    prop()
    seen = ", ".join(f"{code}×{n}" for code, n in sorted(statuses.items()))
    print(f"\n{statuses.total()} examples in {time.perf_counter() - started:.1f} s; statuses {seen}")


# -- documented operations and their parameters ------------------------------------------------------


@profiles
def test_documented_operations_answer_as_documented(target: Target, profile: str) -> None:
    def check(request: Request) -> int:
        status, headers, body = client_answer(target.app, request.method, request.target, request.headers)
        check_answer(target, request.method, request.path, status, headers, body, request.operation)
        if request.expect is not None:
            assert status in request.expect, (request, status, body[:300])
        if request.method == "GET" and status == 200 and request.path.endswith("/similar"):
            found = json.loads(body)
            ids = [r["track_id"] for r in found["results"]]
            assert 1 <= len(ids) <= found["query"]["k"] and found["query"]["track_id"] not in ids
        return status

    run(profile, documented_requests(target), check)


similar_values = st.tuples(integer_values({"minimum": 1, "maximum": 100}), enum_values(ASPECT_ENUM))


@profiles
def test_k_and_aspect_are_accepted_exactly_when_the_document_allows_them(target: Target, profile: str) -> None:
    def check(values: tuple[Labelled, Labelled]) -> int:
        (k, k_ok), (aspect, aspect_ok) = values
        query = f"k={encode(k)}&aspect={encode(aspect)}"
        status, _, body = client_answer(target.app, "GET", f"/api/tracks/7/similar?{query}", {})
        assert status in (200, 400), (status, body[:300])
        if k_ok is False or aspect_ok is False:
            assert status == 400
            message = json.loads(body)["error"]
            if k_ok is False:
                assert "k must be" in message, message
            elif k_ok:
                assert "aspect" in message, message
        elif k_ok and aspect_ok:
            assert status == 200, body[:300]
            found = json.loads(body)
            assert found["query"]["k"] == int(k) and found["query"]["aspect"] == aspect
            assert 1 <= len(found["results"]) <= int(k)
        return status

    run(profile, similar_values, check)


# -- paths: ids, traversal, encodings -----------------------------------------------------------


def hostile_paths(target: Target) -> st.SearchStrategy[str]:
    """Paths of every route with a hostile segment where an id (or a file name) belongs."""
    templates = st.sampled_from(
        [
            "/api/tracks/{}", "/api/tracks/{}/audio", "/api/tracks/{}/similar", "/api/tracks/{}/segments.csv",
            "/tracks/{}", "/results/{}", "/results/{}/audio", "/results/{}/segments.csv", "/static/{}",
            "/api/tracks/1/audio/{}", "/api/{}", "/{}", "/api/tracks/{}/{}",
        ]
    )  # fmt: skip
    segment = track_segments(target)
    return st.tuples(templates, segment, segment).map(lambda t: t[0].format(t[1], t[2]))


@profiles
@pytest.mark.parametrize("transport", ["test-client", "socket"])
def test_no_path_reaches_a_file_outside_the_catalog(target: Target, live: LiveServer, profile: str, transport: str) -> None:
    def check(path: str) -> int:
        headers = {"Accept": "application/json"}
        if transport == "socket":  # waitress decodes the path itself (as Latin-1), not Werkzeug's client
            reply = raw_request("127.0.0.1", live.port, request_bytes("GET", path, headers), timeout=30)
            status, answer, body = reply.status, dict(reply.headers), reply.body
        else:
            status, answer, body = client_answer(target.app, "GET", path, headers)
        check_answer(target, "GET", path, status, answer, body, None)
        if path.startswith("/api/tracks/") and path.endswith("/audio") and status == 200:
            segment = unquote(path.split("/")[3])
            assert segment.isdecimal() and body == target.files[int(segment)], path
        return status

    run(profile, hostile_paths(target), check)


# -- Range ------------------------------------------------------------------------------------------


def expected_range(header: str, size: int) -> tuple[int, int] | None:
    """The bytes ``[first, last]`` a plain one-range header must get (RFC 9110), else None."""
    m = re.fullmatch(r"bytes=(\d+)-(\d*)", header)
    if m and int(m.group(1)) < size and (not m.group(2) or int(m.group(1)) <= int(m.group(2))):
        return int(m.group(1)), min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
    m = re.fullmatch(r"bytes=-(\d+)", header)
    if m and 0 < int(m.group(1)) <= size:
        return size - int(m.group(1)), size - 1
    return None


@profiles
def test_range_headers_get_200_206_or_416_with_the_right_bytes(target: Target, profile: str) -> None:
    ids = sorted(target.files)[::7]  # one track of each format at least (the library cycles formats)

    def check(case: tuple[int, str]) -> int:
        track_id, header = case
        status, headers, body = client_answer(target.app, "GET", f"/api/tracks/{track_id}/audio", {"Range": header})
        data = target.files[track_id]
        assert status in (200, 206, 416), (header, status, body[:200])
        check_answer(target, "GET", "/api/tracks/x/audio", status, headers, body, OPERATIONS_BY_ID["trackAudio"])
        if status == 200:
            assert body == data
        elif status == 206:
            first, last = (int(x) for x in re.findall(r"\d+", headers["content-range"])[:2])
            assert headers["content-range"] == f"bytes {first}-{last}/{len(data)}" and body == data[first : last + 1]
        else:
            assert headers["content-range"] == f"bytes */{len(data)}"
        wanted = expected_range(header, len(data))
        if wanted is not None:
            assert status == 206 and headers["content-range"] == f"bytes {wanted[0]}-{wanted[1]}/{len(data)}", (header, status)
        return status

    run(profile, st.tuples(st.sampled_from(ids), range_headers()), check)


# -- uploads ---------------------------------------------------------------------------------------

MAGIC = (b"", b"ID3\x03\x00\x00\x00\x00\x00\x00", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"fLaC", b"OggS\x00\x02", b"\xff\xfb\x90\x00", b"\x00\x00\x00\x18ftypM4A ")


@dataclass
class Upload:
    body: bytes
    content_type: str | None
    well_formed: bool
    """A complete multipart body, the declared boundary, a part named ``file`` with a file name."""


@st.composite
def uploads(draw: st.DrawFn) -> Upload:
    """A POST body: random bytes, or multipart with hostile parts, boundaries and types."""
    token = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters='"'), min_size=1, max_size=70)
    boundary = draw(token)
    newline = draw(st.sampled_from([b"\r\n"] * 3 + [b"\n"]))
    parts: list[bytes] = []
    has_file = False
    for i in range(draw(st.integers(0, 4))):  # parts
        if i == 0 and draw(st.integers(0, 2)):  # mostly a real file part first
            name, filename = "file", draw(st.sampled_from(["a.mp3", "../../etc/passwd", "C:\\x.wav", "x.flac"]))
        else:
            name = draw(st.sampled_from(["file", "k", "aspect", "files", "audio", "FILE", "", "file\x00"]) | TEXT)
            filename = draw(st.none() | st.sampled_from(["a.mp3", "../../etc/passwd", "\x00.mp3", ""]) | TEXT)
        if name == "k":
            content = draw(st.sampled_from(["3", "3", "100", "0", "-1", "101", "x", ""]) | TEXT).encode()
        elif name == "aspect":
            content = draw(st.sampled_from(["rhythm", "rhythm", "all", "bogus", ""]) | TEXT).encode()
        else:
            content = draw(st.sampled_from(MAGIC)) + draw(st.binary(max_size=3000))
        disposition = f'form-data; name="{name}"' + ("" if filename is None else f'; filename="{filename}"')
        head = b"Content-Disposition: " + disposition.encode("utf-8", "surrogatepass")
        if draw(st.booleans()):
            head += newline + b"Content-Type: " + draw(st.sampled_from([b"audio/mpeg", b"text/plain", b"", b"\xff"]))
        parts.append(b"--" + boundary.encode() + newline + head + newline + newline + content + newline)
        has_file = has_file or (name == "file" and filename not in (None, ""))
    body = b"".join(parts) + b"--" + boundary.encode() + b"--" + newline
    complete = newline == b"\r\n"
    if draw(st.integers(0, 5)) == 0:
        body = body[: draw(st.integers(0, len(body)))]
        complete = False
    if draw(st.integers(0, 7)) == 0:
        body = draw(st.binary(max_size=2000))
        complete = False
    if draw(st.integers(0, 15)) == 0:
        body += b"\x00" * UPLOAD_LIMIT  # over the limit
    declared = draw(
        st.sampled_from(["right"] * 6 + ["other", "missing", "quoted", "empty", "none", "text", "json", "form", "junk"])
    )
    content_type = {
        "right": f"multipart/form-data; boundary={boundary}",
        "other": f"multipart/form-data; boundary={boundary}x",
        "missing": "multipart/form-data",
        "quoted": f'multipart/form-data; boundary="{boundary}"',
        "empty": "multipart/form-data; boundary=",
        "none": None,
        "text": "text/plain",
        "json": "application/json",
        "form": "application/x-www-form-urlencoded",
        "junk": draw(TEXT.map(lambda s: s.encode("latin-1", "replace").decode("latin-1").replace("\r", "").replace("\n", ""))),
    }[declared]
    well_formed = complete and has_file and declared in ("right", "quoted") and len(body) <= UPLOAD_LIMIT
    return Upload(body, content_type, well_formed)


@profiles
def test_malformed_uploads_are_refused_with_a_4xx(target: Target, profile: str) -> None:
    recommend = OPERATIONS_BY_ID["recommend"]

    def check(case: tuple[str, Upload]) -> int:
        path, upload = case
        status, headers, body = client_answer(
            target.app, "POST", path, {"Accept": "application/json"}, data=upload.body, content_type=upload.content_type
        )
        check_answer(target, "POST", path, status, headers, body, recommend if path.startswith("/api/") else None)
        if not upload.well_formed:
            assert 400 <= status < 500, (upload.content_type, upload.body[:200], status, body[:300])
        if len(upload.body) > UPLOAD_LIMIT:
            assert status == 413
        return status

    run(profile, st.tuples(st.sampled_from(["/api/recommend", "/upload"]), uploads()), check)


# -- byte for byte over a socket to the real server ------------------------------------------------------


@dataclass
class RawCase:
    method: str
    target: bytes
    headers: dict[str, str]
    body: bytes


@st.composite
def raw_requests(draw: st.DrawFn, target: Target) -> RawCase:
    """Whole requests as bytes: documented or hostile request lines, headers and bodies."""
    request = draw(documented_requests(target))
    method = draw(st.sampled_from([request.method, request.method, "GET", "get", "BREW", "G\x00T", ""]))
    raw_target = request.target.encode()
    if draw(st.integers(0, 2)) == 0:
        raw_target = draw(hostile_paths(target)).encode()
    elif draw(st.integers(0, 3)) == 0:
        raw_target = draw(
            st.sampled_from([b"*", b"http://evil.example/api/health", b"/api/tracks/1/../../../etc/passwd", b"//etc/passwd", b"/api/tracks/1/audio\x00", b"/\xff\xfe", b"/a b", b""])
        )
    headers = dict(request.headers)
    body = b""
    kind = draw(st.sampled_from(["none", "none", "upload", "length", "chunked", "encoding", "header"]))
    if kind == "upload":
        upload = draw(uploads())
        body = upload.body
        if upload.content_type is not None:
            headers["Content-Type"] = upload.content_type
    elif kind == "length":
        body = draw(st.binary(min_size=5, max_size=200))  # never fewer bytes than a length below says
        headers["Content-Length"] = draw(st.sampled_from(["-1", "abc", "1e3", " 5", "+5", "0x10", str(10**30), str(len(body)), "0"]))
    elif kind == "chunked":
        headers["Transfer-Encoding"] = "chunked"
        body = draw(st.sampled_from([b"0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n", b"zz\r\n\r\n", b"-1\r\n\r\n", b"5;x=y\r\nhello\r\n0\r\n\r\n"]))
    elif kind == "encoding":
        headers["Transfer-Encoding"] = draw(st.sampled_from(["gzip", "chunked, gzip", "identity", "x"]))
    elif kind == "header":
        name = draw(st.sampled_from(["X-Long", "Host", "Bad Header", "Content-Type", "Accept", "Range"]))
        headers[name] = draw(st.sampled_from(["v" * 70_000, "\x7f", "a\x00b", "", "application/json"]))
    return RawCase(method, raw_target, headers, body)


@profiles
def test_raw_requests_to_the_real_server_get_a_4xx_or_success_never_a_hang(target: Target, live: LiveServer, profile: str) -> None:
    def check(case: RawCase) -> int:
        data = request_bytes(case.method, case.target, case.headers, case.body)
        reply = raw_request("127.0.0.1", live.port, data, timeout=30)  # the hang guard
        unsupported_coding = case.headers.get("Transfer-Encoding", "chunked") != "chunked"
        assert reply.status < 500 or (reply.status == 501 and unsupported_coding), (data[:300], reply.status, reply.body[:300])
        target.check_not_leaked(reply.body)
        if case.method != "HEAD":  # a HEAD answer has the headers of the audio but no bytes
            target.check_audio(reply.status, reply.headers, reply.body)
        if reply.status >= 400 and case.method.upper() != "HEAD":
            path = case.target.split(b"?")[0]
            if path.startswith(b"/api/") or not reply.headers.get("content-type", "").startswith("text/html"):
                assert reply.headers.get("content-type") == "application/json", (data[:300], reply.status, reply.body[:300])
                error = json.loads(reply.body)
                assert error["status"] == reply.status and error["error"].strip()
        return reply.status

    run(profile, raw_requests(target), check)
