"""Ranges with an open top, told whole by errors.check_range (exclusive_top): prune_ratio and the feedback export's
fractions said only "expected >= 0" for a value below 0, and the dropout rates had a rule of their own."""
from __future__ import annotations

import math

import pytest

from edge_msa.cli import main
from edge_msa.errors import InputError, check_range
from edge_msa.serve.feedback import FeedbackLog, export_label_csv

from conftest import one_line_error


@pytest.mark.parametrize("value, says", [
    (1, "p = 1; expected 0 <= p < 1 (a probability)"),  # the top itself is out
    (-0.1, "p = -0.1; expected 0 <= p < 1 (a probability)"),  # below: told the top too
    (math.nan, "p = nan; expected a finite number 0 <= p < 1 (a probability)"),
    ("0.5", "p = '0.5'; expected a number 0 <= p < 1 (a probability)"),
])
def test_an_exclusive_top_is_refused_and_told(value, says):
    assert one_line_error(lambda: check_range({"p": value}, 0, strict=False, top=1, exclusive_top=True,
                                              why="a probability")) == says
    check_range({"p": 0.999}, 0, strict=False, top=1, exclusive_top=True)  # just below it: taken
    check_range({"p": 1}, 0, strict=False, top=1)  # an inclusive top, as before


@pytest.mark.parametrize("ratio", ["-0.1", "1"])
def test_a_prune_ratio_out_of_range_is_told_both_bounds(tmp_path, capsys, ratio):
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(b"not read before options are checked")
    assert main(["compress", str(teacher), "--out", str(tmp_path / "s.pt"), "--prune-ratio", ratio]) == 2
    assert capsys.readouterr().err == (f"error: --prune-ratio {float(ratio)}; expected 0 <= prune_ratio < 1 "
                                       "(1 removes every channel)\n")


def test_a_negative_feedback_fraction_is_told_both_bounds(tmp_path, capsys):
    FeedbackLog(tmp_path / "fb.sqlite").close()
    with pytest.raises(InputError) as info:
        export_label_csv(tmp_path / "fb.sqlite", tmp_path / "x.csv", valid=-0.1)
    assert str(info.value) == "valid = -0.1; expected 0 <= valid < 1 (a fraction of the rows, with valid + test < 1)"
    assert main(["feedback", "export", str(tmp_path / "fb.sqlite"), "--out", str(tmp_path / "x.csv"),
                 "--test", "-0.1"]) == 2
    assert capsys.readouterr().err == ("error: --test -0.1; expected 0 <= test < 1 (a fraction of the rows, with "
                                       "valid + test < 1)\n")
    assert not (tmp_path / "x.csv").exists()
