"""`edge-msa featurize`: raw audio/video clips + a labels CSV -> a featurized dataset .npz."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """\
examples:
  edge-msa featurize ../shared/data/raw_av/cremad --labels ../shared/data/raw_av/cremad/label.csv \\
      --label-map cremad --out cremad.npz
  edge-msa featurize clips/ --labels labels.csv --label-map "POS=1,NEU=0,NEG=-1" --text "hello" --out data.npz
  python -c "from edge_msa.data.loader import load_dataset; ds = load_dataset('cremad.npz'); print(ds.spec, len(ds.train), len(ds.valid), len(ds.test))"

input:
  labels CSV   UTF-8 (a byte-order mark is fine), a value holding a comma in quotes, one row per id;
               header row; an id column (id, name, utterance_id, utterance, file or filename) whose
               values are media file stems (or, where names repeat across subfolders, the stem with its
               folders: spk1/001); a 'label' column: a sentiment score in [-3, 3] or a category mapped
               with --label-map; optional 'text'/'transcript' and 'speaker' columns
               (else transcript.csv / speaker.csv beside the labels CSV, with the same id column).
  clips dir    searched recursively; per id a video (.mp4 .avi .flv .mov .mkv .webm .m4v .mpg .mpeg) and
               an audio file (.wav .flac .ogg .mp3, in that preference; a file that cannot be read falls
               back to the next of its kind, with a warning); the same name and extension twice (e.g. in
               two subfolders) for one id is an error (write the id with its folder). An id with only a
               video takes the audio track of the video container (needs PyAV: pip install
               "edge-msa[media]"); for an id with both, that track is the last fallback when no audio file
               can be read.
               Rows without any media, and media files without a row, are left out with a warning;
               a missing or unreadable modality is stored as length 0 (a row left with no modality
               at all is dropped; when no row is left it is an error and nothing is written).
  --label-map  'cremad' = happiness/HAP 1, neutral/NEU 0, anger/disgust/fear/sadness (ANG DIS FEA SAD) -1.

output (.npz, no pickle, format "edge-msa-features-v1"):
  id, label (N,) float32, split (N,) train/valid/test, transcript (N,) str,
  audio_feat (N, 50, 56) float32 + audio_len (N,)   front end logmel-v1: 40 log-mel, MFCC 1-13,
                                                     log energy, pitch/100 Hz, voicing; <= 50 pooled steps
  video_feat (N, 16, 105) float32 + video_len (N,)  front end face-v1: 16 frames, 8x8 face pixels,
                                                     2x2x9 gradient histograms, face box, face flag
  feature_spec (FeatureSpec JSON; text = minilm-l6-int8, computed from transcript when the data is read).
  Splits are speaker-disjoint when >= 3 speakers are known, else by utterance (seeded).
  Media files longer than --max-media-s (default 30 s; inf: none) are refused from their header before decoding
  and left out like unreadable ones.
  Last line printed: wrote N rows to OUT (train a, valid b, test c)[; K clips over S s left out (--max-media-s)].
"""

# The flags that are featurize()'s keywords of the same name, which its checks name as the user gave them
FEATURIZE_KNOBS = ("valid_frac", "test_frac", "seed")


def register(subparsers: argparse._SubParsersAction) -> None:
    from . import Typed, add_media_limit_flag

    p = subparsers.add_parser(
        "featurize", help="extract audio/video features from raw clips into a dataset .npz",
        description="Extract audio (soundfile + numpy) and video (OpenCV face) features from raw clips and "
                    "write a featurized dataset .npz with labels, transcripts and train/valid/test splits.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clips", help="directory with the media files (searched recursively)")
    p.add_argument("--labels", required=True, help="labels CSV (id column + label column)")
    p.add_argument("--out", required=True, help="output .npz path (written atomically)")
    p.add_argument("--label-map", default=None,
                   help="categorical labels -> scores: a preset (cremad) or 'CAT=SCORE,...'")
    p.add_argument("--text", default=None, help="one transcript for every clip (overrides CSV transcripts)")
    p.add_argument("--valid-frac", type=Typed, default=0.15, help="validation fraction (default 0.15)")
    p.add_argument("--test-frac", type=Typed, default=0.15, help="test fraction (default 0.15)")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    add_media_limit_flag(p, "refused before decoding and left out with a warning")
    p.add_argument("--quiet", action="store_true", help="no progress bar, timing line or warnings")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import warnings

    from ..errors import named_as_flags
    from ..features import MEDIA_FLAG
    from ..features.featurize import featurize

    too_long: set[Path] = set()
    with warnings.catch_warnings(record=True) as caught:  # held back so they do not break up the progress bar
        warnings.simplefilter("always")
        try:
            with named_as_flags(FEATURIZE_KNOBS, spelled=MEDIA_FLAG):  # `--valid-frac nan` was named `valid_frac=nan`
                path = featurize(args.clips, args.labels, args.out, text=args.text, label_map=args.label_map,
                                 valid_frac=args.valid_frac, test_frac=args.test_frac, seed=args.seed,
                                 progress=not args.quiet, max_media_seconds=args.max_media_seconds, too_long=too_long)
        finally:  # before an error too: "skipping 2 labelled ids with no media: ..." explains what it refused
            if not args.quiet:
                for w in caught:
                    sys.stderr.write(f"warning: {w.message}\n")
    if not args.quiet:
        print(summary(path, too_long, args.max_media_seconds))
    return 0


def summary(path: Path, too_long: set[Path], limit: float) -> str:
    """'wrote 12 rows to data.npz (train 8, valid 2, test 2)', read back from the file as written (rows without any
    input were dropped after the splits were drawn), so a user sees what train will get without loading it; then how
    many clips were left out for lasting longer than `limit` (their warnings may be far above)."""
    import numpy as np

    from ..errors import plural
    from ..features import MEDIA_FLAG, seconds_text

    with np.load(path, allow_pickle=False) as z:
        split = z["split"]
    counts = ", ".join(f"{name} {int((split == name).sum())}" for name in ("train", "valid", "test"))
    left_out = (f"; {plural(len(too_long), 'clip')} over {seconds_text(limit)} s left out "
                f"({MEDIA_FLAG['max_media_seconds']})" if too_long else "")
    return f"wrote {plural(len(split), 'row')} to {path} ({counts}){left_out}"
