"""Report rendering: the target table (each target, its value, met, and by how much when missed) and
the Markdown view of the JSON report. Results are data; Markdown is rendered from them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from edge_msa.data.lineage import recorded_fold
from edge_msa.metrics import METRIC_KEYS


@dataclass(frozen=True)
class Target:
    """One compression target in both settings: with frozen text features (`limit`) and with the text encoder
    inside both models, counted end to end from the raw string (`limit_end_to_end`, issue 9); a limit of None
    means the target does not apply in that setting. "min": value must be >= limit; "max": <= limit."""

    what: str
    direction: str
    limit: float | None
    limit_end_to_end: float | None
    what_end_to_end: str | None = None  # when the value is counted differently end to end

    def row(self, value: float | None, end_to_end: bool) -> dict[str, Any]:
        """The target table row for `value` (None: not measured, so not met)."""
        what = (self.what_end_to_end or self.what) if end_to_end else self.what
        limit = self.limit_end_to_end if end_to_end else self.limit
        assert limit is not None  # target_table leaves out the targets that do not apply in this setting
        met = value is not None and (value >= limit if self.direction == "min" else value <= limit)
        missed = None if met or value is None else float(limit - value if self.direction == "min" else value - limit)
        return {"what": what, "limit": limit, "direction": self.direction,
                "value": None if value is None else float(value), "met": bool(met), "missed_by": missed}


TARGETS: dict[str, Target] = {
    "param_reduction": Target("teacher params / student params (shared frozen text front end excluded)", "min",
                              20.0, 5.0, "teacher params / student params, end to end (embeddings included)"),
    "latency_speedup": Target("teacher p50 / student p50, torch CPU, batch 1", "min", 10.0, 5.0,
                              "teacher p50 / student p50 from the raw string, torch CPU, batch 1"),
    "acc2_non0_drop": Target("teacher - student Acc-2 non-0 (no skipping)", "max", 0.010, 0.015),
    "student_acc2_non0": Target("student Acc-2 non-0 (no skipping)", "min", None, 0.815),
    "mae_rise": Target("student - teacher MAE (no skipping)", "max", 0.03, 0.05),
    "skip_saved_fraction": Target("audio+video encoder MACs saved by skipping, net of the gate's MACs (test)", "min",
                                  0.45, 0.45),
    "skip_extra_acc2_drop": Target("student - student_skip Acc-2 non-0", "max", 0.005, 0.005),
    "runtime_minutes": Target("compress wall time in minutes", "max", 15.0, None),
}


SKIP_TARGETS = ("skip_saved_fraction", "skip_extra_acc2_drop")  # judge the gate: nothing to judge without audio/video
NOTHING_TO_SKIP = "the test split has no audio or video, so the gate has nothing to skip"


def target_table(values: Mapping[str, float | None], end_to_end: bool = False,
                 not_applicable: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Each target that applies in this setting (see Target), in TARGETS order, judged on `values`; the ones named
    in `not_applicable` are left out (the report lists them apart, so they read neither met nor missed)."""
    return {name: target.row(values.get(name), end_to_end) for name, target in TARGETS.items()
            if (target.limit_end_to_end if end_to_end else target.limit) is not None and name not in not_applicable}


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _diff_ci(boot: dict[str, Any], resamples: int | None = None) -> str:
    """One `measure.paired_bootstrap` entry as "+0.0100 [-0.0200, +0.0400]"; Acc-2 non-0 is undefined on resamples
    whose labels are all 0, so it says how many it kept when that is not all of them, and n/a for none."""
    if boot["diff"] is None:
        return "n/a (every label is 0)"
    ci = "n/a" if boot["ci95"] is None else f"[{boot['ci95'][0]:+.4f}, {boot['ci95'][1]:+.4f}]"
    kept = f" over {boot['resamples']} resamples with a non-0 label" if resamples not in (None, boot["resamples"]) \
        else ""
    return f"{boot['diff']:+.4f} {ci}{kept}"


def render_markdown(report: dict[str, Any]) -> str:
    t, s, k = report["teacher"], report["student"], report["student_skip"]
    fold = recorded_fold(report["data"])
    held_out = (f" Cross-validation fold {fold[0]}/{fold[1]}: \"test\" below is the fold's held-out part of "
                "train + valid; the dataset's test split was not read." if fold else "")
    lines = ["# edge-msa compress report", "",
             f"Teacher `{t['path']}` ({t['name']}) → student `{report['out']}`; data `{report['data']['path']}` "
             f"(test n={report['data']['sizes']['test']}); seeds {report['seeds']['values']}; "
             f"wall time {report['timing']['total_s'] / 60:.1f} min.{held_out}", "",
             "## Size and speed", "",
             "| | params | params + text front end | MACs / input | latency p50 ms | p90 ms |",
             "|---|---|---|---|---|---|"]
    for name, row in (("teacher", t), ("student", s)):
        lines.append(f"| {name} | {row['params']:,} | {_fmt(row.get('params_with_text_front_end'))} | "
                     f"{row['macs']:,.0f} | {row['latency_ms_p50']:.3f} | {row['latency_ms_p90']:.3f} |")
    lat = report["latency"]
    lines += ["", f"Latency: {lat['backend']}, {lat['threads']} thread(s), batch 1, {lat['calls']} calls per model "
              f"on real test inputs, {lat.get('timing', 'interleaved call by call')}; {lat['text_front_end']}.", "",
              "## Accuracy (test)", "", "| | " + " | ".join(METRIC_KEYS) + " |",
              "|---|" + "---|" * len(METRIC_KEYS)]
    for name, row in (("teacher", t), ("student", s), ("student + skipping", k)):
        lines.append(f"| {name} | " + " | ".join(_fmt(row["metrics"][m]) for m in METRIC_KEYS) + " |")
    boot = report["compare"]["teacher_minus_student"]
    lines += ["", f"Paired bootstrap (teacher − student, 95% CI, {boot['mae']['resamples']} resamples): "
              f"Acc-2 non-0 {_diff_ci(boot['acc2_non0'], boot['mae']['resamples'])}, MAE {_diff_ci(boot['mae'])}."]
    if len(report["seeds"]["values"]) > 1:
        lines += ["", "Across seeds (mean ± std): " + "; ".join(
            f"{name} {m} {v['mean']:.4f} ± {v['std']:.4f}" for name, rows in report["seeds"]["mean_std"].items()
            for m, v in rows.items() if m in ("acc2_non0", "mae")) + ".",
            "Per seed, Acc-2 non-0 lost to skipping / encoder MACs saved (net): " + "; ".join(
                f"seed {r['seed']} {100 * (r['student']['acc2_non0'] - r['student_skip']['acc2_non0']):.2f} pt / "
                f"{r['skip']['saved_fraction']:.1%}" for r in report["seeds"]["per_seed"]) + "."]
    sk = report["skip"]
    lines += ["", "## Modality skipping", "",
              f"Thresholds (audio, video) = {sk['thresholds']} chosen on {sk['calibration']['split']} "
              f"(n={sk['calibration']['n']}, label-free: polarity flips vs the full student) for "
              f"{sk['calibration']['mode']} = {sk['calibration']['value']}; "
              f"test skip rate audio {sk['rate']['audio']:.3f}, video "
              f"{sk['rate']['video']:.3f}; audio+video encoder MACs saved {sk['saved_fraction_gross']:.3f} gross, "
              f"{sk['saved_fraction']:.3f} net of the gate ({sk['gate_macs']:,.0f} gate MACs vs "
              f"{sk['encoder_macs_skipped']:,.0f} encoder MACs skipped of {sk['encoder_macs_possible']:,.0f}).", "",
              "## Compression", "",
              f"Sharing `{s['config']['share']}` ({s['config']['sharing']}); "
              f"pruning ratio {report['pruning']['ratio']}: "
              f"{report['pruning']['before']} → {report['pruning']['after']}.",
              "Initialised from the teacher: " + (", ".join(f"{k} ({n} tensors)" for k, n in
                                                       report["init"]["copied_tensors"].items())
                                             or "nothing (no matching names and shapes)") + ".",
              "", "## Targets", "", "| target | value | limit | met | missed by |", "|---|---|---|---|---|"]
    for name, row in report["targets"].items():
        lines.append(f"| {name}: {row['what']} | {_fmt(row['value'])} | "
                     f"{'≥' if row['direction'] == 'min' else '≤'} {row['limit']} | "
                     f"{'yes' if row['met'] else 'NO'} | {_fmt(row['missed_by'])} |")
    lines += [f"\nNot applicable: {name} ({why})." for name, why in report.get("targets_not_applicable", {}).items()]
    return "\n".join(lines) + "\n"
