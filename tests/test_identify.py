"""Exact clip identification on real music (issue 13): a clip cut from a catalog track names it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dev_music import DEV_MUSIC, needs_dev_music
from soundalike import audio
from soundalike.catalog.sqlite import SQLiteCatalog
from soundalike.index import bundle
from soundalike.ingest import ProcessRunner, ingest
from soundalike.recommend import Recommender

LEFT_OUT = "hedgewars-data"  # one soundtrack's clips stay out of the library, as music it has never heard

pytestmark = needs_dev_music


@pytest.fixture(scope="module")
def dev_library(tmp_path_factory) -> tuple[Recommender, list[Path], list[Path]]:
    """dev-music without one soundtrack, ingested and indexed (exact search)."""
    folder = tmp_path_factory.mktemp("identify")
    clips = sorted(p for p in DEV_MUSIC.rglob("*") if p.suffix in {".mp3", ".ogg", ".flac", ".wav", ".opus"})
    inside = [p for p in clips if LEFT_OUT not in p.parts]
    outside = [p for p in clips if LEFT_OUT in p.parts]
    catalog = SQLiteCatalog(folder / "catalog.sqlite")
    summary = ingest([str(p) for p in inside], catalog, runner=ProcessRunner(2))
    assert summary.analysed == len(inside) and not summary.failed
    index = bundle.build(folder, catalog, backend="exact")
    return Recommender(catalog, index), inside, outside


def _noisy_clip(source: Path, out: Path, *, start_s: float, seconds: float, seed: int) -> Path:
    """``seconds`` of ``source`` from ``start_s``, white noise at 30 dB SNR, re-encoded as 96 kbit/s MP3."""
    decoded = audio.decode(source)
    cut = audio.excerpt(decoded.samples, sample_rate=decoded.sample_rate, start_s=start_s, duration_s=seconds)
    noisy = audio.add_noise(cut, snr_db=30.0, rng=seed)
    audio.encode(out, noisy, sample_rate=decoded.sample_rate, bitrate="96k")
    return out


@pytest.mark.parametrize("pick, start_s, seconds", [(3, 12.0, 7.0), (40, 4.5, 5.0), (77, 20.0, 10.0)])
def test_a_noisy_reencoded_clip_is_identified_with_where_it_starts(dev_library, tmp_path, pick, start_s, seconds):
    recommender, inside, _ = dev_library
    source = inside[pick % len(inside)]
    clip = _noisy_clip(source, tmp_path / "clip.mp3", start_s=start_s, seconds=seconds, seed=pick)
    result = recommender.similar_to_file(clip, k=5)
    assert result.identified is not None, "the clip was not identified"
    assert result.identified.track.path == str(source)
    assert abs(result.identified.at - start_s) <= 1.5, result.identified.at
    assert result.results[0].track.path == str(source)
    said = result.to_dict()["identified"]["says"]
    minutes, secs = divmod(round(result.identified.at), 60)
    assert said.startswith("this clip is from ") and said.endswith(f"at {minutes}:{secs:02d}")
    assert len(result.results) == 5 and len({r.track.id for r in result.results}) == 5  # the rest: recommendations


def test_a_clip_of_music_the_library_does_not_hold_is_not_identified(dev_library, tmp_path):
    recommender, _, outside = dev_library
    wrong = []
    for i, source in enumerate(outside[::3]):
        clip = _noisy_clip(source, tmp_path / f"out{i}.mp3", start_s=8.0, seconds=8.0, seed=i)
        result = recommender.similar_to_file(clip, k=3)
        if result.identified is not None:
            wrong.append((source.name, result.identified.track.path, round(result.identified.score, 3)))
        assert len(result.results) == 3  # still recommendations
    assert wrong == []


def test_identification_leaves_recommendations_in_similarity_order(dev_library, tmp_path):
    recommender, inside, _ = dev_library
    clip = _noisy_clip(inside[10], tmp_path / "clip.mp3", start_s=5.0, seconds=8.0, seed=1)
    result = recommender.similar_to_file(clip, k=6)
    rest = [r.similarity for r in result.results[1:]]
    assert rest == sorted(rest, reverse=True)
    assert np.isfinite(result.results[0].similarity)
