"""`edge-msa compress`: teacher.pt -> student.pt + student.report.json/.md (distill, prune, share, skip)."""
from __future__ import annotations

import argparse

EPILOG = """examples:
  edge-msa compress runs/teachers/fd_cmdie.pt --out runs/student.pt
  edge-msa compress teacher.pt --prune-ratio 0.6 --share depth+modality --skip-budget 0.5
  edge-msa compress teacher.pt --max-drop 0.005 --seeds 0 1 2 --quiet
  edge-msa compress teacher.pt --text-layers 2 --text-hidden 192 --text-rank 96 --transfer none
  edge-msa compress teacher.pt --text-kd-epochs 0 --kd-weight 0 --hint-weight 0   # the no-KD baseline
  edge-msa compress teacher.pt --text-score-epochs 2   # + KD of the teacher's text-only score
  edge-msa compress teacher.pt --text-relation-kd 1    # + MiniLMv2 attention-relation KD in the layer-wise step
  edge-msa compress mosei_t.pt --epochs 4 --finetune-epochs 2 --gate-epochs 3 --transfer none
      # a 13x larger training set (MOSEI-T): as many steps in fewer epochs; its own train fold is the transfer set

Stages: load -> text (when the teacher carries its text encoder: pick layers, torch-pruning of hidden/heads/FFN,
vocabulary pruning + factorised embedding, layer-wise KD on the transfer texts, then, with
--text-score-epochs (off by default), KD of the teacher's text-only score) -> init (from teacher weights where
shapes allow) -> distill -> prune (torch-pruning: heads + hidden widths) -> finetune -> gate (train + calibrate
skip thresholds on validation) -> evaluate (test metrics, params/MACs, side-by-side CPU latency, paired bootstrap
CIs, targets).
Each stage from init to gate keeps <out stem>.stages/<name>[.seedN].pt (also when a later stage fails or is
interrupted; a finished run removes those of earlier runs it did not write); the report is
<out stem>.report.json and .md.

A teacher trained with `edge-msa train --cv-fold F/K` is compressed on the same fold: its "test" is the fold's
held-out part of train + valid. Compare two recipes over all folds with
`python -m edge_msa.compress.selection_gap A0 B0 A1 B1 ...` and the cost of compression with
`python -m edge_msa.compress.fold_drop S0 S1 ...` (the README's ablation section shows both).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from . import DEFAULT_DATA

    p = subparsers.add_parser("compress", help="distill + prune + share + skip-calibrate a teacher into a student",
                              description="Compress a teacher checkpoint into the parameter-shared, modality-skipping "
                              "student and write a report comparing both on the test split.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("teacher", help="teacher checkpoint (.pt written by edge-msa train)")
    p.add_argument("--data", default=None, help="dataset (default: the one recorded in the teacher checkpoint, "
                   f"else {DEFAULT_DATA})")
    p.add_argument("--out", default="student.pt", help="student checkpoint to write (default: student.pt)")
    # each knob's dest is its CompressOptions field name (run() relies on it); defaults live there only (None here =
    # not given) and the help repeats them. Words (--share, --calibrate-on, --transfer) are checked there too, in
    # any case (options.KEYWORDS; argparse's choices compare them as typed); the metavars list them
    p.add_argument("--prune-ratio", type=float, default=None, help="fraction of the fusion part's heads/hidden "
                   "channels to remove, at most 0.75 (the default student keeps 1 of its 4 heads per block) "
                   "(default, chosen on validation: see the README: 0 when the "
                   "teacher carries its own text encoder, which torch-pruning prunes instead; 0.5 for a "
                   "frozen-encoder teacher)")
    p.add_argument("--share", default=None, metavar="{depth,depth+modality}",
                   help="one block reused across depth, and also across the text and fusion streams "
                   "(default: depth+modality)")
    p.add_argument("--kd-weight", type=float, default=None, help="response distillation weight (default: 1.0)")
    p.add_argument("--hint-weight", type=float, default=None, help="feature (hint) distillation weight (default: 0.5)")
    p.add_argument("--temperature", type=float, default=None, help="soft-polarity KD temperature (default: 2.0)")
    p.add_argument("--epochs", type=int, default=None, help="distillation epochs before pruning (default: 40)")
    p.add_argument("--finetune-epochs", type=int, default=None,
                   help="distillation epochs after pruning; the stage keeps its start if no epoch beats it on "
                        "validation (default: 20)")
    p.add_argument("--gate-epochs", type=int, default=None, help="skip-gate training epochs (default: 30)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--skip-budget", type=float, default=None,
                        help="fraction of audio+video encoder compute to save by skipping (default: 0.5)")
    budget.add_argument("--max-drop", type=float, default=None,
                        help="or: Acc-2 non-0 (fraction) allowed to be lost to skipping, e.g. 0.005")
    p.add_argument("--calibrate-on", default=None, metavar="{valid,train+valid}",
                   help="split(s) the label-free skip thresholds are chosen on (default: valid, chosen on "
                   "validation: see the README)")
    _add_text_encoder_flags(p)
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="student seeds; the best on validation is "
                   "saved, mean +- std reported (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage lines")
    p.set_defaults(handler=run)


def _add_text_encoder_flags(p: argparse.ArgumentParser) -> None:
    """The student text encoder's knobs (used when the teacher fine-tuned its own)."""
    from ..paths import MOSEI_FILE, searched

    text = p.add_argument_group("student text encoder (teachers that fine-tuned their own)")
    text.add_argument("--text-layers", type=int, default=None, help="teacher layers kept (default: 2)")
    text.add_argument("--text-hidden", type=int, default=None, help="hidden width after pruning (default: 256)")
    text.add_argument("--text-heads", type=int, default=None, help="attention heads kept (default: 8)")
    text.add_argument("--text-ffn", type=int, default=None, help="FFN width after pruning (default: 768; the "
                      "teacher's 1536 tied with it by cross-validation and is slower, see the README ablation)")
    text.add_argument("--text-rank", type=int, default=None, help="rank of the factorised embedding, 0 = none, at "
                      "most --text-hidden (default: 128)")
    text.add_argument("--text-shared", action="store_true", default=None, help="ALBERT-style: one layer (the first "
                      "kept) run --text-layers times: fewer parameters, same compute (default: off)")
    text.add_argument("--text-kd-epochs", type=int, default=None, help="layer-wise KD epochs, 0 = none (default: 4, "
                      "chosen on validation)")
    text.add_argument("--text-relation-kd", type=float, default=None, metavar="WEIGHT",
                      help="add MiniLMv2's self-attention relation KD (q-q, k-k, v-v of the last layer) to the "
                           "layer-wise KD loss with this weight, 0 = off (default: 0: 1 tied with 0 by "
                           "cross-validation and is ~40 %% slower, see the README ablation)")
    text.add_argument("--text-score-epochs", type=int, default=None, help="epochs of KD of the teacher's text-only "
                      "score after the layer-wise KD, 0 = none; the epoch kept is chosen on validation (default: 0: "
                      "it did not pay on validation)")
    text.add_argument("--transfer", default=None, help="extra transfer texts: 'mosei' (train fold of "
                      f"{searched(MOSEI_FILE)}), a label.csv path, or 'none' (default: mosei)")
    text.add_argument("--text-augment", type=int, default=None, metavar="N",
                      help="add N TinyBERT-style variants of each training transcript (words swapped for their "
                           "nearest words in the teacher's embedding) to the transfer texts (default: 0; 4 tied on "
                           "validation with the default teacher and adds ~3 min to compress, see the README)")


def run(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from edge_msa.compress import CompressOptions, compress
    from edge_msa.errors import named_as_flags

    # every flag named after a CompressOptions field is that knob (None = not given: the default stays there);
    # messages name those knobs by their flags, the others (library-only) by their keywords
    knobs = [f.name for f in fields(CompressOptions) if hasattr(args, f.name)]
    with named_as_flags(knobs):
        options = CompressOptions.build(**{k: getattr(args, k) for k in knobs if getattr(args, k) is not None})
        report = compress(args.teacher, data=args.data, out=args.out, options=options, progress=not args.quiet)
    _print_summary(report, args.out)
    return 0


def _print_summary(report: dict, out: str) -> None:
    """The report's headline: params, latency, accuracy with and without skipping, skipping's saving, targets."""
    from edge_msa.compress import report_paths

    t, s, k = report["teacher"], report["student"], report["student_skip"]
    end_to_end = bool(report.get("end_to_end"))
    scope = "end to end" if end_to_end else "fusion only; frozen text front end excluded"
    print(f"params   teacher {t['params']:,}  student {s['params']:,}  "
          f"({t['params'] / s['params']:.1f}x fewer, {scope})")
    print(f"latency  teacher {t['latency_ms_p50']:.3f} ms  student {s['latency_ms_p50']:.3f} ms  "
          f"({t['latency_ms_p50'] / s['latency_ms_p50']:.1f}x, p50, batch 1, torch CPU, "
          f"{'from the raw string' if end_to_end else 'text features precomputed'})")
    for name, row in (("teacher", t), ("student", s), ("student+skip", k)):
        print(f"{name:<13} acc2_non0 {row['metrics']['acc2_non0']:.4f}  mae {row['metrics']['mae']:.4f}  "
              f"corr {row['metrics']['corr']:.4f}")
    skip = report["skip"]
    print(f"skipping saves {skip['saved_fraction']:.1%} of audio+video encoder MACs net of the gate "
          f"({skip['saved_fraction_gross']:.1%} gross; skip rate audio "
          f"{skip['rate']['audio']:.1%}, video {skip['rate']['video']:.1%})")
    missed = [name for name, row in report["targets"].items() if not row["met"]]
    print("targets: all met" if not missed else f"targets missed: {', '.join(missed)}")
    for name, why in report["targets_not_applicable"].items():
        print(f"target {name} not applicable: {why}")
    json_path, md_path = report_paths(out)
    print(f"wrote {out}, {json_path}, {md_path}")
