"""Structural pruning: the student really shrinks, heads are whole, and the checkpoint rebuilds from config."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_msa.compress.prune import prune_student, widths
from edge_msa.checkpoint import load_checkpoint, save_checkpoint
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
