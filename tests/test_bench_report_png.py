"""report.png stays readable when bundles sit close together: points are named in a legend beside the axes,
so no two texts in the figure overlap and the legend covers no point."""
from __future__ import annotations

from itertools import combinations

import pytest

from edge_msa.benchmarks.report import render_png
from edge_msa.errors import InputError

plt = pytest.importorskip("matplotlib.pyplot", reason="report.png needs the [plot] extra")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402 (after the skip)


def _row(bundle: str, modalities: str, p90: float, acc: float, precision: str) -> dict:
    return {"bundle": f"/bundles/{bundle}", "status": "ok", "batch": 1, "modalities": modalities,
            "precision": precision, "latency_ms": {"p90": p90}, "metrics": {"acc2_non0": acc}}


CLOSE_ROWS = [_row("student-int8", "all", 2.00, 0.781, "int8"), _row("student-fp32", "all", 2.02, 0.782, "fp32"),
              _row("student-int8", "text", 1.50, 0.770, "int8"), _row("student-fp32", "text", 1.51, 0.770, "fp32"),
              _row("teacher", "all", 40.0, 0.800, "fp32")]


@pytest.fixture
def drawn(tmp_path, monkeypatch):
    """(the PNG path, the figure render_png drew) for CLOSE_ROWS: plt.close is wrapped to keep the figure."""
    figures = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (figures.append(fig), close(fig)))
    path = tmp_path / "report.png"
    assert render_png({"rows": CLOSE_ROWS}, path) is None
    return path, figures[-1]


def test_png_is_written(drawn):
    path, _ = drawn
    png = path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_points_are_named_in_a_legend_not_by_annotations(drawn):
    _, fig = drawn
    ax = fig.axes[0]
    assert not ax.texts  # no text drawn next to the points
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "student-int8 [all] int8" in labels and "student-fp32 [all] fp32" in labels and "Pareto front" in labels
    assert len(labels) == len(CLOSE_ROWS) + 1


def test_no_texts_overlap_and_the_legend_is_beside_the_axes(drawn):
    """Every text we place (title, axis labels, legend entries; tick labels are matplotlib's own) is clear of the
    others, and the legend sits right of the axes and their tick labels, so it hides no point."""
    _, fig = drawn
    canvas = FigureCanvasAgg(fig)  # the closed figure has no canvas of its own any more
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    ticks = {*ax.get_xticklabels(), *ax.get_yticklabels(), *ax.get_xminorticklabels(), *ax.get_yminorticklabels()}
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in fig.findobj(plt.Text)
             if t.get_visible() and t.get_text().strip() and t not in ticks]
    assert len(boxes) >= len(CLOSE_ROWS) + 4  # the entries, Pareto front, title and two axis labels
    assert not [(a, b) for (a, box_a), (b, box_b) in combinations(boxes, 2) if box_a.overlaps(box_b)]
    axes_and_ticks = ax.get_tightbbox(renderer, bbox_extra_artists=[])  # without the legend
    assert ax.get_legend().get_window_extent(renderer).x0 >= axes_and_ticks.x1


def test_bundles_sharing_a_folder_name_stay_tellable_apart(tmp_path, monkeypatch):
    """`bench runs/a/student runs/b/student` named both rows 'student' in every table and legend entry."""
    from edge_msa.benchmarks.report import render_markdown

    rows = [{**_row("student", "all", 2.0, 0.78, "fp32"), "bundle": f"runs/{run}/student"} for run in ("a", "b")]
    rows = [{**r, "throughput": 500.0} for r in rows + [_row("teacher", "all", 40.0, 0.80, "fp32")]]
    md = render_markdown({"rows": rows})
    assert "| runs/a/student | " in md and "| runs/b/student | " in md and "| teacher | " in md
    assert "## Ratios vs the first bundle (runs/a/student)" in md
    figures = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (figures.append(fig), close(fig)))
    assert render_png({"rows": rows}, tmp_path / "report.png") is None
    labels = [t.get_text() for t in figures[-1].axes[0].get_legend().get_texts()]
    assert labels[:3] == ["runs/a/student [all] fp32", "runs/b/student [all] fp32", "teacher [all] fp32"]


def test_ratios_compare_only_rows_timed_from_the_same_input():
    """A bundle whose data has no transcripts is timed from text features: against a raw-text first bundle its
    'speed-up' counted the tokenizer and text encoder it never ran (report.md and --compare alike)."""
    from edge_msa.benchmarks import compare_reports
    from edge_msa.benchmarks.report import render_markdown

    raw = {**_row("teacher", "all", 40.0, 0.80, "fp32"), "throughput": 25.0, "input": "raw-text"}
    rows = [raw, {**raw, "bundle": "/bundles/student", "input": "precomputed-text"},
            {**raw, "bundle": "/bundles/student-int8"}]
    md = render_markdown({"rows": rows})
    assert "| student-int8 | 1 | all |" in md and "| student | 1 | all |" not in md.split("## Ratios")[1]
    with pytest.raises(InputError, match="same batch size, modalities and input"):
        compare_reports({"rows": rows[:1]}, {"rows": rows[1:2]})
