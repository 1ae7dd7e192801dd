"""One target table for both settings (frozen text features / text encoder inside the models, end to end):
which targets apply where, and how a row judges its value."""
from __future__ import annotations

import pytest

from edge_msa.compress.report import TARGETS, target_table


def test_each_setting_takes_its_own_targets_in_table_order():
    values = {name: 1.0 for name in TARGETS}
    frozen, end_to_end = target_table(values), target_table(values, end_to_end=True)
    assert list(frozen) == [n for n in TARGETS if n != "student_acc2_non0"]
    assert list(end_to_end) == [n for n in TARGETS if n != "runtime_minutes"]
    assert frozen["param_reduction"]["limit"] == 20.0 and end_to_end["param_reduction"]["limit"] == 5.0
    assert ("end to end" in end_to_end["param_reduction"]["what"]
            and "end to end" not in frozen["param_reduction"]["what"])
    assert frozen["skip_saved_fraction"] == end_to_end["skip_saved_fraction"]


@pytest.mark.parametrize("name, value, met, missed_by", [
    ("param_reduction", 25.0, True, None), ("param_reduction", 15.0, False, 5.0),
    ("mae_rise", 0.01, True, None), ("mae_rise", 0.05, False, 0.02), ("mae_rise", None, False, None)])
def test_row_judges_min_and_max_targets(name, value, met, missed_by):
    row = target_table({name: value})[name]
    assert row["met"] is met and row["value"] == value
    assert row["missed_by"] == (None if missed_by is None else pytest.approx(missed_by))
