"""`edge-msa eval`: accuracy of a bundle on a dataset split, as the runtime runs it (skipping included)."""
from __future__ import annotations

import argparse
import json

EPILOG = """examples:
  edge-msa eval bundles/student --out student.metrics.json
  edge-msa eval bundles/int8 --data ../shared/data/mosi/mosi_utterance_std.npz --split test --out int8.json

Writes the metric keys (acc2_has0, acc2_non0, f1_has0, f1_non0, acc5, acc7, mae, corr), n, and
skip_rate_<modality> (share of samples having that modality whose encoder the gate skipped).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="evaluate a bundle on a dataset split",
                              description="Score a bundle with the on-device runtime on a dataset split.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="bundle directory from `edge-msa export`")
    p.add_argument("--data", default=None, help="dataset path (default: ../shared/data/mosi/mosi_utterance_std.npz)")
    p.add_argument("--split", default="test", help="train | valid | test (default: test)")
    p.add_argument("--out", default=None, help="metrics JSON to write (default: print only)")
    p.add_argument("--batch-size", type=int, default=256, help="samples per runtime call (default: 256)")
    p.add_argument("--backend", default=None, help="onnxruntime | tensorrt (default: the bundle's)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: onnxruntime's)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..atomic import write_text
    from ..data import load_dataset
    from ..errors import InputError
    from ..paths import default_mosi_path
    from ..runtime import load
    from ..runtime.evaluate import evaluate

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1; got {args.batch_size}")
    with load(args.bundle, backend=args.backend, threads=args.threads) as predictor:
        splits = load_dataset(args.data or default_mosi_path(), progress=False,
                              text_encoder=predictor.dataset_text_front_end)
        fs = splits.split(args.split)
        fs.check_spec(predictor.spec)
        metrics = {"bundle": str(args.bundle), "split": args.split, **evaluate(predictor, fs, args.batch_size)}
    text = json.dumps(metrics, indent=2)
    if args.out:
        write_text(args.out, text + "\n")
    print(text)
    return 0
