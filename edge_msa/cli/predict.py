"""`edge-msa predict`: run a bundle on one or many inputs; one JSON line per input (numpy + onnxruntime)."""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

EPILOG = """inputs (any modality may be left out):
  --text "..."          a transcript (bundles with the MiniLM text front end) or a .npy (L, d) feature array
  --audio / --video     a media file (bundles trained on logmel-v1 / face-v1) or a .npy (L, d) feature array;
                        a video file without --audio gives logmel-v1 bundles its audio track (needs PyAV:
                        pip install "edge-msa[media]"), decoded only if the gate keeps audio
  --features f.npz      arrays `text`, `audio`, `video` of shape (L, d) for one input or (N, L, d) for N inputs,
                        optional `text_len` / `audio_len` / `video_len` (N,) (0 = missing for that input)
  --batch list.csv      many inputs: a CSV with a header and any of the columns text, audio, video
                        (file paths relative to the CSV's folder); run as one batch

examples:
  edge-msa predict bundles/student --text "what a wonderful film" --features clip_av.npz
  edge-msa predict bundles/student --text "not my thing" --audio a.npy --video v.npy
  edge-msa predict bundles/cremad --text "don't forget a jacket" --video clip.flv
  edge-msa predict bundles/student --batch inputs.csv --threads 1

Each output line has score (sentiment in [-3, 3]), polarity, ran (modalities whose encoder ran),
skipped ({modality: reason}), ms (per stage; with --batch each line gets its share of
the batch: stage time / batch size; total = the sum of the stages) and load_ms (one-off costs such as
building the text encoder session, not in total).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="predict sentiment with a bundle (one JSON line per input)",
                              description="Run an exported bundle on text / audio / video inputs or feature arrays.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="bundle directory from `edge-msa export`")
    p.add_argument("--text", default=None, help="transcript text")
    p.add_argument("--audio", default=None, help="audio file or .npy feature array (L, d) "
                   "(default for logmel-v1 bundles: the --video file's audio track)")
    p.add_argument("--video", default=None, help="video file or .npy feature array (L, d)")
    p.add_argument("--features", default=None, help=".npz with text/audio/video arrays (see below)")
    p.add_argument("--batch", default=None, help="CSV of inputs (columns text, audio, video)")
    p.add_argument("--backend", default=None, help="onnxruntime | tensorrt (default: the bundle's)")
    p.add_argument("--providers", default=None, help="comma-separated onnxruntime providers (default: best available)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: onnxruntime's)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..runtime import load

    if args.batch and (args.text or args.audio or args.video or args.features):
        raise InputError("--batch takes all inputs from the CSV; drop --text/--audio/--video/--features")
    if args.text is not None and not args.text.strip():
        raise InputError("empty --text; expected at least one word")
    items = _csv_items(Path(args.batch)) if args.batch else _flag_items(args)
    providers = args.providers.split(",") if args.providers else None
    with load(args.bundle, backend=args.backend, providers=providers, threads=args.threads) as predictor:
        for prediction in predictor.predict_batch(items):
            print(json.dumps(prediction.to_dict()))
    return 0


def _value(text: str | None, base: Path = Path(".")):
    """A .npy path -> its array; any other non-empty string -> a (media) path; empty -> missing."""
    import numpy as np

    from ..errors import InputError

    if not text:
        return None
    path = base / text
    if path.suffix == ".npy":
        if not path.is_file():
            raise InputError(f"feature file '{path}' does not exist")
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise InputError(f"cannot read '{path}' as a numpy array ({exc})") from None
    return path


def _text(text: str | None, base: Path = Path(".")):
    """A transcript, or (ending in .npy) a file of text features (L, d)."""
    return _value(text, base) if text and text.endswith(".npy") else (text or None)


def _flag_items(args) -> list[dict]:
    import numpy as np

    from ..errors import InputError
    from ..spec import MODALITIES

    base = {"text": _text(args.text), "audio": _value(args.audio), "video": _value(args.video)}
    if not args.features:
        if all(v is None for v in base.values()):
            raise InputError("no input given; pass --text, --audio, --video, --features or --batch")
        return [base]
    path = Path(args.features)
    if not path.is_file():
        raise InputError(f"features file '{path}' does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read '{path}' as an .npz without pickles ({exc})") from None
    unknown = set(arrays) - set(MODALITIES) - {f"{m}_len" for m in MODALITIES}
    if unknown:
        raise InputError(f"{path} has unknown arrays {sorted(unknown)}; expected text, audio, video (+ *_len)")
    sizes = {arrays[m].shape[0] for m in MODALITIES if m in arrays and arrays[m].ndim == 3}
    if len(sizes) > 1:
        raise InputError(f"{path}: (N, L, d) arrays disagree on N ({sorted(sizes)})")
    n = sizes.pop() if sizes else 1
    items = []
    for i in range(n):
        item = dict(base) if n == 1 else {m: None for m in MODALITIES}
        for m in MODALITIES:
            if m in arrays:
                x = arrays[m] if arrays[m].ndim == 2 else arrays[m][i]
                length = int(arrays[f"{m}_len"][i]) if f"{m}_len" in arrays else len(x)
                item[m] = x[:length] if length > 0 else None
        items.append(item)
    if n > 1 and any(v is not None for v in base.values()):
        raise InputError("--text/--audio/--video apply to one input; --features holds several")
    return items


def _csv_items(path: Path) -> list[dict]:
    from ..errors import InputError
    from ..spec import MODALITIES

    if not path.is_file():
        raise InputError(f"batch file '{path}' does not exist")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise InputError(f"{path} has no rows; expected a header (text,audio,video) and one input per row")
    unknown = set(rows[0]) - set(MODALITIES)
    if unknown:
        raise InputError(f"{path} has unknown columns {sorted(unknown)}; expected any of text, audio, video")
    return [{"text": _text(r.get("text"), path.parent), "audio": _value(r.get("audio"), path.parent),
             "video": _value(r.get("video"), path.parent)} for r in rows]
