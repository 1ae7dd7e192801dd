"""Skip threshold calibration reads no labels (issue 10, item 5)."""
from __future__ import annotations

import numpy as np

from edge_msa.compress.skip import SkipCache, calibrate


def _cache(labels: np.ndarray, seed: int = 0) -> SkipCache:
    rng = np.random.default_rng(seed)
    n = len(labels)
    full = rng.normal(size=n)
    scores = np.stack([full, *(full + rng.normal(0, s, n) for s in (0.6, 0.3, 0.8))], 1)  # (N, 4) subsets
    present = np.ones((n, 2), bool)
    return SkipCache(scores, rng.uniform(size=(n, 2)), present, labels.astype(np.float32),
                     np.full((n, 2), 100.0), np.full(n, 1.0))


def test_thresholds_and_flip_rate_do_not_depend_on_the_labels():
    rng = np.random.default_rng(1)
    labels = rng.uniform(-3, 3, 200)
    other = np.where(rng.uniform(size=200) < 0.4, 0.0, -labels)  # other values, many exactly 0
    for mode, value in (("budget", 0.5), ("max_drop", 0.02)):
        a, b = calibrate(_cache(labels), mode, value), calibrate(_cache(other), mode, value)
        assert a["thresholds"] == b["thresholds"] and a["flip_rate"] == b["flip_rate"]
        assert a["saved_fraction"] == b["saved_fraction"]


def test_calibration_on_labels_that_are_all_zero_has_no_acc2_drop():
    """Calibration reads no labels, so labels that are all 0 (Acc-2 non-0 undefined) change no threshold; the
    report-only Acc-2 drop is then None, where `None - None` raised a TypeError."""
    zero, labelled = calibrate(_cache(np.zeros(50)), "budget", 0.5), calibrate(_cache(np.ones(50)), "budget", 0.5)
    assert zero["acc2_non0_drop"] is None and zero["thresholds"] == labelled["thresholds"]


def test_gate_trainer_rows_are_what_the_frozen_student_gives_each_batch(tiny_splits, torch_one_thread):
    """The gate stage computes the frozen student's outputs once per row; a shuffled training batch must see the
    scores, targets and keep it would get from running the student on that batch."""
    import torch

    from edge_msa.compress.skip import GateTrainer, _combos, _targets
    from edge_msa.models import create_model
    from edge_msa.training import iterate

    torch.manual_seed(0)
    student = create_model("student", tiny_splits.spec).eval()
    trainer = GateTrainer(student, 0.05, tiny_splits.train, tiny_splits.valid).train()
    for batch in iterate(tiny_splits.train, 16, shuffle=True, rng=np.random.default_rng(0)):
        out = trainer(batch)
        with torch.no_grad():
            scores, _, h_text = _combos(student.eval(), batch)
            keep = student.keep(h_text, batch)
        assert torch.allclose(out["keep"], keep, atol=1e-6)
        assert torch.equal(out["target"], _targets(scores, 0.05))
        assert out["keep"].requires_grad  # the gate still trains through the looked-up rows


def test_gate_trainer_refuses_a_batch_of_the_other_split(tiny_splits, torch_one_thread):
    import pytest
    import torch

    from edge_msa.compress.skip import GateTrainer
    from edge_msa.models import create_model
    from edge_msa.training import to_batch

    torch.manual_seed(0)
    trainer = GateTrainer(create_model("student", tiny_splits.spec), 0.05, tiny_splits.train, tiny_splits.valid)
    trainer.eval()(to_batch(tiny_splits.valid, np.arange(8)))  # eval mode: the validation rows
    with pytest.raises(RuntimeError, match="another split"):
        trainer.train()(to_batch(tiny_splits.valid, np.arange(8)))
