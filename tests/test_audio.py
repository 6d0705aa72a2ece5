"""Decoding: every common format works, every broken input gets its own named error.

Encoding: every format is written by the codec of its extension; excerpts and noise for query clips.
"""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from soundalike import audio, synth
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


def _music(rng: np.random.Generator, seconds: float, sr: int = 44100, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 330 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    y = y + 0.01 * rng.standard_normal(len(t))
    return np.repeat(y[:, None], channels, axis=1).astype(np.float32) if channels > 1 else y.astype(np.float32)


def _write(path: Path, y: np.ndarray, sr: int = 44100) -> Path:
    ext = path.suffix.lower()
    if ext == ".m4a":
        with av.open(str(path), "w") as out:
            stream = out.add_stream("aac", rate=sr)
            stream.layout = "mono"
            frame = av.AudioFrame.from_ndarray(y.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
            frame.sample_rate = sr
            for packet in stream.encode(frame):
                out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        return path
    kinds = {
        ".wav": ("WAV", "PCM_16"),
        ".flac": ("FLAC", "PCM_16"),
        ".ogg": ("OGG", "VORBIS"),
        ".opus": ("OGG", "OPUS"),
        ".mp3": ("MP3", "MPEG_LAYER_III"),
    }
    fmt, subtype = kinds[ext]
    if ext == ".opus":
        sr = 48000
        y = np.interp(np.arange(int(len(y) * 48000 / 44100)) * 44100 / 48000, np.arange(len(y)), y).astype(np.float32)
    sf.write(str(path), y, sr, format=fmt, subtype=subtype)
    return path


@pytest.mark.parametrize("ext", [".mp3", ".ogg", ".opus", ".flac", ".wav", ".m4a"])
def test_every_common_format_decodes_to_mono_at_the_analysis_rate(tmp_path, rng, ext):
    path = _write(tmp_path / f"music{ext}", _music(rng, 3.0))
    decoded = audio.decode(path)
    assert decoded.sample_rate == audio.SAMPLE_RATE
    assert decoded.samples.dtype == np.float32
    assert decoded.samples.ndim == 1
    assert decoded.duration == pytest.approx(3.0, abs=0.1)


def test_format_is_recognised_by_content_not_extension(tmp_path, rng):
    path = _write(tmp_path / "really-flac.flac", _music(rng, 2.0))
    renamed = path.rename(tmp_path / "named-as.mp3")
    decoded = audio.decode(renamed)
    assert decoded.source_format == "flac"


def test_many_channels_and_high_rate_are_downmixed_and_resampled(tmp_path, rng):
    y = _music(rng, 2.0, sr=192000, channels=8)
    path = tmp_path / "surround.wav"
    sf.write(str(path), y, 192000, subtype="PCM_24")
    decoded = audio.decode(path)
    assert decoded.duration == pytest.approx(2.0, abs=0.05)
    assert np.abs(decoded.samples).max() > 0.1


def test_empty_file_is_reported_as_empty(tmp_path):
    path = tmp_path / "empty.mp3"
    path.write_bytes(b"")
    with pytest.raises(EmptyFileError, match="empty"):
        audio.decode(path)


def test_text_file_is_not_audio(tmp_path):
    path = tmp_path / "notes.mp3"
    path.write_text("these are not the sounds you are looking for\n" * 50)
    with pytest.raises(NotAudioError, match="notes.mp3"):
        audio.decode(path)


def test_random_bytes_with_an_audio_extension_are_rejected(tmp_path, rng):
    path = tmp_path / "noise.ogg"
    path.write_bytes(rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises((NotAudioError, CorruptAudioError)):
        audio.decode(path)


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(UnreadableFileError, match="not found"):
        audio.decode(tmp_path / "nowhere.mp3")


def test_truncated_wav_names_the_declared_and_decoded_lengths(tmp_path, rng):
    path = _write(tmp_path / "cut.wav", _music(rng, 10.0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(TruncatedAudioError, match=r"declares 10\.0 s but only 3\.\d s"):
        audio.decode(path)


def test_truncated_flac_is_reported(tmp_path, rng):
    path = _write(tmp_path / "cut.flac", _music(rng, 10.0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises((TruncatedAudioError, CorruptAudioError)):
        audio.decode(path)


def test_silence_is_rejected_with_its_level(tmp_path):
    path = _write(tmp_path / "silence.wav", np.zeros(44100 * 3, dtype=np.float32))
    with pytest.raises(SilentAudioError, match="dBFS"):
        audio.decode(path)


def test_dc_offset_alone_counts_as_silence(tmp_path):
    path = _write(tmp_path / "dc.wav", np.full(44100 * 3, 0.5, dtype=np.float32))
    with pytest.raises(SilentAudioError):
        audio.decode(path)


def test_too_short_is_rejected(tmp_path, rng):
    path = _write(tmp_path / "blip.wav", _music(rng, 0.3))
    with pytest.raises(TooShortError, match="0.30 s"):
        audio.decode(path)


def test_small_file_claiming_hours_is_refused_without_decoding(tmp_path, rng):
    path = _write(tmp_path / "liar.wav", _music(rng, 1.5))
    data = bytearray(path.read_bytes())
    # Claim 2 GB of 16-bit mono at 44.1 kHz (about 6.8 hours) in the RIFF and data chunk sizes.
    data[4:8] = struct.pack("<I", 0x7FFF0000)
    pos = data.find(b"data")
    data[pos + 4 : pos + 8] = struct.pack("<I", 0x7FFE0000)
    path.write_bytes(bytes(data))
    with pytest.raises(TooLongError, match="min"):
        audio.decode(path)


def test_decoding_stops_once_past_the_length_limit(tmp_path, rng):
    path = _write(tmp_path / "long.ogg", _music(rng, 12.0))
    with pytest.raises(TooLongError):
        audio.decode(path, max_duration=5.0)


def test_bytes_decode_like_files(tmp_path, rng):
    path = _write(tmp_path / "clip.mp3", _music(rng, 2.0))
    from_bytes = audio.decode(path.read_bytes(), name="upload.mp3")
    assert from_bytes.duration == pytest.approx(audio.decode(path).duration, abs=1e-3)


def test_tags_are_read_when_present(tmp_path, rng):
    import mutagen.flac

    path = _write(tmp_path / "tagged.flac", _music(rng, 1.5))
    meta = mutagen.flac.FLAC(str(path))
    meta["title"] = "Blue Hour"
    meta["artist"] = "The Tests"
    meta["genre"] = "Ambient"
    meta.save()
    assert audio.read_tags(path) == {"title": "Blue Hour", "artist": "The Tests", "genre": "Ambient"}


def test_tags_of_a_non_audio_file_are_empty(tmp_path):
    path = tmp_path / "x.mp3"
    path.write_text("nope")
    assert audio.read_tags(path) == {}


def test_decode_with_truncate_to_stops_at_that_many_seconds(tmp_path, rng):
    y = (0.3 * rng.standard_normal(22050 * 20)).astype("float32")
    path = audio.encode(tmp_path / "long.ogg", y, sample_rate=22050)
    cut = audio.decode(path, truncate_to=5.0, max_duration=10.0)  # longer than max_duration: no error
    assert cut.truncated_to == pytest.approx(5.0, abs=0.01)
    assert cut.duration == pytest.approx(5.0, abs=0.01)
    whole = audio.decode(path)
    assert whole.truncated_to is None
    assert whole.duration == pytest.approx(20.0, abs=0.1)


# --- noise, excerpts and encoding ---------------------------------------------------------------

SR = 22050


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of ``path`` with PyAV to mono float32 at its own rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono")
        chunks = [
            out.to_ndarray().reshape(-1)
            for frame in container.decode(stream)
            for out in resampler.resample(frame)
        ]
        rate = stream.codec_context.sample_rate
    return np.concatenate(chunks), rate


# --- noise and excerpts -----------------------------------------------------------------------


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 30.0])
def test_add_noise_reaches_the_requested_snr(snr_db: float, rng: np.random.Generator) -> None:
    y = synth.render(synth.TrackSpec("square", "halftime", "A", duration=4.0))

    noisy = audio.add_noise(y, snr_db=snr_db, rng=rng)

    noise = noisy.astype(np.float64) - y
    measured = 20 * np.log10(np.sqrt(np.mean(y.astype(np.float64) ** 2) / np.mean(noise**2)))
    assert noisy.shape == y.shape
    assert noisy.dtype == np.float32
    assert measured == pytest.approx(snr_db, abs=0.1)


def test_excerpt_returns_the_samples_from_start_for_duration() -> None:
    y = np.arange(10 * SR, dtype=np.float32)

    segment = audio.excerpt(y, sample_rate=SR, start_s=2.5, duration_s=3.0)

    np.testing.assert_array_equal(segment, y[round(2.5 * SR) : round(5.5 * SR)])


def test_excerpt_outside_the_signal_raises() -> None:
    y = np.zeros(10 * SR, dtype=np.float32)

    with pytest.raises(ValueError, match="does not fit"):
        audio.excerpt(y, sample_rate=SR, start_s=8.0, duration_s=3.0)


# --- encoding through real codecs ------------------------------------------------------------

EXPECTED_CODEC = {
    "wav": "pcm_s16le",
    "flac": "flac",
    "ogg": "vorbis",
    "opus": "opus",
    "mp3": "mp3",
    "m4a": "aac",
}


@pytest.fixture(scope="module")
def three_second_track() -> np.ndarray:
    return synth.render(synth.TrackSpec("pluck", "four_on_floor", "A", duration=3.0), sample_rate=SR)


@pytest.mark.parametrize("ext", list(EXPECTED_CODEC))
def test_encode_decodes_with_pyav_at_the_written_duration(
    ext: str, three_second_track: np.ndarray, tmp_path: Path
) -> None:
    path = audio.encode(tmp_path / f"track.{ext}", three_second_track, sample_rate=SR)

    decoded, rate = _decode(path)

    assert len(decoded) / rate == pytest.approx(3.0, abs=0.1)
    # Not garbage: the level survives the codec within 1 dB.
    level_change = 20 * np.log10(np.std(decoded) / np.std(three_second_track))
    assert abs(level_change) < 1.0


@pytest.mark.parametrize(("ext", "codec"), list(EXPECTED_CODEC.items()))
def test_encode_uses_the_codec_of_the_extension(
    ext: str, codec: str, three_second_track: np.ndarray, tmp_path: Path
) -> None:
    path = audio.encode(tmp_path / f"track.{ext}", three_second_track, sample_rate=SR)

    with av.open(str(path)) as container:
        # FFmpeg may name the MP3 decoder "mp3float"; the codec descriptor is what was written.
        assert container.streams.audio[0].codec_context.codec.name.startswith(codec)


def test_encode_resamples_opus_to_a_rate_opus_supports(
    three_second_track: np.ndarray, tmp_path: Path
) -> None:
    import soundfile as sf

    path = audio.encode(tmp_path / "track.opus", three_second_track, sample_rate=SR)

    assert sf.info(str(path)).samplerate in (8000, 12000, 16000, 24000, 48000)


@pytest.mark.parametrize(
    ("ext", "bitrate", "expected"), [("mp3", "64k", 64000), ("m4a", "48k", 48000)]
)
def test_encode_applies_the_bitrate(
    ext: str, bitrate: str, expected: int, three_second_track: np.ndarray, tmp_path: Path
) -> None:
    path = audio.encode(
        tmp_path / f"track.{ext}", three_second_track, sample_rate=SR, bitrate=bitrate
    )

    with av.open(str(path)) as container:
        measured = container.streams.audio[0].bit_rate or container.bit_rate

    assert measured == pytest.approx(expected, rel=0.25)


def test_encode_rejects_an_unsupported_extension(
    three_second_track: np.ndarray, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"\.xyz"):
        audio.encode(tmp_path / "track.xyz", three_second_track, sample_rate=SR)
