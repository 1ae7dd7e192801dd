"""Structural pruning: the student really shrinks, heads are whole, and the checkpoint rebuilds from config."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_msa.compress.prune import check_ratio, prune_student, widths
from edge_msa.checkpoint import load_checkpoint, save_checkpoint
from edge_msa.errors import InputError, named_as_flags
from edge_msa.models import create_model
from edge_msa.training import to_batch

from conftest import make_featureset


@pytest.mark.parametrize("share", ["depth", "depth+modality"])
def test_prune_shrinks_and_rebuilds(tiny_spec, tmp_path, share):
    torch.manual_seed(0)
    model = create_model("student", tiny_spec, share=share).eval()
    batch = {k: v for k, v in to_batch(make_featureset(tiny_spec, 6), np.arange(6)).items() if k != "index"}
    n_before = sum(p.numel() for p in model.parameters())
    result = prune_student(model, batch, 0.5)
    n_after = sum(p.numel() for p in model.parameters())
    assert n_after < 0.75 * n_before
    for name, block in result["after"]["blocks"].items():
        assert block["heads"] == result["before"]["blocks"][name]["heads"] // 2
        assert block["head_dim"] == result["before"]["blocks"][name]["head_dim"]  # whole heads removed
        assert block["ffn"] == result["before"]["blocks"][name]["ffn"] // 2
    assert result["after"]["enc_hidden"] == {"audio": 32, "video": 32}
    assert widths(model) == result["after"]
    with torch.no_grad():
        ref = model(batch)["score"]
    save_checkpoint(tmp_path / "p.pt", model)
    again, _ = load_checkpoint(tmp_path / "p.pt")
    assert sum(p.numel() for p in again.parameters()) == n_after
    with torch.no_grad():
        assert torch.allclose(again(batch)["score"], ref, atol=1e-6)
        # parts still agree with forward after pruning (what export relies on)
        h = {m: again.part(f"encode_{m}")(batch[m], batch[f"{m}_mask"]) for m in ("text", "audio", "video")}
        present = torch.ones(6, 3)
        assert torch.allclose(again.part("fuse")(h["text"], h["audio"], h["video"], present), ref, atol=1e-5)


def test_ratio_zero_changes_nothing(tiny_spec):
    model = create_model("student_tiny", tiny_spec)
    batch = {k: v for k, v in to_batch(make_featureset(tiny_spec, 4), np.arange(4)).items() if k != "index"}
    result = prune_student(model, batch, 0.0)
    assert result["before"] == result["after"] == widths(model)


def test_a_ratio_check_ratio_accepts_shrinks_every_group_and_one_it_refuses_would_not(tiny_spec):
    """torch-pruning leaves a group whole, without a word, when the ratio would empty it (4 heads at 0.8 stayed 4,
    widths of 64 at 0.99 stayed 64): check_ratio's arithmetic is held to what MetaPruner does."""
    batch = {k: v for k, v in to_batch(make_featureset(tiny_spec, 4), np.arange(4)).items() if k != "index"}

    def groups(w):
        return [b[k] for b in w["blocks"].values() for k in ("heads", "ffn")] + [*w["enc_hidden"].values(),
                                                                                 w["head_hidden"]]

    for ratio in (0.3, 0.6, 0.75, 0.76, 0.8, 0.98, 0.99):
        model = create_model("student", tiny_spec).eval()  # 4 heads, widths 64 and 128
        try:
            check_ratio(model, ratio)
        except InputError as exc:
            assert str(exc).startswith(f"prune_ratio = {ratio} would remove all 4 heads of a block") and ratio > 0.75
            assert str(exc).endswith("; expected a ratio <= 0.75 for this student")
            result = prune_student(model, batch, ratio)
            assert any(a == b for a, b in zip(groups(result["before"]), groups(result["after"])))  # one left whole
        else:
            result = prune_student(model, batch, ratio)
            assert all(a > b >= 1 for a, b in zip(groups(result["before"]), groups(result["after"]))), ratio
    narrow = create_model("student", tiny_spec, enc_hidden={"audio": 2, "video": 64})
    with pytest.raises(InputError, match=r"^prune_ratio = 0.6 would remove all 2 channels of a width, .* <= 0.5 "):
        check_ratio(narrow, 0.6)
    with named_as_flags(["prune_ratio"]), pytest.raises(InputError, match=r"^--prune-ratio 0.6 would remove all 2 "):
        check_ratio(narrow, 0.6)  # from the compress command line: the flag
    check_ratio(narrow, 0.0)  # nothing pruned: nothing to check
