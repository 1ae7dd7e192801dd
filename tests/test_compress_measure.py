"""MACs per input: attention matmuls included, averaged over the real inputs (issue 10, item 5)."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from conftest import make_featureset
from edge_msa.compress.measure import _AttentionMacs, count_model, latency, mean_over_inputs, paired_bootstrap
from edge_msa.compress.report import _diff_ci
from edge_msa.models import create_model
from edge_msa.training import to_batch


def _one(fs, i):
    return {k: v for k, v in to_batch(fs, np.array([i])).items() if k != "index"}


def test_macs_include_the_attention_matmuls(tiny_spec, torch_one_thread):
    import torch_pruning as tp
    from torch_pruning.utils.op_counter import is_supported_instance

    from edge_msa.compress.measure import _Score

    model = create_model("student_tiny", tiny_spec).eval()
    batch = _one(make_featureset(tiny_spec, 4), 0)
    with contextlib.redirect_stdout(io.StringIO()):
        _, _, layer_macs, _ = tp.utils.count_ops_and_params(_Score(model), batch, layer_wise=True)
    modules_only = sum(float(layer_macs.get(m) or 0.0) for m in _Score(model).modules() if is_supported_instance(m))
    attention = _AttentionMacs()
    with torch.no_grad(), attention:
        model(batch)
    assert attention.macs > 0
    assert count_model(model, batch)["macs"] == pytest.approx(modules_only + attention.macs)


def test_macs_per_input_are_the_mean_over_every_input(tiny_spec, torch_one_thread):
    model = create_model("student_tiny", tiny_spec).eval()
    fs = make_featureset(tiny_spec, 10)
    each = [count_model(model, _one(fs, i)) for i in range(len(fs))]
    mean = mean_over_inputs(count_model, model, fs)
    assert len({e["macs"] for e in each}) > 1  # lengths differ, so input 0 alone is not the answer
    assert mean["macs"] == pytest.approx(np.mean([e["macs"] for e in each]))
    text = [e["parts"]["encode_text"]["macs"] for e in each]
    assert mean["parts"]["encode_text"]["macs"] == pytest.approx(np.mean(text))
    assert mean["params"] == each[0]["params"] and mean["inputs"] == 10


def test_latency_times_the_models_in_blocks_on_the_same_inputs(tiny_spec):
    """The report's latency is timed as the bench times bundles: in blocks, not alternating call by call (which
    ran the small model on caches the large one had just flushed), with every model given the same inputs."""
    fs = make_featureset(tiny_spec, 7)
    order: list[tuple[str, int]] = []
    models = {name: (lambda batch, name=name: order.append((name, int(batch["index"][0])))) for name in "ab"}
    result = latency(models, fs, calls=30, threads=1)
    timed = order[2 * 20:]  # after each model's 20 warm-up calls
    switches = sum(x[0] != y[0] for x, y in zip(timed, timed[1:]))
    assert switches < 10  # call by call gave 59
    assert {name: result[name]["calls"] for name in "ab"} == {"a": 30, "b": 30}
    assert sorted(i for n, i in order if n == "a") == sorted(i for n, i in order if n == "b")


def test_paired_bootstrap_leaves_out_resamples_whose_labels_are_all_0():
    """A small test split holding a 0 label (a 20-row label.csv): a resample of only that row has no Acc-2 non-0
    (None), and `None - None` failed compress after all its training."""
    truth = np.array([0.0, 1.0])
    boot = paired_bootstrap(np.array([0.5, 0.5]), np.array([-0.5, 0.5]), truth, n=200)
    assert boot["acc2_non0"]["diff"] == 0.0 and boot["mae"]["resamples"] == 200
    assert 100 < boot["acc2_non0"]["resamples"] < 200  # about 1 in 4 draws holds only the 0 label
    assert _diff_ci(boot["acc2_non0"], 200) == f"+0.0000 [+0.0000, +0.0000] over {boot['acc2_non0']['resamples']} " \
                                              "resamples with a non-0 label"
    none = paired_bootstrap(np.array([0.5, 0.5]), np.array([-1.0, 0.5]), np.zeros(2), n=20)
    assert none["acc2_non0"] == {"diff": None, "ci95": None, "resamples": 0} and none["mae"]["diff"] == -0.25
    assert _diff_ci(none["acc2_non0"], 20) == "n/a (every label is 0)"


def test_timing_from_the_raw_string_says_nothing_of_truncation(tiny_bert_dir):
    """The data load already reported the cut texts; timing re-tokenizes them, and each compress run printed a stray
    'N of 1 texts are longer than ...' line. Other warnings still pass."""
    import warnings

    from conftest import token_featureset
    from edge_msa.compress.measure import raw_text
    from edge_msa.features.text import TokenIds, TruncationWarning

    tok = tiny_bert_dir / "tokenizer.json"
    fs = token_featureset(tok, 4, seed=0)
    front = TokenIds(tok, max_len=3)  # every sentence has 2+ words, so [CLS] w w [SEP] is cut
    with pytest.warns(TruncationWarning):
        front.encode([str(fs.texts[0])])
    model = raw_text(lambda batch: warnings.warn("other", UserWarning), fs, front)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        latency({"student": model}, fs, calls=3, threads=1)
    assert {str(w.message) for w in seen} == {"other"}
