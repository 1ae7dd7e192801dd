"""Shared fixtures: tiny specs and synthetic FeatureSets for fast tests, and the real data root."""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

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


# --- edge-msa serve: a tiny bundle with our own front ends, and the service in a subprocess -------------
SERVE_SPEC = FeatureSpec(dims=(384, 56, 105), max_lens=(16, 5, 4), front_ends=("minilm-l6-int8", "logmel-v1", "face-v1"))


@pytest.fixture(scope="session")
def media_bundle(tmp_path_factory) -> Path:
    """A tiny random-weight student (MiniLM text, logmel-v1 audio, face-v1 video) exported as a bundle."""
    from edge_msa.checkpoint import save_checkpoint
    from edge_msa.export import export
    from edge_msa.models import create_model

    folder = tmp_path_factory.mktemp("media_bundle")
    ckpt = save_checkpoint(folder / "s.pt", create_model("student_tiny", SERVE_SPEC), {})
    return Path(export(ckpt, out=folder / "bundle", log=None))


@contextlib.contextmanager
def serve_process(bundle: Path, *flags: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """`edge-msa serve` on a free loopback port in a subprocess; yields (process, base url) once /healthz
    answers 200, and kills it at the end if the test left it running."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tempfile.TemporaryFile("w+")  # not a pipe: a chatty server must never block on a full pipe
    proc = subprocess.Popen([sys.executable, "-m", "edge_msa", "serve", str(bundle), "--port", str(port),
                             "--log-level", "warning", *flags], stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError(f"edge-msa serve exited {proc.returncode}: {log.read()}")
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("edge-msa serve did not answer /healthz within 90 s") from None
                time.sleep(0.2)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        log.close()
