"""msa_metrics against hand-computed values and against sklearn / scipy on random data."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error

from edge_msa.errors import InputError
from edge_msa.metrics import METRIC_KEYS, msa_metrics

PRED = np.array([2.6, -0.4, 0.5, -2.5, 1.2, 0.0])
TRUTH = np.array([3.0, -1.0, 0.0, -2.6, -0.2, 1.5])


def test_hand_computed_values():
    m = msa_metrics(PRED, TRUTH)
    assert tuple(m) == (*METRIC_KEYS, "collapsed")
    assert m["acc2_has0"] == pytest.approx(5 / 6)  # only the 1.2 vs -0.2 pair disagrees on >= 0
    assert m["acc2_non0"] == pytest.approx(3 / 5)  # label 0.0 dropped; pred 0.0 counts as not positive
    assert m["f1_has0"] == pytest.approx(0.5 * 6 / 7 + 0.5 * 4 / 5)  # F1(non-neg)=6/7, F1(neg)=4/5, 3+3 support
    assert m["f1_non0"] == pytest.approx(0.4 * 1 / 2 + 0.6 * 2 / 3)  # F1(pos)=1/2 (2 of 5), F1(neg)=2/3 (3 of 5)
    assert m["acc7"] == pytest.approx(2 / 6)  # 3=3 and round(0.5)=0=0; round(-2.5)=-2 != round(-2.6)=-3
    assert m["acc5"] == pytest.approx(3 / 6)  # clipped to [-2, 2]: 2=2, 0=0, -2=-2
    assert m["mae"] == pytest.approx(4.5 / 6)
    assert m["corr"] == pytest.approx(pearsonr(PRED, TRUTH)[0])


def test_acc7_rounds_half_to_even_like_mmsa():
    truth = np.array([2.0, 0.0, -2.0, 1.0])
    pred = np.array([2.5, 0.5, -2.5, 1.5])  # half-to-even: 2, 0, -2, 2; half-up would give 3, 1, -2, 2
    assert msa_metrics(pred, truth)["acc7"] == pytest.approx(3 / 4)


def test_matches_sklearn_and_scipy_on_random_scores():
    rng = np.random.default_rng(0)
    truth = np.round(rng.uniform(-3, 3, 500) * 5) / 5  # MOSI-like: multiples of 0.2, some exact zeros
    pred = np.clip(truth + rng.normal(0, 1.0, 500), -3.5, 3.5)
    m = msa_metrics(pred, truth)
    nz = truth != 0
    assert nz.sum() < 500
    assert m["f1_has0"] == pytest.approx(f1_score(truth >= 0, pred >= 0, average="weighted"))
    assert m["f1_non0"] == pytest.approx(f1_score(truth[nz] > 0, pred[nz] > 0, average="weighted"))
    assert m["acc2_has0"] == pytest.approx(accuracy_score(truth >= 0, pred >= 0))
    assert m["acc2_non0"] == pytest.approx(accuracy_score(truth[nz] > 0, pred[nz] > 0))
    assert m["acc7"] == pytest.approx(accuracy_score(np.round(np.clip(truth, -3, 3)), np.round(np.clip(pred, -3, 3))))
    assert m["mae"] == pytest.approx(mean_absolute_error(truth, pred))
    assert m["corr"] == pytest.approx(pearsonr(pred, truth)[0])


def test_f1_with_one_predicted_class_matches_sklearn():
    truth = np.array([1.0, -1.0, 2.0, -0.4, 0.6])
    pred = np.ones(5)  # every prediction positive: F1 of the negative class is 0
    expected = f1_score(truth >= 0, pred >= 0, average="weighted", zero_division=0)
    assert msa_metrics(pred, truth)["f1_has0"] == pytest.approx(expected)
    assert not msa_metrics(truth * 0.5, truth)["collapsed"]


def test_constant_predictions_are_flagged_as_collapsed_with_nan_corr():
    truth = np.array([1.0, -1.0, 2.0, -0.4, 0.6])
    m = msa_metrics(np.full(5, 0.3), truth)
    assert np.isnan(m["corr"])  # not 0.0: a collapsed model must not look merely uncorrelated
    assert m["collapsed"] is True


def test_perfect_predictions():
    truth = np.array([-3.0, -1.2, 0.4, 2.8, 1.0])
    m = msa_metrics(truth.copy(), truth)
    assert all(m[k] == pytest.approx(1.0) for k in METRIC_KEYS if k != "mae") and m["mae"] == 0.0


def test_bad_inputs_are_input_errors():
    with pytest.raises(InputError, match="equal-length"):
        msa_metrics(np.zeros(3), np.zeros(4))
    with pytest.raises(InputError, match="NaN/Inf"):
        msa_metrics(np.array([0.0, np.nan]), np.array([0.0, 1.0]))


def test_non_zero_metrics_are_none_when_every_label_is_zero():
    import numpy as np

    from edge_msa.metrics import msa_metrics

    m = msa_metrics(np.array([0.5, -0.5, 0.2]), np.zeros(3))
    assert m["acc2_non0"] is None and m["f1_non0"] is None
    assert m["acc2_has0"] == 2 / 3
