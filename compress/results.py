"""What `compress` found, typed: each seed's stages (SeedRun), each seed's student on the test split (SeedTest),
the kept student measured against the teacher (Measurements), and CompressReport, which renders them ONCE into
the layout of `student.report.json`; the JSON file and the Markdown view are both written from that one dict."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_msa.benchmarks.timing import SIDE_BY_SIDE
from edge_msa.data.base import DatasetSplits
from edge_msa.data.lineage import lineage
from edge_msa.host import training_host
from edge_msa.jsonio import dumps
from edge_msa.metrics import mean_std
from edge_msa.models.with_text import StudentModel
from edge_msa.teacher import SELECTION

from .measure import difference
from .options import CompressOptions
from .report import NOTHING_TO_SKIP, SKIP_TARGETS, render_markdown, target_table

REPORT_FORMAT = "edge-msa-compress-report-v1"
SKIP_SAVING_NOTE = ("saved_fraction (net) = (encoder MACs skipped - gate MACs) / encoder MACs if every present "
                    "audio/video ran (test); saved_fraction_gross leaves the gate out. The gate sees only h_text + "
                    "presence, so on raw media a skip also saves the audio/video front end (not counted here)")


@dataclass
class SeedRun:
    """Stages init..gate of one seed: the student they made and what each stage did."""

    seed: int
    student: StudentModel
    valid_mae: float
    copied: dict[str, int]  # teacher tensors copied into the student, per module
    pruning: dict[str, Any]
    gate: dict[str, Any]
    calibration: dict[str, Any]  # skip thresholds and what they reach on the calibration split
    macs_per_step: dict[str, float]
    history: dict[str, int]  # epochs run per training stage
    checkpoints: list[Path]  # one per stage, in stage order


@dataclass
class SeedTest:
    """One seed's student on the test split, without and with modality skipping."""

    seed: int
    valid_mae: float
    pred: np.ndarray  # (N,) scores, every present modality run
    pred_skip: np.ndarray  # (N,) scores under the calibrated skip rule
    metrics: dict[str, Any]
    metrics_skip: dict[str, Any]
    skip: dict[str, Any]  # skip rates and encoder MACs saved (skip.skip_stats)

    def row(self) -> dict[str, Any]:
        return {"seed": self.seed, "valid_mae": self.valid_mae, "student": self.metrics,
                "student_skip": self.metrics_skip, "skip": self.skip}


@dataclass
class Measurements:
    """The teacher against the kept student on the test split."""

    teacher_metrics: dict[str, Any]
    teacher_count: dict[str, Any]  # params, MACs per input (mean over test), per part
    student_count: dict[str, Any]
    student_parts: dict[str, Any]  # params / MACs per exported part
    text_front_end: dict[str, Any]  # the frozen front end both share (measure.text_front_end_params)
    latency: dict[str, Any]  # teacher | student | student_skip -> percentiles (measure.latency)
    compare: dict[str, Any]  # paired bootstraps
    end_to_end: dict[str, Any]  # raw string -> score counts; {} with frozen text features


def select_seed(runs: list[SeedRun]) -> SeedRun:
    """The seed `compress` keeps: the lowest validation MAE as teacher.SELECTION defines it (the first of equals)."""
    return min(runs, key=lambda r: r.valid_mae)


@dataclass
class CompressReport:
    """Everything the report says, as the pipeline produced it; `to_dict` is the one place it becomes JSON."""

    out: Path
    teacher_path: Path
    teacher_name: str
    options: CompressOptions
    splits: DatasetSplits
    runs: list[SeedRun]
    best: SeedRun  # select_seed(runs)
    tests: list[SeedTest]  # tests[i] is runs[i] on the test split
    measured: Measurements
    text_encoder: dict[str, Any]
    stage_seconds: dict[str, float]
    total_seconds: float

    @property
    def chosen(self) -> SeedTest:
        """The kept seed's test results (`tests` holds one per run, in the same order)."""
        return self.tests[self.runs.index(self.best)]

    def to_dict(self) -> dict[str, Any]:
        """The report in the layout of student.report.json (README and tests read these keys)."""
        best, chosen, m = self.best, self.chosen, self.measured
        not_applicable = self._not_applicable()
        return {
            "format": REPORT_FORMAT,
            "out": str(self.out),
            "options": self.options.to_dict(),
            "data": {**lineage(self.splits), "name": self.splits.name, "missing": self.splits.info["missing"],
                     "sizes": {name: len(getattr(self.splits, name)) for name in ("train", "valid", "test")}},
            "teacher": {"path": str(self.teacher_path), "name": self.teacher_name, **self._size(m.teacher_count),
                        **_percentiles(m.latency["teacher"]), "metrics": m.teacher_metrics},
            "student": {"name": best.student.model_name, "seed": best.seed, **self._size(m.student_count),
                        "export_parts": m.student_parts, "config": dict(best.student.config_params),
                        **_percentiles(m.latency["student"]), "metrics": chosen.metrics},
            "student_skip": {**_percentiles(m.latency["student_skip"]), "metrics": chosen.metrics_skip},
            "skip": self._skip(),
            "text_front_end": {**m.text_front_end, "included_in_params": False,
                               "note": "frozen, shared by teacher and student; params_with_text_front_end adds it"},
            "latency": self._latency(),
            "end_to_end": m.end_to_end,
            "text_encoder": self.text_encoder,
            "compare": m.compare,
            "seeds": self._seeds(),
            "init": {"copied_tensors": best.copied,
                     "note": "student <- teacher tensors copied where names and shapes match; the rest from scratch"},
            "pruning": {"ratio": self.options.prune_ratio,
                        "tool": "torch-pruning MetaPruner, GroupMagnitudeImportance(p=2)", **best.pruning},
            "stages": {"checkpoints": [str(path) for r in self.runs for path in r.checkpoints],
                       "history": {str(r.seed): r.history for r in self.runs}},
            "timing": {"stages_s": self.stage_seconds, "total_s": self.total_seconds, "host": training_host()},
            "targets": target_table(self._target_values(), end_to_end=bool(m.end_to_end),
                                    not_applicable=tuple(not_applicable)),
            "targets_not_applicable": not_applicable,
        }

    def _size(self, count: dict[str, Any]) -> dict[str, Any]:
        front = self.measured.text_front_end["params"]
        return {"params": count["params"], "params_with_text_front_end": count["params"] + front if front else None,
                "macs": count["macs"], "parts": count["parts"]}

    def _skip(self) -> dict[str, Any]:
        stats, best = self.chosen.skip, self.best
        return {"thresholds": best.calibration["thresholds"],
                **{k: stats[k] for k in ("rate", "saved_fraction", "saved_fraction_gross", "encoder_macs_skipped",
                                         "gate_macs", "encoder_macs_possible")},
                "calibration": best.calibration, "gate": best.gate, "macs_per_step": best.macs_per_step,
                "saved_counts": SKIP_SAVING_NOTE}

    def _latency(self) -> dict[str, Any]:
        options = self.options
        return {"backend": "torch CPU (eager)", "threads": options.latency_threads, "batch": 1,
                "train_threads": options.threads, "calls": options.latency_calls,
                "inputs": "test split, one utterance per call", "timing": SIDE_BY_SIDE,
                "text_front_end": ("from the raw transcript: tokenizer + text encoder timed in every call"
                                   if self.measured.end_to_end else
                                   "text features precomputed: the shared MiniLM front end is not timed"),
                "torch": torch.__version__, "results": self.measured.latency}

    def _seeds(self) -> dict[str, Any]:
        return {"values": list(self.options.seeds), "selected": self.best.seed, "selection": f"lowest {SELECTION}",
                "per_seed": [t.row() for t in self.tests],
                "mean_std": {"student": mean_std([t.metrics for t in self.tests]),
                             "student_skip": mean_std([t.metrics_skip for t in self.tests])}}

    def _not_applicable(self) -> dict[str, str]:
        """Targets with nothing to judge, and why: on text-only data (MOSEI-T) the gate never has audio or video to
        skip, and the skip targets read as missed although there was nothing to save."""
        if self.chosen.skip["encoder_macs_possible"] > 0:
            return {}
        return {name: NOTHING_TO_SKIP for name in SKIP_TARGETS}

    def _target_values(self) -> dict[str, float | None]:
        m, student, skip = self.measured, self.chosen.metrics, self.chosen.metrics_skip
        return {
            "param_reduction": m.teacher_count["params"] / m.student_count["params"],
            "student_acc2_non0": student["acc2_non0"],
            "latency_speedup": m.latency["teacher"]["p50"] / m.latency["student"]["p50"],
            "acc2_non0_drop": difference(m.teacher_metrics["acc2_non0"], student["acc2_non0"]),
            "mae_rise": student["mae"] - m.teacher_metrics["mae"],
            "skip_saved_fraction": self.chosen.skip["saved_fraction"],
            "skip_extra_acc2_drop": difference(student["acc2_non0"], skip["acc2_non0"]),
            "runtime_minutes": self.total_seconds / 60,
        }

    def render(self) -> tuple[dict[str, Any], str, str]:
        """The report dict and the texts of its JSON file and Markdown view, both from that one dict. Rendered before
        the pipeline writes anything, so that a rendering error cannot leave a new student.pt beside no report."""
        report = self.to_dict()
        return report, dumps(report, indent=2) + "\n", render_markdown(report)


def _percentiles(latency: dict[str, float]) -> dict[str, float]:
    return {"latency_ms_p50": latency["p50"], "latency_ms_p90": latency["p90"]}
