"""The package is held to its type hints: mypy on the runtime, the front ends, the data readers, the models, the
compressor, the bench harness, the exporter, the REST service, the CLI and the top-level modules: all of it.
The runtime was made clean by hand twice after merges had left errors (a provider list typed as names, a video path not
narrowed to Path); typing the rest found a calibration that crashed on all-zero labels and a load test that exited 0
on a URL without a host; this keeps them clean."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("edge_msa/runtime", "edge_msa/features", "edge_msa/serve", "edge_msa/cli", "edge_msa/data",
           "edge_msa/models", "benchmarks", "compress", "export",
           *sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("edge_msa/*.py")))  # the top-level modules


def test_the_checked_packages_are_type_clean(tmp_path):
    pytest.importorskip("mypy", reason='mypy comes with the test extra: pip install -e ".[test]"')
    run = subprocess.run([sys.executable, "-m", "mypy", "--ignore-missing-imports", "--follow-imports=silent",
                          "--cache-dir", str(tmp_path / "cache"), *CHECKED], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
