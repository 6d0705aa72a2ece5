"""``python -m benchmarks [--quick] [--only AREA,...] [--out FILE]``: run the benchmarks, write the results.

Full mode writes ``benchmarks/results/latest.md`` (committed) and ``latest.json`` (raw numbers, not
committed); ``--quick`` writes ``quick.md``/``quick.json``; ``--only`` writes ``partial.md``, except
``--only load`` (not part of the default run), which writes ``load.md``. The markdown is printed as well.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback

from benchmarks import CACHE, RESULTS, THREAD_VARIABLES

AREAS = ("analysis", "ingest", "search", "endtoend", "radio", "clips")
"""What ``make bench`` runs, in this order."""
EXTRA_AREAS = ("load",)
"""Run only when named with ``--only`` (``make bench-load``); each writes its own results file."""


def main(argv: list[str] | None = None) -> int:
    # Before numpy is imported anywhere: BLAS and OpenMP on one thread, so figures are per core.
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    os.environ.setdefault("GLOG_minloglevel", "2")

    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under three minutes")
    parser.add_argument("--only", default=",".join(AREAS), help=f"comma-separated areas from {', '.join(AREAS + EXTRA_AREAS)}")
    parser.add_argument("--out", default=None, help="markdown file to write (default: see above)")
    parser.add_argument("--cache", default=str(CACHE), help="folder for generated inputs (reused between runs)")
    parser.add_argument("--tuned", default=None, help="a tuned.json whose ScaNN/Annoy parameters to measure as well")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")

    areas = [a.strip() for a in args.only.split(",") if a.strip()]
    unknown = sorted(set(areas) - set(AREAS + EXTRA_AREAS))
    if unknown:
        parser.error(f"unknown area(s) {', '.join(unknown)}; expected some of {', '.join(AREAS + EXTRA_AREAS)}")

    from pathlib import Path

    from benchmarks import analysis, clips, endtoend, ingest, load, radio, search
    from benchmarks.common import Section, load_average, machine_info, render, to_json

    mode = "quick" if args.quick else "full"
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    runners = {
        "analysis": lambda: analysis.run(cache, analysis.QUICK if args.quick else analysis.FULL),
        "ingest": lambda: ingest.run(cache, ingest.QUICK if args.quick else ingest.FULL),
        "search": lambda: search.run(
            cache, search.QUICK if args.quick else search.FULL, tuned=Path(args.tuned) if args.tuned else None
        ),
        "endtoend": lambda: endtoend.run(cache, endtoend.QUICK if args.quick else endtoend.FULL),
        "radio": lambda: radio.run(cache, radio.QUICK if args.quick else radio.FULL),
        "clips": lambda: clips.run(cache, clips.QUICK if args.quick else clips.FULL),
        "load": lambda: load.run(cache),
    }
    started = time.perf_counter()
    sections: list[Section] = []
    for area in AREAS + EXTRA_AREAS:
        if area not in areas:
            continue
        print(f"[benchmarks] {area} …", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            section = runners[area]()
        except Exception as exc:  # one area failing must not lose the others' figures
            traceback.print_exc()
            section = Section(title=f"{area}: could not run", notes=[f"`{type(exc).__name__}: {exc}`"])
        section.seconds = time.perf_counter() - t0
        print(f"[benchmarks] {area} done in {section.seconds:.0f} s", file=sys.stderr, flush=True)
        sections.append(section)
    machine["load_after"] = load_average()
    seconds = time.perf_counter() - started

    if args.out:
        out = Path(args.out)
    elif areas == ["load"]:
        out = RESULTS / "load.md"
    elif set(areas) != set(AREAS):
        out = RESULTS / "partial.md"
    else:
        out = RESULTS / ("quick.md" if args.quick else "latest.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render(sections, machine, mode=mode, seconds=seconds)
    out.write_text(text)
    out.with_suffix(".json").write_text(to_json(sections, machine, mode=mode))
    print(text)
    print(f"[benchmarks] wrote {out} in {seconds / 60:.1f} min", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
