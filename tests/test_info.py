"""What a bundle's manifest tells, and to whom: `edge-msa info` all of it to the bundle's owner, the REST service's
/v1/info all but the exporting machine's paths to any client."""
import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import WORDS
from edge_msa.cli import main
from edge_msa.spec import FeatureSpec

CALIBRATED = "16 (numpy default_rng(0), without replacement, in split order) of 40 training samples, each in 7 " \
             "modality subsets"


def _info_of(bundle: Path, tmp_path: Path, capsys, **changes) -> str:
    """info's summary of a copy of `bundle` whose manifest has `changes` (top-level fields, export_options merged)."""
    copy = Path(shutil.copytree(bundle, tmp_path / "copy"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["export_options"].update(changes.pop("export_options", {}))
    manifest.update(changes)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert main(["info", str(copy)]) == 0
    return capsys.readouterr().out


def test_info_says_which_inputs_calibrated_an_int8_engine(token_bundle, tmp_path, capsys):
    """export recorded export_options.int8_calibration (training rows, or random inputs without --data) in an INT8
    engine's manifest, but `info` did not show it: the owner could not tell how its scales were fitted."""
    on_train = {"split": "train", "inputs": CALIBRATED, "samples": 16}
    out = _info_of(token_bundle, tmp_path, capsys, precision="engine-int8",
                   export_options={"int8_calibration": on_train})
    assert f"\ncalibrate  INT8 scales on {CALIBRATED}\ntensorrt   " in out  # after the parity lines
    random = {"split": None, "inputs": "8 random inputs of the spec's shapes, each in 7 modality subsets", "samples": 8}
    shutil.rmtree(tmp_path / "copy")
    out = _info_of(token_bundle, tmp_path, capsys, precision="engine-int8",
                   export_options={"int8_calibration": random})
    assert "calibrate  INT8 scales on 8 random inputs of the spec's shapes, each in 7 modality subsets (export had " \
           "no --data)\n" in out


def test_info_says_an_older_int8_engine_has_no_calibration_record(token_bundle, tmp_path, capsys):
    """An INT8 engine exported before the record says unknown; a bundle that calibrated nothing has no such line."""
    assert "calibrate  unknown: not in this manifest (exported by an older edge-msa; re-export to record it)\n" in \
        _info_of(token_bundle, tmp_path, capsys, precision="engine-int8")
    assert main(["info", str(token_bundle)]) == 0 and "calibrate" not in capsys.readouterr().out


def _bundle_of_private_files(folder: Path) -> Path:
    """A bundle exported as a user's would be: from a checkpoint whose lineage names a data file, both in `folder`
    (export reads that file for its parity check, the parity record quotes it)."""
    from edge_msa.checkpoint import save_checkpoint
    from edge_msa.data import lineage, load_dataset
    from edge_msa.export import export
    from edge_msa.models import create_model

    spec = FeatureSpec((384, 5, 7), (16, 1, 1), ("minilm-l6-int8", "external:a-5", "external:v-7"))
    n, rng = 12, np.random.default_rng(0)
    np.savez(folder / "private.npz", format="edge-msa-features-v1", feature_spec=json.dumps(spec.to_dict()),
             id=np.array([f"c{i}" for i in range(n)]), label=rng.uniform(-3, 3, n).astype(np.float32),
             split=np.array(["train", "valid", "test"] * (n // 3)),
             transcript=np.array([" ".join(rng.choice(WORDS, 4)) for _ in range(n)]),
             audio_feat=rng.normal(size=(n, 1, 5)).astype(np.float32), audio_len=np.ones(n, np.int64),
             video_feat=rng.normal(size=(n, 1, 7)).astype(np.float32), video_len=np.ones(n, np.int64))
    meta = {"data": lineage(load_dataset(folder / "private.npz", progress=False))}
    return export(save_checkpoint(folder / "s.pt", create_model("student_tiny", spec), meta), out=folder / "bundle",
                  log=None)


def test_rest_info_of_a_real_export_names_no_path_of_the_exporting_machine(tmp_path, capsys):
    """Every path export writes into a manifest (the checkpoint, the data file, the lineage's path, the parity inputs
    quoting it) is left out of /v1/info or cut to its file name, whatever field holds it: a guard on a whole real
    manifest, where a hand-set one tests only the fields known today. `edge-msa info` keeps them for the owner."""
    pytest.importorskip("fastapi", reason='the serve extra is not installed (pip install "edge-msa[serve]")')
    from test_jsonio import get

    from edge_msa.serve.app import Service, create_app
    from edge_msa.serve.config import ServeConfig

    bundle = _bundle_of_private_files(tmp_path)
    assert main(["info", str(bundle), "--json"]) == 0 and str(tmp_path) in capsys.readouterr().out
    service = Service(ServeConfig(bundle=str(bundle)))
    try:
        status, body = asyncio.run(get(create_app(service), "/v1/info"))
    finally:
        service.close()
    manifest = json.loads(body)["manifest"]
    assert status == 200 and str(tmp_path) not in body
    assert manifest["parity"]["inputs"] == "all 4 validation samples of private.npz"
    assert manifest["model"] == "student_tiny" and manifest["data"]["splits"]["valid"]["n"] == 4
