"""`edge-msa eval`: accuracy of a bundle on a dataset split, as the runtime runs it (skipping included)."""
from __future__ import annotations

import argparse

EPILOG = """examples:
  edge-msa eval bundles/student --out student.metrics.json
  edge-msa eval bundles/int8 --data ../shared/data/mosi/mosi_utterance_std.npz --split test --out int8.json

  edge-msa eval bundles/student --data ../shared/data/mosei/label.csv --split test   # text only: a/v missing

The splits are rebuilt from the bundle's data lineage (manifest "data": file, format, validation carve), so
`--split valid` is the split the model was selected on; a warning says when --data is another file.
Writes "bundle", the metric keys (acc2_has0, acc2_non0, f1_has0, f1_non0, acc5, acc7, mae, corr, collapsed), n,
"split": {name, n, ids_sha256}, "data": {path, sha256, missing} and skip_rate_<modality> (share of
samples having that modality whose encoder the gate skipped; "missing" when no sample has it). The JSON is strict:
a metric that is undefined (corr of a collapsed model, Acc-2 non-0 when every label is 0) is null.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..splits import SPLITS
    from . import DEFAULT_DATA, add_backend_flag, add_threads_flag, one_of

    p = subparsers.add_parser("eval", help="evaluate a bundle on a dataset split",
                              description="Score a bundle with the on-device runtime on a dataset split.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="bundle directory from `edge-msa export`")
    p.add_argument("--data", default=None, help="dataset path (default: the bundle's training data, else "
                   f"{DEFAULT_DATA})")
    p.add_argument("--split", default="test", **one_of(SPLITS),
                   help="which split to score (default: test)")
    p.add_argument("--out", default=None, help="metrics JSON to write (default: print only)")
    p.add_argument("--batch-size", type=int, default=256, help="samples per runtime call (default: 256)")
    add_backend_flag(p)
    add_threads_flag(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..atomic import check_file_out, write_text
    from ..data import rebuild_splits
    from ..data.lineage import scored_record
    from ..errors import InputError, check_range, checked_threads, named_as_flags, plural
    from ..jsonio import dumps
    from ..metrics import MIN_SCORES
    from ..runtime.evaluate import evaluate
    from ..splits import SPLITS
    from . import load_bundle

    with named_as_flags(["batch_size", "threads"]):
        check_range({"batch_size": args.batch_size}, 1, strict=False)
        threads = checked_threads(args.threads)
    if args.out:
        check_file_out(args.out)  # before the split is scored, not at the final write
    with load_bundle(args.bundle, backend=args.backend, threads=threads) as predictor:
        splits = rebuild_splits(predictor.manifest.data, args.data, text_encoder=predictor.dataset_text_front_end,
                                featurize=(args.split,)).for_model(predictor.spec)
        fs = splits.split(args.split)
        if len(fs) < MIN_SCORES:  # e.g. a label.csv whose rows are all mode=train (`feedback export` can write one)
            # getattr, not split(): every split's rows are read, the unscored ones without their text
            sizes = ", ".join(f"{name} {len(getattr(splits, name))}" for name in SPLITS)
            raise InputError(f"the {args.split} split of {splits.info.get('path') or 'the data'} holds "
                             f"{plural(len(fs), 'sample')} ({sizes}); expected a --split with at least {MIN_SCORES}")
        metrics = {"bundle": str(args.bundle), **scored_record(splits, args.split),
                   **evaluate(predictor, fs, args.batch_size)}
    text = dumps(metrics, indent=2)
    if args.out:
        write_text(args.out, text + "\n")
    print(text)
    return 0
