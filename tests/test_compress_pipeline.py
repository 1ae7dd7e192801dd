"""compress() end to end on a tiny teacher: report keys, a smaller student that rebuilds, skip calibration,
and one-line errors for bad teachers / mismatched data (with nothing written)."""
from __future__ import annotations

import json
import re

import pytest
import torch

from edge_msa.compress import CompressOptions, compress, report_paths
from edge_msa.checkpoint import load_checkpoint, save_checkpoint
from edge_msa.data.base import DatasetSplits
from edge_msa.errors import ArtifactError, InputError
from edge_msa.compress.report import NOTHING_TO_SKIP, SKIP_TARGETS
from edge_msa.metrics import METRIC_KEYS, msa_metrics
from edge_msa.models import create_model
from edge_msa.spec import FeatureSpec
from edge_msa.training import TrainConfig, fit, predict

from conftest import make_featureset

FAST = dict(student="student_tiny", epochs=2, finetune_epochs=2, gate_epochs=3, latency_calls=20, bootstrap=50)
REQUIRED = ("teacher.params", "student.params", "teacher.latency_ms_p50", "student.latency_ms_p50", "teacher.metrics",
            "student.metrics", "student_skip.metrics", "skip.saved_fraction", "skip.rate", "targets")


@pytest.fixture
def tiny_splits(tiny_splits, tiny_spec) -> DatasetSplits:
    """conftest's tiny_splits with its test split at two length tuples: a compress report counts MACs once per
    distinct length tuple of the test split (torch-pruning copies the whole model for each count), and the ~28
    tuples of random lengths were ~85% of each run here. Train and valid, which the stages fit and calibrate on,
    are conftest's; mean_over_inputs' weighting of many tuples is tests/test_compress_measure.py's."""
    tiny_splits.test = make_featureset(tiny_spec, len(tiny_splits.test), 2, two_lengths=True)
    return tiny_splits


@pytest.fixture
def teacher(tiny_splits, tmp_path):
    torch.manual_seed(0)
    model = create_model("student_tiny", tiny_splits.spec)
    fit(model, tiny_splits.train, tiny_splits.valid, TrainConfig(epochs=2), progress=False)
    return save_checkpoint(tmp_path / "teacher.pt", model, {"dataset": "tiny"})


def _get(report, dotted):
    node = report
    for key in dotted.split("."):
        node = node[key]
    return node


def test_end_to_end(teacher, tiny_splits, tmp_path):
    out = tmp_path / "run" / "student.pt"
    report = compress(teacher, out=out, splits=tiny_splits, progress=False, **FAST)
    for key in REQUIRED:
        assert _get(report, key) is not None, key
    for key in ("teacher.metrics", "student.metrics", "student_skip.metrics"):
        assert set(_get(report, key)) == {*METRIC_KEYS, "collapsed"}
    assert set(report["skip"]["rate"]) == {"audio", "video"}
    assert all(isinstance(row["met"], bool) for row in report["targets"].values())
    # written: student, both reports, one checkpoint per stage
    json_path, md_path = report_paths(out)
    assert json.loads(json_path.read_text())["student"]["params"] == report["student"]["params"]
    assert "## Targets" in md_path.read_text()
    for stage in ("init", "distill", "prune", "finetune", "gate"):
        assert (out.parent / "student.stages" / f"{stage}.pt").is_file()
    # the pruned student is smaller than an unpruned one and rebuilds from its checkpoint alone
    unpruned = sum(p.numel() for p in create_model("student_tiny", tiny_splits.spec).parameters())
    student, meta = load_checkpoint(out)
    assert sum(p.numel() for p in student.parameters()) == report["student"]["params"] < unpruned
    assert student.config_params["skip_thresholds"] == report["skip"]["thresholds"] == meta["skip_thresholds"]
    again = msa_metrics(predict(student, tiny_splits.test), tiny_splits.test.labels)
    assert again["mae"] == pytest.approx(report["student"]["metrics"]["mae"], abs=1e-6)
    calib = report["skip"]["calibration"]
    assert calib["reached"] and calib["saved_fraction"] >= 0.5  # default budget, on the calibration split
    assert calib["split"] == "valid" and calib["n"] == len(tiny_splits.valid)  # the default, chosen on validation
    # the saving is reported net of the gate's own MACs (gate runs on every input with audio or video)
    sk = report["skip"]
    n_av = int(((tiny_splits.test.lengths["audio"] > 0) | (tiny_splits.test.lengths["video"] > 0)).sum())
    assert sk["gate_macs"] > 0
    assert sk["gate_macs"] == pytest.approx(n_av * report["student"]["export_parts"]["gate"]["macs"])
    assert sk["saved_fraction"] == pytest.approx(
        (sk["encoder_macs_skipped"] - sk["gate_macs"]) / sk["encoder_macs_possible"])
    assert sk["saved_fraction"] < sk["saved_fraction_gross"]
    assert sk["saved_fraction_gross"] == pytest.approx(sk["encoder_macs_skipped"] / sk["encoder_macs_possible"])


def test_skip_targets_do_not_apply_to_text_only_data(teacher, tiny_splits, tmp_path):
    """On MOSEI-T (no audio or video) every compress run printed "targets missed: skip_saved_fraction": the gate had
    nothing to skip, which is not a target missed."""
    for fs in (tiny_splits.train, tiny_splits.valid, tiny_splits.test):
        for m in ("audio", "video"):
            fs.lengths[m][:] = 0  # missing, as a text-only reader gives them
    out = tmp_path / "student.pt"
    report = compress(teacher, out=out, splits=tiny_splits, progress=False, **FAST)
    assert report["targets_not_applicable"] == {name: NOTHING_TO_SKIP for name in SKIP_TARGETS}
    assert not set(SKIP_TARGETS) & set(report["targets"]) and "mae_rise" in report["targets"]
    assert f"Not applicable: skip_saved_fraction ({NOTHING_TO_SKIP})." in report_paths(out)[1].read_text()


def test_skip_flags_on_text_only_data_are_named_up_front(teacher, tiny_splits, tmp_path, monkeypatch):
    """--skip-budget / --max-drop / --calibrate-on change nothing without audio or video; only the report's "not
    applicable" said so, at the end of the run. The warning comes before any training (stopped here at the next
    step), and not for defaults or for data that has audio or video."""
    import warnings

    class Stop(Exception):
        pass

    def stop(*args):
        raise Stop

    for step in ("_text_stage", "_one_seed"):  # the next steps, whichever text encoder the teacher has
        monkeypatch.setattr(f"edge_msa.compress.pipeline.{step}", stop)
    run = dict(teacher_path=teacher, out=tmp_path / "s.pt", splits=tiny_splits, progress=False, **FAST)
    with warnings.catch_warnings(), pytest.raises(Stop):
        warnings.simplefilter("error")  # audio and video present: nothing to say
        compress(**run, skip_budget=0.3, calibrate_on="train+valid")
    for fs in (tiny_splits.train, tiny_splits.valid, tiny_splits.test):
        for m in ("audio", "video"):
            fs.lengths[m][:] = 0
    with pytest.warns(UserWarning, match="^skip_budget = 0.3, calibrate_on = 'train\\+valid' change nothing: the data "
                                         "has no audio or video"), pytest.raises(Stop):
        compress(**run, skip_budget=0.3, calibrate_on="train+valid")
    with warnings.catch_warnings(), pytest.raises(Stop):
        warnings.simplefilter("error")  # the defaults: nothing to say
        compress(**run)


def test_max_drop_on_validation_flips_nothing(teacher, tiny_splits, tmp_path):
    report = compress(teacher, out=tmp_path / "s.pt", splits=tiny_splits, progress=False, max_drop=0.0,
                      calibrate_on="train+valid", seeds=(0, 1), **FAST)
    calib = report["skip"]["calibration"]
    assert calib["split"] == "train+valid" and calib["n"] == len(tiny_splits.train) + len(tiny_splits.valid)
    assert calib["flip_rate"] <= 0.0 and calib["acc2_non0_drop"] <= 0.0
    assert report["seeds"]["values"] == [0, 1] and set(report["seeds"]["mean_std"]["student"]) == set(METRIC_KEYS)
    assert (tmp_path / "s.stages" / "gate.seed1.pt").is_file()
    assert not list(tmp_path.glob("s.stage-*"))  # no stage files beside the output
    md = (tmp_path / "s.report.md").read_text()
    per_seed = next(line for line in md.splitlines() if line.startswith("Per seed, Acc-2 non-0 lost to skipping"))
    assert "seed 0 " in per_seed and "seed 1 " in per_seed


def test_feature_spec_mismatch_names_modality(teacher, tiny_splits, tmp_path):
    spec = FeatureSpec(dims=(12, 6, 7), max_lens=(9, 3, 4))
    other = DatasetSplits(spec, make_featureset(spec, 16), make_featureset(spec, 8, 1), make_featureset(spec, 8, 2))
    with pytest.raises(InputError, match=r"audio features .* 6-dim .* model expects 5-dim"):
        compress(teacher, out=tmp_path / "out" / "s.pt", splits=other, progress=False, **FAST)
    assert not (tmp_path / "out").exists()


def test_a_split_too_small_to_score_is_refused_before_any_stage(teacher, tiny_splits, tmp_path):
    """An all-0 validation split (a small label.csv) reached the skip calibration, whose Acc-2 drop was None - None."""
    all_zero = make_featureset(tiny_splits.spec, 3)
    all_zero.labels[:] = 0.0
    for valid, test, message in ((tiny_splits.valid, make_featureset(tiny_splits.spec, 0), "split 'test' of tiny "
                                  "holds 0 labelled rows; expected at least 2 in each of train, valid and test"),
                                 (all_zero, tiny_splits.test, "split 'valid' of tiny holds 3 labelled rows, all 0;")):
        splits = DatasetSplits(tiny_splits.spec, tiny_splits.train, valid, test, name="tiny")
        with pytest.raises(InputError, match=f"^{re.escape(message)}"):
            compress(teacher, out=tmp_path / "out" / "s.pt", splits=splits, progress=False, **FAST)
        assert not (tmp_path / "out").exists()


def test_a_prune_ratio_that_would_empty_a_group_is_refused_before_any_stage(teacher, tiny_splits, tmp_path):
    """student_tiny has 2 heads per block: 0.6 removes ceil(1.2) = 2, which torch-pruning skipped silently after the
    whole distillation stage had run. Named as its caller gave it: the keyword in Python, the flag from the CLI
    (named_as_flags); it said --prune-ratio to both."""
    from edge_msa.errors import named_as_flags

    with pytest.raises(InputError, match=r"^prune_ratio = 0.6 would remove all 2 heads .* expected a ratio <= 0.5"):
        compress(teacher, out=tmp_path / "out" / "s.pt", splits=tiny_splits, progress=False, prune_ratio=0.6, **FAST)
    with named_as_flags(["prune_ratio"]), pytest.raises(InputError, match=r"^--prune-ratio 0.6 would remove all 2 "):
        compress(teacher, out=tmp_path / "out" / "s.pt", splits=tiny_splits, progress=False, prune_ratio=0.6, **FAST)
    assert not (tmp_path / "out").exists()


class Evil:
    pass


def test_pickled_teacher_is_refused(tiny_splits, tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"config": Evil(), "feature_spec": {}, "state_dict": {}}, path)
    with pytest.raises(ArtifactError, match="weights_only"):
        compress(path, out=tmp_path / "out" / "s.pt", splits=tiny_splits, progress=False, **FAST)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad, match", [({"prune_ratio": 1.0}, "prune_ratio"), ({"prune_ratio": -0.1}, "prune_ratio"),
                                        ({"skip_budget": -0.2}, "skip_budget = -0.2; expected 0 <= skip_budget <= 1"),
                                        ({"skip_budget": 0.5, "max_drop": 0.01}, "both"),
                                        ({"share": "everywhere"}, "share"), ({"prune": 0.5}, "did you mean"),
                                        ({"text_score_epochs": -1}, "text_score_epochs = -1; expected >= 0"),
                                        ({"text_lr": 0.0}, "text_lr = 0.0"),
                                        ({"kd_weight": float("nan")}, "kd_weight = nan"),  # not a torch error mid-run
                                        ({"temperature": float("inf")}, "temperature = inf; expected a finite"),
                                        ({"text_kd_lr": -1.0}, "text_kd_lr = -1.0; expected > 0"),
                                        ({"text_relation_kd": -0.5}, "text_relation_kd = -0.5; expected >= 0"),
                                        ({"text_relation_kd": 1.0, "text_kd_epochs": 0},
                                         "relation KD is part of the layer-wise KD step"),
                                        ({"text_kd_lr": 1e-3, "text_kd_epochs": 0},  # silently unused before
                                         r"^text_kd_lr = 0.001 with text_kd_epochs = 0; it is the layer-wise KD "
                                         r"step's learning rate, which 0 epochs turn off, so expected text_kd_epochs "
                                         r"> 0 or no text_kd_lr$"),
                                        # each was accepted before and did nothing, or less than asked
                                        ({"kd_weight": 0.0, "temperature": 4.0},
                                         "temperature = 4.0 with kd_weight = 0"),
                                        ({"kd_weight": 0.0, "hint_weight": 0.0, "label_weight": 0.0},
                                         "all 0, so the student would learn nothing"),
                                        ({"text_rank": 300}, "text_rank = 300 with text_hidden = 256; .* rank <= 256"),
                                        ({"text_shared": True, "text_layers": 1}, "text_shared with text_layers = 1"),
                                        # TrainConfig's rule (check_max_minutes): '5' was a bare TypeError, True
                                        # a limit of 1 minute
                                        ({"max_minutes": 0}, r"^max_minutes = 0; expected > 0 \(inf: no limit\)$"),
                                        ({"max_minutes": "5"}, "max_minutes = '5'; expected a number > 0"),
                                        ({"max_minutes": True}, "max_minutes = True; expected a number > 0"),
                                        ({"max_minutes": float("nan")}, "max_minutes = nan"),
                                        ({"transfer": "MOSEI.csv"},  # found only after the teacher's pass over train
                                         "transfer = 'MOSEI.csv' is not a file; expected 'mosei', 'none' or the path")])
def test_bad_options(bad, match):
    with pytest.raises(InputError, match=match):
        CompressOptions.build(**bad)


def test_a_step_knob_is_refused_only_when_given_with_its_step_off():
    CompressOptions.build(text_kd_epochs=0)  # text_kd_lr at its default: nothing the user gave goes unused
    CompressOptions.build(text_kd_epochs=2, text_kd_lr=1e-3)
    CompressOptions.build(text_score_epochs=0, text_kd_epochs=0, text_lr=2e-4)  # also the rate of distill/finetune


def test_options_and_overrides_together_are_refused(tmp_path):
    with pytest.raises(TypeError, match="epochs"):  # the overrides were silently dropped before
        compress(tmp_path / "t.pt", out=tmp_path / "s.pt", options=CompressOptions(), epochs=1)


def test_fit_keep_start_never_ends_worse_than_it_began(tiny_splits):
    torch.manual_seed(0)
    model = create_model("student_tiny", tiny_splits.spec)
    fit(model, tiny_splits.train, tiny_splits.valid, TrainConfig(epochs=3), progress=False)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    ruin = TrainConfig(epochs=2, lr=50.0, grad_clip=0.0, seed=1)  # steps this large only make validation worse
    res = fit(model, tiny_splits.train, tiny_splits.valid, ruin, progress=False, keep_start=True)
    assert res.best_epoch == -1 and min(h["valid_mae"] for h in res.history) > res.best_valid_mae
    assert all(torch.equal(start[k], v) for k, v in model.state_dict().items())
    lost = fit(model, tiny_splits.train, tiny_splits.valid, ruin, progress=False)
    assert lost.best_epoch >= 0 and lost.best_valid_mae > res.best_valid_mae


def test_stage_files_are_told_apart_from_an_earlier_or_unfinished_run(teacher, tiny_splits, tmp_path, monkeypatch):
    """Stage files of another run into the same --out (other seeds; a recipe interrupted after its gate stage) sat
    beside student.pt, and selection_gap silently scored them as that student's per-seed students."""
    import edge_msa.compress.pipeline as pipeline
    from edge_msa.compress.pipeline import SEED_STUDENTS, stage_files
    from edge_msa.compress.selection_gap import seed_predictions
    from edge_msa.digest import file_sha256

    out = tmp_path / "s.pt"
    compress(teacher, out=out, splits=tiny_splits, progress=False, seeds=(0, 1), **FAST)
    assert len(stage_files(out)) == 10
    compress(teacher, out=out, splits=tiny_splits, progress=False, seeds=(0,), **FAST)
    assert [p.name for p in stage_files(out)] == ["distill.pt", "finetune.pt", "gate.pt", "init.pt", "prune.pt"]
    _, meta = load_checkpoint(out)
    assert meta[SEED_STUDENTS] == {"0": file_sha256(out.with_name("s.stages") / "gate.pt")}
    assert seed_predictions(out, tiny_splits.valid)[1] == [0]
    student = out.read_bytes()

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_test_seed", interrupt)  # after the gate stage, before anything is written
    with pytest.raises(KeyboardInterrupt) as info:
        compress(teacher, out=out, splits=tiny_splits, progress=False, seeds=(0,), prune_ratio=0.2, **FAST)
    assert str(info.value) == (f"the stages that finished stay in {tmp_path / 's.stages'}/ (distill.pt, finetune.pt, "
                               f"gate.pt, init.pt, prune.pt); {out} was not written")
    assert out.read_bytes() == student
    with pytest.raises(InputError, match=r"s.stages/gate.pt' is not the seed-0 student of '.*s.pt' \(its sha256"):
        seed_predictions(out, tiny_splits.valid)


def test_an_interruption_note_joins_the_cli_line(monkeypatch, capsys):
    import edge_msa.compress

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("the stages that finished stay in s.stages/ (init.pt); s.pt was not written")

    monkeypatch.setattr(edge_msa.compress, "compress", interrupted)
    from edge_msa.cli import main

    assert main(["compress", "t.pt", "--out", "s.pt", "--quiet"]) == 130
    assert capsys.readouterr().err == ("error: interrupted; nothing half-written was kept (the stages that finished "
                                       "stay in s.stages/ (init.pt); s.pt was not written)\n")
