"""Everything edge-msa writes as JSON is strict JSON (no bare NaN / Infinity, which JavaScript's JSON.parse, Go and
jq refuse): NaN is null and +-inf is "Infinity" / "-Infinity" (edge_msa.jsonio), and every reader of those files
takes what is written now and what earlier versions wrote."""
from __future__ import annotations

import asyncio
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_msa.checkpoint import save_checkpoint
from edge_msa.cli import main
from edge_msa.data.base import DatasetSplits, FeatureSet
from edge_msa.errors import ParityError
from edge_msa.export import export
from edge_msa.jsonio import dumps, loads
from edge_msa.models import create_model
from edge_msa.runtime import load
from edge_msa.runtime.manifest import read_manifest, write_manifest
from edge_msa.spec import FeatureSpec

from conftest import make_featureset

SPEC = FeatureSpec(dims=(12, 5, 7), max_lens=(9, 3, 4),
                   front_ends=("external:text-12", "external:declare-opensmile-73", "external:declare-3dcnn-100"))


def strict(text: str):
    """json.loads as a strict reader parses: a bare NaN / Infinity / -Infinity is an error, not a number."""
    def refuse(constant: str):
        raise ValueError(f"bare {constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def collapsed(tmp_path_factory):
    """(model, bundle) of a tiny student whose head outputs one constant: a collapsed model (corr NaN)."""
    model = create_model("student_tiny", SPEC)
    with torch.no_grad():
        model.head_fc2.weight.zero_()  # the score is the head's bias, whatever the input
    ckpt = save_checkpoint(tmp_path_factory.mktemp("collapsed") / "s.pt", model, {})
    return model, Path(export(ckpt, out=ckpt.parent / "bundle", log=None))


def copy_bundle(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "bundle"))


def with_labels(fs: FeatureSet, labels: np.ndarray) -> FeatureSet:
    return FeatureSet(fs.features, fs.lengths, labels.astype(np.float32), fs.ids)


def test_the_writer_maps_nan_and_inf_once_and_the_reader_takes_both_spellings():
    value = {"corr": float("nan"), "limit": math.inf, "low": -math.inf, "n": np.int64(3), "x": np.float32(0.5),
             "rows": (np.array([1.0, np.nan]), [math.inf])}
    text = dumps(value)
    assert strict(text) == {"corr": None, "limit": "Infinity", "low": "-Infinity", "n": 3, "x": 0.5,
                            "rows": [[1.0, None], ["Infinity"]]}
    assert loads(text) == {"corr": None, "limit": math.inf, "low": -math.inf, "n": 3, "x": 0.5,
                           "rows": [[1.0, None], [math.inf]]}
    old = loads('{"corr": NaN, "limit": Infinity}')  # what edge-msa wrote before: still read
    assert math.isnan(old["corr"]) and old["limit"] == math.inf


def test_eval_of_a_collapsed_model_writes_strict_json(collapsed, tmp_path, capsys, monkeypatch):
    """A collapsed model's corr is NaN: `eval --out` wrote a bare NaN, which JSON.parse and jq refuse."""
    import edge_msa.data as data

    sets = [make_featureset(SPEC, n, seed) for seed, n in enumerate((6, 4, 8))]
    monkeypatch.setattr(data, "rebuild_splits", lambda *a, **k: DatasetSplits(SPEC, *sets, info={"path": "l.csv"}))
    out = tmp_path / "m.json"
    assert main(["eval", str(collapsed[1]), "--data", "l.csv", "--out", str(out)]) == 0
    printed, written = strict(capsys.readouterr().out), strict(out.read_text())
    assert written == printed and written["collapsed"] is True and written["corr"] is None


def test_an_inf_limit_round_trips_through_a_manifest(collapsed, tmp_path):
    """`--max-drop inf` is recorded in manifest.json: written strict, read back as inf (and a manifest written
    before, with bare Infinity / NaN, still loads)."""
    bundle = copy_bundle(collapsed[1], tmp_path)
    manifest = read_manifest(bundle)
    manifest.export_options["max_drop"] = math.inf
    manifest.metrics["valid"] = {"torch": {"corr": math.nan}}
    write_manifest(bundle, manifest)
    assert strict((bundle / "manifest.json").read_text())["export_options"]["max_drop"] == "Infinity"
    again = read_manifest(bundle)
    assert again.export_options["max_drop"] == math.inf and again.metrics["valid"]["torch"]["corr"] is None
    (bundle / "manifest.json").write_text(json.dumps(manifest.to_dict()))  # Python's own bare Infinity / NaN
    old = read_manifest(bundle)
    assert old.export_options["max_drop"] == math.inf and math.isnan(old.metrics["valid"]["torch"]["corr"])


def test_bench_report_is_strict_and_reads_back(tmp_path):
    from edge_msa.benchmarks import load_report
    from edge_msa.benchmarks.report import write_report

    row = {"bundle": "/bundles/student", "status": "ok", "batch": 1, "modalities": "all", "precision": "fp32",
           "input": "raw-text", "latency_ms": {"p50": 1.0, "p90": 1.0, "p99": 1.0}, "throughput": math.inf,
           "energy_mj_per_item": math.nan, "metrics": {"acc2_non0": None, "corr": math.nan}}
    out = write_report({"rows": [row]}, tmp_path / "r")
    written = strict((out / "report.json").read_text())["rows"][0]
    assert written["throughput"] == "Infinity" and written["energy_mj_per_item"] is None
    assert load_report(out / "report.json")["rows"][0]["throughput"] == math.inf


def test_rest_info_of_a_service_with_an_inf_limit_is_strict_json(collapsed):
    """`serve --max-media-s inf`: starlette's JSONResponse refuses inf, so GET /v1/info was a 500."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    from edge_msa.serve.app import Service, create_app
    from edge_msa.serve.config import Limits, ServeConfig

    service = Service(ServeConfig(bundle=str(collapsed[1]), limits=Limits(max_media_seconds=math.inf)))
    try:
        status, body = asyncio.run(get(create_app(service), "/v1/info"))
    finally:
        service.close()
    assert status == 200 and strict(body)["service"]["limits"]["max_media_seconds"] == "Infinity"


async def get(app, path: str, root_path: str = "") -> tuple[int, str]:
    """(status, body) of a GET through the ASGI app itself (no HTTP client needed); `root_path` as a server that does
    not put it before the path sets it (starlette's TestClient, FastAPI's own root_path)."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "http_version": "1.1", "method": "GET", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": root_path, "headers": [], "scheme": "http", "server": ("test", 80),
             "client": ("test", 1)}
    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return next(m["status"] for m in sent if m["type"] == "http.response.start"), body.decode()


def test_accuracy_check_on_a_split_labelled_all_zero_is_one_line(collapsed, tmp_path, capsys):
    """Every validation label 0: Acc-2 (non-0) is None, and check_metrics raised `None - None` (a TypeError) even
    when only measuring (fp32 with --data); `info` would have crashed formatting the None."""
    from edge_msa.export.parity import check_metrics

    model, bundle = collapsed
    valid = with_labels(make_featureset(SPEC, 6, 1), np.zeros(6))
    with load(bundle) as predictor:
        measured = check_metrics(model, "parts", predictor, valid, None)
        assert measured["acc2_non0_drop_points"] is None and measured["ok"] is True
        with pytest.raises(ParityError) as judged:
            check_metrics(model, "parts", predictor, valid, 0.5)
    assert str(judged.value) == ("accuracy check impossible: every label is 0, so Acc-2 (non-0) is undefined on the "
                                 "validation split of 6 samples; expected --data whose validation split has non-zero "
                                 "labels, or an fp32 bundle (not judged)")
    copy = copy_bundle(bundle, tmp_path)
    manifest = read_manifest(copy)
    manifest.metrics["valid"] = measured
    write_manifest(copy, manifest)
    assert main(["info", str(copy)]) == 0
    assert ("accuracy   valid Acc-2 non-0 none: every label is 0, so Acc-2 (non-0) is undefined on the validation "
            "split\n") in capsys.readouterr().out
