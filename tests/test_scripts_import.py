"""The scripts beside the package (benchmarks, training, the app) name only what ``qa`` has.

They import ``qa`` inside functions too, where only running them would notice a name
that moved (``bench.py`` once imported the corpus listing from a module it had left).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted([*ROOT.glob("benchmarks/*.py"), *ROOT.glob("training/*.py"), ROOT / "app.py"])


def qa_imports(script: Path) -> list[tuple[str, str]]:
    """Every ``from qa... import name`` in ``script``, at any depth, as (module, name)."""
    found = []
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "qa":
            found.extend((node.module, alias.name) for alias in node.names)
    return found


def resolves(module_name: str, name: str) -> bool:
    module = importlib.import_module(module_name)
    if hasattr(module, name):
        return True
    try:  # a submodule: `from qa.index import lexical`
        importlib.import_module(f"{module_name}.{name}")
    except ModuleNotFoundError:
        return False
    return True


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_qa_name_a_script_imports_exists(script: Path) -> None:
    missing = [f"{module}.{name}" for module, name in qa_imports(script) if not resolves(module, name)]
    assert not missing


def test_a_moved_name_is_caught(tmp_path: Path) -> None:
    script = tmp_path / "old.py"
    script.write_text("def scan():\n    from qa.ingest.corpus import corpus_fingerprint\n", encoding="utf-8")
    [(module, name)] = qa_imports(script)
    assert not resolves(module, name)
