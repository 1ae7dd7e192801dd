"""`export(checkpoint, format, out)`: checkpoint -> bundle directory (graphs + manifest.json + trtexec.txt),
validated by a parity run of the on-device Predictor against the torch model. Written atomically: a
failed export (parity, missing tensorrt, bad data) leaves no bundle behind."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edge_msa.atomic import atomic_dir, check_replaceable, write_text
from edge_msa.errors import InputError, given, require, warn
from edge_msa.features.text import NAME as MINILM, default_onnx_path, default_tokenizer_path
from edge_msa.paths import utf8_path
from edge_msa.runtime.manifest import MANIFEST, Manifest, write_manifest
from edge_msa.spec import MODALITIES, FeatureSpec
from edge_msa.version import __version__

from .formats import DEFAULTS, get_format, resolve_options
from .slim import slim_file


@dataclass
class ExportContext:
    """What a format's build function gets: the model, the bundle being written, the fp32 ONNX graphs."""

    model: Any
    spec: FeatureSpec
    layout: str
    out: Path
    onnx_graphs: dict[str, Path]
    options: dict[str, Any]
    feeds: dict[str, list] = field(default_factory=dict)  # TensorRT INT8: each graph's calibration inputs
    versions: dict[str, str] = field(default_factory=dict)
    export_notes: dict[str, Any] = field(default_factory=dict)


def export(checkpoint: str | os.PathLike, format: str = "onnx", out: str | os.PathLike = "bundle",  # noqa: A002
           data: str | os.PathLike | None = None, single_graph: bool = False, opset: int = DEFAULTS["opset"],
           log: Callable[[str], None] | None = print, **options: Any) -> Path:
    """Export `checkpoint` to a bundle at `out` in `format` (see export.formats.FORMATS).

    The student exports as parts (gate, encoders, fuse) for run-time modality skipping; any other
    MSAModel (or the student with single_graph=True) as one graph without skipping. `data` (a dataset
    path for edge_msa.data.load_dataset; default: the file the checkpoint's lineage names, where it exists) supplies
    real validation inputs for the parity and accuracy checks, and training inputs for TensorRT's INT8 calibration.
    Steps: fp32 graphs -> their parity -> the format's graphs -> their accuracy -> device files -> the
    manifest, written once, last; all inside one atomic directory.
    """
    fmt = get_format(format)
    opts = resolve_options(fmt, {"single_graph": single_graph, "opset": opset, **options})
    out = utf8_path(Path(out), "bundle")  # as load() refuses it: the graph exporter and onnxruntime take UTF-8 only
    check_replaceable(out, MANIFEST, "bundle")  # before the checkpoint and the data are read (atomic_dir: again)
    if fmt.requires:  # fail before any work, and before anything is written
        require(fmt.requires, f"--format {fmt.name}", fmt.fix)
    if fmt.backend == "tensorrt":  # what this TensorRT cannot build, and cuda-python
        from .tensorrt import preflight

        preflight(int(opts["opset"]))
    from edge_msa.checkpoint import load_checkpoint

    say = log or (lambda _msg: None)
    model, meta = load_checkpoint(checkpoint)
    data = data or _recorded_file(meta)  # else random inputs, with a note that --data would judge the Acc-2 drop
    config = model.export_config(single_graph=bool(opts["single_graph"]))  # the model says how it exports
    layout = config.layout
    calibrates = opts.get("trt_precision") == "int8"  # a TensorRT INT8 engine: scales fitted on calibration inputs
    checks = _checks(model, meta, layout, data, int(opts["max_batch"]), calibrates)
    if checks.valid is None and calibrates:
        warn(f"the INT8 engine's scales are calibrated on {checks.inputs}, not on data; pass --data "
             "(the training dataset) to calibrate on real training inputs")
    with atomic_dir(out, MANIFEST, "bundle") as tmp:
        ctx, manifest = _export_fp32(config, meta, tmp, fmt, opts, str(checkpoint), data)
        _check_fp32(ctx, manifest, checks, fmt, say)
        _convert(ctx, manifest, fmt)
        if manifest.precision != "fp32":
            _check_converted(ctx, manifest, checks, float(opts["max_drop"]), say)
        _add_device_files(ctx, manifest)
        write_manifest(tmp, manifest)
    say(f"bundle written to {out} ({layout} layout, {manifest.precision}, {len(manifest.graphs)} graphs)")
    return out


@dataclass
class _Checks:
    """What the bundle is validated on: real validation inputs (or random ones) in every modality subset."""

    model: Any
    layout: str
    batches: list  # parity.ParityBatch, in engine-sized chunks
    valid: Any  # the validation FeatureSet, or None without --data
    inputs: str  # what the batches are, in words
    calibration: list = field(default_factory=list)  # ParityBatch chunks TensorRT INT8 calibrates on; [] for none
    calibrated_on: dict[str, Any] = field(default_factory=dict)  # what they are, as the manifest records it


def _recorded_file(meta: dict[str, Any]) -> Path | None:
    from edge_msa.checkpoint import data_record
    from edge_msa.data.lineage import recorded_file

    return recorded_file(data_record(meta))


def _checks(model, meta: dict[str, Any], layout: str, data: str | os.PathLike | None, max_batch: int,
            calibrates: bool) -> _Checks:
    """The validation split of `data` (read before anything is written, so bad data fails first), or random inputs;
    where an INT8 engine `calibrates`, its calibration inputs too (see _calibration), from the same one read."""
    from edge_msa.checkpoint import data_record

    from .parity import RANDOM_INPUTS, parity_batches

    featurize = ("train", "valid") if calibrates else ("valid",)
    splits = _splits(data, model, data_record(meta), featurize) if data else None
    valid = splits.split("valid") if splits is not None else None
    inputs = (f"all {len(valid)} validation samples of {data}" if valid is not None
              else f"{RANDOM_INPUTS} random inputs of the spec's shapes")
    checks = _Checks(model, layout, parity_batches(model.spec, valid, max_batch=max_batch), valid, inputs)
    if calibrates:
        checks.calibration, checks.calibrated_on = _calibration(checks, splits, max_batch)
    return checks


def _calibration(checks: _Checks, splits, max_batch: int) -> tuple[list, dict[str, Any]]:
    """What TensorRT's INT8 calibrator is fed, and its record: a sample of the training split (tensorrt's
    calibration_sample), never the validation rows the accuracy check judges the engine on (scales fitted to those
    passed an optimistic check); without data, the random parity inputs."""
    from .parity import RANDOM_INPUTS, SUBSETS, parity_batches
    from .tensorrt import CALIBRATION_DRAW, calibration_sample

    subsets = f"each in {len(SUBSETS)} modality subsets"
    if splits is None:
        return checks.batches, {"split": None, "inputs": f"{checks.inputs}, {subsets}", "samples": RANDOM_INPUTS}
    train = splits.split("train")
    if not len(train):  # else TensorRT fails the build, after every graph was exported
        raise InputError(f"INT8 calibration needs training rows, but the training split of "
                         f"{splits.info.get('path') or splits.name} has none; expected a dataset with training rows, "
                         f"or {given('trt_precision', 'fp16')}")
    sample = calibration_sample(train)
    drawn = "all" if len(sample) == len(train) else f"{len(sample)} ({CALIBRATION_DRAW}) of"
    return (parity_batches(checks.model.spec, sample, max_batch=max_batch),
            {"split": "train", "inputs": f"{drawn} {len(train)} training samples, {subsets}", "samples": len(sample)})


def _export_fp32(config, meta: dict[str, Any], bundle: Path, fmt, opts: dict[str, Any], checkpoint: str,
                 data: str | os.PathLike | None) -> tuple[ExportContext, Manifest]:
    """The fp32 ONNX graphs in `bundle`, and the manifest describing them (not written yet)."""
    from edge_msa.checkpoint import data_record
    from edge_msa.compress.measure import count_at_max_lens

    from . import onnx as onnx_export

    model, layout, spec = config.model, config.layout, config.model.spec
    exported = onnx_export.export_graphs(config, bundle, int(opts["opset"]), bool(opts["dedupe"]),
                                         bool(opts["short_names"]))
    io = {name: [list(i), list(o)] for name, (i, o) in config.io.items()}
    versions = _versions(int(opts["opset"]))
    manifest = Manifest(
        feature_spec=spec, graphs={n: e["file"] for n, e in exported.items()}, layout=layout, precision="fp32",
        model=model.model_name, io=io,
        skip_thresholds=list(model.config_params["skip_thresholds"]) if layout == "parts" else None,
        front_ends={m: spec.front_end(m) for m in MODALITIES},
        export_options={"format": fmt.name, **opts, "checkpoint": checkpoint, "data": str(data) if data else None,
                        "graph_bytes": {n: {k: e[k] for k in ("bytes_exported", "bytes")}
                                        for n, e in exported.items()}},
        versions=versions, metrics={"checkpoint_meta": meta.get("metrics", {}), "count": count_at_max_lens(model)},
        data=data_record(meta))
    ctx = ExportContext(model, spec, layout, bundle, {n: bundle / e["file"] for n, e in exported.items()}, opts,
                        versions=versions)
    return ctx, manifest


def _versions(opset: int) -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {"edge_msa": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "opset": str(opset)}


def _check_fp32(ctx: ExportContext, manifest: Manifest, checks: _Checks, fmt, say: Callable[[str], None]) -> None:
    """Parity of the fp32 graphs with torch (raises ParityError past atol); for a TensorRT INT8 engine, the graphs'
    feeds on its calibration inputs in `ctx.feeds`, and what they are in the manifest; when these graphs are the
    bundle's, their validation metrics."""
    from .parity import check_graphs, check_metrics, record_feeds

    with _predictor(ctx.out, manifest, providers=["CPUExecutionProvider"]) as predictor:
        fp32 = check_graphs(checks.model, checks.layout, predictor, checks.batches, float(ctx.options["atol"]),
                            checks.inputs)
        if checks.calibration:
            ctx.feeds = record_feeds(predictor, checks.calibration)
            manifest.export_options["int8_calibration"] = checks.calibrated_on
        if fmt.precision == "fp32" and checks.valid is not None:
            manifest.metrics["valid"] = check_metrics(checks.model, checks.layout, predictor, checks.valid, None)
    say(_parity_line(fp32))
    manifest.parity = fp32.to_dict()  # {max_abs_diff per graph + "score", atol, ok, ...}
    if checks.calibration and checks.valid is not None:
        say(f"INT8 calibration: {checks.calibrated_on['inputs']}; accuracy judged on {checks.inputs}")


def _convert(ctx: ExportContext, manifest: Manifest, fmt) -> None:
    """The format's graphs from the fp32 ones (fp32: the same files), slimmed; the manifest now describes them."""
    opts = ctx.options
    manifest.graphs = fmt.build_fn()(ctx)
    for name, file in manifest.graphs.items():  # fp16/int8 converters add long names and value_info
        if file.endswith(".onnx") and fmt.precision != "fp32":
            manifest.export_options["graph_bytes"][name]["bytes"] = slim_file(
                ctx.out / file, dedupe=bool(opts["dedupe"]), short_names=bool(opts["short_names"]))
    manifest.precision = fmt.precision if fmt.name != "engine" else f"engine-{opts['trt_precision']}"
    manifest.backend = fmt.backend
    manifest.export_options.update(ctx.export_notes)
    if fmt.backend == "tensorrt":
        manifest.export_options["onnx_graphs"] = {n: p.name for n, p in ctx.onnx_graphs.items()}


def _check_converted(ctx: ExportContext, manifest: Manifest, checks: _Checks, max_drop: float,
                     say: Callable[[str], None]) -> None:
    """The converted graphs' deviation from torch and their validation scores' agreement with torch's (measured, not
    judged) and their validation accuracy, judged by the Acc-2 drop (raises ParityError past `max_drop` points);
    random inputs only measure."""
    from .parity import check_graphs, check_metrics

    with _predictor(ctx.out, manifest) as predictor:
        measured = check_graphs(checks.model, checks.layout, predictor, checks.batches, None, checks.inputs)
        manifest.parity[manifest.precision] = measured.to_dict()
        if checks.valid is not None:
            manifest.metrics["valid"] = check_metrics(checks.model, checks.layout, predictor, checks.valid, max_drop)
            say(_metric_line(manifest.precision, manifest.metrics["valid"]))
        else:
            manifest.metrics["valid"] = {"unavailable": "no --data given; accuracy drop and agreement not measured"}
            say(f"{manifest.precision}: max|Δ| vs torch = {measured.max_abs_diff['score']:.1e} on random "
                "inputs (pass --data to judge it by the Acc-2 drop)")


def _add_device_files(ctx: ExportContext, manifest: Manifest) -> None:
    """What travels beside the graphs: trtexec command lines, the TensorRT op check, the text front end."""
    from edge_msa.models.with_text import tokenizer_of

    from .trt_support import check_ops, trtexec_lines

    bundle, opts = ctx.out, ctx.options
    manifest.tensorrt_check = check_ops({n: bundle / f for n, f in manifest.graphs.items() if f.endswith(".onnx")}
                                        or ctx.onnx_graphs)
    write_text(bundle / "trtexec.txt", trtexec_lines(ctx.onnx_graphs, ctx.spec, opts, manifest.tensorrt_check))
    if ctx.spec.front_end("text") == MINILM:
        manifest.text_encoder = _copy_text_encoder(bundle)
    elif (tokenizer := tokenizer_of(ctx.model)) is not None:  # it encodes token ids itself: only its tokenizer travels
        shutil.copyfile(tokenizer, bundle / "tokenizer.json")
        manifest.text_encoder = {"tokenizer": "tokenizer.json"}


def _predictor(bundle: Path, manifest: Manifest, providers: list[str] | None = None) -> Any:
    """The on-device Predictor over `bundle`'s graphs, described by `manifest` as it will be read back (a round trip
    through its dict checks it as runtime.load's read_manifest would), so the bundle is validated before its
    manifest is written, once."""
    from edge_msa.runtime.predictor import open_bundle

    return open_bundle(bundle, Manifest.from_dict(manifest.to_dict(), where="the manifest being exported"),
                       providers=providers)


def _splits(data, model, record, featurize: tuple[str, ...]):
    """The splits the model was trained and selected on: `data` read once as its lineage `record` says (same format
    and carve; a warning when the file differs), its text tokenized by the model's own tokenizer when it has
    one, in the model's shapes (see DatasetSplits.for_model). Only the text of the splits in `featurize` is embedded
    (valid for the checks; train too for TensorRT's INT8 calibration): a frozen-MiniLM teacher embedded every
    transcript of the file on a cold cache; a row's features do not depend on the rows embedded beside it."""
    from edge_msa.data import rebuild_splits
    from edge_msa.models.with_text import text_front_end

    splits = rebuild_splits(record, data, text_encoder=text_front_end(model), featurize=featurize)
    return splits.for_model(model.spec)


def _copy_text_encoder(bundle: Path) -> dict[str, str]:
    """The MiniLM front end travels with the bundle so the device needs no extra packages."""
    shutil.copyfile(default_onnx_path(), bundle / "text_encoder.onnx")
    shutil.copyfile(default_tokenizer_path(), bundle / "tokenizer.json")
    return {"onnx": "text_encoder.onnx", "tokenizer": "tokenizer.json"}


def _parity_line(result) -> str:
    graphs = {k: v for k, v in result.max_abs_diff.items() if k != "score"}
    worst = max(result.max_abs_diff.values())
    detail = ", ".join(f"{k} {v:.0e}" for k, v in graphs.items())
    return (f"ONNX parity: max|Δ| = {worst:.0e} <= {result.atol:.0e} ✓ "
            f"({'parts' if len(graphs) > 1 else 'graph'}: {detail}; 7 modality subsets, {result.inputs})")


def _metric_line(precision: str, m: dict[str, Any]) -> str:
    agreement = m["agreement"]
    return (f"{precision} accuracy: Acc-2 (non-0) {m['torch']['acc2_non0']:.4f} -> {m['bundle']['acc2_non0']:.4f} "
            f"(drop {m['acc2_non0_drop_points']:.2f} <= {m['max_drop_points']} points) ✓; scores vs torch "
            f"(measured, not judged): mean|Δ| {agreement['mean_abs_diff']:.3f}, r {agreement['pearson_r']:.4f}")
