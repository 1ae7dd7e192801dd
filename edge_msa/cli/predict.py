"""`edge-msa predict`: run a bundle on one or many inputs; one JSON line per input (numpy + onnxruntime)."""
from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path
from typing import Any

from ..spec import input_shapes

EPILOG = f"""inputs (any modality may be left out):
  --text "..."          a transcript (any bundle: its own tokenizer, or a frozen-encoder bundle's MiniLM) or a
                        .npy array: token ids {input_shapes(token_ids=True)} for a bundle with its own text
                        encoder, {input_shapes()} features for a frozen-encoder one (a path: an existing file,
                        or one word ending in .npy; a sentence stays text)
  --audio / --video     a media file (bundles trained on logmel-v1 / face-v1) or a .npy {input_shapes()}
                        feature array; a video file without --audio gives logmel-v1 bundles its audio track
                        (needs PyAV: pip install "edge-msa[media]"), decoded only if the gate keeps audio
  --features f.npz      arrays `text`, `audio`, `video` of shape (L, d) for one input or (N, L, d) for N inputs,
                        optional `text_len` / `audio_len` / `video_len` (N,) (0 = missing for that input)
  --batch list.csv      many inputs: a CSV with a header and any of the columns text, audio, video
                        (file paths relative to the CSV's folder); run as one batch; an error names
                        the data row (row 1 = the first row after the header)

examples:
  edge-msa predict bundles/student --text "what a wonderful film" --features clip_av.npz
  edge-msa predict bundles/student --text "not my thing" --audio a.npy --video v.npy
  edge-msa predict bundle/ --text "don't forget a jacket" --video clip.flv   # a bundle on our own front ends
  edge-msa predict bundles/student --batch inputs.csv --threads 1

Each output line has score (sentiment in [-3, 3]), polarity, ran (modalities whose encoder ran),
skipped ({{modality: reason}}), ms (per stage; with --batch each line gets its share of
the batch: stage time / batch size; total = the sum of the stages), load_ms (one-off costs such as
building the text encoder session, not in total) and warnings (lines about an input that was cut to the
encoder's max length; [] when none).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from . import add_backend_flag, add_media_limit_flag, add_threads_flag

    p = subparsers.add_parser("predict", help="predict sentiment with a bundle (one JSON line per input)",
                              description="Run an exported bundle on text / audio / video inputs or feature arrays.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="bundle directory from `edge-msa export`")
    p.add_argument("--text", default=None, help="transcript text")
    p.add_argument("--audio", default=None, help=f"audio file or .npy feature array {input_shapes()} "
                   "(default for logmel-v1 bundles: the --video file's audio track)")
    p.add_argument("--video", default=None, help=f"video file or .npy feature array {input_shapes()}")
    p.add_argument("--features", default=None, help=".npz with text/audio/video arrays (see below)")
    p.add_argument("--batch", default=None, help="CSV of inputs (columns text, audio, video)")
    add_backend_flag(p)
    p.add_argument("--providers", default=None, help="comma-separated onnxruntime providers (default: best available)")
    add_threads_flag(p)
    add_media_limit_flag(p, "refused before decoding")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError, checked_threads, named_as_flags
    from ..features import MEDIA_FLAG, check_max_media_seconds
    from ..features.text import EMPTY_TEXT, is_empty_text
    from ..jsonio import dumps
    from ..runtime.predictor import ItemError
    from . import load_bundle

    with named_as_flags(["threads"], spelled=MEDIA_FLAG):  # flags before inputs: a bad one read as "no input given"
        threads = checked_threads(args.threads)
        check_max_media_seconds(args.max_media_seconds)  # `--max-media-s -1`, as typed
    if args.batch and (args.text or args.audio or args.video or args.features):
        raise InputError("--batch takes all inputs from the CSV; drop --text/--audio/--video/--features")
    if args.text is not None and is_empty_text(args.text):  # before the bundle loads and --audio/--video decode
        raise InputError(f"--text: {EMPTY_TEXT}")
    items = _csv_items(Path(args.batch)) if args.batch else _flag_items(args)
    providers = args.providers.split(",") if args.providers else None
    with load_bundle(args.bundle, backend=args.backend, providers=providers, threads=threads,
                     max_media_seconds=args.max_media_seconds) as predictor:
        try:
            predictions = predictor.predict_batch(items)
        except ItemError as exc:  # "input index 3" -> the row as the user finds it in the file
            where = f"{args.batch} row {exc.index + 1}" if args.batch else f"{args.features} index {exc.index}"
            raise InputError(f"{where}: {exc.reason}") from None
        except InputError as exc:  # predict_batch names no index for one input; a one-row CSV's row is still row 1
            if not args.batch or len(items) != 1:
                raise
            raise InputError(f"{args.batch} row 1: {exc}") from None
    for prediction in predictions:
        print(dumps(prediction.to_dict()))
    return 0


def _check_utf8_argument(flag: str, value: str | None) -> None:
    """Refuse a command-line value whose bytes are not UTF-8 (a terminal or script in Latin-1: Python keeps such
    bytes as lone surrogates). Why here: the predictor then called `--text $'caf\\xe9'` "an unpaired UTF-16
    surrogate", words that do not say what the user typed wrong. A value without a lone surrogate was decoded whole
    in the locale's encoding (a Latin-1 locale's `--text café`, whose bytes are no UTF-8) and is taken as it is."""
    from ..errors import InputError

    try:
        (value or "").encode("utf-8")
        return
    except UnicodeEncodeError:  # a lone surrogate: a byte the locale's encoding could not decode, placed below
        pass
    try:
        os.fsencode(value or "").decode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError) as exc:  # the latter: a surrogate no byte gave (main() in code)
        raise InputError(f"{flag} is not valid UTF-8 ({exc.reason} at byte {exc.start}); expected UTF-8 text (convert "
                         "it, e.g. with iconv, or set the terminal to UTF-8)") from None


# What a .npy given to predict may hold, in spec.input_shapes' words: it said "(L, d)" only, for a token-id
# bundle's --text too, which takes token ids
NPY_SHAPES = (f"an .npy array: features {input_shapes()}, or a token-id bundle's text as token ids "
              f"{input_shapes(token_ids=True)}")


def _value(text: str | None, base: Path = Path(".")) -> Any:
    """A .npy path -> its array; any other non-empty string -> a (media) path; empty -> missing."""
    import numpy as np

    from ..errors import InputError, not_found

    if not text:
        return None
    path = base / text
    if path.suffix.lower() == ".npy":  # any case, as dataset detection (data.detect_format) has it
        if not path.is_file():
            raise not_found("feature file", path, NPY_SHAPES)
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:  # EOFError: an empty file
            raise InputError(f"cannot read '{path}' as a numpy array ({exc}); expected {NPY_SHAPES}") from None
    return path


def _text(text: str | None, base: Path = Path(".")) -> Any:
    """A transcript, or a file of text features (L, d): a value ending in .npy that is an existing file or has no
    whitespace (a path, perhaps mistyped: it fails as one). A sentence such as "I loved results.npy" stays text."""
    if not text:
        return None
    looks_like_a_path = text.lower().endswith(".npy") and ((base / text).is_file()
                                                         or not any(c.isspace() for c in text))
    return _value(text, base) if looks_like_a_path else text


def _flag_items(args: argparse.Namespace) -> list[dict]:
    from ..errors import InputError

    base = {"text": _text(args.text), "audio": _value(args.audio), "video": _value(args.video)}
    if isinstance(base["text"], str):  # a transcript (a path is checked as one where it is opened)
        _check_utf8_argument("--text", base["text"])
    if not args.features:
        if all(v is None for v in base.values()):
            raise InputError("no input given; pass --text, --audio, --video, --features or --batch")
        return [base]
    items = _npz_items(Path(args.features))
    if len(items) > 1 and any(v is not None for v in base.values()):
        raise InputError("--text/--audio/--video apply to one input; --features holds several")
    return [{**base, **items[0]}] if len(items) == 1 else items


def _npz_items(path: Path) -> list[dict]:
    """The inputs of a --features .npz: (L, d) arrays for one input or (N, L, d) for N, cut to *_len (0 = that
    input lacks the modality). Each input holds only the modalities the file has."""
    import numpy as np

    from ..data.npz import load_npz
    from ..errors import InputError
    from ..runtime.predictor import check_lengths
    from ..spec import MODALITIES

    arrays = load_npz(path, (), "features")
    unknown = set(arrays) - set(MODALITIES) - {f"{m}_len" for m in MODALITIES}
    orphans = [f"{m}_len" for m in MODALITIES if f"{m}_len" in arrays and m not in arrays]
    if unknown or orphans:
        raise InputError(f"{path} has unknown arrays {sorted(unknown) + orphans}; expected text, audio, video "
                         "(+ text_len, audio_len, video_len for the arrays present)")
    shapes = {m: arrays[m].shape for m in MODALITIES if m in arrays}
    ranks = {len(s) for s in shapes.values()}
    if not ranks <= {2, 3} or len(ranks) > 1:
        raise InputError(f"{path}: arrays have shapes {shapes}; expected all (L, d) for one input or all (N, L, d) "
                         "for N inputs")
    batched = {m: arrays[m] if arrays[m].ndim == 3 else arrays[m][None] for m in MODALITIES if m in arrays}
    sizes = {x.shape[0] for x in batched.values()}
    if len(sizes) > 1:
        raise InputError(f"{path}: (N, L, d) arrays disagree on N ({sorted(sizes)})")
    n = sizes.pop() if sizes else 1
    if n == 0:
        raise InputError(f"{path} holds 0 inputs (N = 0); expected at least one")
    lengths = {m: check_lengths(f"{path.name}: {m}", arrays.get(f"{m}_len", np.full(n, x.shape[1])), n, x.shape[1])
               for m, x in batched.items()}
    return [{m: x[i, :lengths[m][i]] if lengths[m][i] > 0 else None for m, x in batched.items()} for i in range(n)]


def _csv_items(path: Path) -> list[dict]:
    from ..errors import InputError, not_found
    from ..spec import MODALITIES

    if not path.is_file():
        raise not_found("batch file", path, "a CSV with a header (text,audio,video) and one input per row")
    try:  # utf-8-sig: spreadsheet programs start their UTF-8 CSVs with a byte-order mark
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, restkey="")
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read {path} as a UTF-8 CSV ({exc}); expected a header and one input per row") \
            from None
    if not rows:
        raise InputError(f"{path} has no rows; expected a header (text,audio,video) and one input per row")
    columns = reader.fieldnames or []
    unknown = set(columns) - set(MODALITIES)
    if unknown or len(set(columns)) < len(columns):
        raise InputError(f"{path} has columns {columns}; expected any of text, audio, video, each once")
    extra = next((i for i, r in enumerate(rows, 1) if "" in r), None)
    if extra:
        raise InputError(f"{path} row {extra} has more values than the header has columns; expected at most "
                         f"{len(columns)} (quote text that holds a comma)")
    return [_csv_item(path, i, r) for i, r in enumerate(rows, 1)]


def _csv_item(path: Path, row: int, values: dict) -> dict:
    """One CSV row's input; a feature file it names that is missing or unreadable is reported with the row."""
    from ..errors import InputError

    try:
        return {"text": _text(values.get("text"), path.parent), "audio": _value(values.get("audio"), path.parent),
                "video": _value(values.get("video"), path.parent)}
    except InputError as exc:
        raise InputError(f"{path} row {row}: {exc}") from None
