"""Shared fixtures: tiny specs and synthetic FeatureSets for fast tests, and the real data root."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_msa.data.base import DatasetSplits, FeatureSet
from edge_msa.spec import MODALITIES, FeatureSpec

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MOSI_NPZ = DATA_ROOT / "mosi" / "mosi_utterance_std.npz"
needs_data = pytest.mark.skipif(not MOSI_NPZ.is_file(), reason=f"real data not found at {DATA_ROOT}")


@pytest.fixture
def tiny_spec() -> FeatureSpec:
    return FeatureSpec(dims=(12, 5, 7), max_lens=(9, 3, 4))


def make_featureset(spec: FeatureSpec, n: int, seed: int = 0) -> FeatureSet:
    """Random features whose label depends on text and audio, so a model can learn it."""
    rng = np.random.default_rng(seed)
    feats, lens = {}, {}
    for m in MODALITIES:
        L, d = spec.max_len(m), spec.dim(m)
        lens[m] = rng.integers(1, L + 1, size=n)
        x = rng.normal(size=(n, L, d)).astype(np.float32)
        x[np.arange(L)[None, :] >= lens[m][:, None]] = 0.0
        feats[m] = x
    signal = feats["text"][:, 0, 0] + 0.5 * feats["audio"][:, 0, 0]
    labels = np.clip(1.5 * signal, -3, 3).astype(np.float32)
    return FeatureSet(feats, lens, labels, np.array([f"s{i}" for i in range(n)]))


@pytest.fixture
def tiny_splits(tiny_spec) -> DatasetSplits:
    return DatasetSplits(tiny_spec, make_featureset(tiny_spec, 64, 0), make_featureset(tiny_spec, 32, 1),
                         make_featureset(tiny_spec, 32, 2), name="tiny")


@pytest.fixture
def torch_one_thread():
    """Tiny models run faster on one thread than on 2 busy shared cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def one_line_error(call) -> str:
    """Run `call`, expect an InputError, and return its message after checking it is one line."""
    from edge_msa.errors import InputError

    with pytest.raises(InputError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: a real (small) training or export on real data; seconds to a minute")
    config.addinivalue_line("markers", "e2e: end-to-end run of several CLI stages on real data")


@pytest.fixture(scope="session")
def mosi_int8_bundle(tmp_path_factory) -> Path:
    """A tiny random-weight student on the MOSI-U spec exported as int8 with real validation inputs (text encoder
    and tokenizer inside; Acc-2 limit off: random weights). Written to $EDGE_MSA_CI_BUNDLE when set, where .ci/run
    runs it again from a runtime-only venv. Use with @needs_data."""
    import os

    from edge_msa.checkpoint import save_checkpoint
    from edge_msa.data import load_dataset
    from edge_msa.export import export
    from edge_msa.models import create_model

    spec = load_dataset(MOSI_NPZ, progress=False).spec
    ckpt = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "student.pt", create_model("student_tiny", spec), {})
    out = Path(os.environ.get("EDGE_MSA_CI_BUNDLE") or tmp_path_factory.mktemp("bundle") / "student-int8")
    return export(ckpt, format="onnx-int8", out=out, data=MOSI_NPZ, log=None, max_drop=100.0)
