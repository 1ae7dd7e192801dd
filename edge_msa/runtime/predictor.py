"""Predictor: run a bundle on device (numpy + onnxruntime; torch is never imported here).

Parts layout: text (front end) -> encode_text -> gate(h_text, present) -> only for the audio/video the
gate keeps: their front end (raw media) and encoder -> fuse, with the
skip rule `edge_msa.spec.modality_runs`: modality m runs iff present and
keep[:, i] >= skip_thresholds[i]; a skipped or missing modality feeds zeros and present=0 to fuse.
Single layout: one graph, every present modality runs.
"""
from __future__ import annotations

import mmap
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ..errors import ArtifactError, EdgeMSAError, InputError, checked_threads, given, one_line, option_name, warn
from ..features import MAX_MEDIA_SECONDS, check_max_media_seconds, media_file, refuse_long_media
from ..features.audio import NAME as LOGMEL, VIDEO_EXTS, has_audio_track
from ..features.text import TOKENS_PREFIX, MiniLMFrontEnd, TextError, TokenIds, WordPiece, check_tokenizer_tag
from ..labels import polarity
from ..paths import utf8_path
from ..spec import ABSENT, GRAPH_IO, MODALITIES, SINGLE, SKIPPABLE, FeatureSpec, input_shapes, modality_runs
from .backend import Backend, backend_class
from .manifest import Manifest, check_readable, read_manifest, verify_files
from .onnxruntime_backend import provider_names

ONE_OFF = ("text_encoder_load",)  # ms keys paid once per Predictor, reported as load_ms, not in ms.total
# A score that is no number comes of a broken model (a NaN weight exports and loads), whatever the input
BROKEN = ("the model scored {} (a broken bundle: NaN or infinite weights); expected a bundle whose model scores "
          "finite numbers (export it again from a sound checkpoint)")


@dataclass
class Prediction:
    """One input's result. `ran` lists the modalities whose encoder ran; `skipped[m]` says why not.

    `ms`: this input's share of each per-call stage (in a batch: the stage's time / batch size, i.e.
    amortised) and `total`, their sum. `load_ms`: one-off costs this call paid (building the text
    encoder session on first use), kept out of `total` because later calls do not pay them. `warnings`: what
    this input's caller should know about an answer that still came (its text or token ids cut to the encoder's
    max length); `warnings.warn` says it once per batch, which a service answering many clients cannot pass on.
    """

    score: float
    polarity: str
    ran: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    ms: dict[str, float] = field(default_factory=dict)
    load_ms: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, dicts and numbers, for json.dumps (the CLI's --json lines, the REST answers)."""
        return asdict(self)


class ItemError(InputError):
    """What was wrong with one input of a predict_batch call of several: `index` counts from 0 as the list does and
    `reason` is the error itself, so a caller that read the inputs from a file can name the row as its user finds
    it (the CLI: a CSV's data row from 1, an .npz's index along N)."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"input index {index}: {reason}")
        self.index, self.reason = index, reason

    def __reduce__(self) -> tuple[type, tuple[int, str]]:
        """Pickled with its own arguments: Exception's default (its message alone) did not unpickle, so an error
        raised in a worker process (multiprocessing, concurrent.futures) broke the pool instead of reaching it."""
        return type(self), (self.index, self.reason)


class BrokenModel(ArtifactError):
    """The bundle's model scored no number (NaN or inf): a Prediction of it said score NaN with polarity "neutral",
    which an app read as a neutral sentence. The model is broken, not the input, so no input is named. `reason` is
    the message without the bundle's path: the REST service answers it to clients, who have no use for its folders."""

    def __init__(self, bundle: str, reason: str) -> None:
        super().__init__(f"bundle '{bundle}': {reason}")
        self.bundle, self.reason = bundle, reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        """Pickled with its own arguments, as ItemError is (a worker process's error must reach its pool)."""
        return type(self), (self.bundle, self.reason)


@contextmanager
def _blame(index: int, many: bool) -> Iterator[None]:
    """An InputError raised inside becomes an ItemError naming input `index` when the call has several inputs (an
    input alone needs no name)."""
    try:
        yield
    except ItemError:
        raise
    except InputError as exc:
        if not many:
            raise
        raise ItemError(index, str(exc)) from None


class Predictor:
    """Runs the graphs of one bundle. Build it with `edge_msa.runtime.load(bundle_dir)`."""

    def __init__(self, manifest: Manifest, backends: Mapping[str, Backend], bundle: str | os.PathLike | None = None,
                 threads: int | None = None, max_media_seconds: float = MAX_MEDIA_SECONDS,
                 text_providers: Sequence[str] | None = None) -> None:
        self.manifest = manifest
        self.spec = manifest.feature_spec
        self.backends = dict(backends)
        self.bundle = Path(bundle).absolute() if bundle else None  # read again at the first text: a chdir can't move it
        self.threads = threads
        self.text_providers = text_providers  # the frozen text encoder's onnxruntime providers (None: the CPU)
        self.max_media_seconds = max_media_seconds
        self.thresholds = list(manifest.skip_thresholds or [0.0] * len(SKIPPABLE))
        self.closed = False
        self._text_encoder: TokenIds | MiniLMFrontEnd | None = None
        self._front_ends: dict[str, Any] = {}
        self.tokens = self.spec.front_end("text").startswith(TOKENS_PREFIX)  # graphs take token ids
        self.positions_count_padding = self.bundle is not None and positions_count_padding(self.bundle, manifest)
        if self.positions_count_padding:
            warn(f"bundle '{self.bundle}' is an {manifest.model} teacher {PADDED_POSITIONS}")

    # --- public API -----------------------------------------------------------------------------
    def predict(self, text: Any = None, audio: Any = None, video: Any = None) -> Prediction:
        """One input: text is a str (run through the bundled text encoder) or an (L, d) or (1, L, d) array (a
        token-id bundle's ids: (L,), (1, L), (L, 1) or (1, L, 1), ints or floats); audio/video are (L, d) or
        (1, L, d) arrays or media file paths (str or Path; if the bundle's front end for them is a built-in one);
        `spec.input_shapes` words these shapes for the errors. An array may be any float array, nested lists or a CPU torch tensor;
        one holding NaN or inf is refused, naming how many and the first's place. With a video file and no audio,
        a logmel-v1 bundle takes the audio from the video's audio track (PyAV). An input without a modality leaves
        it out (None); an array of it with no steps, (0, d), is refused, as an empty text or an audio file without
        samples is: the modality given, with nothing in it. predict_features, whose rows say "missing" by a length of
        0, reads a (B, 0, d) array as missing (see there)."""
        return self.predict_batch([{"text": text, "audio": audio, "video": video}])[0]

    def predict_batch(self, inputs: Iterable[Mapping[str, Any]]) -> list[Prediction]:
        """Many inputs in one batched pass per graph (throughput); each item is {modality: value}. An INT8 bundle
        runs them one at a time (`row_by_row`), so every item scores what `predict` gives it alone."""
        self._check_open()
        inputs = _checked_items(inputs)
        if self.row_by_row and len(inputs) > 1:
            return self._one_by_one(inputs)
        return self._score_batch(inputs)

    def _score_batch(self, inputs: list[Mapping[str, Any]], warn_truncated: bool = True) -> list[Prediction]:
        """predict_batch's inputs in one pass per graph; `warn_truncated`: the tokenizer's warning of texts cut to
        max_len (off for a row of `_one_by_one`, which says it once for the whole batch)."""
        ms: dict[str, float] = {}
        rows, media, skipped, notes = self._prepare(inputs, ms, warn_truncated)
        for i, (row, pending, reasons) in enumerate(zip(rows, media, skipped)):
            if not row and not pending:
                why = "; ".join(f"{m}: {r}" for m, r in reasons.items()) or "nothing given"
                with _blame(i, len(inputs) > 1):
                    raise InputError(f"input has no usable modality ({why}); expected text, audio or video")
        present = {m: np.array([m in r or m in p for r, p in zip(rows, media)]) for m in MODALITIES}  # (B,)

        def fetch(m: str, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """Features of m for rows idx, running its media front end only now (after the gate)."""
            for i in idx:
                if m in media[i]:
                    with _blame(int(i), len(inputs) > 1):
                        rows[i][m] = self._checked(m, self._media(m, media[i].pop(m), ms))
            return _pad([rows[i] for i in idx], self.spec, m)

        scores, ran, keep, stage_ms = self._forward(present, fetch)
        self.check_finite(scores)
        ms.update(stage_ms)
        load_ms = {k: round(ms.pop(k), 3) for k in ONE_OFF if k in ms}
        item_ms = {k: round(v / len(inputs), 3) for k, v in ms.items()}  # each item's share of the batch
        item_ms["total"] = round(sum(item_ms.values()), 3)
        out = []
        for i in range(len(inputs)):
            reasons = dict(skipped[i])
            for j, m in enumerate(SKIPPABLE):
                if present[m][i] and not ran[i, j + 1]:
                    reasons[m] = f"gate: keep {keep[i, j]:.3f} < threshold {self.thresholds[j]:.3f}"
            for m in MODALITIES:
                if not present[m][i] and m not in reasons:
                    reasons[m] = "missing"
            ran_names = [m for j, m in enumerate(MODALITIES) if ran[i, j]]
            out.append(Prediction(float(scores[i]), polarity(float(scores[i])), ran_names, reasons, dict(item_ms),
                                  dict(load_ms), notes[i]))
        return out

    def predict_features(self, features: Mapping[str, np.ndarray],
                         lengths: Mapping[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Batched scores for padded arrays features[m] (B, L, d) with lengths[m] (B,) (0 = missing; a
        modality absent from `features` is missing for every row). A (B, 0, d) array is missing in every row too:
        it is what padding to the longest row gives when every row's length is 0, whereas `predict` refuses one
        input's (0, d) array. Returns (scores (B,), ran (B, 3) bool). Unlike predict_batch, a NaN or inf score is
        returned as it is, not raised: these are raw arrays for evaluation, and export's parity check tells from
        them whether the checkpoint or its graphs are broken, which an error raised here could not."""
        self._check_open()
        feats, lens = self._check_features(features, {} if lengths is None else lengths)
        if self.row_by_row and len(lens["text"]) > 1:
            rows = [self._forward(*_one_row(feats, lens, i))[:2] for i in range(len(lens["text"]))]
            return np.concatenate([s for s, _ in rows]), np.concatenate([r for _, r in rows])
        return self._forward(*_batched(feats, lens))[:2]

    @property
    def row_by_row(self) -> bool:
        """Whether batches run one row at a time. INT8 bundles are dynamically quantized: each graph call takes its
        activation scale from the whole input tensor, batch-mates and their padding included, so a batched row
        would score differently from the same row alone (up to 0.07 on MOSI-U, flipping a polarity). An old
        fd_cmdie bundle (`positions_count_padding`) depends on its batch-mates' padding too; alone, a row has none:
        it scores what the re-exported bundle gives it, except that a missing text or audio (one masked step in
        the joined sequence) still moves the later positions by one."""
        return self.manifest.precision == "int8" or self.positions_count_padding

    def check_finite(self, scores: np.ndarray) -> None:
        """Refuse to make Predictions of scores that are no number (BrokenModel): predict, predict_batch, `edge-msa
        predict` and the REST service (its warm-up, and each batch) all go through here, and so does evaluation
        (runtime/evaluate.py) of predict_features' raw scores. Costs about a microsecond a batch."""
        finite = np.isfinite(scores)
        if not finite.all():
            raise BrokenModel(str(self.bundle or "in memory"), BROKEN.format(float(scores[~finite][0])))

    def _one_by_one(self, inputs: list[Mapping[str, Any]]) -> list[Prediction]:
        """predict_batch's inputs each run by itself (`row_by_row`), an error naming its item, with one warning for
        the texts cut to max_len counted over the batch. Why: each row's own warning said "1 of 1 texts" (shown once
        by Python, however many rows were cut), where a batched bundle says "2 of 3"."""
        out = []
        for i, item in enumerate(inputs):
            with _blame(i, True):
                out.extend(self._score_batch([item], warn_truncated=False))
        texts = sum(isinstance(item.get("text"), str) for item in inputs)
        if texts:
            cut = sum(self.text_encoder.truncation_note in p.warnings for p in out)
            self.text_encoder.warn_truncated(cut, texts)
        return out

    def close(self) -> None:
        """Release every graph's runtime session (device memory on a GPU); `with load(...) as p:` calls it."""
        for backend in self.backends.values():
            backend.close()
        self.closed = True

    def _check_open(self) -> None:
        """Refuse a call after close(): its graphs' sessions are gone, and running one said 'onnxruntime rejected
        the inputs ('NoneType' object has no attribute 'run')', blaming the inputs."""
        if self.closed:
            raise InputError("this Predictor is closed (its `with` block ended, or close() was called); expected "
                             "one that is open: call edge_msa.load() again")

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- graph execution ------------------------------------------------------------------------
    def _forward(self, present: dict[str, np.ndarray], fetch: Callable[[str, np.ndarray], tuple]):
        """(scores (B,), ran (B, 3) bool, keep (B, 2), ms per stage). present[m] (B,) bool says which rows
        have m; fetch(m, rows) -> (x (R, L, d), lengths (R,)) is called only for the rows that run m, so a
        modality the gate skips never reaches its (raw-media) front end."""
        ms: dict[str, float] = {}
        batch = len(present["text"])
        everyone = np.arange(batch)
        if self.manifest.layout == "single":
            inputs = []
            for m in MODALITIES:
                x, n = fetch(m, everyone)
                inputs += [self._graph_input(m, x), _mask(x, n)]
            (score,) = self._call(SINGLE, inputs, ms)
            ran = np.stack([present[m] for m in MODALITIES], axis=1)  # (B, 3)
            return score, ran, np.ones((batch, len(SKIPPABLE)), np.float32), ms
        x, n = fetch("text", everyone)
        (h_text,) = self._call("encode_text", (self._graph_input("text", x), _mask(x, n)), ms)  # (B, D)
        keep = np.zeros((batch, len(SKIPPABLE)), np.float32)  # (B, 2); unused when nothing is present
        present_f = np.stack([present[m] for m in MODALITIES], axis=1).astype(np.float32)  # (B, 3)
        if any(present[m].any() for m in SKIPPABLE):
            (keep,) = self._call("gate", (h_text, present_f), ms)
        hs, runs = [h_text], [present["text"]]
        for i, m in enumerate(SKIPPABLE):
            run = modality_runs(present[m], keep[:, i], self.thresholds[i])  # (B,)
            h = np.zeros_like(h_text)  # (B, D)
            if run.any():
                rows = np.flatnonzero(run)
                x, n = fetch(m, rows)
                h[rows] = self._call(f"encode_{m}", (x, _mask(x, n)), ms)[0]
            hs.append(h)
            runs.append(run)
        ran_arr = np.stack(runs, axis=1)  # (B, 3)
        (score,) = self._call("fuse", (*hs, ran_arr.astype(np.float32)), ms)  # (B,)
        return score, ran_arr, keep, ms

    def _graph_input(self, m: str, x: np.ndarray) -> np.ndarray:
        """Token-id text travels as (B, L, 1) float arrays (exact for ids < 2**24); its graphs take (B, L) int64."""
        return np.rint(x[..., 0]).astype(np.int64) if m == "text" and self.tokens else x

    def _call(self, part: str, inputs: Sequence[np.ndarray], ms: dict[str, float]) -> list[np.ndarray]:
        """Run one graph on its inputs in spec order (spec.PART_IO / SINGLE_IO name them); outputs in that order."""
        names_in, names_out = GRAPH_IO[part]
        start = time.perf_counter()
        out = self.backends[part].run(dict(zip(names_in, inputs)))
        ms[part] = ms.get(part, 0.0) + (time.perf_counter() - start) * 1e3
        return [out[name] for name in names_out]

    # --- inputs -----------------------------------------------------------------------------------
    def _check_features(self, features: Mapping[str, np.ndarray], lengths: Mapping[str, np.ndarray]):
        """predict_features' arguments as float32 (B, L, d) arrays and (B,) int64 lengths per modality (zeros where
        a modality is missing), or one line saying what is wrong with them."""
        for name, value in (("features", features), ("lengths", lengths)):
            if not isinstance(value, Mapping):  # an array alone was read key by key (unhashable ndarray)
                raise InputError(f"predict_features got {name} of type {type(value).__name__}; expected a dict "
                                 f"{{modality: array}} with modalities {', '.join(MODALITIES)}")
        unknown = (set(features) | set(lengths)) - set(MODALITIES)
        if unknown:
            raise InputError(f"unknown modalities {sorted(unknown)}; expected {', '.join(MODALITIES)}")
        if not features:
            raise InputError("no features given; expected at least one of text, audio, video")
        orphans = sorted(set(lengths) - set(features))  # were dropped: the modality ran as missing in every row
        if orphans:
            raise InputError(f"lengths given for {', '.join(orphans)} without features; expected features and "
                             "lengths for the same modalities")
        features = {m: as_array(m, x, f"(B, L, {self.spec.dim(m)})") for m, x in features.items()}
        batch = {x.shape[0] if x.ndim == 3 else -1 for x in features.values()}
        if len(batch) != 1 or -1 in batch:
            raise InputError(f"features must all be (B, L, d) arrays with the same B; got shapes "
                             f"{ {m: x.shape for m, x in features.items()} }")
        b = batch.pop()
        feats, lens = {}, {}
        for m in MODALITIES:
            if m not in features:
                feats[m] = np.zeros((b, 1, self.spec.dim(m)), np.float32)
                lens[m] = np.zeros(b, np.int64)
                continue
            x = self._float32(m, features[m])
            default = np.full(b, x.shape[1])  # every row fully valid; 0 for (B, 0, d)
            if x.shape[1] == 0:  # (B, 0, d): missing everywhere; graphs need L >= 1
                x = np.zeros((b, 1, x.shape[2]), np.float32)
            lens[m] = check_lengths(m, lengths.get(m, default), b, x.shape[1])
            feats[m] = np.ascontiguousarray(self._within_positions(x, lens[m]) if m == "text" and self.tokens else x)
        return feats, lens

    def _within_positions(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Padded token ids (B, L, 1) cut to the encoder's max_len positions where only padding lies past them. A
        row longer than that is refused: its ids were made for a longer max_len, and the graph failed on them
        deep inside onnxruntime (predict cuts one input's ids with a warning, as the tokenizer cuts a text)."""
        max_len = self.spec.max_len("text")
        if lengths.max(initial=0) > max_len:
            raise InputError(f"text token ids run to {lengths.max()} steps; expected at most the encoder's {max_len} "
                             f"positions (tokenize with max_len={max_len})")
        return ids[:, :max_len]

    def _prepare(self, inputs: Sequence[Mapping[str, Any]], ms: dict[str, float], warn_truncated: bool = True):
        """Per row: {m: (L, d) float32 array} for text and feature arrays, {m: Path} for media files whose
        front end runs later (only if the gate keeps m), {m: reason} for inputs that cannot be used, and the
        row's warnings (its text truncated: told from the one tokenization, not a second one per text);
        `warn_truncated` as in `_score_batch`."""
        rows: list[dict[str, np.ndarray]] = [{} for _ in inputs]
        media: list[dict[str, Path]] = [{} for _ in inputs]
        skipped: list[dict[str, str]] = [{} for _ in inputs]
        notes: list[list[str]] = [[] for _ in inputs]
        texts = []
        for i, item in enumerate(inputs):
            if isinstance(item.get("text"), str):
                with _blame(i, len(inputs) > 1):
                    texts.append((i, check_unicode(item["text"])))
        if texts:
            if self._text_encoder is None:  # first use: loading is a one-off, not per-call cost
                start = time.perf_counter()
                self.text_encoder.load()
                ms["text_encoder_load"] = (time.perf_counter() - start) * 1e3
            start = time.perf_counter()
            encodings = self._encodings(texts, len(inputs) > 1, warn_truncated)
            encoded, lens = self.text_encoder.embed([e.ids for e in encodings])
            ms[self.text_encoder.stage] = (time.perf_counter() - start) * 1e3
            for (i, _), x, n, e in zip(texts, encoded, lens, encodings):
                rows[i]["text"] = x[:n]
                warning = self.text_encoder.truncation_warning(e)
                if warning:
                    notes[i].append(warning)
        for i, item in enumerate(inputs):
            with _blame(i, len(inputs) > 1):
                self._prepare_item(item, rows[i], media[i], skipped[i], notes[i])
        return rows, media, skipped, notes

    def _encodings(self, texts: list[tuple[int, str]], many: bool, warn_truncated: bool) -> list:
        """The tokenizer's encodings of (input index, text) pairs. A text it refuses (one of several inputs) is an
        ItemError naming its input. Why: the tokenizer names a text by its place among the texts, which is not the
        input's (a CSV row, a REST request) where some inputs have no text, so `predict --batch` named the wrong
        row and the REST batcher could not tell which request to fail."""
        try:
            return self.text_encoder.encodings([t for _, t in texts], warn=warn_truncated)
        except TextError as exc:
            if not many:
                raise
            raise ItemError(texts[exc.index][0], exc.reason) from None

    def _prepare_item(self, item: Mapping[str, Any], row: dict[str, np.ndarray], media: dict[str, Path],
                      skipped: dict[str, str], notes: list[str]) -> None:
        """_prepare for one input's audio, video and text arrays (its text string is encoded with the batch's);
        `notes` gets its warnings."""
        for m in MODALITIES:
            value = item.get(m)
            if value is None or (m == "text" and isinstance(value, str)):
                continue
            if self.spec.front_end(m) == ABSENT:  # trained on data without m (e.g. a text-only corpus)
                skipped[m] = "missing: the model was trained without this modality"
                continue
            if isinstance(value, (str, os.PathLike)):
                if m == "text":  # no front end reads text from a file: the path was scored as the text, or decoded
                    raise InputError(f"text is a path ({value}); expected a string or an (L, {self.spec.dim(m)}) "
                                     "array (read the file's text first)")
                reason = self._media_check(m, Path(value))
                if reason:
                    skipped[m] = reason
                else:
                    media[m] = Path(value)
                continue
            row[m] = self._checked(m, self._array(m, value), notes)
        video = media.get("video")
        if video is not None and takes_audio_from(video, item.get("audio"), self.spec):
            reason = self._audio_track_check(video)
            if reason:
                skipped["audio"] = reason
            else:
                media["audio"] = video  # decoded by the audio front end only if the gate keeps audio

    def _array(self, m: str, value: Any) -> np.ndarray:
        """A caller's (L, d) value (an array, nested lists, a tensor, a (1, L, d) array; a token-id bundle's text
        ids also as a flat list or a (1, L) batch of one) as an ndarray, or one line saying what it is instead (a
        ragged list, bytes, a dict, a number, several texts or paths). Its messages list every shape taken: a
        token-id bundle's (6, 384) text was told "expected (L, 1) or (B, L, 1)" (spec.check's batch shapes), without
        its flat (L,) ids."""
        flat = m == "text" and self.tokens  # token ids as the tokenizer lists them: (L,) is (L, 1)
        want = input_shapes(self.spec.dim(m), token_ids=flat)
        array = as_array(m, value, want)
        kinds = "a string or" if m == "text" else "a media file path or"
        if array.ndim == 0 or isinstance(value, (bytes, bytearray)):
            raise InputError(f"{m} is {type(value).__name__}; expected {kinds} an {want} array")
        if array.dtype.kind in "US":  # a list of texts or paths: predict takes one input, predict_batch several
            raise InputError(f"{m} is a {type(value).__name__} of {len(array)} strings; expected {kinds} an {want} "
                             "array (predict_batch takes several inputs)")
        shape = array.shape
        if array.ndim == 3 and array.shape[0] == 1:
            array = array[0]
        elif flat and array.ndim == 2 and array.shape[0] == 1:  # (1, L) ids: a tokenizer's batch of one
            array = array[0]
        if array.ndim == 1 and flat:
            array = array[:, None]
        if array.ndim != 2 or array.shape[1] != self.spec.dim(m):
            raise InputError(f"{m} features have shape {shape}; expected {want}")
        return array

    def _checked(self, m: str, array: np.ndarray, notes: list[str] | None = None) -> np.ndarray:
        """A finite float32 (L, d) array of m with L >= 1 (`_float32`); token ids cut to the encoder's positions
        with a warning, also added to `notes` (the row's Prediction.warnings)."""
        x = self._float32(m, array)
        if x.shape[0] == 0:
            raise InputError(f"{m} features have no steps (shape {array.shape}); expected L >= 1 (an input without "
                             f"{m} leaves {m} out)")
        if m == "text" and self.tokens:
            max_len = self.spec.max_len("text")
            if len(x) > max_len:  # the encoder has max_len positions; raw text is cut by the tokenizer the same way
                warning = (f"text: {len(x)} token ids are more than the encoder's {max_len} positions; truncated to "
                           f"the first {max_len}")
                warn(warning)
                x = x[:max_len]
                if notes is not None:
                    notes.append(warning)
        return x

    def _float32(self, m: str, x: np.ndarray) -> np.ndarray:
        """`as_float32` of m's (L, d) or (B, L, d) array. Text token ids (token-id bundles) may be integers too, as a
        tokenizer gives them, and must lie in this bundle's vocabulary: an id outside it, negative or fractional was
        clamped or rounded inside the graph into the score of some other token. (Export checks the graphs before
        the tokenizer joins them, on ids from that tokenizer: without one, nothing tells the vocabulary.)"""
        tokens = m == "text" and self.tokens
        if tokens and x.dtype.kind in "iu":
            x = x.astype(np.float64)  # any id, exactly; one past float32's exact 2**24 is refused below anyway
        x = as_float32(m, x, self.spec)
        if tokens and x.size and self.manifest.text_encoder:
            vocab = self.text_encoder.vocab_size
            if (x != np.rint(x)).any() or x.min() < 0 or x.max() >= vocab:
                raise InputError(f"text token ids must be whole numbers in [0, {vocab}) for this bundle's "
                                 f"tokenizer; got values in [{x.min():g}, {x.max():g}]")
        return x

    def _media_check(self, modality: str, path: Path) -> str | None:
        """Why a media file cannot be used (None if it can): it does not exist, cannot be read, lasts longer than
        max_media_seconds or is a still image given as video (errors, whatever the model and the gate: a mistyped
        path must not pass as a skipped modality, and the same file must not be refused or not by the text beside
        it, with no limit (inf) as well), or the model was trained on external features that edge-msa cannot compute
        (warned and skipped)."""
        media_file(path, f"{modality} file", "a media file")
        name = self.spec.front_end(modality)
        if not self.spec.computes(modality):
            warn(f"{modality}: skipped {path.name}; this model expects {name} features (an array of "
                 f"shape (L, {self.spec.dim(modality)})), not a media file")
            return f"expects {name} features, got a media file"
        refuse_long_media(modality, path, self.max_media_seconds)
        return None

    def _audio_track_check(self, video: Path) -> str | None:
        """Why a video file's audio track cannot stand in for a missing audio input (None if it can). Reads
        the container header only, so the gate still decides before any audio is decoded."""
        try:
            return None if has_audio_track(video) else f"{video.name} has no audio track"
        except EdgeMSAError as exc:  # no PyAV, or an unreadable container (the video front end reports that)
            warn(f"audio: not taken from {video.name}: {exc}")
            return f"cannot read the audio track of {video.name}"

    def _media(self, modality: str, path: Path, ms: dict[str, float]) -> np.ndarray:
        """Features of a media file via the bundle's built-in front end (timed as front_end_<modality>)."""
        if modality not in self._front_ends:
            from ..features import front_end_for
            self._front_ends[modality] = front_end_for(self.spec, modality)
        start = time.perf_counter()
        array = np.asarray(self._front_ends[modality](str(path)), dtype=np.float32)
        ms[f"front_end_{modality}"] = ms.get(f"front_end_{modality}", 0.0) + (time.perf_counter() - start) * 1e3
        return array

    @property
    def dataset_text_front_end(self) -> WordPiece | None:
        """What a dataset's transcripts go through for this bundle (`load_dataset(..., text_encoder=)`): the bundle's
        own tokenizer / text encoder, or None where the bundle has none (text features come with the data)."""
        return self.text_encoder if self.manifest.text_encoder and self.bundle is not None else None

    @property
    def text_encoder(self) -> TokenIds | MiniLMFrontEnd:
        """The bundled text front end, built on first use: the tokenizer alone when the model encodes token ids
        itself (`encode_text` graph), else the frozen text encoder (text_encoder.onnx + tokenizer.json)."""
        if self._text_encoder is None:
            name = self.spec.front_end("text")
            files = self.manifest.text_encoder
            if not files or self.bundle is None:
                raise InputError(f"this bundle has no text encoder (its text front end is '{name}'); pass text as "
                                 f"an {input_shapes(self.spec.dim('text'))} feature array")
            max_len = self.spec.max_len("text")
            encoder = (TokenIds(self.bundle / files["tokenizer"], max_len=max_len) if self.tokens else
                       MiniLMFrontEnd(tokenizer_path=self.bundle / files["tokenizer"],
                                      onnx_path=self.bundle / files["onnx"], max_len=max_len, threads=self.threads,
                                      providers=self.text_providers))
            if self.tokens:  # the model's own tokenizer, not another one copied over it
                check_tokenizer_tag(encoder.tokenizer_path, name, f"bundle {self.bundle}")
            self._text_encoder = encoder
        return self._text_encoder


PADDED_POSITIONS = ("exported before 4a75a1b: its positions count padding, so a batched score depends on its "
                    "batch-mates; it runs one input at a time (slower); re-export it from its checkpoint with "
                    "`edge-msa export`")  # what loading such a bundle warns and `edge-msa info` shows


def positions_count_padding(bundle: Path, manifest: Manifest) -> bool:
    """Whether `bundle` is an fd_cmdie teacher exported before 4a75a1b, whose positions over the joined
    text | audio | video sequence counted its padding (the audio and video positions moved with the longest
    transcript in the batch). Its manifest cannot tell (same fields, same edge-msa version); its graph can: the
    fix counts the valid steps with the graph's only CumSum. An op type is stored verbatim in the ONNX file, so a
    byte search answers without the onnx package, which the device runtime does not install. Engine bundles are
    judged by the ONNX graph they were built from, which they keep."""
    if not manifest.model.startswith("fd_cmdie"):
        return False
    graph = bundle / (manifest.export_options.get("onnx_graphs") or manifest.graphs).get(SINGLE, "")
    if not graph.is_file() or graph.stat().st_size == 0:
        return False
    with open(graph, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return data.find(b"CumSum") < 0


def _checked_items(inputs: Any) -> list[Mapping[str, Any]]:
    """predict_batch's argument as a list, or one line saying why not: a non-empty list (or any iterable: a
    generator, which the checks would otherwise use up) of {text, audio, video} dicts; a dict or a string alone
    would otherwise be read key by key, or character by character, as inputs. A bad item of several is an ItemError
    naming it, as any other error of one input is."""
    want = "expected a list of {text, audio, video} dicts"
    if isinstance(inputs, (str, bytes, Mapping)) or not isinstance(inputs, Iterable):
        raise InputError(f"predict_batch got a {type(inputs).__name__}; {want} (predict() takes one input)")
    inputs = list(inputs)
    if not inputs:
        raise InputError(f"predict_batch got no inputs; {want}")
    for i, item in enumerate(inputs):
        with _blame(i, len(inputs) > 1):
            if not isinstance(item, Mapping):
                raise InputError(f"predict_batch got an item of type {type(item).__name__}; {want}")
            unknown = sorted(map(repr, set(item) - set(MODALITIES)))  # repr: keys of any type sort, 'txt' quoted
            if unknown:
                raise InputError(f"unknown input keys [{', '.join(unknown)}]; expected {', '.join(MODALITIES)}")
    return inputs


def _batched(feats: dict[str, np.ndarray], lens: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], Callable]:
    """`_forward`'s (present, fetch) for padded feature arrays and their lengths."""
    return {m: lens[m] > 0 for m in MODALITIES}, lambda m, idx: (feats[m][idx], lens[m][idx])


def _one_row(feats: dict[str, np.ndarray], lens: dict[str, np.ndarray], i: int) -> tuple[dict[str, np.ndarray],
                                                                                          Callable]:
    """`_batched` for row i alone, its padding cut off (graphs need L >= 1), as `predict` would pass it."""
    steps = {m: max(int(lens[m][i]), 1) for m in MODALITIES}
    return _batched({m: feats[m][i:i + 1, :steps[m]] for m in MODALITIES}, {m: lens[m][i:i + 1] for m in MODALITIES})


def _pad(rows: list[dict[str, np.ndarray]], spec: FeatureSpec, m: str) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad the rows' (L, d) arrays of modality m into (B, L_max, d) plus lengths (B,) (0 where a row lacks m)."""
    lens = np.array([len(r[m]) if m in r else 0 for r in rows], dtype=np.int64)  # (B,)
    x = np.zeros((len(rows), max(int(lens.max(initial=0)), 1), spec.dim(m)), np.float32)  # (B, L, d)
    for i, r in enumerate(rows):
        if m in r:
            x[i, :lens[i]] = r[m]
    return x, lens


def _mask(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    return np.arange(x.shape[1])[None, :] < lengths[:, None]  # (B, L) bool


def as_array(m: str, value: Any, want: str) -> np.ndarray:
    """`value` as an ndarray, or one line saying why numpy cannot read it: a ragged nested list, or a torch tensor that
    requires grad or lives on a GPU (numpy raised torch's RuntimeError or TypeError; its hint, e.g. 'Use
    tensor.detach()', is kept)."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError, RuntimeError) as exc:
        if isinstance(value, (list, tuple)):
            raise InputError(f"{m} is not a rectangular array of numbers; expected {want}") from None
        raise InputError(f"{m} is a {type(value).__name__} that numpy cannot read ({one_line(exc)}); expected "
                         f"{want}") from None


def takes_audio_from(video: Path | None, audio: Any, spec: FeatureSpec) -> bool:
    """Whether an input's audio comes from its video file's audio track: it gives no audio, and the bundle's audio
    front end decodes video containers. The REST service checks that track before the input joins a batch."""
    return (audio is None and video is not None and video.suffix.lower() in VIDEO_EXTS
            and spec.front_end("audio") == LOGMEL)


def check_unicode(text: str) -> str:
    """`text` if every tokenizer and database can take it: an unpaired UTF-16 surrogate (a JSON "\\ud800", a bad
    decode) cannot be encoded as UTF-8, and the tokenizer answers it with a TypeError."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("text holds an unpaired UTF-16 surrogate; expected valid Unicode text") from None
    return text


def as_float32(m: str, x: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """A checked float array of m (spec.check) as float32; values beyond float32's range are refused, since
    the cast would turn them into Inf with only a RuntimeWarning."""
    spec.check(m, x)
    with np.errstate(over="ignore"):
        out = x.astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        raise InputError(beyond_float32(m))
    return out


def beyond_float32(m: str) -> str:
    """as_float32's refusal, in one wording also where a value is past even float64 (the service's JSON integers,
    which have no digit limit): the service said "contain values beyond float32; expected finite values" for those."""
    return (f"{m} features hold values beyond float32's range (|x| > {np.finfo(np.float32).max:.4g}); expected "
            "finite float32 values")


def check_lengths(what: str, lengths: Any, batch: int, steps: int) -> np.ndarray:
    """`lengths` as (batch,) int64 in [0, steps], or one line saying why not. Floats and bools are refused, not
    rounded: a length of 1.5 or True is a caller's mistake, and a length past `steps` would read padding."""
    ln = np.asarray(lengths)
    if ln.shape != (batch,) or ln.dtype.kind not in "iu" or (ln < 0).any() or (ln > steps).any():
        raise InputError(f"{what} lengths must be {batch} integers in [0, {steps}]; got {ln.dtype} {ln.shape} "
                         f"{np.array2string(ln.ravel()[:4], separator=', ')}")
    return ln.astype(np.int64)


def load(bundle_dir: str | os.PathLike, backend: str | None = None, providers: Sequence[str] | None = None,
         threads: int | None = None, max_media_seconds: float = MAX_MEDIA_SECONDS) -> Predictor:
    """Open a bundle: read its manifest, check its files against the sha256 export recorded there (a file that
    differs is one ArtifactError: a copy damaged on its way to the device; hashing costs a few percent of the load),
    and load every graph with `backend` (default: the one the bundle was exported for, "onnxruntime" for .onnx
    graphs, "tensorrt" for engines). `providers`: onnxruntime's execution
    providers in preference order (one name alone is a list of one), for the graphs and a frozen text encoder; a
    TensorRT bundle takes none. Audio / video files longer than `max_media_seconds` are refused before any
    decoding (math.inf: no limit)."""
    if not isinstance(bundle_dir, (str, os.PathLike)):
        raise InputError(f"bundle is a {type(bundle_dir).__name__}; expected the path (str or os.PathLike) of the "
                         "folder written by `edge-msa export`")
    bundle = Path(bundle_dir)
    utf8_path(bundle, "bundle")
    manifest = read_manifest(bundle)
    verify_files(bundle, manifest)  # a byte flipped on the way to the device loads and answers other scores
    return open_bundle(bundle, manifest, backend, providers, threads, max_media_seconds)


def open_bundle(bundle: Path, manifest: Manifest, backend: str | None = None, providers: Sequence[str] | None = None,
                threads: int | None = None, max_media_seconds: float = MAX_MEDIA_SECONDS) -> Predictor:
    """A Predictor over `bundle`'s graphs as `manifest` describes them (load's second half; export validates a
    bundle through it before its manifest is written). A frozen text encoder (text_encoder.onnx) runs on the
    providers its graphs got where `providers` are given, else on the CPU: onnxruntime's best by default puts
    TensorRT's EP first, which would build an engine of the whole MiniLM at the first text."""
    threads = checked_threads(threads)  # 0: onnxruntime's default, like None
    providers = provider_names(providers)  # [] where none were asked for
    check_max_media_seconds(max_media_seconds)
    name = backend or manifest.backend
    # the backend named as its caller gave it (`given`): `--backend tensorrt` from a command, `backend = 'tensorrt'`
    # in Python; both were told "use backend='onnxruntime'", a keyword on the command line
    if name == "torch":
        raise InputError(f"{given('backend', name)} wraps a model in memory (export's parity check), not a bundle; "
                         f"expected {given('backend', manifest.backend)}, the backend the bundle was exported for")
    cls = backend_class(name)  # unknown names fail here, with a suggestion
    if name != manifest.backend:
        raise InputError(f"bundle '{bundle}' holds {manifest.backend} graphs ({manifest.precision}); it cannot run "
                         f"on {given('backend', name)}; expected {given('backend', manifest.backend)} (the default "
                         f"for this bundle) or a bundle exported for {name}")
    if providers and name != "onnxruntime":  # else ignored without a word: TensorRT takes no providers
        flag = option_name("providers")
        raise InputError(f"{flag} {', '.join(providers)} are onnxruntime's, but bundle '{bundle}' runs on {name}, "
                         f"which takes none; expected no {flag} for it (or an ONNX bundle)")
    for filename in manifest.graphs.values():
        check_readable(bundle / filename)
    for filename in (manifest.text_encoder or {}).values():  # built at the first text, but broken already now
        if not check_readable(bundle / filename).is_file():
            raise ArtifactError(f"text encoder file '{bundle / filename}' is missing; re-export the bundle")
    options = {"providers": providers, "threads": threads} if name == "onnxruntime" else {}
    backends = {}
    try:
        for part, filename in manifest.graphs.items():
            backends[part] = cls(bundle / filename, label=part, **options)
    except BaseException:
        for b in backends.values():
            b.close()
        raise
    # the providers the graphs got after onnxruntime's fallback
    text_providers = list(next(iter(backends.values())).providers) if providers else None
    return Predictor(manifest, backends, bundle, threads, max_media_seconds, text_providers)
