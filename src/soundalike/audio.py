"""Decode any audio file to mono float32 at one analysis rate; encode a signal through real codecs.

This is the only module that touches codecs. :func:`decode` uses PyAV (FFmpeg's libraries), so
MP3, Ogg Vorbis, Opus, FLAC, WAV, AIFF and M4A/AAC all work, and it identifies a file by its
content, never by its extension. Every way a file can fail becomes one precise
:class:`~soundalike.errors.AudioError` subclass; decoding is bounded in output length, so a tiny
file that expands to hours cannot hang or exhaust memory.

:func:`encode` writes a mono signal through real encoders chosen by the extension (libsndfile for
WAV, FLAC, Ogg Vorbis, Ogg Opus and MP3; FFmpeg's AAC through PyAV for M4A), so that a synthetic
file looks like a real one to the decoder. :func:`excerpt` and :func:`add_noise` are the pure
signal operations that make a query clip out of a track.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from soundalike.errors import (
    CorruptAudioError,
    EmptyFileError,
    NotAudioError,
    SilentAudioError,
    TooLongError,
    TooShortError,
    TruncatedAudioError,
    UnreadableFileError,
)

log = logging.getLogger(__name__)

SAMPLE_RATE = 22050
"""The analysis rate in Hz; every feature is computed at this rate."""

MIN_DURATION_S = 1.0
MAX_DURATION_S = 1800.0
SILENCE_DBFS = -60.0

# Containers whose header states the exact length, so a shortfall means the file was cut.
_EXACT_LENGTH_FORMATS = ("wav", "flac", "aiff", "w64", "caf", "mov", "mp4", "m4a")
# Bad packets tolerated before a file counts as corrupt (real MP3s often carry one broken frame).
_MAX_BAD_PACKET_SHARE = 0.05
_MAX_BAD_PACKETS_ABS = 8
# Input samples gathered before each resampler call (about 1.5 s at 44.1 kHz).
_RESAMPLE_BLOCK = 65536


@dataclass(frozen=True)
class Audio:
    """Decoded audio.

    Attributes
    ----------
    samples : np.ndarray [shape=(n,), dtype=float32]
        Mono signal at ``sample_rate``, DC removed.
    sample_rate : int
        Samples per second.
    source_format : str
        The container format FFmpeg recognised, e.g. ``"mp3"`` or ``"ogg"``.
    """

    samples: np.ndarray
    sample_rate: int
    source_format: str
    truncated_to: float | None = None
    """Seconds the decoding stopped at when the source went on longer (``decode(truncate_to=...)``)."""

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate


def decode(
    source: str | os.PathLike[str] | bytes | BinaryIO,
    *,
    sample_rate: int = SAMPLE_RATE,
    max_duration: float = MAX_DURATION_S,
    min_duration: float = MIN_DURATION_S,
    name: str | None = None,
    truncate_to: float | None = None,
) -> Audio:
    """Decode a file (or bytes) to mono float32.

    Parameters
    ----------
    source : path, bytes or binary file object
        What to decode. The format is recognised from the content.
    sample_rate : int
        Output rate in Hz.
    max_duration : float
        Longest audio accepted, in seconds; decoding stops as soon as it is exceeded.
    min_duration : float
        Shortest audio accepted, in seconds.
    name : str, optional
        How to name the source in error messages (defaults to the path, or ``"<upload>"``).
    truncate_to : float, optional
        Decode only the first this many seconds: reading stops there (no more packets are read,
        so memory and time are bounded by it), a longer source is not an error, and the result's
        ``truncated_to`` says where it was cut. ``max_duration`` is then not checked.

    Returns
    -------
    Audio

    Raises
    ------
    UnreadableFileError, EmptyFileError, NotAudioError, CorruptAudioError, TruncatedAudioError,
    TooShortError, TooLongError, SilentAudioError
    """
    import av  # heavy import kept out of ``import soundalike``

    label, handle = _open_source(source, name)
    try:
        container = av.open(handle, mode="r", metadata_errors="ignore")
    except av.error.FileNotFoundError as exc:
        raise UnreadableFileError(label, "file not found") from exc
    except av.error.PermissionError as exc:
        raise UnreadableFileError(label, "permission denied") from exc
    except (av.error.InvalidDataError, av.error.EOFError) as exc:
        raise NotAudioError(label, "not a recognised audio file (no decoder understands it)") from exc
    except av.error.FFmpegError as exc:
        raise NotAudioError(label, f"cannot be opened as audio ({exc.strerror or exc})") from exc
    except OSError as exc:
        raise UnreadableFileError(label, exc.strerror or str(exc)) from exc

    with container:
        if not container.streams.audio:
            raise NotAudioError(label, f"no audio stream in this {container.format.name} file")
        stream = container.streams.audio[0]
        declared = _declared_duration(container, stream)
        if container.format.name == "wav":
            # FFmpeg trims a WAV's length to the file size; the header says what was meant to be there.
            declared = _wav_declared_duration(source) or declared
        if truncate_to is None and declared is not None and declared > max_duration * 1.02:
            raise TooLongError(
                label, f"declares {declared / 60:.1f} min of audio, more than the {max_duration / 60:.0f} min limit"
            )
        samples, cut = _decode_stream(container, stream, label, sample_rate, max_duration, truncate_to)
        format_name = container.format.name

    duration = len(samples) / sample_rate
    if len(samples) == 0:
        raise CorruptAudioError(label, "no audio could be decoded")
    if (
        not cut
        and declared is not None
        and any(f in format_name.split(",") for f in _EXACT_LENGTH_FORMATS)
        and declared - duration > max(1.0, 0.05 * declared)
    ):
        raise TruncatedAudioError(
            label, f"truncated: the header declares {declared:.1f} s but only {duration:.1f} s decode"
        )
    if duration < min_duration:
        raise TooShortError(label, f"only {duration:.2f} s of audio (at least {min_duration:g} s needed)")
    if not np.all(np.isfinite(samples)):
        raise CorruptAudioError(label, "decoded samples contain NaN or infinity")
    samples -= samples.mean(dtype=np.float64)
    level_rms = rms(samples)
    if level_rms <= 10 ** (SILENCE_DBFS / 20):
        level = 20 * np.log10(level_rms) if level_rms > 0 else float("-inf")
        raise SilentAudioError(label, f"silent (level {level:.0f} dBFS, below {SILENCE_DBFS:.0f} dBFS)")
    return Audio(
        samples=samples,
        sample_rate=sample_rate,
        source_format=format_name.split(",")[0],
        truncated_to=round(len(samples) / sample_rate, 3) if cut else None,
    )


def _open_source(
    source: str | os.PathLike[str] | bytes | BinaryIO, name: str | None
) -> tuple[str, str | BinaryIO]:
    """Check the source exists and is non-empty; return its label and what ``av.open`` takes."""
    if isinstance(source, bytes | bytearray):
        if not source:
            raise EmptyFileError(name or "<upload>", "empty (0 bytes)")
        return name or "<upload>", io.BytesIO(source)
    if hasattr(source, "read"):
        return name or getattr(source, "name", "<upload>"), source  # type: ignore[return-value]
    path = Path(source)  # type: ignore[arg-type]
    label = name or str(path)
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise UnreadableFileError(label, "file not found (or a broken link)") from exc
    except OSError as exc:
        raise UnreadableFileError(label, exc.strerror or str(exc)) from exc
    if not path.is_file():
        raise UnreadableFileError(label, "not a regular file")
    if st.st_size == 0:
        raise EmptyFileError(label, "empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise UnreadableFileError(label, "permission denied")
    return label, str(path)


def _declared_duration(container: Any, stream: Any) -> float | None:
    """Duration in seconds that the container or stream header claims, if any."""
    if getattr(stream, "duration", None) and getattr(stream, "time_base", None):
        return float(stream.duration * stream.time_base)
    if getattr(container, "duration", None):
        return float(container.duration) / 1_000_000  # AV_TIME_BASE
    return None


def _wav_declared_duration(source: Any) -> float | None:
    """Seconds of audio a RIFF/WAVE header declares in its ``data`` chunk, if readable."""
    try:
        if isinstance(source, bytes | bytearray):
            head = bytes(source[:65536])
        elif hasattr(source, "read"):
            return None
        else:
            with open(source, "rb") as f:
                head = f.read(65536)
    except OSError:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"fmt " and pos + 16 <= len(head):
            byte_rate = int.from_bytes(head[pos + 16 : pos + 20], "little")
        if chunk == b"data":
            if byte_rate <= 0 or size in (0, 0xFFFFFFFF):
                return None
            return size / byte_rate
        pos += 8 + size + (size & 1)
    return None


class _Enough(Exception):
    """Raised inside the decoding loop once ``truncate_to`` seconds are in hand."""


def _decode_stream(
    container: object, stream: object, label: str, sample_rate: int, max_duration: float, truncate_to: float | None
) -> tuple[np.ndarray, bool]:
    """Demux, decode and resample to mono float32, stopping past ``max_duration`` (or at ``truncate_to``).

    Returns the samples and whether the source was cut at ``truncate_to``.
    """
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    # Decoded frames are gathered in a FIFO and resampled in large blocks: one resampler call per
    # codec frame (1,152 samples for MP3) costs more in Python than the conversion itself. The
    # resampler is stateful, so the samples it returns do not depend on how its input is cut.
    fifo = av.AudioFifo()
    shape: tuple[object, ...] | None = None
    limit = int(max_duration * sample_rate)
    keep = int(truncate_to * sample_rate) if truncate_to is not None else None
    chunks: list[np.ndarray] = []
    total = 0
    packets = 0
    bad = 0
    last_error = ""

    def take(frames: list) -> None:
        nonlocal total
        for out in frames:
            chunk = out.to_ndarray().reshape(-1)
            chunks.append(chunk)
            total += len(chunk)
        if keep is not None:
            if total > keep:
                raise _Enough
            return
        if total > limit:
            raise TooLongError(
                label, f"decodes to more than {max_duration / 60:.0f} min of audio (the limit)"
            )

    def drain() -> None:
        if fifo.samples:
            take(resampler.resample(fifo.read()))

    def push(frame: Any) -> None:
        nonlocal shape
        here = (frame.format.name, frame.layout.name, frame.sample_rate)
        shape = shape or here
        if here != shape:  # a stream that changes format: the resampler judges it, frame by frame
            drain()
            take(resampler.resample(frame))
            return
        frame.pts = None  # the FIFO would insist on gapless timestamps; only the samples matter
        fifo.write(frame)
        if fifo.samples >= _RESAMPLE_BLOCK:
            drain()

    cut = False
    try:
        for packet in container.demux(stream):  # type: ignore[attr-defined]
            packets += 1
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                bad += 1
                last_error = str(exc)
                if bad > max(_MAX_BAD_PACKETS_ABS, _MAX_BAD_PACKET_SHARE * packets):
                    raise CorruptAudioError(
                        label, f"corrupt: {bad} of {packets} packets fail to decode ({last_error})"
                    ) from exc
                continue
            for frame in frames:
                push(frame)
        drain()
        take(resampler.resample(None))
    except _Enough:
        cut = True  # no further packet is read: the rest of the source costs nothing
    except (TooLongError, CorruptAudioError):
        raise
    except av.error.FFmpegError as exc:
        # A demuxer error part-way: keep what decoded if it is most of the file, else report it.
        with contextlib.suppress(av.error.FFmpegError):
            drain()  # what decoded before the error is still in the FIFO
        if total == 0:
            raise CorruptAudioError(label, f"corrupt: {exc.strerror or exc}") from exc
        log.warning("%s: stopped decoding at %.1f s: %s", label, total / sample_rate, exc)
    if bad and total and bad > 0.5 * packets:
        raise CorruptAudioError(label, f"corrupt: {bad} of {packets} packets fail to decode ({last_error})")
    if not chunks:
        return np.zeros(0, dtype=np.float32), False
    samples = np.concatenate(chunks).astype(np.float32, copy=False)
    return (samples[:keep].copy() if cut else samples), cut


def read_tags(path: str | os.PathLike[str] | BinaryIO) -> dict[str, str]:
    """Read title, artist, album and genre with mutagen; missing or unreadable tags are left out.

    ``path`` may also be a binary file object (a ``BytesIO`` of a file's bytes); give it a ``name``
    attribute so that mutagen weighs the extension as it does for a path.
    """
    try:
        import mutagen

        meta = mutagen.File(path if hasattr(path, "read") else str(path), easy=True)
    except Exception as exc:  # mutagen raises many types for odd files; tags are optional
        log.debug("%s: no tags (%s)", getattr(path, "name", path), exc)
        return {}
    if meta is None or not getattr(meta, "tags", None):
        return {}
    tags: dict[str, str] = {}
    for key in ("title", "artist", "album", "genre"):
        try:
            value = meta.tags.get(key)
        except Exception:  # some tag containers raise on unknown keys
            value = None
        if value:
            text = value[0] if isinstance(value, list) else value
            text = str(text).strip()
            if text:
                tags[key] = text
    return tags


# -- signals ------------------------------------------------------------------------------------


def rms(y: np.ndarray) -> float:
    """Root mean square of a signal (0 for an empty one), computed in float64."""
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0


def add_noise(y: np.ndarray, *, snr_db: float, rng: np.random.Generator | int | None) -> np.ndarray:
    """Add white gaussian noise at a given signal-to-noise ratio.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Signal.
    snr_db : float
        Ratio of the signal's RMS to the noise's RMS, in dB.
    rng : np.random.Generator or int or None
        Source of the noise (an int is used as a seed).

    Returns
    -------
    noisy : np.ndarray [shape=(n,), dtype=float32]
        ``y`` plus noise; not clipped, so it may exceed [-1, 1] at low SNR.
    """
    y = np.asarray(y, dtype=np.float32)
    generator = np.random.default_rng(rng)
    noise_rms = rms(y) / 10.0 ** (snr_db / 20.0)
    noise = generator.standard_normal(y.shape) * noise_rms
    return (y + noise).astype(np.float32)


def excerpt(y: np.ndarray, *, sample_rate: int, start_s: float, duration_s: float) -> np.ndarray:
    """Cut a segment out of a signal.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Signal.
    sample_rate : int
        Rate of ``y`` in Hz.
    start_s, duration_s : float
        Start and length of the segment in seconds.

    Returns
    -------
    segment : np.ndarray [shape=(round(duration_s * sample_rate),)]
        A copy of the samples from ``round(start_s * sample_rate)`` on.

    Raises
    ------
    ValueError
        If the segment is empty or does not lie inside ``y``.
    """
    start = round(start_s * sample_rate)
    length = round(duration_s * sample_rate)
    if start < 0 or length <= 0 or start + length > len(y):
        raise ValueError(
            f"excerpt [{start_s:g} s, {start_s + duration_s:g} s) does not fit in a signal of "
            f"{len(y) / sample_rate:g} s"
        )
    return np.array(y[start : start + length], copy=True)


# -- encoding through real codecs ----------------------------------------------------------------

_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
# libvorbis nominal bitrates (44.1 kHz stereo) at quality -1 … 10, to turn a bitrate into a quality.
_VORBIS_KBPS = (45, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 500)
ENCODE_FORMATS: tuple[str, ...] = ("wav", "flac", "ogg", "opus", "mp3", "m4a")
"""File extensions :func:`encode` writes (without the dot)."""


def _parse_bitrate(bitrate: str | int) -> int:
    """``"128k"`` or ``128000`` → bits per second."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kK]?)\s*", str(bitrate))
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"bad bitrate {bitrate!r}; expected e.g. '128k' or 128000")
    return int(float(match.group(1)) * (1000 if match.group(2) else 1))


def _supported_rate(sample_rate: int, rates: Sequence[int]) -> int:
    """The smallest rate in ``rates`` at or above ``sample_rate`` (else the highest)."""
    return next((r for r in rates if r >= sample_rate), rates[-1])


def _resample(y: np.ndarray, source: int, target: int) -> np.ndarray:
    from scipy.signal import resample_poly

    if source == target:
        return y
    g = math.gcd(source, target)
    return resample_poly(y, target // g, source // g).astype(np.float32)


def encode(
    path: str | os.PathLike[str],
    y: np.ndarray,
    *,
    sample_rate: int,
    bitrate: str | int | None = None,
) -> Path:
    """Write a mono signal through a real encoder chosen by the file extension.

    ===========  ==========================  =========================================
    extension    encoder                     notes
    ===========  ==========================  =========================================
    ``.wav``     libsndfile, PCM 16-bit      lossless; ``bitrate`` ignored
    ``.flac``    libsndfile, FLAC 16-bit     lossless; ``bitrate`` ignored
    ``.ogg``     libsndfile, Vorbis          ``bitrate`` → nominal VBR quality
    ``.opus``    libsndfile, Ogg Opus        resampled to 8/12/16/24/48 kHz
    ``.mp3``     libsndfile (LAME)           ``bitrate`` → constant bitrate
    ``.m4a``     PyAV (FFmpeg AAC)           ``bitrate`` → AAC target bitrate
    ===========  ==========================  =========================================

    Parameters
    ----------
    path : str or os.PathLike
        Destination; its parent directory must exist. Overwritten if present.
    y : np.ndarray [shape=(n,)]
        Mono signal in [-1, 1] (clipped when written as 16-bit PCM).
    sample_rate : int
        Rate of ``y`` in Hz. Rates a codec cannot store are resampled to the next one it can.
    bitrate : str or int, optional
        Target bitrate of lossy formats, e.g. ``"96k"``; the encoder default when ``None``.

    Returns
    -------
    path : pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        If the extension is not one of the above, or ``y`` is not one-dimensional.
    """
    path = Path(path)
    ext = path.suffix.lower().lstrip(".")
    if ext not in ENCODE_FORMATS:
        raise ValueError(
            f"cannot write {path.name!r}: unsupported extension {path.suffix!r}; "
            f"expected one of {', '.join('.' + f for f in ENCODE_FORMATS)}"
        )
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected a mono signal of shape (n,), got shape {y.shape}")
    bps = None if bitrate is None else _parse_bitrate(bitrate)

    if ext == "m4a":
        rate = _supported_rate(sample_rate, _AAC_RATES)
        _write_aac(path, _resample(y, sample_rate, rate), sample_rate=rate, bps=bps)
        return path

    import soundfile as sf

    options: dict[str, object] = {}
    rate = sample_rate
    if ext == "wav":
        options = {"format": "WAV", "subtype": "PCM_16"}
    elif ext == "flac":
        options = {"format": "FLAC", "subtype": "PCM_16"}
    elif ext == "ogg":
        options = {"format": "OGG", "subtype": "VORBIS"}
        if bps is not None:
            quality = np.interp(
                bps / 1000.0, _VORBIS_KBPS, np.linspace(-0.1, 1.0, len(_VORBIS_KBPS))
            )
            # libsndfile's Vorbis quality is 1 - compression_level, clipped to [0, 1].
            options["compression_level"] = float(np.clip(1.0 - quality, 0.0, 1.0))
    elif ext == "opus":
        rate = _supported_rate(sample_rate, _OPUS_RATES)
        options = {"format": "OGG", "subtype": "OPUS"}
        if bps is not None:
            # libsndfile: bitrate = (1 - level) * 250 kbps + 6 kbps per channel.
            options["compression_level"] = float(np.clip(1.0 - (bps - 6000) / 250000, 0.0, 1.0))
    elif ext == "mp3":
        rate = _supported_rate(sample_rate, _MP3_RATES)
        options = {"format": "MP3", "subtype": "MPEG_LAYER_III"}
        if bps is not None:
            # libsndfile maps compression_level linearly onto the MPEG version's bitrate range.
            low, high = (32, 320) if rate >= 32000 else (8, 160) if rate >= 16000 else (8, 64)
            kbps = min(max(bps / 1000.0, low), high)
            options["compression_level"] = (high - kbps) / (high - low)
            options["bitrate_mode"] = "CONSTANT"
    elif bps is not None:
        log.debug("%s is lossless; ignoring bitrate %r", path.name, bitrate)

    data = _resample(y, sample_rate, rate)
    if ext in ("wav", "flac"):
        data = np.clip(data, -1.0, 1.0)
    sf.write(path, data, rate, **options)
    log.debug("wrote %s (%s, %d Hz, %d samples)", path, ext, rate, data.size)
    return path


def _write_aac(path: Path, y: np.ndarray, *, sample_rate: int, bps: int | None) -> None:
    """Encode ``y`` as AAC in an MPEG-4 audio (.m4a) container with PyAV."""
    import av

    with av.open(str(path), "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=sample_rate, layout="mono")
        if bps is not None:
            stream.bit_rate = bps
        stream.codec_context.open()
        frame_size = stream.codec_context.frame_size or 1024
        for start in range(0, y.size, frame_size):
            chunk = np.ascontiguousarray(y[start : start + frame_size])[np.newaxis, :]
            frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
