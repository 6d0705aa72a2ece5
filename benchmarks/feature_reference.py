"""Keep the features numerically the same while making them faster.

``python -m benchmarks.feature_reference save FILE`` analyses every dev-music clip and saves its
track vector, segment vectors (catalog and query spacing) and segment starts; ``check FILE`` does
it again and compares with ``np.allclose(saved, now, rtol=1e-4, atol=1e-5)``, printing the worst
deviation. Save before changing :mod:`soundalike.features` or :mod:`soundalike.audio`, check after.
"""

from __future__ import annotations

import argparse
import os
import sys

from benchmarks import THREAD_VARIABLES

RTOL, ATOL = 1e-4, 1e-5


def features() -> dict[str, object]:
    """Every dev-music clip's features, keyed ``"<relative path>|<what>"``."""
    from benchmarks.common import devmusic_clips, devmusic_dir
    from soundalike.audio import decode
    from soundalike.features import QUERY_HOP_S, extract

    root = devmusic_dir()
    if root is None:
        raise SystemExit("dev-music not found (set SOUNDALIKE_DEVMUSIC)")
    out: dict[str, object] = {}
    for clip in devmusic_clips():
        audio = decode(clip)
        a = extract(audio.samples, sample_rate=audio.sample_rate)
        q = extract(audio.samples, sample_rate=audio.sample_rate, segment_hop_s=QUERY_HOP_S)
        key = str(clip.relative_to(root))
        out[f"{key}|vector"] = a.vector
        out[f"{key}|segments"] = a.segments
        out[f"{key}|starts"] = a.segment_starts
        out[f"{key}|query_segments"] = q.segments
    return out


def main(argv: list[str] | None = None) -> int:
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    parser = argparse.ArgumentParser(prog="python -m benchmarks.feature_reference", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("save", "check"))
    parser.add_argument("file")
    args = parser.parse_args(argv)

    import numpy as np

    now = features()
    if args.action == "save":
        np.savez(args.file, **now)  # type: ignore[arg-type]
        print(f"saved {len(now)} arrays to {args.file}")
        return 0
    saved = np.load(args.file)
    bad, worst = [], 0.0
    for key in saved.files:
        a, b = saved[key], np.asarray(now.get(key))
        if a.shape != b.shape or not np.allclose(a, b, rtol=RTOL, atol=ATOL):
            bad.append(key)
        elif a.size:
            worst = max(worst, float(np.max(np.abs(a - b) / (ATOL + RTOL * np.abs(b)))))
    missing = sorted(set(now) - set(saved.files))
    print(
        f"{len(saved.files)} arrays compared: {len(bad)} differ, {len(missing)} new; worst "
        f"|saved - now| / (atol + rtol |now|) = {worst:.3g} (<= 1 is allclose)"
    )
    for key in bad[:10]:
        print(f"  differs: {key}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
