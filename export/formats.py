"""The ONE format table: it drives the CLI choices and help, option validation, the exporter and tests."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from edge_msa.errors import InputError, check_range
from edge_msa.spec import suggest

from edge_msa.runtime.tensorrt_backend import TRT_FIX
# Every architecture's attention (models/layers.py, models/text_bert.py) is scaled_dot_product_attention, which the
# exporter writes from opset 14 on; below it an export failed only after loading the checkpoint and the data.
MIN_OPSET = 14
# The highest opset torch's TorchScript exporter (export/onnx.py, dynamo=False) writes: ONNX_TORCHSCRIPT_EXPORTER_
# MAX_OPSET in torch.onnx._constants, which is private (and torch is not imported here), so stated here once.
MAX_OPSET = 20
LAYERNORM_OPSET = 17  # torch writes LayerNorm as one LayerNormalization node from this opset on, as primitive ops below
COMMON_OPTIONS = frozenset({"single_graph", "opset", "atol", "max_batch", "dedupe", "short_names"})
FP16_FIX = 'pip install "edge-msa[fp16]"'
TRT_PRECISIONS = ("fp32", "fp16", "int8")  # an engine's --trt-precision
ALIASES = {"tensorrt": "engine", "trt": "engine", "onnxruntime": "onnx", "ort": "onnx"}  # other tools' names


@dataclass(frozen=True)
class Format:
    """name · suffix · build function ("module:function") · required extra (module, fix) · device · options."""

    name: str
    suffix: str
    build: str
    requires: str | None
    fix: str | None
    device: str  # where the graphs run: "cpu+gpu" (onnxruntime) or "gpu" (TensorRT engines)
    precision: str
    backend: str
    extra_options: frozenset[str] = frozenset()

    @property
    def options(self) -> frozenset[str]:
        return COMMON_OPTIONS | self.extra_options

    def build_fn(self) -> Callable[..., dict[str, str]]:
        module, fn = self.build.split(":")
        return getattr(importlib.import_module(module), fn)


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("onnx", ".onnx", "edge_msa.export.onnx:build", None, None, "cpu+gpu", "fp32", "onnxruntime"),
    Format("onnx-fp16", ".onnx", "edge_msa.export.fp16:build", "onnxconverter_common", FP16_FIX,
           "cpu+gpu", "fp16", "onnxruntime", frozenset({"max_drop"})),
    Format("onnx-int8", ".onnx", "edge_msa.export.int8:build", "onnxruntime.quantization", "pip install onnxruntime",
           "cpu+gpu", "int8", "onnxruntime", frozenset({"max_drop", "per_channel"})),
    Format("engine", ".engine", "edge_msa.export.tensorrt:build", "tensorrt", TRT_FIX, "gpu", "engine", "tensorrt",
           frozenset({"max_drop", "trt_precision", "workspace_mb"})),
)}

DEFAULTS: dict[str, Any] = {"single_graph": False, "opset": 17, "atol": 1e-4, "max_batch": 32, "dedupe": True,
                            "short_names": True,
                            "max_drop": 0.5, "per_channel": True, "trt_precision": "fp16", "workspace_mb": 1024}


def get_format(name: str) -> Format:
    """The format `name` in any case (as Ultralytics takes `format=ONNX`); other tools' names for a format
    (tensorrt, trt) are suggested, not taken, so a manifest records one spelling."""
    key = str(name).lower()
    if key in FORMATS:
        return FORMATS[key]
    # an alias is its format's exact match, so suggest names it, then the formats expected, in its one wording
    raise InputError(f"unknown format '{name}'{suggest(ALIASES.get(key, key), list(FORMATS))}")


def resolve_options(fmt: Format, options: dict[str, Any]) -> dict[str, Any]:
    """Defaults for `fmt` overridden by `options`; unknown or inapplicable options are rejected."""
    for key in options:
        if key not in fmt.options:
            every = sorted(set().union(*(f.options for f in FORMATS.values())))
            if key in every:  # named as the CLI flag and the Python keyword, with the formats that take it
                takers = ", ".join(f.name for f in FORMATS.values() if key in f.options)
                raise InputError(f"option --{key.replace('_', '-')} ({key}=) does not apply to format "
                                 f"'{fmt.name}'; expected one of the formats that take it: {takers}")
            raise InputError(f"unknown export option '{key}'{suggest(key, every)}")
    resolved = {k: DEFAULTS[k] for k in sorted(fmt.options)}  # sorted: manifests reproducible byte for byte
    resolved.update(options)
    check_range({"opset": resolved["opset"]}, MIN_OPSET, strict=False, whole=True, top=MAX_OPSET,
                why=f"every model's attention needs {MIN_OPSET}; {LAYERNORM_OPSET} suits TensorRT 8.6+, "
                f"{LAYERNORM_OPSET - 1} TensorRT 8.5")
    check_range({"atol": resolved["atol"]}, 0, strict=True)
    check_range({"max_batch": resolved["max_batch"]}, 1, strict=False, whole=True)
    # a negative or NaN limit would fail every judged export; inf: no limit (README: `--max-drop inf`)
    check_range({"max_drop": resolved.get("max_drop", 0)}, 0, strict=False, no_limit=True)
    if "workspace_mb" in resolved:  # True was 1 MiB
        check_range({"workspace_mb": resolved["workspace_mb"]}, 1, strict=False, whole=True,
                    why="MiB; TensorRT's builder would refuse it only after every ONNX graph was exported")
    if resolved.get("trt_precision", "fp16") not in TRT_PRECISIONS:
        raise InputError(f"trt_precision '{resolved['trt_precision']}' is not an engine precision"
                         f"{suggest(str(resolved['trt_precision']), TRT_PRECISIONS)}")
    return resolved
