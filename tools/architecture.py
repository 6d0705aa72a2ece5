"""The import graph of ``src/soundalike``, drawn by layer, for docs/architecture.md.

    python tools/architecture.py            # print the diagram
    python tools/architecture.py --write    # replace the diagram in docs/architecture.md

The diagram is made from the code (``ast``: every ``import soundalike…`` and ``from soundalike… import``,
lazy ones inside functions included), so the page cannot drift from it: ``tests/test_architecture.py``
fails when the committed diagram differs from what this script draws, and when an import runs against
the layers below.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "soundalike"
DOC = ROOT / "docs" / "architecture.md"
BEGIN, END = "<!-- diagram: begin (tools/architecture.py --write) -->", "<!-- diagram: end -->"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("shells", ("cli", "web", "demo")),
    ("the library", ("library",)),
    ("measuring", ("evaluate", "sample")),
    ("queries", ("recommend", "why", "radio", "copies", "playlists", "windows")),
    ("analysis at scale", ("ingest", "distributed")),
    ("search", ("index",)),
    ("storage", ("catalog", "labels")),
    ("signal", ("features", "synth")),
    ("codecs", ("audio",)),
    ("shared names", ("settings", "errors", "threads", "vocabulary", "__init__")),
]
"""Top to bottom: a module may import its own layer's modules and those of the layers below it."""


def unit(path: Path) -> str:
    """The package's first-level name of a file: ``cli`` for ``cli/library.py``, ``audio`` for ``audio.py``."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 else rel.stem


def imports(path: Path) -> set[str]:
    """First-level soundalike names a file imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "soundalike":
                names = [f"soundalike.{a.name}" for a in node.names]
            else:
                names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "soundalike":
                found.add(parts[1] if len(parts) > 1 else "__init__")
    if "__version__" in found:  # `from soundalike import __version__`
        found = (found - {"__version__"}) | {"__init__"}
    return found


def import_graph() -> dict[str, set[str]]:
    """First-level name → the first-level names it imports (itself left out)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in sorted(PACKAGE.rglob("*.py")):
        here = unit(path)
        graph[here] |= imports(path) - {here}
    return dict(graph)


def layer_of(name: str) -> int:
    for i, (_, members) in enumerate(LAYERS):
        if name in members:
            return i
    raise KeyError(f"{name} is in no layer of tools/architecture.py: add it to LAYERS")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports that run from a lower layer to a higher one (empty when the layers hold)."""
    wrong = []
    for source, targets in graph.items():
        for target in targets:
            if layer_of(target) < layer_of(source):
                wrong.append(f"{source} imports {target}")
    return sorted(wrong)


def render(graph: dict[str, set[str]]) -> str:
    """The layers top to bottom, each module with what it imports."""
    width = max(len(n) for n in graph)
    lines = ["```"]
    for title, members in LAYERS:
        present = [m for m in members if m in graph]
        if not present:
            continue
        lines.append(f"── {title} " + "─" * max(0, 60 - len(title)))
        for name in present:
            shown = "soundalike" if name == "__init__" else name
            uses = ", ".join(sorted("soundalike" if t == "__init__" else t for t in graph[name])) or "—"
            lines.append(f"  {shown:<{width}}  → {uses}")
    lines.append("```")
    return "\n".join(lines)


def write(doc: Path = DOC) -> None:
    text = doc.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    doc.write_text(f"{head}{BEGIN}\n{render(import_graph())}\n{END}{tail}", encoding="utf-8")


def committed(doc: Path = DOC) -> str:
    """The diagram as docs/architecture.md holds it."""
    return doc.read_text(encoding="utf-8").partition(BEGIN)[2].partition(END)[0].strip()


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write()
        print(f"wrote the diagram into {DOC}")
    else:
        print(render(import_graph()))
