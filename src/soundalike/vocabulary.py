"""The names every layer shares: feature families, aspects, index backends, the progress callback.

This module imports nothing, so settings, the CLI's option parsing and the web app's validation can
use the names without loading numpy or the feature code. Each name is defined here once; the modules
that implement them (``features``, ``index``) key their tables by these tuples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

FAMILIES: tuple[str, ...] = ("timbre", "spectral", "rhythm", "harmony", "loudness", "style")
"""Feature families of a track vector, in vector order; ``style`` is the learned one (musicnn)."""

LEARNED_FAMILIES: tuple[str, ...] = ("style",)
"""Families computed by a model rather than by signal processing (``--no-style`` skips them)."""

SEGMENT_FAMILIES: tuple[str, ...] = ("timbre", "spectral", "harmony", "loudness")
"""Families of a segment vector (a 5-s window has too few beats for a rhythm pattern)."""

ASPECTS: tuple[str, ...] = ("all", *FAMILIES)
"""What a query may be restricted to: every family (weighted) or one."""

FAMILY_DESCRIPTIONS: dict[str, str] = {
    "timbre": "MFCC mean, spread, delta spread and coefficient correlations: what the sound is made of",
    "spectral": "mel-band energy profile, spectral contrast, centroid, bandwidth, rolloff, flatness",
    "rhythm": "tempo, pulse clarity, and onset periodicity patterns in the low, middle and high bands",
    "harmony": "chroma mean and spread, correlation with the 24 major/minor key profiles, harmonic change",
    "loudness": "level, spread, loudness range, crest, share of quiet passages",
    "style": "a learned embedding (the musicnn MSD model's penultimate layer, averaged over 3-s patches): genre, instruments, mood",
}

DEFAULT_WEIGHTS: dict[str, float] = {**{f: 1.0 for f in FAMILIES if f not in LEARNED_FAMILIES}, "style": 10 / 3}
"""Default weight of each family in the ``all`` similarity: the five hand-made families equally, and
the learned style embedding 40 % of the whole (10/3 against 5 × 1), chosen on the two development
sets by leave-one-out P@10 and mAP over style shares 0.2-0.6 (see the README's quality section)."""

INDEX_BACKENDS: tuple[str, ...] = ("scann", "annoy", "exact", "faiss")
"""Index backends, the default's smaller-library choice first."""

AUTO_INDEX = "auto"
"""The default index choice: the backend that measured fastest for the library's size (ScaNN, or
faiss IVF-PQ for the largest libraries; see :func:`soundalike.index.bundle.resolve_backend`)."""

INDEX_CHOICES: tuple[str, ...] = (AUTO_INDEX, *INDEX_BACKENDS)
"""What a user may name as the index (settings, ``--index``, ``--backend``): a backend, or ``auto``."""

TUNABLE_BACKENDS: tuple[str, ...] = ("scann", "annoy")
"""Backends with parameters worth a grid search (exact search has none)."""

Progress = Callable[[str, int, int], None]
"""``progress(stage_or_event, done, total)``: the one progress-callback type (ingest, transfer, evaluate)."""


def display_path(path: str) -> str:
    """A printable form of a file-system path (undecodable bytes shown as U+FFFD)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _parts(path: str) -> list[str]:
    return [p for p in path.replace("\\", "/").split("/") if p]


def relative_path(path: str, roots: Sequence[str]) -> str:
    """How ``path`` is shown to someone who is not on the machine: relative to the library's folders.

    Parameters
    ----------
    path : str
        A track's absolute path.
    roots : sequence of str
        The library's music folders (absolute, none inside another), as :func:`soundalike.catalog.music_roots`
        gives them.

    Returns
    -------
    str
        The path below the deepest root holding it, with ``/`` between folders; with more than one
        root, led by that root's own name (``Music/album/x.ogg``) so files of two roots stay apart.
        A path under no root is shown by its file name alone: never a path of the server.
    """
    parts = _parts(display_path(path))
    best: list[str] | None = None
    for root in roots:
        head = _parts(display_path(root))
        if len(parts) > len(head) and parts[: len(head)] == head and (best is None or len(head) > len(best)):
            best = head
    if best is None:
        return parts[-1] if parts else ""
    keep = len(best) - (1 if len(roots) > 1 and best else 0)
    return "/".join(parts[keep:])


def distinct_labels(names: Sequence[str], paths: Sequence[str]) -> list[str]:
    """Each name as shown in a list, with just enough of its folders to tell apart names shown twice.

    A name that no other row shares stays as it is. Rows sharing a name (two ``battle_theme.ogg``
    in different folders, or two tracks titled "Intro") get the shortest tail of their folder path
    that differs within that group: a file name becomes ``flare-game/battle_theme.ogg``, a title
    ``Intro (album-one)``. Rows of the very same path keep the same label.

    Parameters
    ----------
    names : sequence of str
        What each row would show (a title, or the file name).
    paths : sequence of str
        Each row's path (absolute, or as :func:`relative_path` shows it).

    Returns
    -------
    list of str
        One label per row, in order.
    """
    if len(names) != len(paths):
        raise ValueError(f"expected one path per name, got {len(names)} names and {len(paths)} paths")
    labels = list(names)
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name, []).append(i)
    for name, rows in groups.items():
        split = {i: _parts(display_path(paths[i])) or [""] for i in rows}
        distinct = len({tuple(split[i]) for i in rows})
        if distinct < 2:
            continue  # one file (or nothing to go by): nothing to tell apart

        def tail(i: int, depth: int, split: dict[int, list[str]] = split) -> tuple[str, ...]:
            return tuple(split[i][-depth - 1 : -1]) + (split[i][-1],)

        depth = 1
        while len({tail(i, depth) for i in rows}) < distinct and depth < max(len(p) for p in split.values()):
            depth += 1
        for i in rows:
            folder, file = "/".join(tail(i, depth)[:-1]), split[i][-1]
            if name == file:
                labels[i] = f"{folder}/{file}" if folder else file
                continue
            # A title: its folder says enough unless another file with this title shares the folder.
            shared_folder = any(tail(j, depth)[:-1] == tail(i, depth)[:-1] and split[j] != split[i] for j in rows)
            where = f"{folder}/{file}" if shared_folder or not folder else folder
            labels[i] = f"{name} ({where})"
    return labels
