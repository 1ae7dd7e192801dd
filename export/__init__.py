"""checkpoint -> bundle: ONNX fp32/fp16/int8 and TensorRT engines from one format table (host only)."""
from edge_msa.lazy import lazy_attributes

from .formats import FORMATS, get_format

__all__ = ["FORMATS", "export", "get_format"]

# `export` on first use: every `edge-msa` call reads the format table for its parser, and the exporter (text front
# end, manifest, ONNX steps) cost each of them ~25 ms more
__getattr__ = lazy_attributes(__name__, {"export": "exporter"})
