"""The demo behind ``make demo``: synthesise a small library, ingest it, recommend from it.

The library is a factorial design (4 instruments × 5 grooves × 2 keys = 40 tracks of 12 s), written
through real encoders as MP3, Ogg Vorbis, FLAC and WAV. File names carry the ground truth
(``pluck-backbeat-C-s5.mp3``), so a person can see at a glance whether a recommendation makes sense:
``similar`` on a catalog track, then ``query`` on a clip that is not in the library, once for all
aspects and once for rhythm alone.

Run it with ``python -m soundalike.demo --out DIR``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soundalike import audio, synth

CLIP = synth.TrackSpec("pluck", "backbeat", "E", duration=10.0, seed=9_999)
"""The clip that is not in the library: pluck over a backbeat, in a key the library lacks."""


def write_demo_music(out: Path) -> tuple[Path, Path]:
    """Write the demo library and the outside clip; return (music folder, clip path)."""
    music = out / "music"
    if not (music / "labels.csv").exists():
        synth.write_library(music, synth.library_specs(keys=("C", "A"), duration=12.0))
    clip = out / "clip-not-in-library.mp3"
    if not clip.exists():
        audio.encode(clip, synth.render(CLIP), sample_rate=22050)
    return music, clip


def main(argv: list[str] | None = None) -> int:
    from soundalike.cli import main as cli

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo"), help="Folder for the demo (default ./demo).")
    args = parser.parse_args(argv)
    out: Path = args.out
    library = out / "library"
    print(f"1/4 synthesising the demo music into {out / 'music'} …", flush=True)
    music, clip = write_demo_music(out)
    steps = [
        ("2/4 ingesting it (analysis, catalog, ScaNN index)", ["ingest", str(music)]),
        ("3/4 tracks that sound like catalog track 1", ["similar", "1", "-k", "5"]),
        (f"4/4 tracks that sound like {clip.name} (pluck, backbeat, key of E)", ["query", str(clip), "-k", "5"]),
        ("    … and by rhythm alone (same groove, any instrument)", ["query", str(clip), "-k", "5", "--aspect", "rhythm"]),
    ]
    for title, command in steps:
        print(f"\n{title}\n$ soundalike --library {library} {' '.join(command)}", flush=True)
        code = cli.main(["--library", str(library), *command], prog_name="soundalike", standalone_mode=False)
        if isinstance(code, int) and code:
            return code
    print(
        f"\nThe demo library is in {library}. Try:\n"
        f"  .venv/bin/soundalike --library {library} similar 5 --aspect timbre\n"
        f"  .venv/bin/soundalike --library {library} query {clip} --json\n"
        f"  .venv/bin/soundalike --library {library} stats"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
