"""Raw text as apps send it, from the string to the score, on an INT8 token-id bundle (the main job's kind): Unicode
forms, blank texts, and texts cut to the encoder's max length in a batch."""
from __future__ import annotations

import unicodedata
import warnings

import pytest

from conftest import token_student
from edge_msa.errors import InputError
from edge_msa.features.text import TruncationWarning
from edge_msa.runtime.predictor import load


@pytest.fixture(scope="module")
def int8_token_bundle(tmp_path_factory, tiny_bert_dir):
    """The conftest tiny-BERT student (max 12 tokens) exported INT8: its batches run row by row."""
    from edge_msa.checkpoint import save_checkpoint
    from edge_msa.export import export

    folder = tmp_path_factory.mktemp("int8_tokens")
    ckpt = save_checkpoint(folder / "s.pt", token_student(tiny_bert_dir, 12), {})
    return export(ckpt, format="onnx-int8", out=folder / "bundle", log=None)


def _truncation_warnings(call) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [str(w.message) for w in caught if issubclass(w.category, TruncationWarning)]


def test_an_int8_batch_counts_its_truncated_texts_in_one_warning(int8_token_bundle):
    """Each row of an INT8 batch is scored alone, and each said "1 of 1 texts are longer ..." (shown once by Python
    however many rows were cut); the warning counts the batch's texts, as a batched bundle's does."""
    long = "good movie " * 20
    with load(int8_token_bundle) as p:
        assert p.row_by_row
        items = [{"text": long}, {"text": "bad plot"}, {"text": long}, {"audio": None, "text": "fun"}]
        said = _truncation_warnings(lambda: p.predict_batch(items))
        assert said == ["2 of 4 texts are longer than 12 tokens and were truncated"]
        assert _truncation_warnings(lambda: p.predict(text=long)) == [
            "1 of 1 texts are longer than 12 tokens and were truncated"]
        assert _truncation_warnings(lambda: p.predict_batch(items[1:2] * 2)) == []


def test_the_same_word_in_any_unicode_form_or_with_invisible_characters_scores_the_same(int8_token_bundle):
    """NFC and NFD forms, a zero-width space, a byte-order mark: the tokenizer's normaliser reads one word."""
    word = "góod fun"
    forms = [unicodedata.normalize("NFC", word), unicodedata.normalize("NFD", word), "\ufeffgood fun",
             "good\u200b fun", "good fun"]
    with load(int8_token_bundle) as p:
        scores = {p.predict(text=t).score for t in forms}
        assert len(scores) == 1
        for blank in ("", "   ", "\n\t", "\u00a0\u3000"):
            with pytest.raises(InputError, match="empty text; expected at least one word"):
                p.predict(text=blank)
        with pytest.raises(InputError, match="no word the tokenizer keeps"):
            p.predict(text="\u200b\u0301")
        with pytest.raises(InputError, match="input index 1: .*unpaired UTF-16 surrogate"):
            p.predict_batch([{"text": "good"}, {"text": "good \ud800"}])


def test_predict_names_a_text_argument_that_is_not_utf8_as_such(int8_token_bundle, capsys):
    """A Latin-1 terminal's `--text $'caf\\xe9'` reaches Python as a lone surrogate, which the predictor called "an
    unpaired UTF-16 surrogate"; the CLI says what was typed wrong."""
    from edge_msa.cli import main

    latin1 = b"good caf\xe9 film".decode("utf-8", "surrogateescape")  # what sys.argv holds for those bytes
    assert main(["predict", str(int8_token_bundle), "--text", latin1]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("error: --text is not valid UTF-8 (invalid continuation byte at byte 8); expected UTF-8 "
                           "text (convert it, e.g. with iconv, or set the terminal to UTF-8)")
