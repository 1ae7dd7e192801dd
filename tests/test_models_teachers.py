"""Teachers (fd_cmdie, gtf, mult): tiny variants run forward/backward on any lengths and with missing
modalities without NaN, their loss terms are finite and go down on a learnable task, checkpoints round-trip."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_msa.checkpoint import load_checkpoint, save_checkpoint
from edge_msa.models import create_model, list_models
from edge_msa.models.encoders import SequenceEncoder, fit_input_norms
from edge_msa.models.layers import Attention
from edge_msa.models.losses import cmd, cosine_triplet, mixture_entropy, nt_xent, nt_xent_mined
from edge_msa.spec import MODALITIES, FeatureSpec
from edge_msa.training import to_batch

TINY = ("fd_cmdie_tiny", "gtf_tiny", "mult_tiny")


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _batch(spec: FeatureSpec, b: int, lens: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch = {}
    for m in MODALITIES:
        width = max(max(lens[m]), 1)
        batch[m] = torch.randn(b, width, spec.dim(m), generator=g)  # (B, L, d)
        batch[f"{m}_mask"] = torch.arange(width)[None, :] < torch.tensor(lens[m])[:, None]  # (B, L)
    batch["label"] = torch.linspace(-3, 3, b)
    return batch


def test_teachers_registered():
    names = set(list_models())
    assert {"fd_cmdie", "gtf", "mult", *TINY} <= names


RATES = [  # every teacher's
    # hid it in every batch; never hid it
    ({"modality_dropout": 2}, "modality_dropout = 2; expected 0 <= modality_dropout < 1 (a probability)"),
    ({"modality_dropout": -1}, "modality_dropout = -1; expected 0 <= modality_dropout < 1 (a probability)"),
    ({"modality_dropout": float("nan")},
     "modality_dropout = nan; expected a finite number 0 <= modality_dropout < 1 (a probability)"),
    # zeroed every input
    ({"av_input_dropout": 1}, "av_input_dropout = 1; expected 0 <= av_input_dropout < 1 (a probability)"),
    # nn.Dropout (and the attention) took 1.0, zeroing every activation; -0.1 was torch's "bad options" line
    ({"dropout": 1.0}, "dropout = 1.0; expected 0 <= dropout < 1 (a probability)"),
    ({"dropout": -0.1}, "dropout = -0.1; expected 0 <= dropout < 1 (a probability)"),
]
# each trained without a word: a temperature of 0 made the contrastive loss NaN (similarities / 0), a negative
# weight or margin rewarded the term it should lower
LOSS_OPTIONS = [
    ("fd_cmdie", {"tau": 0}, "tau = 0; expected > 0 (the contrastive temperature)"),
    ("fd_cmdie", {"margin": -0.5}, "margin = -0.5; expected >= 0"),
    ("fd_cmdie", {"lambda_cl": -0.1}, "lambda_cl = -0.1; expected >= 0"),
    ("fd_cmdie", {"lambda_tri": float("nan")}, "lambda_tri = nan; expected a finite number >= 0"),
    ("fd_cmdie", {"score_clip": -3}, "score_clip = -3; expected >= 0"),  # taken as 0, the linear head
    ("gtf", {"alpha": -0.1}, "alpha = -0.1; expected >= 0"),
    ("gtf", {"beta": -1}, "beta = -1; expected >= 0"),
    ("gtf", {"score_clip": -3.0}, "score_clip = -3.0; expected >= 0"),
]


@pytest.mark.parametrize("name, params, says", [(name, params, says) for name in ("fd_cmdie", "gtf", "mult")
                                                for params, says in RATES] + LOSS_OPTIONS)
def test_an_option_out_of_its_range_is_refused_before_any_data_is_read(name, params, says, tmp_path, monkeypatch):
    """`--model-param modality_dropout=2` trained a teacher that never saw audio or video, and -1 one that never
    learned without them, silently: each constructor checks its rates (base.check_probabilities) and its loss
    options (errors.check_range), so registry.check_build refuses them before the data load, which fails loudly
    here."""
    import edge_msa.teacher as teacher
    from conftest import one_line_error

    def never(*args, **kwargs):
        raise AssertionError("read before the model options were checked")

    monkeypatch.setattr(teacher, "_load", never)
    monkeypatch.setattr(teacher, "_pretrained_text", never)
    assert one_line_error(lambda: teacher.train_teacher(name, out=tmp_path / "t.pt", **params)) == says
    assert list(tmp_path.iterdir()) == []


def test_a_score_scale_of_zero_is_refused_by_gtf(tiny_spec):
    """A score of 0 for every input. train_teacher refuses any score_scale (calibrate_scale fits its own), so gtf's
    constructor check is reached by a direct build or a checkpoint's config."""
    from conftest import one_line_error

    assert one_line_error(lambda: create_model("gtf_tiny", tiny_spec, score_scale=0)) == "score_scale = 0; expected > 0"


@pytest.mark.parametrize("name", TINY)
def test_forward_backward_any_length_and_missing(name, tiny_spec):
    torch.manual_seed(0)
    model = create_model(name, tiny_spec)
    model.train()
    # text lengths 1..9, audio single step / missing, video missing for some rows, one row with text missing
    lens = {"text": [1, 9, 4, 0, 2, 7], "audio": [1, 0, 3, 1, 0, 2], "video": [0, 4, 1, 2, 0, 1]}
    batch = _batch(tiny_spec, 6, lens)
    out = model(batch)
    assert out["score"].shape == (6,)
    assert torch.isfinite(out["score"]).all()
    loss, parts = model.loss(out, batch)
    assert torch.isfinite(loss) and all(np.isfinite(v) for v in parts.values())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", TINY)
def test_single_step_sequences_and_batch_of_one(name, tiny_spec):
    model = create_model(name, tiny_spec).eval()
    for b, lens in ((1, {"text": [3], "audio": [1], "video": [1]}),
                    (4, {"text": [1, 1, 1, 1], "audio": [1, 1, 1, 1], "video": [1, 1, 1, 1]})):
        with torch.no_grad():
            score = model(_batch(tiny_spec, b, lens))["score"]
        assert score.shape == (b,) and torch.isfinite(score).all()


@pytest.mark.parametrize("name", TINY)
def test_missing_modality_rows_do_not_depend_on_padding(name, tiny_spec):
    """A missing modality (all-masked) must not leak its (garbage) values into the prediction."""
    model = create_model(name, tiny_spec).eval()
    batch = _batch(tiny_spec, 3, {"text": [4, 2, 5], "audio": [0, 0, 0], "video": [2, 1, 3]})
    other = dict(batch, audio=batch["audio"] * 100 + 7)
    with torch.no_grad():
        assert torch.allclose(model(batch)["score"], model(other)["score"], atol=1e-5)


@pytest.mark.parametrize("name", TINY)
def test_score_does_not_depend_on_batch_mates(name, tiny_spec):
    """An utterance scores the same alone and beside a longer one (its text then padded): the REST service's
    micro-batches and `predict --batch` must give what a single `predict` gives."""
    model = create_model(name, tiny_spec).eval()
    batch = _batch(tiny_spec, 2, {"text": [3, 9], "audio": [2, 4], "video": [1, 3]})
    alone = {k: v[:1, :3] if k.startswith("text") else v[:1, :2] if k.startswith("audio") else v[:1, :1]
             for k, v in batch.items() if k != "label"}
    with torch.no_grad():
        assert torch.allclose(model(batch)["score"][0], model(alone)["score"][0], atol=1e-5)


@pytest.mark.parametrize("name", TINY)
def test_losses_decrease_on_learnable_task(name, tiny_spec, tiny_splits):
    torch.manual_seed(0)
    model = create_model(name, tiny_spec, dropout=0.0, modality_dropout=0.0)
    fit_input_norms(model, tiny_splits.train.features, tiny_splits.train.lengths)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = to_batch(tiny_splits.train, np.arange(len(tiny_splits.train)))
    history = []
    for _ in range(30):
        model.train()
        loss, parts = model.loss(model(batch), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(parts)
    assert all(np.isfinite(v) for p in history for v in p.values())
    first, last = np.mean([h["mae"] for h in history[:5]]), np.mean([h["mae"] for h in history[-5:]])
    assert last < 0.6 * first, (first, last)


@pytest.mark.parametrize("name", TINY)
def test_checkpoint_round_trip(name, tiny_spec, tiny_splits, tmp_path):
    model = create_model(name, tiny_spec, dropout=0.1)
    fit_input_norms(model, tiny_splits.train.features, tiny_splits.train.lengths)
    model.eval()
    batch = to_batch(tiny_splits.test, np.arange(8))
    path = save_checkpoint(tmp_path / "t.pt", model, {"dataset": "tiny"})
    loaded, meta = load_checkpoint(path)
    assert meta["dataset"] == "tiny" and loaded.config_params == model.config_params
    with torch.no_grad():
        assert torch.equal(model(batch)["score"], loaded(batch)["score"])


@pytest.mark.parametrize("name", ("fd_cmdie_tiny", "gtf_tiny"))
def test_score_clip_bounds_the_score_and_zero_keeps_it_linear(name, tiny_spec):
    """score_clip c gives c * tanh(linear score / c); the default 0 is the plain linear head (old checkpoints)."""
    torch.manual_seed(0)
    linear = create_model(name, tiny_spec).eval()
    clipped = create_model(name, tiny_spec, score_clip=3.0).eval()
    clipped.load_state_dict(linear.state_dict())
    with torch.no_grad():
        linear.mlp[-1].bias.fill_(6.0)  # push the raw score far outside the label range
        clipped.mlp[-1].bias.fill_(6.0)
        batch = _batch(tiny_spec, 4, {"text": [3, 1, 2, 4], "audio": [1, 0, 1, 1], "video": [1, 1, 0, 1]})
        raw, bounded = linear(batch)["score"], clipped(batch)["score"]
    assert linear.config_params["score_clip"] == 0.0 and (raw > 3).all()
    assert torch.allclose(bounded, 3.0 * torch.tanh(raw / 3.0), atol=1e-5) and (bounded.abs() <= 3).all()


@pytest.mark.parametrize("name", ("fd_cmdie", "gtf", "mult"))
def test_full_size_teachers_build_and_use_shared_attention(name):
    spec = FeatureSpec(dims=(384, 73, 100), max_lens=(50, 1, 1))
    model = create_model(name, spec)
    assert not any(isinstance(m, torch.nn.MultiheadAttention) for m in model.modules())
    assert any(isinstance(m, Attention) for m in model.modules())
    lens = {"text": [50, 3], "audio": [1, 0], "video": [1, 1]}
    with torch.no_grad():
        assert torch.isfinite(model.eval()(_batch(spec, 2, lens))["score"]).all()


def test_unknown_model_suggests(tiny_spec):
    from edge_msa.errors import InputError

    with pytest.raises(InputError, match="did you mean 'fd_cmdie'"):
        create_model("fd_cmdei", tiny_spec)


@pytest.mark.parametrize("name", [*TINY, "fd_cmdie", "gtf", "mult"])
def test_a_models_options_are_its_constructors_keywords(name, tiny_spec):
    """model_options reads the option names from the class the factory returns (its keywords but spec), the one list
    that an unknown option is told, with the closest of them: it was Python's TypeError, naming the class
    (FDCMDIE.__init__) and no option. The student's factory works out its class's arguments from options of its
    own, told in the same line (test_student_model)."""
    import inspect

    from conftest import one_line_error

    from edge_msa.models.registry import model_options

    options = model_options(name)
    assert options == tuple(inspect.signature(type(create_model(name, tiny_spec))).parameters)[1:]
    assert "spec" not in options and "text_bert" not in options
    close = {"fd_cmdie": "hidden", "gtf": "hidden", "mult": "heads"}[name.removesuffix("_tiny")]
    assert one_line_error(lambda: create_model(name, tiny_spec, **{close[:-1]: 1})) == (
        f"model {name} has no option '{close[:-1]}' (did you mean '{close}'?); expected one of {', '.join(options)}")
    assert model_options("student") == ()
    assert one_line_error(lambda: create_model("student", tiny_spec, hiden=1)).startswith(
        "model student has no option 'hiden' (did you mean 'enc_hidden'?); expected one of dim, ")


@pytest.mark.parametrize("name, params, says", [
    # a width torch took as given: its TypeError from a tensor's size (wrapped as "bad options"), or int() nowhere
    ("fd_cmdie_tiny", {"hidden": 63.5}, "hidden = 63.5; expected a whole number >= 2"),
    ("mult_tiny", {"dim": 8.0}, "dim = 8.0 is a float; expected a whole number >= 1 (write 8)"),
    ("gtf_tiny", {"fusion_layers": 2.0}, "fusion_layers = 2.0 is a float; expected a whole number >= 0 (write 2)"),
    ("gtf_tiny", {"cmd_moments": 2.5}, "cmd_moments = 2.5; expected a whole number >= 1"),  # a TypeError in the loss
    # a string or a bool in place of a count
    ("gtf_tiny", {"hidden": "16"}, "hidden = '16'; expected a whole number >= 2"),
    ("fd_cmdie_tiny", {"heads": True}, "heads = True; expected a whole number >= 1"),
    # below the least value: ZeroDivisionError (heads), the LSTM's ValueError (av_layers), a model without a width
    ("mult_tiny", {"heads": 0}, "heads = 0; expected >= 1"),
    ("fd_cmdie_tiny", {"av_layers": 0}, "av_layers = 0; expected >= 1"),
    ("fd_cmdie_tiny", {"hidden": 0}, "hidden = 0; expected >= 2"),
    ("fd_cmdie_tiny", {"layers": -1}, "layers = -1; expected >= 0"),  # built and ran as 0 layers
])
def test_a_count_that_is_not_a_whole_number_in_range_is_refused_before_the_model_is_built(name, params, says,
                                                                                            tiny_spec):
    from conftest import one_line_error

    assert one_line_error(lambda: create_model(name, tiny_spec, **params)) == says


def test_a_whole_float_is_refused_with_the_int_to_write():
    """A config's JSON or YAML may write a count as 16.0: it is refused as 16.5 is (errors.is_whole says why), but
    the line says it is a float and which int to write, where that int is in range (0.0 for hidden is not)."""
    from conftest import one_line_error

    from edge_msa.errors import check_range

    for value, says in ((16.0, "hidden = 16.0 is a float; expected a whole number >= 2 (write 16)"),
                        (np.float32(16), "hidden = 16.0 is a float32; expected a whole number >= 2 (write 16)"),
                        (0.0, "hidden = 0.0; expected a whole number >= 2"),
                        (16.5, "hidden = 16.5; expected a whole number >= 2")):
        assert one_line_error(lambda: check_range({"hidden": value}, 2, strict=False, whole=True)) == says


@pytest.mark.parametrize("name, params, says", [
    # dim // heads rounded down: the model built and trained a narrower attention (15 of fd_cmdie's 16) silently
    ("fd_cmdie_tiny", {"heads": 3}, "heads = 3 does not divide the attention width 16; expected a head count that "
                                    "divides the model's width"),
    ("mult_tiny", {"heads": 16}, "heads = 16 does not divide the attention width 8; expected a head count that "
                                 "divides the model's width"),  # head width 0
    # ValueErrors, which the CLI shows as a traceback (eval or export of such a checkpoint)
    ("gtf_tiny", {"hidden": 15}, "hidden = 15 is odd; expected an even width (a BiLSTM gives each of its directions "
                                 "half)"),
    ("fd_cmdie_tiny", {"text_encoder": "gru"}, "encoder kind 'gru' is unknown; expected one of lstm, transformer, "
                                               "linear"),
])
def test_counts_that_do_not_fit_the_architecture_are_one_line(name, params, says, tiny_spec):
    from conftest import one_line_error

    assert one_line_error(lambda: create_model(name, tiny_spec, **params)) == says


@pytest.mark.parametrize("name", TINY)
def test_each_count_at_its_least_value_builds_a_working_model(name, tiny_spec):
    """COUNTS (registry.checked_params) names every int of the constructor, and a model with every count at its least
    value builds, and its score and loss are finite: 0 layers are taken (an ablation), numpy's ints too."""
    import inspect

    model_class = type(create_model(name, tiny_spec))
    ints = {k for k, p in inspect.signature(model_class).parameters.items() if p.annotation == "int"}
    assert set(model_class.COUNTS) == ints
    batch = _batch(tiny_spec, 4, {"text": [3, 1, 2, 4], "audio": [1, 0, 1, 1], "video": [1, 1, 0, 1]})
    model = create_model(name, tiny_spec, **{knob: np.int64(least) for knob, least in model_class.COUNTS.items()})
    out = model.train()(batch)
    assert torch.isfinite(out["score"]).all() and torch.isfinite(model.loss(out, batch)[0])
    assert all(type(model.config_params[knob]) is int for knob in model_class.COUNTS)  # a checkpoint's JSON


def test_input_norm_standardises_valid_steps_only():
    enc = SequenceEncoder("audio", 3, 4, "linear")
    x = np.zeros((2, 3, 3), np.float32)
    x[0, 0], x[1, 0], x[1, 1] = [100, 0, 1], [200, 0, 3], [300, 0, 5]
    fit_input_norms(enc, {"audio": x}, {"audio": np.array([1, 2])})
    assert torch.allclose(enc.norm.mean, torch.tensor([200.0, 0.0, 3.0]))
    assert enc.norm.std[1] > 0


def test_loss_functions():
    torch.manual_seed(0)
    a = torch.randn(16, 8)
    assert float(cmd(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(cmd(a, a + 1)) > 0.5
    label = torch.linspace(-2, 2, 16)
    assert float(nt_xent(a, a)) < float(nt_xent(a, torch.randn(16, 8)))
    assert torch.isfinite(nt_xent_mined(a, label, k=3))
    assert float(nt_xent_mined(a, torch.ones(16), k=3)) == 0.0  # no different-label samples in the batch
    assert float(cosine_triplet(a, [a], [-a], margin=0.5)) == pytest.approx(0.0, abs=1e-6)
    wide, narrow = torch.randn(64, 4) * 3, torch.randn(64, 4) * 0.1
    signs = torch.linspace(-1, 1, 64)
    assert float(mixture_entropy(wide, signs)) > float(mixture_entropy(narrow, signs))
