"""A bundle travels (scp, SD cards, OTA): export records the sha256 and size of every file in the manifest, load
refuses a file that differs, `edge-msa info` names what differs, is missing or was added, and a file that is a link
out of the bundle is refused like a manifest name with '..'."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from edge_msa.cli import main
from edge_msa.errors import ArtifactError
from edge_msa.runtime import load, read_manifest

NOT_AS_EXPORTED = "differs from what export recorded (sha256); re-copy or re-export the bundle"


def _copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "copy"))


def _info(bundle: Path, capsys) -> tuple[int, str, str]:
    code = main(["info", str(bundle)])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_records_every_file_but_the_manifest(token_bundle):
    files = read_manifest(token_bundle).files
    on_disk = sorted(p.name for p in token_bundle.iterdir() if p.name != "manifest.json")
    assert sorted(files) == on_disk and "tokenizer.json" in files and "trtexec.txt" in files
    for name, record in files.items():
        data = (token_bundle / name).read_bytes()
        assert record == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def test_a_flipped_byte_in_a_graph_is_refused_at_load_and_by_info(token_bundle, tmp_path, capsys):
    """64 bytes flipped in the middle of encode_text.onnx loaded and answered another score without a word."""
    copy = _copy(token_bundle, tmp_path)
    graph = copy / "encode_text.onnx"
    data = bytearray(graph.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    graph.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=re.escape(f"file encode_text.onnx {NOT_AS_EXPORTED}")):
        load(copy)
    code, out, err = _info(copy, capsys)
    assert code == 2 and "files      NOT as exported: differ: encode_text.onnx\n" in out
    assert err == f"error: bundle '{copy}' is not as exported (differ: encode_text.onnx); re-copy or re-export the " \
                  "bundle\n"
    assert main(["info", str(copy), "--json"]) == 2  # the manifest printed, and the same verdict for a script


def test_info_says_ok_names_extra_files_and_missing_ones_exit_2(token_bundle, tmp_path, capsys):
    """A note or a .DS_Store beside the graphs changes nothing that runs: named, exit 0, and the bundle loads; a
    missing file is a bundle that is not what was exported (exit 2)."""
    copy = _copy(token_bundle, tmp_path)
    code, out, _ = _info(copy, capsys)
    assert code == 0 and "files      ok (sha256 as exported)\n" in out
    (copy / ".DS_Store").write_bytes(b"\0")
    code, out, _ = _info(copy, capsys)
    assert code == 0 and "files      ok (sha256 as exported); extra (not exported): .DS_Store\n" in out
    (copy / "trtexec.txt").unlink()  # load reads no trtexec.txt: it loads, and `info` says the copy is incomplete
    load(copy).close()
    code, out, err = _info(copy, capsys)
    assert code == 2 and "files      NOT as exported: missing: trtexec.txt; extra (not exported): .DS_Store\n" in out
    assert "is not as exported (missing: trtexec.txt)" in err


def test_info_on_a_file_of_a_bundle_names_its_folder(token_bundle, capsys):
    """`edge-msa info bundle/manifest.json` (or a graph) read the file as a checkpoint: "not a torch checkpoint;
    expected a .pt file" where torch is installed, and on a device's runtime-only install a request to install
    torch ([train]) for what is a bundle; it is one line naming the folder to pass, on any install."""
    for name in ("manifest.json", "tokenizer.json"):
        code, out, err = _info(token_bundle / name, capsys)
        assert code == 2 and out == ""
        assert err == (f"error: '{token_bundle / name}' is a file of the bundle '{token_bundle}'; expected the "
                       f"bundle's folder (edge-msa info {token_bundle})\n")


def test_load_checks_the_recorded_files_without_listing_the_folder(token_bundle, monkeypatch):
    """load listed every file in the bundle (rglob) to find the extra ones, which only `edge-msa info` reports."""
    import edge_msa.runtime.manifest as manifest

    monkeypatch.setattr(manifest, "_on_disk", lambda bundle: pytest.fail("load listed the bundle's files"))
    load(token_bundle).close()


def test_a_bundle_exported_before_the_record_loads_and_says_not_recorded(token_bundle, tmp_path, capsys):
    copy = _copy(token_bundle, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    del manifest["files"]
    (copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (copy / "trtexec.txt").write_text("edited")
    load(copy).close()
    code, out, _ = _info(copy, capsys)
    assert code == 0 and "files      not recorded (exported by an older edge-msa; re-export to record" in out


def test_a_file_linked_from_outside_the_bundle_is_refused_a_hard_link_is_not(token_bundle, tmp_path, capsys):
    """The manifest's names stay inside the bundle (no '..'); a symbolic link carried them out all the same. A
    tokenizer shared between bundles can be a hard link, which stays inside."""
    copy = _copy(token_bundle, tmp_path)
    shared = Path(shutil.copyfile(copy / "tokenizer.json", tmp_path / "shared.json"))
    (copy / "tokenizer.json").unlink()
    (copy / "tokenizer.json").symlink_to(shared)
    message = (f"bundle file '{copy / 'tokenizer.json'}' is a link to '{shared.resolve()}', outside the bundle; "
               "expected the file itself inside the bundle (copy it in, or hard-link it: `ln` without -s)")
    with pytest.raises(ArtifactError) as caught:
        load(copy)
    assert str(caught.value) == message
    code, _, err = _info(copy, capsys)
    assert code == 2 and err == f"error: {message}\n"
    (copy / "tokenizer.json").unlink()
    os.link(shared, copy / "tokenizer.json")
    load(copy).close()
