"""checkpoint -> bundle: ONNX fp32/fp16/int8 and TensorRT engines from one format table (host only)."""
from .formats import FORMATS, get_format

__all__ = ["FORMATS", "export", "get_format"]


def __getattr__(name: str):
    """`export` imported on first use: every `edge-msa` call reads the format table for its parser, and the exporter
    (text front end, manifest, ONNX steps) cost each of them ~25 ms more."""
    if name == "export":
        from .exporter import export
        return export
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
