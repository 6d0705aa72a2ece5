"""Quality on the real music clips in ../shared/dev-music, next to the peers in its PEERS.md.

Leave-one-out precision@10 and mAP by soundtrack label, and excerpt robustness (10 s at 40 % of
each clip, white noise at 30 dB SNR, re-encoded as 96 kbit/s MP3), measured with the same code as
``soundalike evaluate``. The figures are written to test-artifacts/devmusic.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from dev_music import DEV_MUSIC, needs_dev_music
from soundalike.evaluate import EvalOptions, evaluate_library
from soundalike.index import bundle
from soundalike.labels import labels_from_csv

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# Best peer per column in PEERS.md: P@10 0.508, mAP 0.512, excerpt top-1 0.945, top-10 0.989.
PEERS_BEST = {"p_at_10": 0.508, "map": 0.512, "top1": 0.945, "top10": 0.989}

pytestmark = needs_dev_music


def test_real_music_beats_every_peer_in_peers_md(devmusic_ingested, tmp_path):
    summary = devmusic_ingested.summary  # the 91 clips, ingested once for the session (conftest)
    assert (summary.analysed, len(summary.failed)) == (91, 0)
    catalog = devmusic_ingested.catalog_copy(tmp_path)
    index = bundle.build(tmp_path, catalog, backend="scann")
    labels = labels_from_csv(DEV_MUSIC / "labels.csv", catalog)
    ev = evaluate_library(catalog, index, labels=labels, options=EvalOptions(k=10, excerpts=91, index_queries=91))
    figures = {
        "p_at_10": ev.retrieval.aspects["all"].precision_at_k,
        "map": ev.retrieval.aspects["all"].map,
        "top1": ev.clips.top1,
        "top10": ev.clips.top10,
        "silhouette": ev.silhouette.score,
        "index_recall": ev.index.to_dict(),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "devmusic.json").write_text(json.dumps(figures, indent=2, default=str))
    print("\ndev-music:", {k: figures[k] for k in PEERS_BEST}, "peers' best:", PEERS_BEST)
    # Bars just under what this version measures (0.563, 0.558, 1.000, 1.000), all above every peer.
    assert figures["p_at_10"] >= 0.53
    assert figures["map"] >= 0.53
    assert figures["top1"] >= 0.98
    assert figures["top10"] >= 0.99
