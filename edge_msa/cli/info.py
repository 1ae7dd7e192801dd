"""`edge-msa info`: what a bundle or checkpoint holds (model, params, MACs, graphs, precision, parity, data lineage)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..runtime.manifest import FileCheck, Manifest

EPILOG = """examples:
  edge-msa info bundles/student          # manifest summary
  edge-msa info student.pt               # checkpoint config summary (needs torch)
  edge-msa info bundles/student --json   # the whole manifest
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="summarise a bundle or a checkpoint",
                              description="Print a bundle's manifest summary (graphs, sizes, parameters and MACs, "
                              "precision, parity, an INT8 engine's calibration inputs, metrics, data lineage, and "
                              "whether its files are the ones export recorded: exit code 2 where one differs or is "
                              "missing) or a checkpoint's config (model, parameters and MACs, FeatureSpec, data "
                              "lineage).",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="a bundle directory or a .pt checkpoint")
    p.add_argument("--json", action="store_true", help="print the full manifest / config as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..data.lineage import summary
    from ..jsonio import dumps

    path = Path(args.path)
    if path.is_dir():
        from ..errors import ArtifactError
        from ..runtime.manifest import RECOPY, check_files, read_manifest

        m = read_manifest(path)
        check = check_files(path, m)
        print(dumps(m.to_dict(), indent=2) if args.json else "\n".join(_bundle_lines(path, m, check)))
        if check.differ or check.missing:  # after the summary: it says what the bundle was exported as
            raise ArtifactError(f"bundle '{path}' is not as exported ({_problems(check, extra=False)}); {RECOPY}")
        return 0
    from ..checkpoint import data_record, load_checkpoint, read_checkpoint
    from ..errors import TRAIN_FIX, InputError, require

    if not path.exists():  # before asking for torch: a mistyped path is the problem on any install
        raise InputError(f"'{path}' does not exist; expected a bundle directory or a .pt checkpoint")
    from ..runtime.manifest import MANIFEST

    if (path.parent / MANIFEST).is_file():  # manifest.json or a graph: read as a checkpoint, it asked devices for torch
        raise InputError(f"'{path}' is a file of the bundle '{path.parent}'; expected the bundle's folder "
                         f"(edge-msa info {path.parent})")
    require("torch", "reading a .pt checkpoint (host only; bundles need no torch)", TRAIN_FIX)

    payload = read_checkpoint(path)
    if args.json:
        print(dumps({k: payload[k] for k in ("format_version", "config", "feature_spec", "meta")
                     if k in payload}, indent=2, default=str))
        return 0
    model, _ = load_checkpoint(path)  # the model, not the state dict: a block shared across depths is one tensor
    params, buffers = (sum(t.numel() for t in ts) for ts in (model.parameters(), model.buffers()))
    print(f"checkpoint {path}  (format {payload.get('format_version')})\n"
          f"model      {payload['config']['name']}  {params:,} parameters (+ {buffers:,} buffer values)\n"
          f"{_checkpoint_count_line(model)}\n"
          f"config     {dumps(payload['config'].get('params', {}))}\n"
          f"spec       {dumps(payload['feature_spec'])}\n"
          f"data       {summary(data_record(payload.get('meta', {})))}")
    return 0


def _checkpoint_count_line(model: Any) -> str:
    """The count export records in a bundle, made here from the model; without torch-pruning (its MAC counter) the
    rest of the summary still prints, and this line says what to install."""
    from ..errors import MissingDependencyError

    try:
        from ..compress.measure import count_at_max_lens

        return _count_line(count_at_max_lens(model))
    except MissingDependencyError as exc:
        return f"count      unknown: {exc}"


def _count_line(count: Any) -> str:
    """Parameters and MACs per input as measure.count_at_max_lens counts them, with what they count (end to end from
    token ids, or from text features); a bundle exported before export recorded them says unknown, never a guess."""
    if not isinstance(count, dict):
        return "count      unknown: not in this manifest (exported by an older edge-msa; re-export to record it)"
    return (f"count      {count['params']:,} parameters, {count['macs']:,.0f} MACs per input ({count['input']}), "
            f"{count['scope']}")


def _bundle_lines(path: Path, m: Manifest, check: FileCheck) -> list[str]:
    """The summary of a bundle: its files on disk (the text encoder a frozen front end ships is most of the
    bytes) and whether they are as exported (`check`), and the parity of the precision it runs at beside the fp32
    one."""
    from ..data.lineage import summary
    from ..errors import plural

    sizes = {g: _file_size(path / f) for g, f in m.graphs.items()}
    files = [f for f in path.rglob("*") if f.is_file()]
    lines = [f"bundle     {path}  (format {m.format_version}, edge-msa {m.versions.get('edge_msa', '?')})",
             f"model      {m.model}  layout {m.layout} ({'modality skipping' if m.skipping else 'no skipping'})",
             f"precision  {m.precision}  backend {m.backend}",
             "graphs     " + ", ".join(f"{g} {f} ({_size(sizes[g])})" for g, f in m.graphs.items()),
             *(["text       " + ", ".join(f"{role} {f} ({_size(_file_size(path / f))})"
                                          for role, f in m.text_encoder.items())] if m.text_encoder else []),
             f"on disk    {_size(sum(f.stat().st_size for f in files))} in {plural(len(files), 'file')}",
             _files_line(m, check),
             _count_line(m.metrics.get("count")),
             f"spec       dims {list(m.feature_spec.dims)} max_lens {list(m.feature_spec.max_lens)} "
             f"front ends {list(m.feature_spec.front_ends)}",
             f"skip       thresholds {m.skip_thresholds}" if m.skipping else "skip       none",
             _parity_line("fp32", m.parity),
             *([_parity_line(m.precision, m.parity[m.precision])] if isinstance(m.parity.get(m.precision), dict)
               else []),
             *_calibration_line(m),
             _tensorrt_line(m.tensorrt_check),
             f"data       {summary(m.data)}"]
    return lines + _accuracy_line(m.metrics.get("valid")) + _padded_positions_line(path, m)


def _files_line(m: Manifest, check: FileCheck) -> str:
    """Whether the files on disk are those export recorded (sha256 and size): a copy damaged on its way to a device
    loads and answers other scores. Extra files (notes, a .DS_Store) are named but change nothing that runs."""
    if not m.files:
        return "files      not recorded (exported by an older edge-msa; re-export to record their sha256)"
    if check.differ or check.missing:
        return f"files      NOT as exported: {_problems(check)}"
    return "files      ok (sha256 as exported)" + (f"; {_problems(check)}" if check.extra else "")


def _problems(check: FileCheck, extra: bool = True) -> str:
    """'differ: a.onnx; missing: b.txt; extra (not exported): notes.txt', leaving out what is empty (and extras
    unless `extra`)."""
    kinds = {"differ": check.differ, "missing": check.missing, "extra (not exported)": check.extra if extra else []}
    return "; ".join(f"{kind}: {', '.join(names)}" for kind, names in kinds.items() if names)


def _accuracy_line(valid: Any) -> list[str]:
    """Export's validation Acc-2 (non-0) of torch and the bundle, when it measured them; a split whose labels are all
    0 has none (None in the manifest), which is said rather than formatted."""
    from ..metrics import NO_NON_ZERO

    if not (isinstance(valid, dict) and "bundle" in valid):
        return []
    torch_acc, bundle_acc = valid["torch"]["acc2_non0"], valid["bundle"]["acc2_non0"]
    if torch_acc is None or bundle_acc is None:
        return [f"accuracy   valid Acc-2 non-0 none: {NO_NON_ZERO} on the validation split"]
    return [f"accuracy   valid Acc-2 non-0 torch {torch_acc:.4f} bundle {bundle_acc:.4f} "
            f"(drop {valid['acc2_non0_drop_points']} points)"]


def _parity_line(precision: str, check: dict) -> str:
    return (f"parity     {precision} max|Δ| {check.get('max_abs_diff')} atol {check.get('atol')} ok "
            f"{check.get('ok')}")


def _calibration_line(m: Manifest) -> list[str]:
    """Which inputs TensorRT's INT8 calibrator fitted an engine's scales on (export_options.int8_calibration): a
    sample of the training split, or random inputs where export had no data (scales fitted to no real input), which
    the owner of an INT8 engine wants to know before trusting it. An INT8 engine exported before export recorded it
    says unknown, never a guess; other bundles calibrate nothing."""
    calibration = m.export_options.get("int8_calibration")
    if isinstance(calibration, dict):
        unseen = " (export had no --data)" if calibration.get("split") is None else ""
        return [f"calibrate  INT8 scales on {calibration.get('inputs')}{unseen}"]
    if m.precision == "engine-int8":
        return ["calibrate  unknown: not in this manifest (exported by an older edge-msa; re-export to record it)"]
    return []


def _file_size(path: Path) -> int | None:
    return path.stat().st_size if path.is_file() else None


def _size(size: int | None) -> str:
    """KiB, or MiB from 1 MiB on (a bundled text encoder: '21.9 MiB', not '22391.2 KiB')."""
    if size is None:
        return "missing"
    return f"{size / 1024:.1f} KiB" if size < 1024 ** 2 else f"{size / 1024 ** 2:.1f} MiB"


def _tensorrt_line(check: dict) -> str:
    """The manifest's TensorRT op check: TensorRT 8.6-10's verdict, and what 8.5 (JetPack 5) cannot parse besides."""
    from ..export.trt_support import tensorrt_85_note

    note = tensorrt_85_note(check)
    line = f"tensorrt   ops ok {check.get('ok')} {check.get('unsupported') or ''}".rstrip()
    return f"{line} on TensorRT 8.6-10; {note}" if note else line


def _padded_positions_line(path: Path, manifest: Manifest) -> list[str]:
    """The warning loading this bundle gives if it is an old fd_cmdie teacher, so `info` tells whether a bundle
    needs re-exporting without loading it."""
    from ..runtime.predictor import PADDED_POSITIONS, positions_count_padding

    if not positions_count_padding(path, manifest):
        return []
    return [f"warning    an {manifest.model} teacher {PADDED_POSITIONS}"]
