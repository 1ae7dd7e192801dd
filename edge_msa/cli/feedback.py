"""`edge-msa feedback export LOG --out label.csv`: users' labels from `edge-msa serve` as an MMSA label.csv."""
from __future__ import annotations

import argparse

EPILOG = """examples:
  edge-msa feedback export feedback.sqlite --out label.csv
  edge-msa feedback export feedback.sqlite --out label.csv --valid 0.2 --test 0.2
  edge-msa train --model fd_cmdie --data label.csv --out domain.pt     # a new teacher on your domain's labels

label.csv columns (MMSA): video_id (= "feedback"), clip_id (= request id), text, label (the user's),
label_T, label_A, label_V (empty), annotation (Positive / Negative / Neutral), mode (train / valid / test from
a hash of the input, so repeats of one input share a split). Per request the latest label counts; inputs
without text are left out (the log keeps no audio or video).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from . import Typed

    p = subparsers.add_parser("feedback", help="export the feedback log of `edge-msa serve`",
                              description="Work with the SQLite feedback log that `edge-msa serve --feedback` writes.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    # required: without it `edge-msa feedback` alone found no handler and printed the top-level help, exit 2, no error
    sub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p), required=True)
    e = sub.add_parser("export", help="write the log as an MMSA label.csv", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("log", help="feedback log (.sqlite) written by `edge-msa serve --feedback`")
    e.add_argument("--out", required=True, help="label.csv to write")
    e.add_argument("--valid", type=Typed, default=0.1, help="share of inputs in mode=valid (default 0.1)")
    e.add_argument("--test", type=Typed, default=0.1, help="share of inputs in mode=test (default 0.1)")
    e.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import named_as_flags, plural, warn
    from ..metrics import untrainable_splits
    from ..serve.feedback import export_label_csv

    with named_as_flags(["valid", "test"]):  # `--valid 2` as typed, `valid = 2` from export_label_csv in Python
        counts = export_label_csv(args.log, args.out, args.valid, args.test)
    sizes = ", ".join(f"{name} {len(labels)}" for name, labels in counts["splits"].items())
    print(f"wrote {plural(counts['rows'], 'row')} to {args.out} ({sizes}; "
          f"{plural(counts['without_text'], 'feedback record')} without text left out)")
    for line in untrainable_splits(counts["splits"], args.out, "collect more feedback or change --valid / --test"):
        warn(line)  # said now, not when `train` refuses the file
    return 0
