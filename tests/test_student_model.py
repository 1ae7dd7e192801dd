"""Student: parts agree with forward, skipping really skips, config rebuilds, sharing is real."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_msa.checkpoint import load_checkpoint, save_checkpoint
from edge_msa.errors import InputError
from edge_msa.models import create_model
from edge_msa.models.student import run_with_skipping
from edge_msa.spec import PART_IO, PARTS, SKIPPABLE
from edge_msa.training import to_batch

from conftest import make_featureset


def _batch(spec, n=8, seed=0, drop=None):
    fs = make_featureset(spec, n, seed)
    if drop:
        fs.lengths[drop][: n // 2] = 0
        fs.features[drop][: n // 2] = 0.0
    return to_batch(fs, np.arange(n))


def _present(batch):
    return torch.stack([batch[f"{m}_mask"].any(-1) for m in ("text", "audio", "video")], 1).float()


@pytest.mark.parametrize("share", ["depth", "depth+modality"])
def test_parts_match_forward(tiny_spec, share):
    torch.manual_seed(0)
    model = create_model("student_tiny", tiny_spec, share=share).eval()
    batch = _batch(tiny_spec, drop="video")
    with torch.no_grad():
        ref = model(batch)["score"]
        h = {m: model.part(f"encode_{m}")(batch[m], batch[f"{m}_mask"]) for m in ("text", "audio", "video")}
        score = model.part("fuse")(h["text"], h["audio"], h["video"], _present(batch))
        keep = model.part("gate")(h["text"], _present(batch))
    assert torch.allclose(ref, score, atol=1e-6)
    assert keep.shape == (8, 2) and bool(((keep >= 0) & (keep <= 1)).all())
    assert set(PART_IO) == set(PARTS)


def test_sharing_reduces_params(tiny_spec):
    n_depth = sum(p.numel() for p in create_model("student_tiny", tiny_spec, share="depth").parameters())
    n_both = sum(p.numel() for p in create_model("student_tiny", tiny_spec, share="depth+modality").parameters())
    deeper = create_model("student_tiny", tiny_spec, depth=6)
    assert n_both < n_depth
    assert sum(p.numel() for p in deeper.parameters()) == n_depth  # depth repeats one block


def test_threshold_zero_never_skips_and_matches_forward(tiny_spec):
    model = create_model("student_tiny", tiny_spec).eval()
    batch = _batch(tiny_spec, drop="audio")
    score, ran = run_with_skipping(model, batch)
    assert torch.allclose(score, model(batch)["score"], atol=1e-6)
    assert ran[:, 1].tolist() == batch["audio_mask"].any(-1).tolist()


def test_skipped_encoders_are_not_called(tiny_spec):
    model = create_model("student_tiny", tiny_spec, skip_thresholds=[1.01, 0.0]).eval()
    calls = {m: 0 for m in SKIPPABLE}
    for m in SKIPPABLE:
        model.encoders[m].register_forward_hook(lambda *_, m=m: calls.__setitem__(m, calls[m] + 1))
    score, ran = run_with_skipping(model, _batch(tiny_spec))
    assert calls == {"audio": 0, "video": 1}
    assert not ran[:, 1].any() and ran[:, 2].all()
    # a skipped modality is the same as a missing one for fusion
    batch = _batch(tiny_spec)
    batch["audio_mask"] = torch.zeros_like(batch["audio_mask"])
    assert torch.allclose(score, model(batch)["score"], atol=1e-6)


def test_checkpoint_round_trip(tiny_spec, tmp_path):
    model = create_model("student_tiny", tiny_spec, share="depth+modality", skip_thresholds=[0.3, 0.6],
                         blocks={"shared": {"heads": 1, "head_dim": 8, "ffn": 12}}, enc_hidden={"audio": 5, "video": 3})
    model.eval()
    save_checkpoint(tmp_path / "s.pt", model)
    again, _ = load_checkpoint(tmp_path / "s.pt")
    batch = _batch(tiny_spec)
    assert again.config_params["skip_thresholds"] == [0.3, 0.6]
    assert torch.allclose(again(batch)["score"], model(batch)["score"])


def test_bad_options(tiny_spec):
    with pytest.raises(InputError, match="share"):
        create_model("student_tiny", tiny_spec, share="everything")
    with pytest.raises(InputError, match=r"^model student_tiny has no option 'width'"):
        create_model("student_tiny", tiny_spec, width=3)
    with pytest.raises(InputError, match="part"):
        create_model("student_tiny", tiny_spec).part("encode_smell")
    with pytest.raises(InputError, match=r"skip_thresholds = \[0.5\]; expected 2 numbers"):
        create_model("student_tiny", tiny_spec, skip_thresholds=[0.5])
    with pytest.raises(InputError, match=r"modality_dropout needs 3 values \(text, audio, video\)"):
        create_model("student_tiny", tiny_spec, modality_dropout=[0.1, 0.7])  # would silently never drop video


THRESHOLDS_WHY = " (the gate's keep is in [0, 1]: 0 never skips, above 1 always skips)"


@pytest.mark.parametrize("thresholds, says", [
    # keep (a sigmoid) >= a negative threshold always: it acted as 0 without a word
    ([0.5, -0.1], "skip_thresholds[1] = -0.1; expected >= 0" + THRESHOLDS_WHY),
    # keep >= nan never holds: always skipped; a manifest refuses inf
    ([float("nan"), 0.5], "skip_thresholds[0] = nan; expected a finite number >= 0" + THRESHOLDS_WHY),
    ([0.5, float("inf")], "skip_thresholds[1] = inf; expected a finite number >= 0" + THRESHOLDS_WHY),
    ([0.5, "high"], "skip_thresholds[1] = 'high'; expected a number >= 0" + THRESHOLDS_WHY),  # float()'s "bad options"
    # "'float' object is not iterable", and float('a')'s "bad options" line
    (0.5, "skip_thresholds = 0.5; expected 2 numbers, one per skippable modality (audio, video)"),
    ("ab", "skip_thresholds = 'ab'; expected 2 numbers, one per skippable modality (audio, video)"),
])
def test_a_skip_threshold_that_is_no_number_or_below_zero_is_refused(thresholds, says, tiny_spec):
    """The gate's keep is in [0, 1] and a modality runs iff keep >= its threshold: 0 never skips, above 1 always."""
    from conftest import one_line_error

    assert one_line_error(lambda: create_model("student_tiny", tiny_spec, skip_thresholds=thresholds)) == says


def test_a_checkpoint_with_a_negative_skip_threshold_is_refused(tiny_spec, tmp_path):
    """compress writes the calibrated thresholds into config_params, so a checkpoint carries them to the rebuild; the
    line names the file, which the constructor's own line did not."""
    from edge_msa.errors import ArtifactError

    model = create_model("student_tiny", tiny_spec)
    model.config_params["skip_thresholds"] = [-0.2, 0.5]
    path = save_checkpoint(tmp_path / "s.pt", model)
    with pytest.raises(ArtifactError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"'{path}': skip_thresholds[0] = -0.2; expected >= 0" + THRESHOLDS_WHY


def test_every_threshold_compress_calibrates_is_taken(tiny_spec):
    """skip.calibrate picks among 0 (never skip), the gate's quantiles and 1.01 (always skip); the defaults are 0."""
    assert create_model("student_tiny", tiny_spec).config_params["skip_thresholds"] == [0.0, 0.0]
    model = create_model("student_tiny", tiny_spec, skip_thresholds=(np.float64(0.0833), 1.01))
    assert model.config_params["skip_thresholds"] == [0.0833, 1.01]
    assert all(type(t) is float for t in model.config_params["skip_thresholds"])


@pytest.mark.parametrize("name", ["student", "student_tiny"])
def test_an_unknown_student_option_is_told_as_a_teachers_is(name, tiny_spec):
    """The student's line for an option it lacks is registry.check_options's, as a teacher's (it was its own
    TypeError, `bad options for model ...: unknown student options [...]`, which listed the defaults alone), and
    names every option the student takes: blocks and sharing too, as a pruned student's checkpoint holds them."""
    from conftest import one_line_error

    message = one_line_error(lambda: create_model(name, tiny_spec, dims=16, hiden=3))
    assert message == (f"model {name} has no option 'dims' (did you mean 'dim'?); expected one of dim, heads, ffn, "
                       "depth, fuse_depth, share, enc_hidden, head_hidden, gate_hidden, dropout, modality_dropout, "
                       "av_input_dropout, skip_thresholds, blocks, sharing")


@pytest.mark.parametrize("params, says", [
    ({"dim": 15.5}, "dim = 15.5; expected a whole number >= 1"),  # int() built a student of width 15
    ({"dim": 0}, "dim = 0; expected >= 1"),  # built, and a score from no width
    ({"depth": "2"}, "depth = '2'; expected a whole number >= 0"),
    ({"gate_hidden": -8}, "gate_hidden = -8; expected >= 0"),
    # each head was 16 // 3 = 5 wide: the blocks' attention 15 of the width 16, silently
    ({"heads": 3}, "heads = 3 does not divide the attention width 16; expected a head count that divides the "
                   "model's width"),
    # the nested widths: int() built an encoder 2 wide and a block of head_dim 8, heads 0 a block with no head,
    # and a missing modality was a KeyError
    ({"enc_hidden": {"audio": 2.5, "video": 16}}, "enc_hidden['audio'] = 2.5; expected a whole number >= 1"),
    ({"blocks": {"text": {"heads": 2, "head_dim": 8.5, "ffn": 32}, "fuse": {"heads": 2, "head_dim": 8, "ffn": 32}}},
     "blocks['text']['head_dim'] = 8.5; expected a whole number >= 1"),
    ({"blocks": {"text": {"heads": 2, "head_dim": 8, "ffn": 32}, "fuse": {"heads": 0, "head_dim": 8, "ffn": 32}}},
     "blocks['fuse']['heads'] = 0; expected >= 1"),
    ({"enc_hidden": {"audio": 16}}, "student enc_hidden = {'audio': 16}; expected a map of audio, video to whole "
                                    "numbers >= 1"),
    # blocks that are no map: the registry's generic "bad options ... 'int' object is not iterable", an
    # AttributeError traceback for a list of the names, and an empty map built the default blocks without a word
    ({"blocks": 5}, "student blocks = 5; expected a map of fuse, text (the blocks of share='depth') to maps of heads, "
                    "head_dim, ffn"),
    ({"blocks": ["text", "fuse"]}, "student blocks = ['text', 'fuse']; expected a map of fuse, text (the blocks of "
                                   "share='depth') to maps of heads, head_dim, ffn"),
    ({"blocks": {}}, "student blocks [] do not match share='depth'; expected ['fuse', 'text']"),
    # each modality's rate: 2 hid the audio in every training batch, silently; 1 zeroed every audio/video input
    ({"modality_dropout": [0.05, 2, 0.7]},
     "modality_dropout[1] = 2; expected 0 <= modality_dropout[1] < 1 (a probability)"),
    ({"modality_dropout": [-0.1, 0.7, 0.7]},
     "modality_dropout[0] = -0.1; expected 0 <= modality_dropout[0] < 1 (a probability)"),
    ({"av_input_dropout": 1.0}, "av_input_dropout = 1.0; expected 0 <= av_input_dropout < 1 (a probability)"),
    # nn.Dropout took 1.0, zeroing every activation; -0.1 was torch's "bad options" line
    ({"dropout": 1.0}, "dropout = 1.0; expected 0 <= dropout < 1 (a probability)"),
    ({"dropout": -0.1}, "dropout = -0.1; expected 0 <= dropout < 1 (a probability)"),
])
def test_a_student_width_that_int_would_round_or_that_builds_nothing_is_refused(params, says, tiny_spec):
    from conftest import one_line_error

    assert one_line_error(lambda: create_model("student_tiny", tiny_spec, **params)) == says


def test_a_student_with_every_count_at_its_least_value_runs(tiny_spec):
    """0 is a depth (the stream's block skipped) and a gate without a hidden layer; numpy's ints are taken as ints,
    the nested widths' too."""
    from edge_msa.models.student import Student

    nested = {"blocks": {n: {k: np.int64(1) for k in Student.NESTED_WIDTHS["blocks"]} for n in ("text", "fuse")},
              "enc_hidden": {m: np.int64(1) for m in SKIPPABLE}}
    model = create_model("student_tiny", tiny_spec, **{k: np.int64(v) for k, v in Student.COUNTS.items()}, **nested)
    assert all(type(model.config_params[k]) is int for k in Student.COUNTS)
    widths = [*model.config_params["enc_hidden"].values(), *(w for b in model.config_params["blocks"].values()
                                                              for w in b.values())]
    assert len(widths) == 8 and all(type(w) is int and w == 1 for w in widths)
    assert torch.isfinite(model.train()(_batch(tiny_spec))["score"]).all()


def test_fuse_part_keeps_model_mode(tiny_spec):
    model = create_model("student_tiny", tiny_spec).eval()
    part = model.part("fuse")
    part.train(part.training)  # what torch.onnx.export does to restore the part's mode afterwards
    assert not part.training and not model.training


@pytest.mark.parametrize("hidden", [0, 8])
def test_gate_sees_only_text_and_presence(tiny_spec, hidden):
    """The gate decides before any audio/video features exist: changing them cannot change keep."""
    torch.manual_seed(0)
    model = create_model("student_tiny", tiny_spec, gate_hidden=hidden).eval()
    batch = _batch(tiny_spec)
    with torch.no_grad():
        h_text = model.encode("text", batch["text"], batch["text_mask"])
        keep = model.keep(h_text, batch)
        noisy = {**batch, "audio": batch["audio"] + 5.0, "video": -batch["video"]}
        assert torch.equal(keep, model.keep(h_text, noisy))
        assert keep.shape == (8, 2) and bool(((keep >= 0) & (keep <= 1)).all())
    if hidden == 0:  # one Linear(D + 3 -> 2): 2 (D + 3) MACs per input
        assert model.gate.net.weight.shape == (2, model.config_params["dim"] + 3)
    else:
        assert model.gate.net[0].weight.shape == (hidden, model.config_params["dim"] + 3)


def test_skip_thresholds_may_be_a_torch_tensor(tiny_spec):
    """A tensor of thresholds (a quantile computed in torch, as the gate's keep is) was refused as
    "skip_thresholds[0] = 0.25; expected a number >= 0": its elements are 0-d tensors, no Python number. Read as the
    numbers they hold, and refused by the same rule as a list's; a 0-d tensor is one number, not two."""
    from conftest import one_line_error

    for given in (torch.tensor([0.25, 0.5]), torch.tensor([0.25, 0.5], dtype=torch.float64, requires_grad=True)):
        model = create_model("student_tiny", tiny_spec, skip_thresholds=given)
        assert model.config_params["skip_thresholds"] == [0.25, 0.5]
        assert all(type(t) is float for t in model.config_params["skip_thresholds"])  # a checkpoint's JSON takes them
    def refused(thresholds: torch.Tensor) -> str:
        return one_line_error(lambda: create_model("student_tiny", tiny_spec, skip_thresholds=thresholds))

    assert refused(torch.tensor([0.5, -1.0])) == "skip_thresholds[1] = -1.0; expected >= 0" + THRESHOLDS_WHY
    assert refused(torch.tensor(0.5)) == ("skip_thresholds = tensor(0.5000); expected 2 numbers, one per skippable "
                                          "modality (audio, video)")
