"""What every benchmark shares: result tables, timing, memory sampling, the machine, the inputs."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import ROOT

# -- results -----------------------------------------------------------------------------------


@dataclass
class Table:
    """One table of a section: a title, column names and rows of already formatted cells."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.title}: expected {len(self.columns)} cells, found {len(cells)}")
        self.rows.append([str(c) for c in cells])


@dataclass
class Target:
    """A target from the issue and whether this run met it."""

    name: str
    measured: str
    met: bool | None  # None: could not be measured in this run
    note: str = ""


@dataclass
class Section:
    """What one benchmark area reports: prose, tables, targets and the raw numbers."""

    title: str
    intro: str = ""
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def table(self, title: str, columns: Sequence[str]) -> Table:
        t = Table(title, list(columns))
        self.tables.append(t)
        return t


def markdown_table(table: Table) -> str:
    head = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(r) + " |" for r in table.rows]
    return "\n".join([head, rule, *body])


def render(sections: Sequence[Section], machine: dict[str, Any], *, mode: str, seconds: float) -> str:
    """The results document: the machine, the targets at a glance, then every section."""
    lines = [
        "# soundalike benchmarks",
        "",
        f"Written by `python -m benchmarks{' --quick' if mode == 'quick' else ''}` "
        f"({mode} mode, {seconds / 60:.1f} min) on {machine['date']}. Absolute figures are for the machine "
        "below; ratios compare with baselines measured in the same run.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    for key, label in (
        ("cpu", "CPU"),
        ("cores", "cores"),
        ("ram", "RAM"),
        ("os", "OS"),
        ("python", "Python"),
        ("versions", "libraries"),
        ("commit", "commit"),
        ("load_before", "load average (1, 5, 15 min) before"),
        ("load_after", "load average after"),
    ):
        if key in machine:
            lines.append(f"| {label} | {machine[key]} |")
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for s in sections:
        for target in s.targets:
            met = "n/a" if target.met is None else ("yes" if target.met else "**no**")
            note = f" ({target.note})" if target.note else ""
            lines.append(f"| {target.name} | {target.measured}{note} | {met} |")
    for s in sections:
        lines += ["", f"## {s.title}", ""]
        if s.intro:
            lines += [s.intro.strip(), ""]
        for t in s.tables:
            lines += [f"**{t.title}**", "", markdown_table(t), ""]
        for note in s.notes:
            lines += [note.strip(), ""]
    return "\n".join(lines).rstrip() + "\n"


def to_json(sections: Sequence[Section], machine: dict[str, Any], *, mode: str) -> str:
    return json.dumps(
        {"mode": mode, "machine": machine, "sections": [asdict(s) for s in sections]},
        indent=1,
        default=_json_default,
    )


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# -- formatting ----------------------------------------------------------------------------------


def fmt_s(seconds: float) -> str:
    """A duration with a sensible unit."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


def fmt_x(ratio: float) -> str:
    """A ratio such as × real time."""
    if not np.isfinite(ratio):
        return "–"
    if ratio >= 100:
        return f"{ratio:,.0f}×"
    if ratio >= 10:
        return f"{ratio:.1f}×"
    return f"{ratio:.2f}×"


def fmt_bytes(n: float) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}" if abs(n) < 10 * size else f"{n / size:.0f} {unit}"
    return f"{n:.0f} B"


def fmt_n(n: int) -> str:
    """10k, 100k, 1M."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return f"{n:,}"


# -- timing and memory ---------------------------------------------------------------------------


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """The fastest of ``repeats`` calls (seconds) and the last result; others' load only adds time."""
    best, result = float("inf"), None
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    s = np.asarray(seconds, dtype=np.float64)
    return {
        "n": float(len(s)),
        "qps": len(s) / float(s.sum()) if s.sum() > 0 else float("nan"),
        "p50": float(np.percentile(s, 50)),
        "p95": float(np.percentile(s, 95)),
        "p99": float(np.percentile(s, 99)),
        "mean": float(s.mean()),
    }


def rss() -> int:
    """Resident set size of this process in bytes."""
    import psutil

    return int(psutil.Process().memory_info().rss)


@dataclass
class Memory:
    """RSS before, at the peak and after a block (sampled every few milliseconds)."""

    before: int = 0
    peak: int = 0
    after: int = 0

    @property
    def peak_delta(self) -> int:
        return self.peak - self.before

    @property
    def kept_delta(self) -> int:
        return self.after - self.before


@contextmanager
def sample_rss(interval: float = 0.005) -> Iterator[Memory]:
    """Sample this process's RSS in a thread while the block runs."""
    import psutil

    proc = psutil.Process()
    mem = Memory(before=proc.memory_info().rss)
    mem.peak = mem.before
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(interval):
            mem.peak = max(mem.peak, proc.memory_info().rss)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield mem
    finally:
        stop.set()
        thread.join()
        mem.after = proc.memory_info().rss
        mem.peak = max(mem.peak, mem.after)


def run_job(fn: Callable[[dict[str, Any]], dict[str, Any]], job: dict[str, Any], *, fresh: bool = True) -> dict[str, Any]:
    """``fn(job)``, by default in a newly spawned process, so that its peak memory is its own."""
    if not fresh:
        return fn(job)
    import concurrent.futures as cf
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(fn, job).result()


def dir_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- the machine ---------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """CPU, cores, RAM, OS, Python and library versions, date, commit and load."""
    import psutil

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    versions = []
    for dist in ("numpy", "scipy", "av", "librosa", "soundfile", "scann", "annoy", "flask", "waitress"):
        try:
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        import av

        ffmpeg = av.library_versions.get("libavcodec")
        if ffmpeg:
            versions.append("libavcodec " + ".".join(str(v) for v in ffmpeg))
    except Exception:  # versions are informative only
        pass
    return {
        "cpu": cpu,
        "cores": f"{cores} ({usable} usable)",
        "ram": f"{psutil.virtual_memory().total / (1 << 30):.1f} GB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": ", ".join(versions),
        "commit": _commit(),
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_before": load_average(),
    }


def load_average() -> str:
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (with uncommitted changes)" if dirty else "")


# -- inputs --------------------------------------------------------------------------------------


def devmusic_dir() -> Path | None:
    """The real clips (``../shared/dev-music`` or ``$SOUNDALIKE_DEVMUSIC``), if present."""
    folder = Path(os.environ.get("SOUNDALIKE_DEVMUSIC", ROOT.parent / "shared" / "dev-music"))
    return folder if folder.is_dir() and any(folder.rglob("*.mp3")) else None


def devmusic_clips() -> list[Path]:
    folder = devmusic_dir()
    if folder is None:
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix in (".mp3", ".ogg"))


def real_features(cache: Path, limit: int | None = None) -> tuple[np.ndarray, list[np.ndarray], str]:
    """Raw track vectors and segment vectors of real music, cached.

    The 91 dev-music clips (or the first ``limit``) when present; otherwise 40 synthesised tracks
    (4 instruments × 5 grooves × 2 keys), so that a clean clone without the clips still runs.

    Returns
    -------
    vectors : np.ndarray [shape=(n, track_layout().dim)]
    segments : list of np.ndarray [shape=(m_i, segment_layout().dim)]
    source : str
        What the vectors were computed from.
    """
    from soundalike.audio import decode
    from soundalike.features import FEATURE_VERSION, extract

    clips = devmusic_clips()[:limit]
    source = f"{len(clips)} dev-music clips" if clips else "40 synthesised tracks (dev-music not found)"
    path = cache / f"real-features-v{FEATURE_VERSION}-{'devmusic' if clips else 'synth'}-{len(clips)}.npz"
    if path.is_file():
        saved = np.load(path)
        vectors = saved["vectors"]
        offsets = saved["offsets"]
        flat = saved["segments"]
        return vectors, [flat[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)], source
    vectors_l: list[np.ndarray] = []
    segments: list[np.ndarray] = []
    if clips:
        for clip in clips:
            audio = decode(clip)
            a = extract(audio.samples, sample_rate=audio.sample_rate)
            vectors_l.append(a.vector)
            segments.append(a.segments)
    else:
        from soundalike import synth

        for spec in synth.library_specs(keys=("C", "A"), duration=20.0)[:limit]:
            a = extract(synth.render(spec), sample_rate=22050)
            vectors_l.append(a.vector)
            segments.append(a.segments)
    vectors = np.stack(vectors_l)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in segments])])
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, vectors=vectors, segments=np.concatenate(segments), offsets=offsets)
    return vectors, segments, source


# -- synthetic feature vectors shaped like real clips ----------------------------------------------

CHUNK = 65_536
TRACKS_PER_ARTIST = 20


@dataclass
class LatentModel:
    """The real clips' standardised features in PCA coordinates (see the module docstring)."""

    mean: np.ndarray
    std: np.ndarray
    latent: np.ndarray  # (clips, rank): each real clip's coordinates
    components: np.ndarray  # (rank, dim)
    spread: np.ndarray  # (rank,): standard deviation of each coordinate over the clips

    @classmethod
    def fit(cls, raw: np.ndarray) -> LatentModel:
        raw = np.asarray(raw, dtype=np.float64)
        mean, std = raw.mean(axis=0), np.maximum(raw.std(axis=0), 1e-6)
        u, s, vt = np.linalg.svd((raw - mean) / std, full_matrices=False)
        rank = max(1, min(len(s) - 1, int(np.sum(s > 1e-6 * s[0]))))
        return cls(mean, std, (u * s)[:, :rank], vt[:rank], s[:rank] / np.sqrt(len(raw)))


def synthetic_raw(model: LatentModel, n: int, *, seed: int, artists: int | None = None) -> np.ndarray:
    """``n`` raw feature vectors: artists between real clips, tracks around their artist.

    Returns
    -------
    np.ndarray [shape=(n, dim), dtype=float32]
    """
    rng = np.random.default_rng(seed)
    rank, dim = model.components.shape
    n_artists = artists or max(8, n // TRACKS_PER_ARTIST)
    a, b = rng.integers(0, len(model.latent), (2, n_artists))
    w = rng.random((n_artists, 1))
    centres = w * model.latent[a] + (1 - w) * model.latent[b] + 0.5 * model.spread * rng.standard_normal((n_artists, rank))
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        latent = centres[rng.integers(0, n_artists, m)] + 0.5 * model.spread * rng.standard_normal((m, rank))
        z = latent @ model.components + 0.5 * rng.standard_normal((m, dim))
        out[start : start + m] = z * model.std + model.mean
    return out
