"""The packages a user's code calls into, and the device runs, are held to their type hints: mypy on the runtime, the
text front end, the REST service and the CLI. These were made clean by hand twice after merges had left errors
(a provider list typed as names, a video path not narrowed to Path); this keeps them clean."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("edge_msa/runtime", "edge_msa/features/text.py", "edge_msa/serve", "edge_msa/cli", "export",
           *sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("edge_msa/*.py")))  # the top-level modules


def test_runtime_service_and_cli_are_type_clean(tmp_path):
    pytest.importorskip("mypy", reason='mypy comes with the test extra: pip install -e ".[test]"')
    run = subprocess.run([sys.executable, "-m", "mypy", "--ignore-missing-imports", "--follow-imports=silent",
                          "--cache-dir", str(tmp_path / "cache"), *CHECKED], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
