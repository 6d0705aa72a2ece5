"""Analysis speed on one core: seconds per track and × real time, by stage, against baselines.

Two sets of files: the 30-second dev-music clips (MP3 and Ogg Vorbis, 44.1 kHz stereo) and
full-length tracks of about three minutes made by joining consecutive clips and encoding them as
44.1 kHz stereo MP3 at 128 kbit/s (cached in ``benchmarks/.cache``). Every stage of every file is
timed ``repeats`` times and the fastest kept, which filters out the time other processes take.

Baselines measured in the same run:

* **codec decode only**: PyAV demuxing and decoding every frame, with no conversion at all; no
  analyser of compressed audio can be faster;
* **the naive implementation** of the very same features (:mod:`benchmarks.naive`), i.e. this
  code before it was optimised; its vectors are checked against the optimised ones;
* **the librosa pipeline** of the original design: ``librosa.load`` at 22,050 Hz, then the means of
  13 MFCCs, a 50-band mel spectrogram in dB and a 384-lag tempogram (the 447-d vectors of
  ``PEERS.md``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    Section,
    Target,
    best_of,
    devmusic_clips,
    fmt_x,
)
from benchmarks.naive import naive_implementation

log = logging.getLogger(__name__)

SR = 22050
MP3_RATE = 44100
CLIP_SECONDS = 30.0


@dataclass(frozen=True)
class AnalysisConfig:
    """How much to measure."""

    clips: int | None = None
    """30-second clips to time (None: every dev-music clip)."""
    full_tracks: int = 10
    full_seconds: float = 180.0
    repeats: int = 3
    librosa_clips: int | None = None
    """Clips the librosa baseline runs on (None: all of them); it runs on every full-length track."""
    naive: bool = True


FULL = AnalysisConfig()
QUICK = AnalysisConfig(clips=12, full_tracks=2, repeats=1, librosa_clips=4)


# -- inputs --------------------------------------------------------------------------------------


def _decode_stereo(path: Path) -> np.ndarray:
    """Decode to 44.1 kHz stereo float32, shape (n, 2)."""
    import av

    parts: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=MP3_RATE)
        for frame in container.decode(stream):
            parts.extend(out.to_ndarray() for out in resampler.resample(frame))
        parts.extend(out.to_ndarray() for out in resampler.resample(None))
    return np.concatenate(parts, axis=1).T


def _write_mp3(path: Path, stereo: np.ndarray) -> None:
    """44.1 kHz stereo MP3 at a constant 128 kbit/s, through libsndfile's LAME (as audio.encode does, in stereo)."""
    import soundfile as sf

    tmp = path.with_suffix(".tmp.mp3")
    # libsndfile maps compression_level linearly onto MPEG-1's 32..320 kbit/s.
    sf.write(tmp, np.clip(stereo, -1.0, 1.0), MP3_RATE, format="MP3", subtype="MPEG_LAYER_III",
             compression_level=(320 - 128) / (320 - 32), bitrate_mode="CONSTANT")  # fmt: skip
    tmp.replace(path)


def _synthetic_stereo(seconds: float, seed: int) -> np.ndarray:
    from soundalike import synth

    specs = synth.library_specs(keys=("C", "Am", "F#", "Bbm"), duration=seconds)
    y = synth.render(specs[seed % len(specs)], sample_rate=MP3_RATE)
    return np.stack([y, np.roll(y, 7)], axis=1)


def clip_files(cache: Path, n: int | None) -> tuple[list[Path], str]:
    """The 30-second clips: dev-music (spread over its folders), or synthesised ones if absent."""
    clips = devmusic_clips()
    if clips:
        if n is not None and n < len(clips):
            step = len(clips) / n
            clips = [clips[int(i * step)] for i in range(n)]
        return clips, f"{len(clips)} dev-music clips of 30 s (MP3 128 kbit/s and Ogg Vorbis q4, 44.1 kHz stereo)"
    folder = cache / "clips"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n or 24):
        path = folder / f"synth-{i:03d}.mp3"
        if not path.is_file():
            _write_mp3(path, _synthetic_stereo(CLIP_SECONDS, i))
        out.append(path)
    return out, f"{len(out)} synthesised clips of 30 s (MP3 128 kbit/s, 44.1 kHz stereo; dev-music not found)"


def full_length_files(cache: Path, n: int, seconds: float) -> tuple[list[Path], str]:
    """Full-length tracks: consecutive dev-music clips joined into ``seconds``-long stereo MP3s."""
    clips = devmusic_clips()
    per_track = math.ceil(seconds / CLIP_SECONDS)
    folder = cache / "full-length"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = folder / f"{'devmusic' if clips else 'synth'}-{seconds:.0f}s-{i:02d}.mp3"
        if not path.is_file():
            if clips:
                parts = [_decode_stereo(clips[(i * per_track + j) % len(clips)]) for j in range(per_track)]
                stereo = np.concatenate(parts)[: int(seconds * MP3_RATE)]
            else:
                stereo = _synthetic_stereo(seconds, i)
            _write_mp3(path, stereo)
        out.append(path)
    what = f"{per_track} consecutive dev-music clips each" if clips else "synthesised"
    return out, f"{len(out)} tracks of {seconds / 60:.0f} min ({what}; MP3 128 kbit/s, 44.1 kHz stereo)"


# -- the stages ----------------------------------------------------------------------------------


def codec_decode(path: Path) -> int:
    """Demux and decode every frame with PyAV, converting nothing: the floor for any analyser."""
    import av

    samples = 0
    with av.open(str(path)) as container:
        for packet in container.demux(container.streams.audio[0]):
            for frame in packet.decode():
                samples += frame.samples
    return samples


def native_rate(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return int(container.streams.audio[0].rate)


def analyse(path: Path, style: bool = True) -> Any:
    """What ingest does to the audio of one file: decode, then extract every feature."""
    from soundalike.audio import decode
    from soundalike.features import extract

    audio = decode(path)
    return extract(audio.samples, sample_rate=audio.sample_rate, style=style)


def librosa_pipeline(path: Path) -> np.ndarray:
    """The original design: librosa.load, then means of MFCC-13, mel-50 dB and a 384-lag tempogram."""
    import librosa

    y, sr = librosa.load(str(path), sr=SR, mono=True)
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=13).mean(axis=1)
    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_mels=50)).mean(axis=1)
    tempogram = librosa.feature.tempogram(y=y, sr=sr, win_length=384).mean(axis=1)
    return np.concatenate([mfcc, mel, tempogram])


def librosa_load(path: Path) -> np.ndarray:
    import librosa

    return librosa.load(str(path), sr=SR, mono=True)[0]


def deviation(reference: np.ndarray, value: np.ndarray, rtol: float = 1e-4, atol: float = 1e-5) -> float:
    """Largest ``|a - b| / (atol + rtol |b|)``: at most 1 means ``np.allclose(a, b, rtol, atol)``."""
    if reference.shape != value.shape:
        return float("inf")
    if reference.size == 0:
        return 0.0
    return float(np.max(np.abs(reference - value) / (atol + rtol * np.abs(value))))


STAGES: list[tuple[str, str]] = [
    ("codec", "codec decode only (PyAV frames, no conversion): the floor"),
    ("decode_native", "decode to mono float at the file's own rate"),
    ("decode", "decode to mono 22,050 Hz (`audio.decode`)"),
    ("resampling", "… of which resampling (22,050 Hz minus native rate)"),
    ("frames", "frames: one STFT → power, mel, MFCC, chroma, onsets, loudness"),
    ("timbre", "family: timbre"),
    ("spectral", "family: spectral"),
    ("rhythm", "family: rhythm"),
    ("harmony", "family: harmony"),
    ("loudness", "family: loudness"),
    ("segments", "segment vectors (5 s windows every 2.5 s)"),
    ("style", "family: style (musicnn on `STYLE_PATCHES` = 5 patches of 3 s: resample, mel, ONNX inference)"),
    ("extract", "all features (`features.extract`)"),
    ("analysis_nostyle", "full analysis without the learned aspect (`--no-style`)"),
    ("analysis", "**full analysis: decode + features, style included**"),
    ("worker", "ingest worker (`analyse_file`: hash, decode, features, tags)"),
    ("naive", "before optimisation: the same features, naive implementation"),
    ("librosa_load", "baseline: `librosa.load` only"),
    ("librosa", "baseline: librosa pipeline (load + MFCC + mel + tempogram means)"),
]


def measure_file(
    path: Path, repeats: int, *, naive: bool, with_librosa: bool
) -> tuple[dict[str, float], dict[str, float]]:
    """Time every stage on one file (fastest of ``repeats``).

    Returns
    -------
    seconds : dict of stage → seconds
    checks : dict
        ``duration`` in seconds and, with ``naive``, ``deviation`` of the naive vectors.
    """
    from soundalike.audio import decode
    from soundalike.features import (
        EXTRACTORS,
        STYLE_PATCHES,
        extract,
        segment_vectors,
        style,
        track_layout,
    )
    from soundalike.features.frames import compute_frames
    from soundalike.ingest import AnalysisOptions, Candidate, analyse_file

    t: dict[str, float] = {}
    rate = native_rate(path)
    t["codec"], _ = best_of(lambda: codec_decode(path), repeats)
    t["decode_native"], _ = best_of(lambda: decode(path, sample_rate=rate), repeats)
    t["decode"], audio = best_of(lambda: decode(path), repeats)
    t["resampling"] = max(0.0, t["decode"] - t["decode_native"])
    y = audio.samples
    t["frames"], frames = best_of(lambda: compute_frames(y, sample_rate=SR), repeats)
    for name, family in EXTRACTORS.items():
        t[name], _ = best_of(partial(family, frames), repeats)
    t["segments"], _ = best_of(lambda: segment_vectors(frames), repeats)
    t["style"], _ = best_of(lambda: style.style_embedding(y, sample_rate=SR, n_patches=STYLE_PATCHES), repeats)
    t["analysis_nostyle"], _ = best_of(lambda: analyse(path, style=False), repeats)
    t["extract"], _ = best_of(lambda: extract(y, sample_rate=SR), repeats)
    t["analysis"], result = best_of(lambda: analyse(path), repeats)
    st = path.stat()
    candidate, options = Candidate(str(path), st.st_size, st.st_mtime), AnalysisOptions()
    t["worker"], _ = best_of(lambda: analyse_file(candidate, options), repeats)
    checks = {"duration": audio.duration}
    if naive:
        with naive_implementation():
            t["naive"], before = best_of(lambda: analyse(path, style=False), repeats)
        learned = track_layout().slices["style"]  # the naive run leaves the model out
        checks["deviation"] = max(
            deviation(np.delete(before.vector, np.r_[learned]), np.delete(result.vector, np.r_[learned])),
            deviation(before.segments, result.segments),
        )
    if with_librosa:
        # The slow baseline runs once per file; its fastest stage dominates nothing.
        t["librosa_load"], _ = best_of(lambda: librosa_load(path), 1)
        t["librosa"], _ = best_of(lambda: librosa_pipeline(path), 1)
    return t, checks


def _measure_set(
    files: list[Path], repeats: int, *, naive: bool, librosa_files: int, progress: Any
) -> dict[str, Any]:
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    audio = {"all": 0.0, "librosa": 0.0}
    worst = 0.0
    for i, path in enumerate(files):
        with_librosa = i < librosa_files
        seconds, checks = measure_file(path, repeats, naive=naive, with_librosa=with_librosa)
        for key, value in seconds.items():
            totals[key] = totals.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
        audio["all"] += checks["duration"]
        if with_librosa:
            audio["librosa"] += checks["duration"]
        worst = max(worst, checks.get("deviation", 0.0))
        progress(1)
    out: dict[str, Any] = {"files": len(files), "audio_seconds": audio["all"], "deviation": worst, "stages": {}}
    for key, total in totals.items():
        audio_s = audio["librosa"] if key.startswith("librosa") else audio["all"]
        out["stages"][key] = {
            "per_track": total / counts[key],
            "x_realtime": audio_s / total if total > 0 else float("inf"),
            "files": counts[key],
        }
    return out


def _warm_up(path: Path) -> None:
    """First calls build filter banks, import codecs and JIT-compile librosa's helpers."""
    analyse(path)
    with naive_implementation():
        analyse(path)
    librosa_pipeline(path)
    codec_decode(path)


def run(cache: Path, config: AnalysisConfig = FULL) -> Section:
    """Measure analysis speed; see the module docstring."""
    from tqdm import tqdm

    clips, clip_source = clip_files(cache, config.clips)
    full, full_source = full_length_files(cache, config.full_tracks, config.full_seconds)
    _warm_up(clips[0])
    librosa_clips = len(clips) if config.librosa_clips is None else min(config.librosa_clips, len(clips))
    with tqdm(total=len(clips) + len(full), desc="analysis", unit="file", leave=False) as bar:
        clip_r = _measure_set(clips, config.repeats, naive=config.naive, librosa_files=librosa_clips, progress=bar.update)
        full_r = _measure_set(full, config.repeats, naive=config.naive, librosa_files=len(full), progress=bar.update)

    section = Section(
        title="1. Analysis speed (one core)",
        intro=(
            "One core: `OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1`, one process. "
            f"Files: {clip_source}; {full_source}. Every stage of every file is run "
            f"{config.repeats} time(s) and the fastest kept (the librosa baseline once). "
            "× real time = seconds of audio analysed per second of one core."
        ),
        raw={"clips": clip_r, "full": full_r, "config": config.__dict__},
    )
    bar = section.table(
        f"The bar: whole {config.full_seconds / 60:.0f}-minute tracks on one core, the three rows measured in this run",
        ["", "per track", "× real time", "÷ decode-only"],
    )
    floor = full_r["stages"]["codec"]["per_track"]
    for key, label in (
        ("codec", "decode-only floor (PyAV frames, no conversion)"),
        ("analysis_nostyle", "full analysis without the learned aspect (`--no-style`)"),
        ("analysis", "**full analysis with the learned aspect (style)**"),
    ):
        f = full_r["stages"][key]
        bar.add(label, f"{f['per_track'] * 1e3:.1f} ms", fmt_x(f["x_realtime"]), f"{f['per_track'] / floor:.2f}")
    table = section.table(
        "Seconds per track and × real time, by stage",
        ["stage", "30 s clip: per track", "× real time", "3 min track: per track", "× real time"],
    )
    for key, label in STAGES:
        c, f = clip_r["stages"].get(key), full_r["stages"].get(key)
        if c is None and f is None:
            continue
        table.add(
            label,
            f"{c['per_track'] * 1e3:.1f} ms" if c else "–",
            fmt_x(c["x_realtime"]) if c else "–",
            f"{f['per_track'] * 1e3:.1f} ms" if f else "–",
            fmt_x(f["x_realtime"]) if f else "–",
        )

    def ratio(result: dict[str, Any], a: str, b: str) -> float:
        stages = result["stages"]
        if a not in stages or b not in stages:
            return float("nan")
        return float(stages[a]["per_track"] / stages[b]["per_track"])

    ratios = section.table("Ratios (same run)", ["ratio", "30 s clips", "3 min tracks"])
    for label, a, b in (
        ("full analysis ÷ codec decode only (target ≤ 3)", "analysis", "codec"),
        ("full analysis ÷ `audio.decode` to 22,050 Hz mono", "analysis", "decode"),
        ("features alone ÷ codec decode only", "extract", "codec"),
        ("naive implementation ÷ optimised, both without style (speed-up of the optimisation)", "naive", "analysis_nostyle"),
        ("full analysis with style ÷ without", "analysis", "analysis_nostyle"),
        ("full analysis without style ÷ codec decode only", "analysis_nostyle", "codec"),
        ("librosa pipeline ÷ soundalike (speed-up over the original design)", "librosa", "analysis"),
    ):
        if math.isnan(ratio(clip_r, a, b)) and math.isnan(ratio(full_r, a, b)):
            continue
        ratios.add(label, fmt_x(ratio(clip_r, a, b)), fmt_x(ratio(full_r, a, b)))
    if config.naive:
        worst = max(clip_r["deviation"], full_r["deviation"])
        section.notes.append(
            "The naive and the optimised implementation give the same vectors and segments on every file "
            f"timed: the largest |naive − optimised| / (1e-5 + 1e-4·|optimised|) is {worst:.3g} "
            "(≤ 1 means `np.allclose(rtol=1e-4, atol=1e-5)`)."
            if worst <= 1
            else f"**The naive and optimised vectors differ**: deviation {worst:.3g} (> 1 means not allclose)."
        )
    section.notes.append(
        "What the optimisation changed (the naive row above runs the code as it was): decoding gathers codec frames "
        "into blocks of 65,536 samples before each resampler call instead of calling it per 1,152-sample MP3 frame "
        "(bit-identical output); the STFT runs in cache-sized blocks of 256 frames and writes (bins, frames) "
        "directly instead of transposing the whole spectrogram (bit-identical); spectral contrast sorts each "
        "frame's bins (numpy's SIMD sort) instead of a two-sided `np.partition` down the frequency axis; the "
        "roll-off's cumulative sum adds whole rows (bit-identical). `python -m benchmarks.feature_reference "
        "check FILE` compares all 91 clips' vectors and segments with a reference saved before a change."
    )
    section.notes.append(
        "For scale (quoted in the issue, same machine type, not measured in this run): bliss-rs analyses whole "
        "tracks at about 417× real time, Musly about 306×, the original librosa pipeline about 100–117×."
    )
    full_x = full_r["stages"]["analysis"]["x_realtime"]
    plain_x = full_r["stages"]["analysis_nostyle"]["x_realtime"]
    plain_vs_codec = ratio(full_r, "analysis_nostyle", "codec")
    section.targets += [
        Target("whole tracks: full analysis with the learned aspect ≥ 200× real time on one core", fmt_x(full_x), full_x >= 200),
        Target("whole tracks: full analysis without it (`--no-style`) ≥ 500× real time on one core", fmt_x(plain_x), plain_x >= 500),
        Target(
            "whole tracks: full analysis without it within 3× of decode-only",
            f"{plain_vs_codec:.2f}× codec decode only ({ratio(full_r, 'analysis_nostyle', 'decode'):.2f}× `audio.decode`)",
            plain_vs_codec <= 3,
        ),
    ]
    return section
