"""The device as it is: a read-only bundle on an odd path, no home or cache folder to write to. Loading and
predicting must write nothing anywhere, and a cache that cannot be written leaves its results in memory."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_msa.checkpoint import save_checkpoint
from edge_msa.export import export


@pytest.fixture(scope="module")
def token_bundle(tiny_bert_dir, tmp_path_factory) -> Path:
    """A tiny student that encodes token ids itself, as the main job's students do: only tokenizer.json travels."""
    from conftest import token_student

    ckpt = save_checkpoint(tmp_path_factory.mktemp("tok") / "s.pt", token_student(tiny_bert_dir, 12), {})
    return Path(export(ckpt, out=tmp_path_factory.mktemp("tok") / "bundle", log=None))


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_a_read_only_bundle_on_an_odd_relative_path_loads_and_predicts_writing_nothing(token_bundle, tmp_path):
    """onnxruntime (1.29 and later, on Linux) kept a telemetry database in ~/.cache/Microsoft/DeveloperTools, or
    $XDG_CACHE_HOME's, from its import on, and said 'Failed to persist telemetry device ID' on stderr where that
    folder was read-only: on a device, where the bundle and the home folder are read-only, edge-msa wrote outside
    the bundle and every start printed that line."""
    folder = tmp_path / "dir with spaces" / "ünïcödé 日本"
    shutil.copytree(token_bundle, folder / "bundle")
    for path in (folder / "bundle", *(folder / "bundle").iterdir()):
        path.chmod(0o555 if path.is_dir() else 0o444)
    (tmp_path / "xdg").mkdir()
    before = _tree(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "EDGE_MSA_CACHE", "ORT_DISABLE_TELEMETRY")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    code = ("import sys; sys.modules['torch'] = sys.modules['transformers'] = None\n"
            "import edge_msa\n"
            "with edge_msa.load('dir with spaces/ünïcödé 日本/bundle') as p:\n"
            "    print(p.predict(text='a good film').score, p.predict_batch([{'text': 'bad'}, {'text': 'fun'}])[1].ran)")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.split()[-1] == "['text']"
    assert _tree(tmp_path) == before  # nothing new or changed: the bundle, the cache folders, the working directory
