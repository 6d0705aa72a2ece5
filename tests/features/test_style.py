"""The style aspect: musicnn MSD through onnxruntime, against musicnn's own implementation.

``fixtures/musicnn_reference.npz`` holds the reference outputs (musicnn 0.1.0's ``batch_data``
preprocessing with librosa, then its TensorFlow graph), written by ``tools/convert_musicnn.py
fixture``: per-patch penultimate embeddings and tag probabilities for three dev-music clips and two
synthesised clips (non-overlapping 3-s patches from the start), and the reference's own input
patches for the first two patches of the first synthesised clip.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dev_music import DEV_MUSIC, needs_dev_music
from soundalike import audio, synth
from soundalike.audio import SAMPLE_RATE, decode
from soundalike.features import style

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "musicnn_reference.npz"
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as z:
        return {k: z[k] for k in z.files}


def _clip(reference: dict[str, np.ndarray], name: str) -> tuple[np.ndarray, np.ndarray]:
    i = list(reference["names"]).index(name)
    return reference[f"embedding_{i}"], reference[f"taggram_{i}"]


def _synth_clips(reference: dict[str, np.ndarray]) -> list[tuple[str, synth.TrackSpec]]:
    specs = [
        synth.TrackSpec(instrument, groove, key, duration=float(duration), seed=int(seed))
        for instrument, groove, key, duration, seed in reference["synth_specs"]
    ]
    return [(f"synth/{spec.name}", spec) for spec in specs]


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _reference_patches(y: np.ndarray, sample_rate: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Our embeddings and tags at the reference's patches (non-overlapping, from the start)."""
    starts = np.arange(count) * style.PATCH_FRAMES
    return style.run_model(style.mel_patches(y, sample_rate=sample_rate, starts=starts))


def _librosa_mel(y: np.ndarray) -> np.ndarray:
    """musicnn's batch_data front end, as the reference computes it."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=y, sr=style.SAMPLE_RATE, hop_length=style.HOP, n_fft=style.N_FFT, n_mels=style.N_MELS
    ).T
    return np.log10(10000 * mel.astype(np.float16).astype(np.float32) + 1)


# --- front end ---------------------------------------------------------------------------------


def test_shipped_mel_bank_equals_librosas():
    import librosa

    bank = librosa.filters.mel(sr=style.SAMPLE_RATE, n_fft=style.N_FFT, n_mels=style.N_MELS)
    np.testing.assert_allclose(style._mel_bank().T, bank, rtol=1e-6, atol=1e-9)


def test_mel_front_end_matches_librosa_on_the_same_samples(rng):
    y16 = style.resample(synth.render(synth.TrackSpec("square", "bossa", "E", duration=6.0, seed=4)), sample_rate=SAMPLE_RATE)
    y16 = y16 + 0.01 * rng.standard_normal(len(y16)).astype(np.float32)
    ours, theirs = style.musicnn_mel(y16), _librosa_mel(y16)
    assert ours.shape == theirs.shape == (1 + len(y16) // style.HOP, style.N_MELS)
    # Both round the mel power to float16: a float32 difference that flips one rounding moves a
    # value by one float16 step (2**-11 relative), at most 0.0005 after log10(1 + 10000 x).
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-3)


def test_resampling_matches_librosa_load_at_16_khz():
    import librosa

    y = synth.render(synth.TrackSpec("organ", "waltz", "D", duration=5.0, seed=2))
    theirs = librosa.resample(y, orig_sr=SAMPLE_RATE, target_sr=style.SAMPLE_RATE, res_type="soxr_hq")
    np.testing.assert_allclose(style.resample(y, sample_rate=SAMPLE_RATE), theirs, rtol=0, atol=1e-6)


def test_patches_equal_the_whole_tracks_mel_at_their_frames():
    y = synth.render(synth.TrackSpec("pluck", "halftime", "G", duration=40.0, seed=5))
    whole = style.musicnn_mel(style.resample(y, sample_rate=SAMPLE_RATE))
    starts = style.patch_starts(len(whole), 10)
    patches = style.mel_patches(y, sample_rate=SAMPLE_RATE, starts=starts)
    expected = np.stack([whole[s : s + style.PATCH_FRAMES] for s in starts])
    # Only the patches' audio is resampled; soxr sees the same neighbours (±2e-7 per sample), so at
    # most one float16 rounding step differs (see the front-end test).
    np.testing.assert_allclose(patches, expected, rtol=0, atol=1e-3)


def test_patch_starts_spread_evenly_over_a_long_track_without_overlap():
    frames = style.n_frames(180 * style.SAMPLE_RATE)
    starts = style.patch_starts(frames, 10)
    assert len(starts) == 10
    assert (starts[0], starts[-1] + style.PATCH_FRAMES) == (0, frames)
    assert np.diff(starts).min() >= style.PATCH_FRAMES


def test_a_track_with_room_for_fewer_patches_gets_fewer():
    assert style.patch_starts(4 * style.PATCH_FRAMES + 10, 10).tolist() == [0, 190, 381, 571]


def test_a_short_query_takes_its_loudest_whole_patches_in_time_order():
    y = synth.render(synth.TrackSpec("pluck", "backbeat", "C", duration=10.0, seed=4))
    y[: 4 * SAMPLE_RATE] = 0.0  # the clip starts with 4 s of silence
    y[-3 * SAMPLE_RATE :] *= 0.05  # and ends fading
    frames = style.n_frames(len(style.resample(y, sample_rate=SAMPLE_RATE)))
    candidates = style.patch_starts(frames, frames // style.PATCH_FRAMES)
    assert len(candidates) == 3
    (one,) = style.loudest_patch_starts(y, sample_rate=SAMPLE_RATE, n_patches=1)
    assert one == candidates[1]  # the middle 3 s: neither the silent start nor the faded end
    assert style.loudest_patch_starts(y, sample_rate=SAMPLE_RATE, n_patches=2).tolist() == [candidates[1], candidates[2]]
    assert style.loudest_patch_starts(y, sample_rate=SAMPLE_RATE, n_patches=5).tolist() == candidates.tolist()
    # and the query's style is that patch's embedding, not the first 3 s
    from soundalike.features import extract_query, track_layout

    got = extract_query(y, sample_rate=SAMPLE_RATE).vector[track_layout().slices["style"]]
    loud = style.style_patches(y, sample_rate=SAMPLE_RATE, n_patches=1, loudest=True)[0]
    first = style.style_patches(y, sample_rate=SAMPLE_RATE, n_patches=1)[0]
    np.testing.assert_allclose(got, loud, rtol=0, atol=1e-4)
    assert np.abs(got - first).max() > 1e-2


def test_a_track_shorter_than_a_patch_is_repeated_to_fill_it():
    y = synth.render(synth.TrackSpec("organ", "backbeat", "C", duration=1.5, seed=1))
    total = style.n_frames(len(style.resample(y, sample_rate=SAMPLE_RATE)))
    (patch,) = style.mel_patches(y, sample_rate=SAMPLE_RATE, starts=style.patch_starts(total))
    assert total < style.PATCH_FRAMES
    np.testing.assert_array_equal(patch[total:], patch[: style.PATCH_FRAMES - total])


# --- model -------------------------------------------------------------------------------------


def test_shipped_model_is_the_converted_one():
    models = SRC / "soundalike" / "features" / "models"
    provenance = json.loads((models / "musicnn_msd.json").read_text())
    digest = hashlib.sha256((models / style.MODEL_FILE).read_bytes()).hexdigest()
    assert style.MODEL_SHA256 == provenance["sha256"] == digest
    assert (provenance["source"]["package"], provenance["source"]["version"]) == ("musicnn", "0.1.0")
    assert "ISC" in provenance["source"]["licence"] and (models / "LICENSE-musicnn.txt").exists()


def test_a_model_file_with_another_sha256_is_refused_naming_both(tmp_path):
    data = bytearray(style.model_path().read_bytes())
    data[len(data) // 2] ^= 0xFF
    altered = tmp_path / "musicnn_msd.onnx"
    altered.write_bytes(bytes(data))
    found = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(style.ModelError, match=f"expected sha256 {style.MODEL_SHA256}, found {found}"):
        style.load_model(altered)


def test_the_session_is_made_once_per_process_with_one_thread():
    first = style.session()
    assert style.session() is first
    options = first.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert not options.enable_cpu_mem_arena  # onnxruntime's arena would keep its buffers for good
    assert first.get_providers() == ["CPUExecutionProvider"]


def test_a_query_runs_the_model_on_more_threads_with_the_same_embedding(monkeypatch):
    monkeypatch.setattr(style.os, "cpu_count", lambda: 4)
    y = synth.render(synth.TrackSpec(instrument="pluck", groove="backbeat", key="C", duration=10.0, seed=1))
    alone = style.style_embedding(y, sample_rate=SAMPLE_RATE)
    with style.query():
        query = style.session()
        together = style.style_embedding(y, sample_rate=SAMPLE_RATE)
    assert query.get_session_options().intra_op_num_threads == style.QUERY_THREADS
    assert style.session() is not query and style.session().get_session_options().intra_op_num_threads == 1
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-4)
    with style.threads(64):  # never more than the cores
        assert style.session().get_session_options().intra_op_num_threads == 4


def _style_of_spec(spec: synth.TrackSpec) -> np.ndarray:
    return style.style_embedding(synth.render(spec), sample_rate=SAMPLE_RATE)


@pytest.mark.slow
def test_a_spawned_worker_makes_its_own_session_and_gets_the_same_embedding():
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    spec = synth.TrackSpec("organ", "bossa", "D", duration=8.0, seed=6)
    here = _style_of_spec(spec)
    # As ingest runs workers: spawned, so the session cannot be inherited; only the spec travels.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        there = pool.submit(_style_of_spec, spec).result(timeout=120)
    np.testing.assert_allclose(there, here, rtol=0, atol=1e-5)


def test_onnx_model_matches_tensorflow_on_the_references_own_input(reference):
    embeddings, taggram = style.run_model(reference["mel_input"])
    expected_embeddings, expected_taggram = _clip(reference, _synth_clips(reference)[0][0])
    # Measured: 2.6e-6 and 2e-7 (float32 summation order).
    np.testing.assert_allclose(embeddings, expected_embeddings[:2], rtol=0, atol=1e-4)
    np.testing.assert_allclose(taggram, expected_taggram[:2], rtol=0, atol=1e-5)


@pytest.mark.parametrize("index", [0, 1])
def test_synthesised_clips_match_the_reference_from_samples_to_embeddings(reference, index):
    name, spec = _synth_clips(reference)[index]
    expected_embeddings, expected_taggram = _clip(reference, name)
    y = synth.render(spec, sample_rate=int(reference["synth_rate"]))
    embeddings, taggram = _reference_patches(y, int(reference["synth_rate"]), len(expected_embeddings))
    # Same samples, same resampler: only float rounding differs (measured max 1e-5).
    assert _cosine(embeddings, expected_embeddings).min() >= 0.9999
    np.testing.assert_allclose(embeddings, expected_embeddings, rtol=0, atol=1e-3)
    np.testing.assert_allclose(taggram, expected_taggram, rtol=0, atol=1e-3)


@needs_dev_music
@pytest.mark.devmusic
@pytest.mark.parametrize("clip", ["hedgewars-data/Art.ogg", "openclonk-data/Cavern.ogg"])
def test_real_clips_decoded_by_the_pipeline_match_the_reference_once_the_downmix_gain_is_undone(reference, clip):
    expected_embeddings, expected_taggram = _clip(reference, f"dev-music/{clip}")
    audio = decode(DEV_MUSIC / clip)
    # These clips are stereo: FFmpeg's downmix is (L + R) / sqrt(2), librosa's (musicnn's) is the
    # mean, 3 dB quieter. Everything else (decoder, 44.1 → 22.05 → 16 kHz instead of 44.1 → 16 kHz)
    # leaves the embeddings equal to cos 0.99995 (measured).
    embeddings, taggram = _reference_patches(audio.samples / np.sqrt(2), audio.sample_rate, len(expected_embeddings))
    assert _cosine(embeddings, expected_embeddings).min() >= 0.9995
    np.testing.assert_allclose(taggram, expected_taggram, rtol=0, atol=0.01)


@needs_dev_music
@pytest.mark.devmusic
@pytest.mark.parametrize("clip", ["flare-game/battle_theme.ogg", "hedgewars-data/Art.ogg", "openclonk-data/Cavern.ogg"])
def test_real_clips_as_the_pipeline_decodes_them_keep_the_references_style(reference, clip):
    expected_embeddings, _ = _clip(reference, f"dev-music/{clip}")
    audio = decode(DEV_MUSIC / clip)
    embeddings, _ = _reference_patches(audio.samples, audio.sample_rate, len(expected_embeddings))
    # Two deliberate differences of soundalike's decoding remain: the downmix is 3 dB louder than
    # librosa's mean, and the DC offset is removed (battle_theme's is -0.0067, which lifts
    # musicnn's lowest mel band, 0-31 Hz, by up to 2 log units). Measured minima: per patch cos
    # 0.964, track mean cos 0.979.
    assert _cosine(embeddings, expected_embeddings).min() >= 0.95
    assert _cosine(embeddings.mean(axis=0), expected_embeddings.mean(axis=0)) >= 0.97


# --- the embedding -----------------------------------------------------------------------------


def test_style_embedding_is_the_mean_of_200_d_patch_embeddings_spread_over_the_track():
    y = synth.render(synth.TrackSpec("pad", "backbeat", "F", duration=20.0, seed=3))
    patches = style.style_patches(y, sample_rate=SAMPLE_RATE)
    assert patches.shape == (style.n_frames(20 * style.SAMPLE_RATE) // style.PATCH_FRAMES, style.EMBEDDING_DIM)
    assert np.isfinite(patches).all()
    np.testing.assert_allclose(style.style_embedding(y, sample_rate=SAMPLE_RATE), patches.mean(axis=0), rtol=1e-6, atol=1e-6)


def test_tracks_of_one_instrument_and_groove_are_closer_in_style_than_different_ones():
    def embed(instrument: str, groove: str, key: str, seed: int) -> np.ndarray:
        spec = synth.TrackSpec(instrument, groove, key, duration=15.0, seed=seed)
        return style.style_embedding(synth.render(spec), sample_rate=SAMPLE_RATE)

    a, b = embed("pluck", "backbeat", "C", 1), embed("pluck", "backbeat", "A", 2)
    c, d = embed("pad", "waltz", "C", 3), embed("pad", "waltz", "A", 4)
    within = min(_cosine(a, b), _cosine(c, d))
    across = max(_cosine(a, c), _cosine(a, d), _cosine(b, c), _cosine(b, d))
    assert within > across


@pytest.mark.slow
def test_computing_style_imports_neither_librosa_nor_numba(tmp_path):
    path = tmp_path / "one.flac"
    audio.encode(path, synth.render(synth.TrackSpec("pluck", "backbeat", "C", duration=4.0, seed=1)), sample_rate=SAMPLE_RATE)
    code = (
        "import sys\n"
        "from soundalike.audio import decode\n"
        "from soundalike.features.style import style_embedding\n"
        f"audio = decode({str(path)!r})\n"
        "assert style_embedding(audio.samples, sample_rate=audio.sample_rate).shape == (200,)\n"
        "print(sorted(m for m in ('librosa', 'numba', 'tensorflow') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC), "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_query_gives_its_freed_memory_back_only_once_the_model_is_idle(monkeypatch):
    trims: list[float] = []
    monkeypatch.setattr(style, "_give_back_freed_memory", lambda: trims.append(time.monotonic()))
    monkeypatch.setattr(style, "IDLE_TRIM_S", 0.3)
    patches = np.zeros((1, style.PATCH_FRAMES, style.N_MELS), np.float32)
    style.run_model(patches)  # analysis for a library: at once
    assert len(trims) == 1
    with style.query():
        for _ in range(3):  # back to back: nothing given back between them
            style.run_model(patches)
        ended = time.monotonic()
        assert len(trims) == 1
    deadline = ended + 5.0
    while len(trims) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(trims) == 2, "the idle model's freed memory was never given back"
    assert trims[1] - ended >= 0.3 - 0.01
    time.sleep(0.5)
    assert len(trims) == 2  # once per idle spell
