"""No import cycle between the dataset readers (edge_msa.data) and the front ends (edge_msa.features).

The readers use the text front end, so the front ends (featurize included) must never import edge_msa.data;
what both sides share (the features-npz format contract, group splits) lives below both. Checked twice: each
module imported first in a fresh interpreter, and every import statement (lazy ones inside functions too) read
from the source."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import edge_msa

PACKAGE = Path(edge_msa.__file__).parent
FIRST_IMPORTS = ("edge_msa.data.assemble", "edge_msa.features.featurize", "edge_msa.data.features_npz",
                 "edge_msa.features.text", "edge_msa.featurized_format", "edge_msa.splits", "edge_msa.labels",
                 "edge_msa.digest")
SHARED = ("featurized_format.py", "splits.py", "labels.py", "digest.py")  # below both packages


@pytest.mark.parametrize("module", FIRST_IMPORTS)
def test_each_module_imports_first_in_a_fresh_interpreter(module):
    code = (f"import sys, {module}\n"
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('edge_msa.data', 'edge_msa.features')))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    loaded = r.stdout.split()
    if module.startswith("edge_msa.features"):
        assert not [m for m in loaded if m.startswith("edge_msa.data")]
    if f"{module.removeprefix('edge_msa.')}.py" in SHARED:
        assert not loaded


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module `path` imports, at the top or inside functions."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = parts[:-1]  # a module's package, or for __init__.py the package itself
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
            module = ".".join(filter(None, (base, node.module)))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_imported_modules_resolves_relative_and_lazy_imports(tmp_path, monkeypatch):
    fake = tmp_path / "edge_msa" / "features" / "x.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from ..data import loader\ndef f():\n    from .text import NAME\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "edge_msa")
    assert {"edge_msa.data.loader", "edge_msa.features.text.NAME"} <= imported_modules(fake)


def test_front_ends_never_import_the_readers():
    offenders = {f"{path.name} imports {name}" for path in (PACKAGE / "features").rglob("*.py")
                 for name in imported_modules(path) if name.startswith("edge_msa.data")}
    assert not offenders


@pytest.mark.parametrize("name", SHARED)
def test_shared_modules_import_neither_side(name):
    assert not [m for m in imported_modules(PACKAGE / name) if m.startswith(("edge_msa.data", "edge_msa.features"))]
