"""Hand-edited or mismatched checkpoints: every one is refused in one `error:` line (exit 2) before anything is
written, where info/export/compress raised TypeErrors or exported a model that scored wrongly without a word."""
from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def token_checkpoint(tmp_path_factory, tiny_bert_dir):
    """student_tiny with the tiny BERT inside (16 positions, 36-token vocabulary) and its tokenizer."""
    from edge_msa.checkpoint import save_checkpoint

    from conftest import token_student

    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt", token_student(tiny_bert_dir, 16), {})


def _swap_tokenizer(payload, tmp_path, edit_vocab):
    """Give the checkpoint another tokenizer, its spec tag updated to match (so only the vocabulary differs)."""
    from edge_msa.features.text import tokenizer_tag

    tokenizer = json.loads(payload["tokenizer_json"])
    tokenizer["model"]["vocab"] = edit_vocab(tokenizer["model"]["vocab"])
    payload["tokenizer_json"] = json.dumps(tokenizer)
    (tmp_path / "tok.json").write_text(payload["tokenizer_json"], encoding="utf-8")
    payload["feature_spec"]["front_ends"][0] = tokenizer_tag(tmp_path / "tok.json")


def _map_token_rows(payload, token, row):
    """Give the encoder a student's map from token ids to embedding rows (one row per token), `token` sent to `row`."""
    payload["config"]["params"]["text_bert"]["embed_rows"] = 36
    payload["state_dict"]["bert.token_rows"] = torch.arange(36)
    payload["state_dict"]["bert.token_rows"][token] = row


TAMPERED = {  # how the checkpoint is edited, what its one error line says
    "format as text": (lambda p, _: p.update(format_version="1"), "format_version is a str ('1'); expected type int"),
    "meta a list": (lambda p, _: p.update(meta=[1, 2]), "meta is a list ([1, 2]); expected type dict"),
    "empty spec": (lambda p, _: p.update(feature_spec={}), "feature_spec lacks dims and max_lens"),
    "tokenizer bytes": (lambda p, _: p.update(tokenizer_json=p["tokenizer_json"].encode()),
                        "tokenizer_json is a bytes"),
    "max_len past positions": (lambda p, _: p["feature_spec"]["max_lens"].__setitem__(0, 17),
                               "text max_len 17 does not fit the text encoder ([CLS] word [SEP] at least, its 16 "
                               "positions at most); expected 3 <= max_len <= 16"),
    "max_len under [CLS] word [SEP]": (lambda p, _: p["feature_spec"]["max_lens"].__setitem__(0, 2),
                                       "text max_len 2 does not fit the text encoder"),
    "no tokenizer": (lambda p, _: p.pop("tokenizer_json"), "carries its own text encoder but no tokenizer"),
    "skip threshold below 0": (lambda p, _: p["config"]["params"].update(skip_thresholds=[0.0, -0.1]),
                               "': skip_thresholds[1] = -0.1; expected >= 0"),  # the constructor's line, with the file
    "token rows past the embedding": (lambda p, _: _map_token_rows(p, 5, 10 ** 6),
                                      "its tokenizer's ids map to embedding row 1000000 but the text encoder has 36 "
                                      "rows; expected a token-row map within 0 .. 35"),
    "smaller tokenizer": (lambda p, tmp: _swap_tokenizer(p, tmp, lambda v: {w: i for w, i in v.items() if i < 30}),
                          "its tokenizer has 30 tokens but the text encoder's vocabulary is 36"),
    "bigger tokenizer": (lambda p, tmp: _swap_tokenizer(p, tmp, lambda v: {**v, **{f"x{i}": len(v) + i
                                                                                   for i in range(200)}}),
                         "its tokenizer has 236 tokens but the text encoder's vocabulary is 36"),
    "weights of another config": (lambda p, _: p["config"]["params"]["text_bert"].update(max_positions=12),
                                  "(size mismatch for bert.position.weight: copying a param with shape "
                                  "torch.Size([16, 32]) from checkpoint, the shape in current model is "
                                  "torch.Size([12, 32])); expected the weights saved with this config"),
}


@pytest.mark.parametrize("case", TAMPERED)
def test_tampered_checkpoint_exports_to_one_error_line(token_checkpoint, tmp_path, capsys, case):
    from edge_msa.cli import main

    tamper, says = TAMPERED[case]
    payload = torch.load(token_checkpoint, weights_only=True)
    tamper(payload, tmp_path)
    torch.save(payload, tmp_path / "t.pt")
    assert main(["export", str(tmp_path / "t.pt"), "--out", str(tmp_path / "bundle"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: '{tmp_path / 't.pt'}'") and says in err
    assert not (tmp_path / "bundle").exists()


CONFIG_EDITS = {  # how a student_tiny checkpoint's config or spec is edited, the constructor's line that follows
    "negative skip threshold": (lambda p: p["config"]["params"].update(skip_thresholds=[0.0, -0.1]),
                                "skip_thresholds[1] = -0.1; expected >= 0 (the gate's keep is in [0, 1]"),
    "dropout of 1": (lambda p: p["config"]["params"].update(dropout=1.0), "dropout = 1.0; expected"),
    "unknown option": (lambda p: p["config"]["params"].update(dropotu=0.1),
                       "model student_tiny has no option 'dropotu' (did you mean 'dropout'?)"),
    "unknown model": (lambda p: p["config"].update(name="studnet"), "unknown model 'studnet'"),
    "spec dims a word": (lambda p: p["feature_spec"].update(dims="abc"), "FeatureSpec.dims must be 3 whole numbers"),
}


@pytest.mark.parametrize("case", CONFIG_EDITS)
def test_a_config_the_constructors_refuse_is_told_with_the_checkpoints_name(tiny_spec, tmp_path, capsys, case):
    """The rebuild runs the constructors' checks, whose lines know no file: `edge-msa info old.pt` said what was wrong
    (a hand-edited file, or one from a version with other rules) but not where. The file is named once."""
    from edge_msa.checkpoint import load_checkpoint, save_checkpoint
    from edge_msa.cli import main
    from edge_msa.errors import ArtifactError
    from edge_msa.models import create_model

    edit, says = CONFIG_EDITS[case]
    path = save_checkpoint(tmp_path / "s.pt", create_model("student_tiny", tiny_spec), {})
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, tmp_path / "bad.pt")
    assert main(["info", str(tmp_path / "bad.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: '{tmp_path / 'bad.pt'}': {says}")
    assert err.count(str(tmp_path)) == 1
    with pytest.raises(ArtifactError) as info:
        load_checkpoint(tmp_path / "bad.pt")
    assert str(info.value) == err.removeprefix("error: ").rstrip("\n")


def test_a_tokenizer_beside_a_model_without_a_text_encoder_is_refused_in_one_line(tiny_bert_dir, tmp_path, capsys):
    """Only a model with its own text encoder reads token ids with a tokenizer; load_checkpoint gave one to any model
    whose file held one (a hand-edited file), and the readers then fed token ids to a model built for features."""
    from edge_msa.checkpoint import save_checkpoint
    from edge_msa.cli import main
    from edge_msa.models import create_model

    from conftest import token_spec

    tok = tiny_bert_dir / "tokenizer.json"
    path = save_checkpoint(tmp_path / "t.pt", create_model("student_tiny", token_spec(tok)), {})
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "tokenizer_json": tok.read_text(encoding="utf-8")}, path)
    assert main(["export", str(path), "--out", str(tmp_path / "bundle"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: '{path}': it holds a tokenizer but its 'student_tiny' "
                                                   "model has no text encoder")
    assert not (tmp_path / "bundle").exists()


def test_a_tokenizer_path_set_on_a_model_without_a_text_encoder_is_not_read(tiny_bert_dir, tiny_spec, tmp_path):
    """tokenizer_path is WithTextEncoder's (models.with_text.tokenizer_of reads it). save_checkpoint, export and
    text_front_end read it with getattr from any model, so one set on a model built for text features wrote a
    checkpoint that load_checkpoint refuses (a tokenizer beside a model with no text encoder)."""
    from edge_msa.checkpoint import load_checkpoint, save_checkpoint
    from edge_msa.models import create_model
    from edge_msa.models.with_text import text_front_end

    model = create_model("student_tiny", tiny_spec)
    model.tokenizer_path = tiny_bert_dir / "tokenizer.json"
    assert text_front_end(model) is None
    path = save_checkpoint(tmp_path / "s.pt", model, {})
    assert "tokenizer_json" not in torch.load(path, weights_only=True)
    assert text_front_end(load_checkpoint(path)[0]) is None


def test_the_untouched_checkpoint_loads(token_checkpoint, tmp_path):
    """... and so does one with a token-row map inside the embedding (the edit the tampered case builds on)."""
    from edge_msa.checkpoint import load_checkpoint

    model, meta = load_checkpoint(token_checkpoint)
    assert model.bert.config["vocab_size"] == 36 and meta == {}
    payload = torch.load(token_checkpoint, weights_only=True)
    _map_token_rows(payload, 5, 35)
    torch.save(payload, tmp_path / "rows.pt")
    assert int(load_checkpoint(tmp_path / "rows.pt")[0].bert.token_rows[5]) == 35



def test_the_same_model_saves_to_the_same_bytes_and_older_files_still_load(tiny_bert_dir, token_checkpoint, tmp_path):
    """torch.save named the zip's folder after the random temp file the atomic save writes, so no two saves of one
    model were alike (a checksum of the artifact, e.g. pipeline.json's, told nothing). The same model built twice
    the same way, saved under other names, now gives the very bytes, and loads back; a file with the folder names
    of before still loads."""
    import zipfile

    from edge_msa.checkpoint import load_checkpoint, save_checkpoint

    from conftest import token_student

    torch.manual_seed(0)
    first = save_checkpoint(tmp_path / "first.pt", token_student(tiny_bert_dir, 16), {"seed": 0})
    torch.manual_seed(0)
    model = token_student(tiny_bert_dir, 16)
    again = save_checkpoint(tmp_path / "elsewhere" / "again.pt", model, {"seed": 0})
    assert again.read_bytes() == first.read_bytes()
    loaded, meta = load_checkpoint(again)
    assert meta == {"seed": 0} and all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    torch.save(torch.load(token_checkpoint, weights_only=True), tmp_path / ".old.pt.x1y2z3ab.pt")  # as saved before
    (tmp_path / ".old.pt.x1y2z3ab.pt").rename(tmp_path / "old.pt")
    assert zipfile.ZipFile(tmp_path / "old.pt").namelist()[0] == ".old.pt.x1y2z3ab/data.pkl"
    old, _ = load_checkpoint(tmp_path / "old.pt")
    assert old.state_dict().keys() == load_checkpoint(token_checkpoint)[0].state_dict().keys()


def test_a_model_with_a_text_encoder_but_no_tokenizer_is_refused_before_anything_is_written(tiny_bert_dir, tmp_path):
    """save_checkpoint wrote such a model without its tokenizer_json, and load_checkpoint then refused the file
    ("carries its own text encoder but no tokenizer"): a run's result was only found unreadable when next used."""
    from edge_msa.checkpoint import save_checkpoint
    from edge_msa.errors import InputError

    from conftest import token_student

    model = token_student(tiny_bert_dir, 12)
    model.tokenizer_path = None
    with pytest.raises(InputError, match=r"^cannot save '.*s\.pt': the 'student_tiny' model carries its own text "
                                         r"encoder but no tokenizer .*; expected model.tokenizer_path to name"):
        save_checkpoint(tmp_path / "new" / "s.pt", model, {})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("tokenizer, says", [
    ("gone.json", r"^cannot save '.*s\.pt': the model's tokenizer '.*gone\.json' cannot be read \(No such file or "
                  r"directory\); expected model\.tokenizer_path to name the tokenizer\.json its token ids come from$"),
    ("other.json", r"^cannot save '.*s\.pt': its tokenizer is wordpiece:\w{12} but the model was trained on "
                   r"wordpiece:\w{12}; expected the tokenizer saved with the model$")])
def test_a_tokenizer_that_is_missing_or_not_the_specs_is_refused_before_anything_is_written(tiny_bert_dir, tmp_path,
                                                                                           tokenizer, says):
    """save_checkpoint raised FileNotFoundError for a tokenizer_path naming no file, and stored a tokenizer other than
    the one its spec's `wordpiece:<sha12>` names (a file load_checkpoint then refused)."""
    from edge_msa.checkpoint import save_checkpoint
    from edge_msa.errors import EdgeMSAError

    from conftest import token_student

    model = token_student(tiny_bert_dir, 12)
    model.tokenizer_path = tmp_path / tokenizer
    (tmp_path / "other.json").write_text((tiny_bert_dir / "tokenizer.json").read_text() + "\n")
    with pytest.raises(EdgeMSAError, match=says):
        save_checkpoint(tmp_path / "new" / "s.pt", model, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.json"]


def test_a_token_checkpoint_exports_where_the_cache_takes_no_files(token_checkpoint, tmp_path, monkeypatch, capsys):
    """The checkpoint's tokenizer must be a file while the model is used; it was written only into the cache, so an
    unwritable $EDGE_MSA_CACHE (a read-only device, /proc) refused the export, whose bundle carries the tokenizer."""
    from edge_msa.cli import main

    (tmp_path / "file").write_text("")
    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path / "file" / "cache"))  # under a file: refused, root or not
    assert main(["export", str(token_checkpoint), "--out", str(tmp_path / "bundle"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    tokenizer = torch.load(token_checkpoint, weights_only=True)["tokenizer_json"]
    assert (tmp_path / "bundle" / "tokenizer.json").read_text(encoding="utf-8") == tokenizer


def test_a_token_checkpoint_where_no_folder_takes_its_tokenizer_is_refused_in_one_line(token_checkpoint, tmp_path,
                                                                                         monkeypatch, capsys):
    """Where neither the cache nor the temporary folder takes files (a read-only device, $TMPDIR read-only too), the
    fallback's temporary folder raised a traceback (NotADirectoryError, or 'No usable temporary directory found')."""
    import functools
    import tempfile

    from edge_msa.cli import main
    from edge_msa.features import text

    (tmp_path / "file").write_text("")
    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path / "file" / "cache"))  # under a file: refused, root or not
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "file" / "tmp"))  # what $TMPDIR sets, refused the same
    monkeypatch.setattr(text, "_run_folder", functools.cache(text._run_folder.__wrapped__))  # none made yet
    assert main(["export", str(token_checkpoint), "--out", str(tmp_path / "bundle"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write the checkpoint's tokenizer") and err.count("\n") == 1, err
    assert "expected $EDGE_MSA_CACHE or $TMPDIR to name a writable folder" in err
    assert not (tmp_path / "bundle").exists()

def test_info_counts_a_block_shared_across_depths_once(tiny_spec, tmp_path, capsys):
    """`info` counts what the model holds, as compress's report does (its params): summing the state dict counted a
    block shared across depths once per depth (8,211 "parameters + buffers" for a student of 5,939 + 48)."""
    from edge_msa.checkpoint import save_checkpoint
    from edge_msa.cli import main
    from edge_msa.models import create_model

    model = create_model("student_tiny", tiny_spec, share="depth")
    params, buffers = (sum(t.numel() for t in ts) for ts in (model.parameters(), model.buffers()))
    assert sum(t.numel() for t in model.state_dict().values()) > params + buffers  # the case: shared tensors
    assert main(["info", str(save_checkpoint(tmp_path / "s.pt", model, {}))]) == 0
    assert f"student_tiny  {params:,} parameters (+ {buffers:,} buffer values)\n" in capsys.readouterr().out


def test_a_block_shared_across_depths_and_streams_is_saved_once_from_a_gpu(tiny_spec, tmp_path, monkeypatch):
    """A GPU->CPU copy makes a new tensor per `.cpu()` call, so moving each weight on its own saved the student's
    block shared by the text and fusion streams once per name. Simulated here (no GPU): every copy to the CPU
    clones, as a device copy does; the file must hold the storages the model holds, as one saved on the CPU does."""
    from edge_msa.checkpoint import read_checkpoint, save_checkpoint
    from edge_msa.models import create_model

    model = create_model("student_tiny", tiny_spec, share="depth+modality")
    on_cpu = save_checkpoint(tmp_path / "cpu.pt", model, {})
    monkeypatch.setattr(torch.Tensor, "cpu", lambda self, *a, **k: self.clone())
    monkeypatch.setattr(torch.UntypedStorage, "cpu", lambda self: self.clone())
    from_gpu = save_checkpoint(tmp_path / "gpu.pt", model, {})
    monkeypatch.undo()

    def storages(state):
        return {t.untyped_storage().data_ptr() for t in state.values()}

    saved = read_checkpoint(from_gpu)["state_dict"]
    assert len(storages(saved)) == len(storages(model.state_dict())) < len(saved)  # the case: shared tensors
    assert from_gpu.stat().st_size == on_cpu.stat().st_size
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
