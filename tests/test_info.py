"""`edge-msa info` on a bundle: what its manifest records, as the bundle's owner reads it."""
import json
import shutil
from pathlib import Path

from edge_msa.cli import main

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
