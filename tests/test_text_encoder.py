"""The MiniLM text front end: shapes, padding invariance, truncation, errors, disk cache, no torch."""
from __future__ import annotations

import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from edge_msa.errors import InputError
from edge_msa.features import front_end
from edge_msa.features.text import MiniLMFrontEnd, TokenIds, encode_cached


@pytest.fixture(scope="module")
def encoder() -> MiniLMFrontEnd:
    return MiniLMFrontEnd()


def test_call_gives_one_row_per_token(encoder):
    x = encoder("anyhow it was really good")
    assert x.dtype == np.float32 and x.shape == (8, 384)  # [CLS] + 6 word pieces + [SEP], no padding to 128
    assert np.isfinite(x).all() and np.abs(x).max() > 0.1


def test_batched_encoding_matches_single_and_pads_with_zeros(encoder):
    texts = ["there is sad part", "i loved every minute of this wonderful film , truly great", "ok"]
    feats, lengths = encoder.encode(texts)
    assert feats.shape == (3, int(lengths.max()), 384) and lengths.tolist() == [6, 13, 3]
    for i, text in enumerate(texts):
        np.testing.assert_allclose(feats[i, :lengths[i]], encoder(text), atol=2e-3)
        assert not feats[i, lengths[i]:].any()


def test_truncates_to_max_len():
    enc = MiniLMFrontEnd(max_len=12)
    feats, lengths = enc.encode(["word " * 100, "short one"])
    assert lengths.tolist() == [12, 4] and feats.shape == (2, 12, 384)


def test_mean_pooled_embeddings_are_semantic(encoder):
    feats, lengths = encoder.encode(["i love this movie", "i really like this film", "the bus leaves at nine"])
    pooled = feats.sum(1) / lengths[:, None]
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    assert pooled[0] @ pooled[1] > pooled[0] @ pooled[2] + 0.2


@pytest.mark.parametrize("text", ["", "   \n"])
def test_empty_text_is_an_input_error(encoder, text):
    with pytest.raises(InputError, match="empty text; expected at least one word"):
        encoder(text)


def test_missing_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="tokenizer file not found: .*nope.json; expected a Hugging Face tokenizer"):
        MiniLMFrontEnd(tokenizer_path=tmp_path / "nope.json")
    with pytest.raises(InputError, match="ONNX file not found: .*nope.onnx; expected the MiniLM text encoder"):
        MiniLMFrontEnd(onnx_path=tmp_path / "nope.onnx")


def test_front_end_registry_builds_it():
    enc = front_end("minilm-l6-int8")
    assert isinstance(enc, MiniLMFrontEnd) and enc.name == "minilm-l6-int8" and enc.dim == 384


def test_disk_cache_round_trip_and_key(encoder, tmp_path, monkeypatch):
    texts = ["what a great movie", "boring"]
    feats, lengths = encode_cached(encoder, texts, progress=False, cache=tmp_path)
    files = list((tmp_path / "text").glob("*.npz"))
    assert len(files) == 1
    with np.load(files[0], allow_pickle=False) as z:  # plain arrays, no pickle
        assert z["tokens"].shape == (int(lengths.sum()), 384)

    def boom(*args, **kwargs):
        raise AssertionError("cache miss")

    monkeypatch.setattr(encoder, "embed", boom)  # a miss tokenizes, then embeds
    again, again_len = encode_cached(encoder, texts, progress=False, cache=tmp_path)
    np.testing.assert_array_equal(again, feats)
    np.testing.assert_array_equal(again_len, lengths)
    with pytest.raises(AssertionError, match="cache miss"):  # other texts -> other key
        encode_cached(encoder, texts[::-1], progress=False, cache=tmp_path)


def test_truncation_is_said_on_a_cache_hit_too(tmp_path):
    """The warning came from the tokenizer, which a cache hit skips: a second `train`, `eval` or `compress` on the
    same label.csv scored truncated texts without a word. Said on a hit, it pointed past the caller ('sys:1'),
    unlike the miss's warning: both point at encode_cached's caller now, from the one count both use."""
    enc = MiniLMFrontEnd(max_len=6)
    texts = ["one two three four five six seven", "two words", "one two three four"]  # 9, 4 and 6 tokens
    for _ in range(2):
        with pytest.warns(UserWarning) as said:
            encode_cached(enc, texts, progress=False, cache=tmp_path)
        assert [str(w.message) for w in said] == ["1 of 3 texts are longer than 6 tokens and were truncated"]
        assert said[0].filename == __file__
    assert len(list((tmp_path / "text").glob("*.npz"))) == 1  # the second read was a hit


def test_a_cache_hit_reads_the_truncation_count_and_old_entries_still_count(tmp_path, monkeypatch):
    """A hit tokenized every text whose cached length filled max_len again, only to count the truncated ones (1,609
    of MOSEI's 22,788 texts on every read): the entry holds the count now. Entries written before it are read as
    they were, counting as before."""
    enc = TokenIds(max_len=6)
    texts = ["one two three four five six seven", "two words", "one two three four"]  # 9, 4 and 6 tokens
    said = "1 of 3 texts are longer than 6 tokens and were truncated"
    with pytest.warns(UserWarning, match=said):
        first, _ = encode_cached(enc, texts, progress=False, cache=tmp_path)
    (entry,) = (tmp_path / "text").glob("*.npz")
    with np.load(entry, allow_pickle=False) as z:
        old = {"tokens": z["tokens"], "lengths": z["lengths"]}
    counted = []
    encode_batch = enc.tokenizer.encode_batch
    monkeypatch.setattr(enc, "_tokenizer", SimpleNamespace(encode_batch=lambda t: counted.append(t) or encode_batch(t)))
    with pytest.warns(UserWarning, match=said):
        encode_cached(enc, texts, progress=False, cache=tmp_path)
    assert counted == []
    np.savez(entry, **old)  # an entry of the layout before the count
    with pytest.warns(UserWarning, match=said):
        again, _ = encode_cached(enc, texts, progress=False, cache=tmp_path)
    assert counted == [[texts[0], texts[2]]] and np.array_equal(again, first)

def test_corrupt_cache_entry_is_recomputed(encoder, tmp_path):
    encode_cached(encoder, ["fine"], progress=False, cache=tmp_path)
    (entry,) = (tmp_path / "text").glob("*.npz")
    entry.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable text feature cache"):
        feats, lengths = encode_cached(encoder, ["fine"], progress=False, cache=tmp_path)
    assert lengths.tolist() == [3] and np.load(entry, allow_pickle=False)["lengths"].tolist() == [3]


def test_a_file_cached_whole_is_keyed_once_when_some_rows_are_asked_for(tmp_path, monkeypatch):
    """encode_texts for some rows of a file cached whole (eval after training on it) asked whether the entry existed,
    then read it: the key of every text (22,788 of MOSEI's, with the encoder's files) was hashed twice. Once now,
    and a cold and a warm read give the same arrays."""
    import edge_msa.features.text as text
    from edge_msa.data.assemble import encode_texts

    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path))
    enc, texts, ids = TokenIds(max_len=6), ["a good film", "bad", "so so"], ["a", "b", "c"]
    cold, cold_len = encode_cached(enc, texts, progress=False)
    keyed, entry = [], text._cache_entry
    monkeypatch.setattr(text, "_cache_entry", lambda *a: keyed.append(a[1]) or entry(*a))
    warm, warm_len, _ = encode_texts(texts, ids, enc, progress=False, rows=np.array([1]))
    assert keyed == [texts] and np.array_equal(warm, cold) and np.array_equal(warm_len, cold_len)


def test_a_file_cached_whole_warns_of_the_truncated_texts_of_the_rows_asked_for(tmp_path, monkeypatch):
    """`eval --split test` of MOSI-U, cached whole by training, said "22 of 2195 texts are longer than 50 tokens and
    were truncated": the entry's count, of every split. Now the rows read are counted (a miss embeds only those)."""
    from edge_msa.data.assemble import encode_texts

    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path))
    enc, ids = TokenIds(max_len=6), ["a", "b", "c"]
    texts = ["one two three four five six seven", "two words", "one two three four"]  # 9, 4 and 6 tokens
    with pytest.warns(UserWarning, match="1 of 3 texts"):
        encode_cached(enc, texts, progress=False)
    with pytest.warns(UserWarning) as said:
        encode_texts(texts, ids, enc, progress=False, rows=np.array([0, 1]))
        encode_texts(texts, ids, enc, progress=False, rows=np.array([1, 2]))  # none of them cut: no warning
    assert [str(w.message) for w in said] == ["1 of 2 texts are longer than 6 tokens and were truncated"]


def test_runs_without_torch():  # the device has no torch; the data readers need none either
    code = ("import sys; sys.modules['torch'] = None\n"
            "import edge_msa.data\n"
            "from edge_msa.features.text import MiniLMFrontEnd\n"
            "print(MiniLMFrontEnd()('hello there').shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(4, 384)"


def test_copied_files_give_the_same_features_and_cache_key(encoder, tmp_path):
    """A bundle carries its own tokenizer.json / text_encoder.onnx; the cache key follows content, not path."""
    tok = shutil.copy(encoder.tokenizer_path, tmp_path / "tokenizer.json")
    onnx = shutil.copy(encoder.onnx_path, tmp_path / "text_encoder.onnx")
    copy = MiniLMFrontEnd(tokenizer_path=tok, onnx_path=onnx, threads=1)
    assert copy.tokenizer_path == tmp_path / "tokenizer.json" and copy.onnx_path == tmp_path / "text_encoder.onnx"
    np.testing.assert_allclose(copy("so much fun"), encoder("so much fun"), atol=1e-5)
    assert copy.fingerprint() == encoder.fingerprint()
    assert MiniLMFrontEnd(max_len=20).fingerprint() != encoder.fingerprint()
