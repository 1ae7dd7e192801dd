"""`edge-msa export`: checkpoint -> bundle directory (ONNX fp32/fp16/int8 or TensorRT engines)."""
from __future__ import annotations

import argparse

EPILOG = """formats (the export format table):
{formats}

examples:
  edge-msa export student.pt --format onnx --out bundles/student
  edge-msa export student.pt --format onnx-int8 --data ../shared/data/mosi/mosi_utterance_std.npz --out bundles/int8
  edge-msa export student.pt --format onnx-int8 --no-per-channel --out bundles/int8-per-tensor
  edge-msa export student.pt --format onnx --single-graph --out bundles/student-1graph
  edge-msa export teacher.pt --format onnx --out bundles/teacher        # teachers export as one graph
  edge-msa export student.pt --format engine --trt-precision int8 \\
      --data ../shared/data/mosi/mosi_utterance_std.npz --out bundles/trt

The student exports as parts (gate, encode_text/audio/video, fuse) so the runtime can skip encoders;
--single-graph makes one graph (no skipping). Every export ends with a parity check of the bundle
against the torch model on all modality subsets; with --data, fp16/int8/engine bundles are judged by
the Acc-2 (non-0) drop on the validation split (--max-drop points); their scores' mean |Δ| from torch's
and Pearson r there are shown and recorded, not judged. trtexec.txt in the bundle holds the
equivalent trtexec commands.
"""


def _format_table() -> str:
    from edge_msa.export.formats import FORMATS

    return "\n".join(f"  {f.name:<10} {f.precision:<7} {f.device:<8} needs {f.requires or '-'}"
                     for f in FORMATS.values())


def register(subparsers: argparse._SubParsersAction) -> None:
    from edge_msa.export.formats import DEFAULTS, FORMATS, LAYERNORM_OPSET, MAX_OPSET, MIN_OPSET, TRT_PRECISIONS

    from . import Typed, one_of

    p = subparsers.add_parser("export", help="export a checkpoint to an ONNX / TensorRT bundle",
                              description="Export a student or teacher checkpoint to a bundle directory: graphs, "
                              "manifest.json (spec, precision, parity, metrics), trtexec.txt.",
                              epilog=EPILOG.format(formats=_format_table()),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a .pt checkpoint written by edge-msa (train / compress)")
    # --format is read by export.get_format (any case; other tools' names such as tensorrt suggest ours)
    p.add_argument("--format", dest="fmt", default="onnx", help=f"{' | '.join(FORMATS)} (default: onnx)")
    p.add_argument("--out", default="bundle", help="bundle directory to write (default: bundle)")
    p.add_argument("--data", default=None, help="dataset: its valid split gives real parity inputs and the accuracy "
                   "check, and an INT8 engine (--trt-precision int8) calibrates on a sample of its training split "
                   "(default: the file the checkpoint's lineage names, where it exists)")
    p.add_argument("--single-graph", action="store_true", help="one graph even for the student (no modality skipping)")
    p.add_argument("--opset", type=int, default=DEFAULTS["opset"], help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET} "
                   f"(default: {DEFAULTS['opset']}, legacy exporter; TensorRT 8.5 / JetPack 5 engines need "
                   f"{LAYERNORM_OPSET - 1}: its parser lacks LayerNormalization)")
    p.add_argument("--atol", type=Typed, default=None, help="fp32 parity tolerance (default: 1e-4)")
    p.add_argument("--max-drop", type=Typed, default=None,
                   help="largest Acc-2 (non-0) drop in points for fp16/int8/engine (default: 0.5)")
    p.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=None,
                   help="onnx-int8: one weight scale per output channel (default, chosen on validation) or, with "
                   "--no-per-channel, one per tensor")
    p.add_argument("--max-batch", type=int, default=None, help="largest batch in TensorRT profiles (default: 32)")
    p.add_argument("--trt-precision", default=None, **one_of(TRT_PRECISIONS), help="engine precision (default: fp16)")
    p.add_argument("--workspace-mb", type=int, default=None,
                   help="engine: TensorRT builder workspace memory pool in MiB (default: 1024)")
    p.add_argument("--keep-names", action="store_true", help="keep the exporter's long tensor/node names and "
                   "shape annotations in the graphs (for debugging; by default they are shortened, which "
                   "makes small models' files ~1.2-1.8x smaller)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edge_msa.errors import named_as_flags
    from edge_msa.export import export

    options = {k: v for k, v in {"atol": args.atol, "max_drop": args.max_drop, "max_batch": args.max_batch,
                                 "trt_precision": args.trt_precision, "per_channel": args.per_channel,
                                 "workspace_mb": args.workspace_mb}.items()
               if v is not None}
    if args.keep_names:
        options["short_names"] = False
    with named_as_flags([*options, "opset"]):  # `--atol 0` as typed, `atol = 0` from export() in Python
        export(args.checkpoint, format=args.fmt, out=args.out, data=args.data, single_graph=args.single_graph,
               opset=args.opset, log=None if args.quiet else print, **options)
    return 0
