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


class _Recording:
    """A tokenizer that notes the length of every text it is given."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.lengths = tokenizer, []

    def encode_batch(self, texts):
        self.lengths += [len(t) for t in texts]
        return self.tokenizer.encode_batch(texts)

    def encode(self, text):
        self.lengths.append(len(text))
        return self.tokenizer.encode(text)


def test_a_huge_text_is_tokenized_only_as_far_as_max_len_needs_with_the_whole_texts_ids(tiny_bert_dir):
    """The tokenizer splits a whole text before it truncates it (10 M characters: 13 s and 1.5 GB for 50 tokens);
    a long text is read from its head, and gives the ids, and the truncation warning, of the whole text."""
    from edge_msa.features.text import CHARS_PER_TOKEN, TokenIds

    front = TokenIds(tiny_bert_dir / "tokenizer.json", max_len=12)
    plain = front.tokenizer
    huge = "good movie, not boring! " * 50_000
    spaced = " " * 5_000 + "good film " * 20  # its head has no word: tokenized whole, as before
    front._tokenizer = recording = _Recording(plain)
    with pytest.warns(TruncationWarning, match="2 of 3 texts are longer than 12 tokens"):
        got = front.encodings([huge, "good film", spaced])
    assert [e.ids for e in got] == [e.ids for e in plain.encode_batch([huge, "good film", spaced])]
    assert recording.lengths[0] <= 12 * CHARS_PER_TOKEN and max(recording.lengths) == len(spaced)


@pytest.mark.parametrize("chars_per_token", [1, 3, 8])
def test_a_text_read_from_its_head_has_the_whole_texts_ids_whatever_it_holds(tiny_bert_dir, monkeypatch,
                                                                            chars_per_token):
    """Cut after a whitespace, a head tokenizes as the whole text's start: accents in NFC or NFD, a Greek final
    sigma before punctuation, CJK, emoji, zero-width and control characters, special tokens, whitespace runs."""
    import random

    import edge_msa.features.text as text_module

    pieces = ["good", "film", "ΟΔΟΣ", ".", "'", "Α", "café", "cafe\u0301", "\u0301", "我喜欢", "😀",
              "\u200b", "\x00", "[SEP]", "İ", "Straße", "don't", "x" * 120, "##s", "\ufeff",
              " ", "  ", "\n", "\t", "\r\n", "\u00a0"]
    rng = random.Random(chars_per_token)
    texts = ["".join(rng.choice(pieces) + rng.choice(["", " "]) for _ in range(rng.randint(1, 200)))
             for _ in range(200)]
    monkeypatch.setattr(text_module, "CHARS_PER_TOKEN", chars_per_token)
    front = text_module.TokenIds(tiny_bert_dir / "tokenizer.json", max_len=5)
    mine, whole = front.encode_batch(texts), front.tokenizer.encode_batch(texts)
    assert [(e.ids, bool(e.overflowing)) for e in mine] == [(e.ids, bool(e.overflowing)) for e in whole]


def test_predict_takes_a_text_argument_a_latin1_locale_decoded(int8_token_bundle, capsys, monkeypatch):
    """In a Latin-1 locale Python decodes every byte of argv, so `--text café` arrives whole; its bytes in the
    locale's encoding (os.fsencode) are no UTF-8, and the UTF-8 check refused it as "not valid UTF-8": only a lone
    surrogate says that the locale's encoding could not decode a byte."""
    import os

    from edge_msa.cli import main

    monkeypatch.setattr(os, "fsencode", lambda text: text.encode("latin-1", "surrogateescape"))
    assert main(["predict", str(int8_token_bundle), "--text", "good café film"]) == 0
    assert '"score"' in capsys.readouterr().out
