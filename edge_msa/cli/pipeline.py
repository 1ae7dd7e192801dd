"""`edge-msa pipeline`: the main job in one command — train a teacher, compress it into a student,
export teacher / student / student-int8 bundles for ONNX Runtime, and benchmark them side by side."""
from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """\
what it writes under --out:
  teacher.pt, teacher.metrics.json          edge-msa train
  student.pt, student.report.{json,md}      edge-msa compress
  bundles/{teacher,student,student-int8}/   edge-msa export (onnx, onnx, onnx-int8)
  bench/report.{json,md,png}                edge-msa bench (ONNX Runtime, CPU)

examples:
  edge-msa pipeline --out runs/mosi                     # MOSI-U beside the checkout, fd_cmdie teacher
  edge-msa pipeline --model gtf --data mosi_utterance_std.npz --out runs/gtf
  edge-msa pipeline --out runs/smoke --epochs 2 --min-time 0.5   # quick smoke run
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pipeline", help="train -> compress -> export -> bench in one command (the main job)",
                       description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fd_cmdie", help="teacher architecture (default: fd_cmdie)")
    p.add_argument("--data", default=None, help="dataset path (default: ../shared/data/mosi/mosi_utterance_std.npz)")
    p.add_argument("--out", default="runs/mosi", help="output directory (default: runs/mosi)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="teacher and student seeds (default: 0)")
    p.add_argument("--epochs", type=int, default=None, help="override training epochs (teacher and student stages)")
    p.add_argument("--text-encoder", choices=("finetune", "frozen"), default="finetune",
                   help="fine-tune the teacher's text encoder (default) or use frozen MiniLM features (ablation)")
    p.add_argument("--min-time", type=float, default=2.0, help="seconds of timing per benchmark row (default: 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from .. import benchmarks, compress, export
    from ..paths import default_mosi_path
    from ..teacher import train_teacher

    data = args.data or default_mosi_path()  # every stage (parity and accuracy checks too) sees real data
    out = Path(args.out)
    progress = not args.quiet
    teacher_pt, student_pt = out / "teacher.pt", out / "student.pt"
    _stage("1/4 train", f"{args.model} teacher -> {teacher_pt}")
    train_teacher(args.model, data=data, out=teacher_pt, seeds=args.seeds, epochs=args.epochs, progress=progress,
                  text_encoder=args.text_encoder)
    _stage("2/4 compress", f"-> {student_pt}")
    overrides = {"epochs": args.epochs} if args.epochs else {}
    compress.compress(teacher_pt, data=data, out=student_pt, progress=progress, seeds=args.seeds, **overrides)
    bundles = out / "bundles"
    plan = [(teacher_pt, "onnx", bundles / "teacher"), (student_pt, "onnx", bundles / "student"),
            (student_pt, "onnx-int8", bundles / "student-int8")]
    for ckpt, fmt, target in plan:
        _stage("3/4 export", f"{ckpt.name} as {fmt} -> {target}")
        export.export(ckpt, format=fmt, out=target, data=data)
    _stage("4/4 bench", f"-> {out / 'bench'}")
    report = benchmarks.run_bench([target for _, _, target in plan], data=data, out=out / "bench",
                                  min_time=args.min_time, progress=progress)
    print((Path(report) / "report.md").read_text(encoding="utf-8"))
    return 0


def _stage(name: str, what: str) -> None:
    print(f"== {name}: {what}", flush=True)
