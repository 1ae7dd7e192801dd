"""Shared fixtures: tiny specs and synthetic FeatureSets for fast tests, and the real data root."""
from __future__ import annotations

import contextlib
import functools
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


def make_featureset(spec: FeatureSpec, n: int, seed: int = 0, two_lengths: bool = False) -> FeatureSet:
    """Random features whose label depends on text and audio, so a model can learn it. `two_lengths`: every input at
    full length or at one step (two length tuples instead of dozens), for work done once per distinct tuple."""
    rng = np.random.default_rng(seed)
    feats, lens = {}, {}
    for m in MODALITIES:
        L, d = spec.max_len(m), spec.dim(m)
        lens[m] = np.where(np.arange(n) % 2 == 0, L, 1) if two_lengths else rng.integers(1, L + 1, size=n)
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
def cli_tiny_teacher(monkeypatch):
    """`edge-msa train` / `pipeline --model` offer the real teachers only (models.registry.TEACHERS); CLI tests that
    train end to end in seconds add fd_cmdie_tiny to them."""
    from edge_msa.models import registry

    monkeypatch.setattr(registry, "TEACHERS", (*registry.TEACHERS, "fd_cmdie_tiny"))


@pytest.fixture
def few_timings(monkeypatch):
    """compress runs whose test reads neither the latency table nor the bootstrap CIs of the report: 20 timed calls
    and 50 resamples instead of 300 and 1000 (3 of a tiny run's 5 s), set through CompressOptions.build, which the
    CLI's compress and pipeline call, so the run still goes the CLI's way to its report (test_compress_cli's
    test_cli_end_to_end keeps the defaults and checks them)."""
    from edge_msa.compress import CompressOptions

    build = CompressOptions.build
    monkeypatch.setattr(CompressOptions, "build",
                        classmethod(lambda cls, **knobs: build(**{"latency_calls": 20, "bootstrap": 50, **knobs})))


@pytest.fixture
def few_bench_calls(monkeypatch):
    """bench runs whose test reads no latency (the pipeline's stage 4): 2 warm-up and at least 5 timed calls a row,
    as test_bench_sweep's FAST, instead of run_bench's 10 and 20 (most of a pipeline test's bench stage), set on
    benchmarks.run_bench, which the pipeline calls, so the stage still goes its own way to its report."""
    from edge_msa import benchmarks

    monkeypatch.setattr(benchmarks, "run_bench", functools.partial(benchmarks.run_bench, warmup=2, min_runs=5))


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Tiny models run faster on one thread than on 2 busy shared cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def torch_one_thread():
    """one_torch_thread around a test (a module-scoped fixture is set up before it: it uses one_torch_thread)."""
    with one_torch_thread():
        yield


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


WORDS = ("good great fun love nice happy bad awful boring hate sad poor the movie film was is it this very not "
         "plot acting story really").split()


def write_tiny_bert(folder: Path, hidden: int = 32, layers: int = 2, heads: int = 4, ffn: int = 64) -> Path:
    """A tiny Hugging Face BERT folder (random weights, saved by transformers) with a WordPiece tokenizer.json over
    a 40-token vocabulary: what `edge-msa train --text-model` reads."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s", "##ly", "##ing", "!", ".", ","]
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(str(folder / "tokenizer.json"))
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=ffn, max_position_embeddings=64)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder))
    return folder


def token_featureset(tokenizer: Path, n: int, seed: int, two_lengths: bool = False):
    """Random sentences over WORDS as token ids (TokenIds), audio/video random; label = word sentiment.
    `two_lengths`: sentences of 2 or 8 words (two length tuples), as make_featureset's."""
    from edge_msa.data.assemble import feature_set
    from edge_msa.features.text import TokenIds

    rng = np.random.default_rng(seed)
    score = {w: s for w, s in zip(WORDS[:12], [1, 1.5, 1, 2, 1, 1.5, -1, -2, -1, -2, -1.5, -1])}
    texts = [" ".join(rng.choice(WORDS, size=2 + 6 * (i % 2) if two_lengths else rng.integers(2, 9))) for i in range(n)]
    labels = np.clip([sum(score.get(w, 0) for w in t.split()) for t in texts], -3, 3).astype(np.float32)
    ids, lengths = TokenIds(tokenizer, max_len=12).encode(texts)
    feats = {"text": ids, "audio": rng.normal(size=(n, 1, 5)).astype(np.float32),
             "video": rng.normal(size=(n, 1, 7)).astype(np.float32)}
    lens = {"text": lengths, "audio": np.ones(n, np.int64), "video": np.ones(n, np.int64)}
    return feature_set(feats, lens, labels, [f"t{i}" for i in range(n)], texts, np.arange(n))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def token_spec(tokenizer: Path) -> FeatureSpec:
    """The spec of a model that encodes token ids itself (12 tokens), with tiny external audio/video features."""
    from edge_msa.features.text import tokenizer_tag

    return FeatureSpec(dims=(1, 5, 7), max_lens=(12, 1, 1),
                       front_ends=(tokenizer_tag(tokenizer), "external", "external"))


def token_student(bert_dir: Path, max_positions: int):
    """student_tiny with the tiny BERT of `bert_dir` inside and its tokenizer, as a compress run leaves it."""
    from edge_msa.models import create_model
    from edge_msa.models.text_bert import load_pretrained

    tok = bert_dir / "tokenizer.json"
    encoder = load_pretrained(bert_dir, max_positions=max_positions)
    model = create_model("student_tiny", token_spec(tok), text_bert=dict(encoder.config))
    model.tokenizer_path = tok
    return model


@pytest.fixture(scope="module")
def token_splits(tiny_bert_dir) -> DatasetSplits:
    """Module-scoped, so a module-scoped model trained on it sees the tests' splits; no test changes it. The test
    split has two length tuples: a compress report counts MACs once per distinct tuple of it (torch-pruning copies
    the whole model, tiny BERT inside, for each count), most of a compress run's time on 7 tuples."""
    tok = tiny_bert_dir / "tokenizer.json"
    spec = token_spec(tok)
    return DatasetSplits(spec, token_featureset(tok, 64, 0), token_featureset(tok, 32, 1),
                         token_featureset(tok, 32, 2, two_lengths=True), name="tiny-tokens")


@pytest.fixture(scope="session")
def token_bundle(tiny_bert_dir, tmp_path_factory) -> Path:
    """A tiny student that encodes token ids itself (tiny BERT, 40-token vocabulary), as the main job's students do:
    only tokenizer.json travels. Shared: a test that changes the bundle works on a copy."""
    from edge_msa.checkpoint import save_checkpoint
    from edge_msa.export import export

    ckpt = save_checkpoint(tmp_path_factory.mktemp("tok") / "s.pt", token_student(tiny_bert_dir, 12), {})
    return export(ckpt, out=tmp_path_factory.mktemp("tok") / "bundle", log=None)


# --- edge-msa serve: a tiny bundle with our own front ends, and the service in a subprocess -------------
SERVE_SPEC = FeatureSpec(dims=(384, 56, 105), max_lens=(16, 5, 4),
                         front_ends=("minilm-l6-int8", "logmel-v1", "face-v1"))


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
def serve_process(bundle: Path, *flags: str, launcher: tuple[str, ...] = ("-m", "edge_msa"),
                  log_path: Path | None = None) -> Iterator[tuple[subprocess.Popen, str]]:
    """`edge-msa serve` on a free loopback port in a subprocess; yields (process, base url) once /healthz
    answers 200, and kills it at the end if the test left it running. `launcher`: how python starts the CLI (a
    `-c` script may patch a bug in first); `log_path`: where its output goes, for a test to read."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # not a pipe: a chatty server must never block on a full pipe
    log = open(log_path, "w+") if log_path else tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, *launcher, "serve", str(bundle), "--port", str(port),
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


def ci_bundle_dir(tmp_path_factory, name: str) -> Path:
    """Where a real-data bundle fixture writes: $EDGE_MSA_CI_BUNDLES/<name> when set (.ci/run runs those bundles
    again from a runtime-only venv), else a temporary folder."""
    import os

    root = os.environ.get("EDGE_MSA_CI_BUNDLES")
    return Path(root) / name if root else tmp_path_factory.mktemp("bundle") / name


def export_mosi_int8(model, tmp_path_factory, name: str) -> Path:
    """`model` (random weights) saved and exported as int8 with real MOSI-U validation inputs (Acc-2 limit off)."""
    from edge_msa.checkpoint import save_checkpoint
    from edge_msa.export import export

    ckpt = save_checkpoint(tmp_path_factory.mktemp("ckpt") / f"{name}.pt", model, {})
    return export(ckpt, format="onnx-int8", out=ci_bundle_dir(tmp_path_factory, name), data=MOSI_NPZ, log=None,
                  max_drop=100.0)


@pytest.fixture(scope="session")
def mosi_int8_bundle(tmp_path_factory) -> Path:
    """A tiny student on the MOSI-U spec with the frozen MiniLM front end: text_encoder.onnx + tokenizer.json
    travel in the bundle. Use with @needs_data."""
    from edge_msa.data import load_dataset
    from edge_msa.models import create_model

    spec = load_dataset(MOSI_NPZ, progress=False).spec
    return export_mosi_int8(create_model("student_tiny", spec), tmp_path_factory, "student-frozen-int8")


@pytest.fixture(scope="session")
def mosi_token_bundle(tiny_bert_dir, tmp_path_factory) -> Path:
    """A tiny student with its own (tiny BERT) text encoder on the MOSI-U spec, as the main job's students are:
    its graphs take token ids and only tokenizer.json travels. Use with @needs_data."""
    from edge_msa.data import load_dataset
    from edge_msa.features.text import DEFAULT_MAX_LEN, TokenIds
    from edge_msa.models import create_model
    from edge_msa.models.text_bert import load_pretrained

    tokens = TokenIds(tiny_bert_dir / "tokenizer.json", max_len=DEFAULT_MAX_LEN)
    spec = load_dataset(MOSI_NPZ, progress=False, text_encoder=tokens).spec
    encoder = load_pretrained(tiny_bert_dir, max_positions=DEFAULT_MAX_LEN)
    model = create_model("student_tiny", spec, text_bert=dict(encoder.config))
    model.tokenizer_path = tokens.tokenizer_path
    return export_mosi_int8(model, tmp_path_factory, "student-tokens-int8")
