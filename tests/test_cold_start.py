"""Cold start on the device: a kiosk or robot starts a process, loads a bundle and answers its first request, so
what `edge_msa.load` imports and builds before that answer is paid on every start."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _modules_after(code: str) -> set[str]:
    """The edge_msa modules a fresh process holds after running `code`."""
    script = f"import sys\n{code}\nprint(' '.join(m for m in sys.modules if m.startswith('edge_msa')))"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def test_loading_a_bundle_and_predicting_imports_no_dataset_reader(token_bundle: Path):
    """load's file check hashed with data.lineage's file_sha256, which imported the dataset readers (edge_msa.data:
    its loader, formats, assemble, zipfile), ~10 ms of every cold start that the device path has no use for."""
    modules = _modules_after(f"import edge_msa\np = edge_msa.load({str(token_bundle)!r})\n"
                             "p.predict(text='the movie was good')")
    assert "edge_msa.runtime.manifest" in modules
    assert not {m for m in modules if m == "edge_msa.data" or m.startswith("edge_msa.data.")}
