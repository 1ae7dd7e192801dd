"""export's steps: the bundle is validated from the in-memory manifest, and manifest.json is written once, last,
describing the files that are there (a later step cannot leave an earlier manifest behind)."""
from __future__ import annotations

import json

import pytest

from edge_msa.errors import ParityError
from edge_msa.export import exporter
from edge_msa.runtime import read_manifest

from test_export_bundle import student_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return student_checkpoint(tmp_path_factory.mktemp("ckpt") / "student.pt")[0]


@pytest.mark.parametrize("fmt", ["onnx", "onnx-int8"])
def test_manifest_written_once_last(checkpoint, tmp_path, monkeypatch, fmt):
    writes = []

    def spy(bundle, manifest):
        writes.append(sorted(p.name for p in bundle.iterdir()))
        return write(bundle, manifest)

    write = exporter.write_manifest
    monkeypatch.setattr(exporter, "write_manifest", spy)
    bundle = exporter.export(checkpoint, format=fmt, out=tmp_path / "b", log=None)
    assert len(writes) == 1 and "trtexec.txt" in writes[0]  # after every other file
    manifest = read_manifest(bundle)
    assert all((bundle / f).is_file() for f in manifest.graphs.values())
    assert manifest.parity["ok"] and (fmt == "onnx") == ("int8" not in manifest.parity)
    assert json.loads((bundle / "manifest.json").read_text())["precision"] == manifest.precision


def test_failed_conversion_check_writes_no_manifest(checkpoint, tmp_path, monkeypatch):
    def fail(*_args, **_kwargs):
        raise ParityError("accuracy check failed (test)")

    monkeypatch.setattr(exporter, "_check_converted", fail)
    monkeypatch.setattr(exporter, "write_manifest", lambda *_: pytest.fail("manifest written after a failed check"))
    with pytest.raises(ParityError):
        exporter.export(checkpoint, format="onnx-int8", out=tmp_path / "b", log=None)
    assert not (tmp_path / "b").exists() and not list(tmp_path.iterdir())
