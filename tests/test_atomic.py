"""atomic_dir: two writers to one --out never delete each other's files (issue 10, item 8)."""
from __future__ import annotations

from edge_msa.atomic import atomic_dir


def _write(out, text: str) -> None:
    with atomic_dir(out, "manifest.json", "bundle") as tmp:
        (tmp / "manifest.json").write_text(text)


def test_replacing_an_output_leaves_another_writers_rename_aside_alone(tmp_path):
    out = tmp_path / "bundle"
    _write(out, "first")
    other = tmp_path / ".bundle.old"  # the fixed name the old code used: another writer's set-aside copy
    other.mkdir()
    (other / "manifest.json").write_text("theirs")
    _write(out, "second")
    assert (out / "manifest.json").read_text() == "second"
    assert (other / "manifest.json").read_text() == "theirs"


def test_repeated_replacement_leaves_only_the_output(tmp_path):
    out = tmp_path / "bundle"
    for text in ("a", "b", "c"):
        _write(out, text)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    assert (out / "manifest.json").read_text() == "c"
