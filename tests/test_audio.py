"""Decoding: every common format works, every broken input gets its own named error."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from soundalike import audio
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
    from soundalike import synth

    y = (0.3 * rng.standard_normal(22050 * 20)).astype("float32")
    path = synth.write_audio(tmp_path / "long.ogg", y, sample_rate=22050)
    cut = audio.decode(path, truncate_to=5.0, max_duration=10.0)  # longer than max_duration: no error
    assert cut.truncated_to == pytest.approx(5.0, abs=0.01)
    assert cut.duration == pytest.approx(5.0, abs=0.01)
    whole = audio.decode(path)
    assert whole.truncated_to is None
    assert whole.duration == pytest.approx(20.0, abs=0.1)
