"""`edge-msa pipeline`: the main job in one command — train a teacher, compress it into a student,
export teacher / student / student-int8 bundles for ONNX Runtime, and benchmark them side by side."""
from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any, Callable

from ..atomic import write_text
from ..digest import file_sha256
from ..errors import InputError

EPILOG = """\
what it writes under --out:
  teacher.pt, teacher.metrics.json          edge-msa train
  student.pt, student.report.{json,md}      edge-msa compress (and student.stages/: each
                                            stage's checkpoint per seed, kept for selection_gap)
  bundles/{teacher,student,student-int8}/   edge-msa export (onnx, onnx, onnx-int8)
  bench/report.{json,md,png}                edge-msa bench (ONNX Runtime, CPU; report.png only with
                                            matplotlib: pip install "edge-msa[plot]", which [train] lacks)
  pipeline.json                             each finished stage: its inputs and the sha256 of its outputs

examples:
  edge-msa pipeline --out runs/mosi                     # MOSI-U beside the checkout, fd_cmdie teacher
  edge-msa pipeline --out runs/mosi --resume            # after an interruption: skip the stages that finished
  edge-msa pipeline --model gtf --data ../shared/data/mosi/mosi_utterance_std.npz --out runs/gtf
  edge-msa pipeline --out runs/smoke --epochs 2 --min-time 0.5   # shorter run: fewer teacher and distill
      # epochs; the student's text KD (4 epochs), fine-tune and gate stages keep their defaults
"""
STATE_FILE = "pipeline.json"
STATE_FORMAT = "edge-msa-pipeline-v1"
TRAIN = "1/4 train"
# the bundles it exports (under <out>/bundles/) and their formats: the teacher from teacher.pt, the rest from student.pt
BUNDLES = (("teacher", "onnx"), ("student", "onnx"), ("student-int8", "onnx-int8"))


def register(sub: argparse._SubParsersAction) -> None:
    from ..models.registry import TEACHERS, TEXT_ENCODERS
    from . import DEFAULT_DATA, Typed, add_model_param_flag, one_of

    p = sub.add_parser("pipeline", help="train -> compress -> export -> bench in one command (the main job)",
                       description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fd_cmdie", **one_of(TEACHERS), help="teacher architecture (default: fd_cmdie)")
    p.add_argument("--data", default=None, help=f"dataset path (default: {DEFAULT_DATA})")
    p.add_argument("--out", default="runs/mosi", help="output directory (default: runs/mosi)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="teacher and student seeds (default: 0)")
    p.add_argument("--epochs", type=int, default=None,
                   help="cap the teacher's epochs (each training phase) and the student's distillation epochs "
                        "(compress --epochs; its text KD, --finetune-epochs and --gate-epochs keep their defaults)")
    p.add_argument("--text-encoder", **one_of(TEXT_ENCODERS), default="finetune",
                   help="fine-tune the teacher's text encoder (default) or use frozen MiniLM features (ablation)")
    add_model_param_flag(p, "the names: see 'edge-msa train --help'")
    p.add_argument("--min-time", type=Typed, default=2.0, help="seconds of timing per benchmark row (default: 2)")
    p.add_argument("--resume", action="store_true",
                   help=f"skip each stage that --out/{STATE_FILE} records as finished with the same inputs and "
                        "whose outputs are unchanged (a stage whose settings or input files changed reruns)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from .. import benchmarks, compress, export
    from ..data.loader import existing_dataset
    from ..paths import default_mosi_path

    _check_flags(args)
    data = existing_dataset(args.data) if args.data else default_mosi_path()  # every stage (parity too) sees real data
    out = Path(args.out)
    progress = not args.quiet
    stages = StageLog(out, resume=args.resume)
    teacher_pt, student_pt = out / "teacher.pt", out / "student.pt"
    stages.run(TRAIN, f"{args.model} teacher -> teacher.pt", _train_inputs(args, data),
               [teacher_pt, out / "teacher.metrics.json"], lambda: _train(args, data, teacher_pt, progress))
    settings = {"seeds": args.seeds, **({"epochs": args.epochs} if args.epochs else {})}
    stages.run("2/4 compress", "-> student.pt", {"teacher": teacher_pt, "data": data, **settings},
               [student_pt, out / "student.report.json", out / "student.report.md"],
               lambda: compress.compress(teacher_pt, data=data, out=student_pt, progress=progress, **settings))
    plan = [(teacher_pt if name == "teacher" else student_pt, fmt, f"bundles/{name}") for name, fmt in BUNDLES]
    for ckpt, fmt, target in plan:
        stages.run("3/4 export", f"{ckpt.name} as {fmt} -> {target}", {"checkpoint": ckpt, "format": fmt,
                                                                        "data": data},
                   [out / target], partial(export.export, ckpt, format=fmt, out=out / target, data=data))
    targets = [out / target for _, _, target in plan]
    stages.run("4/4 bench", "-> bench", {"bundles": targets, "data": data, "min_time": args.min_time},
               [out / "bench"], lambda: benchmarks.run_bench(targets, data=data, out=out / "bench",
                                                             min_time=args.min_time, progress=progress))
    print((out / "bench" / "report.md").read_text(encoding="utf-8"))
    return 0


def _check_flags(args: argparse.Namespace) -> None:
    """Every flag in one line each, named as pipeline spells it, before stage 1: the stages check their own settings
    only when they start, so a bad --min-time surfaced at stage 4, after ~20 min of training, naming bench's flags,
    and a bad --model-param after stage 1's header."""
    from ..errors import check_range, checked_seeds, named_as_flags
    from ..teacher import check_model_params
    from . import model_param_flags

    with named_as_flags(["seeds", "epochs", "min_time"], spelled=model_param_flags(args)):
        checked_seeds(args.seeds)
        if args.epochs is not None:  # the rule (and words) of train's and compress's --epochs, which it sets
            check_range({"epochs": args.epochs}, 1, strict=False)
        check_range({"min_time": args.min_time}, 0, strict=False)
        check_model_params(args.model, args.model_params)  # train's check (train_teacher runs it again in stage 1)


def _train_inputs(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    """The train stage's record; model_params only when given, so a record written before --model-param resumes."""
    return {"model": args.model, "data": data, "seeds": args.seeds, "epochs": args.epochs,
            "text_encoder": args.text_encoder, **({"model_params": args.model_params} if args.model_params else {})}


def _train(args: argparse.Namespace, data: Path, out: Path, progress: bool) -> None:
    from ..teacher import train_teacher

    train_teacher(args.model, data=data, out=out, seeds=args.seeds, epochs=args.epochs, progress=progress,
                  text_encoder=args.text_encoder, **args.model_params)


class StageLog:
    """`--out/pipeline.json`: what each finished stage took in (its settings, the package version, and the sha256 of
    every input file) and the sha256 of each output. With `resume`, a stage whose record matches both is skipped, so
    an interruption late in the ~30-min main job does not cost the training again; a stage with any difference
    reruns, and because its outputs' hashes change, so does every stage that reads them. A stage is keyed by its name
    and its outputs' paths relative to the run folder, so `--out runs/mosi`, `--out /abs/runs/mosi` and a moved or
    renamed run folder resume alike."""

    def __init__(self, out: Path, resume: bool) -> None:
        self.path = out / STATE_FILE
        self.done: dict[str, Any] = _read_state(self.path) if resume else {}

    def run(self, name: str, what: str, inputs: dict[str, Any], outputs: list[Path], work: Callable[[], Any]) -> None:
        from ..jsonio import dumps

        key = f"{name}: {what}"
        record = {"inputs": _fingerprint(inputs)}
        previous = self.done.get(key)
        if previous is not None and previous["inputs"] == record["inputs"] and \
                previous["outputs"] == _hashes(outputs, missing_ok=True):
            print(f"== {name}: {what} (resumed: finished earlier with the same inputs)", flush=True)
            return
        print(f"== {name}: {what}", flush=True)
        work()
        self.done[key] = {**record, "outputs": _hashes(outputs)}
        write_text(self.path, dumps({"format": STATE_FORMAT, "stages": self.done}, indent=1) + "\n")


def _read_state(path: Path) -> dict[str, Any]:
    """The stages recorded in `path`; none when it does not exist yet."""
    if not path.exists():
        print(f"== resume: no {path} yet, so every stage runs", flush=True)
        return {}
    from ..jsonio import loads

    try:
        state = loads(path.read_text(encoding="utf-8"))
        if state.get("format") != STATE_FORMAT or not isinstance(state.get("stages"), dict):
            raise ValueError(f"format is not {STATE_FORMAT}")
        for key, record in state["stages"].items():  # a hand-edited record failed later as TypeError / KeyError
            if not isinstance(record, dict) or not all(isinstance(record.get(k), dict) for k in ("inputs", "outputs")):
                raise ValueError(f"stage '{key}' is not a record of its inputs and outputs")
    except (ValueError, AttributeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not an edge-msa pipeline record ({exc}); expected the file an earlier "
                         f"`edge-msa pipeline` wrote: delete it, or run without --resume") from None
    return _relative_keys(state["stages"])


def _relative_keys(stages: dict[str, Any]) -> dict[str, Any]:
    """Records from before stages were keyed relative to the run folder carry the --out typed then in their keys
    ("1/4 train: fd_cmdie teacher -> runs/mosi/teacher.pt"): the same records with that folder (the train stage
    output's) taken off every key, so the README's runs stay resumable. Keys written since are returned as they are."""
    train = next((key for key in stages if key.startswith(f"{TRAIN}: ") and " -> " in key), None)
    if train is None:
        return stages
    folder = Path(train.rpartition(" -> ")[2]).parent.parts

    def relative(key: str) -> str:
        head, arrow, target = key.rpartition(" -> ")
        parts = Path(target).parts
        if not arrow or parts[:len(folder)] != folder or len(parts) == len(folder):
            return key
        return f"{head} -> {Path(*parts[len(folder):]).as_posix()}"

    return {relative(key): record for key, record in stages.items()}


def _fingerprint(inputs: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready inputs: each path replaced by the sha256 of its bytes (a file or a bundle folder)."""
    from ..version import __version__

    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return file_sha256(value)
        return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value

    return {"edge_msa": __version__, **{name: plain(value) for name, value in inputs.items()}}


def _hashes(paths: list[Path], missing_ok: bool = False) -> dict[str, str | None]:
    return {p.name: file_sha256(p) if p.exists() or not missing_ok else None for p in paths}
