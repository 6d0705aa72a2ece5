"""The layers of docs/architecture.md hold in the code, and the page's diagram is the code's."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("architecture", ROOT / "tools" / "architecture.py")
assert _spec is not None and _spec.loader is not None
architecture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(architecture)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return architecture.import_graph()


def _third_party_importers(name: str) -> set[str]:
    """Files under src/soundalike that import the top-level package ``name``."""
    found = set()
    for path in architecture.PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            if any(m.split(".")[0] == name for m in modules):
                found.add(str(path.relative_to(architecture.PACKAGE)))
    return found


def test_no_module_imports_a_layer_above_its_own(graph) -> None:
    assert architecture.upward_imports(graph) == []


def test_the_web_app_never_imports_the_command_line(graph) -> None:
    assert "cli" not in graph["web"]


def test_nothing_below_the_shells_imports_click_or_flask() -> None:
    shells = ("cli/", "web/", "demo.py")
    for name in ("click", "flask", "werkzeug", "waitress"):
        below = {f for f in _third_party_importers(name) if not f.startswith(shells)}
        assert below == set(), f"{name} imported below the shells by {sorted(below)}"


def test_only_audio_touches_codecs() -> None:
    for name in ("av", "soundfile"):
        assert _third_party_importers(name) <= {"audio.py"}, name


def test_the_committed_diagram_is_the_one_the_code_draws(graph) -> None:
    drawn = architecture.render(graph)
    assert architecture.committed() == drawn, "docs/architecture.md is out of date: run python tools/architecture.py --write"
