"""checkpoint -> bundle: ONNX fp32/fp16/int8 and TensorRT engines from one format table (host only)."""
from .exporter import export
from .formats import FORMATS, get_format

__all__ = ["FORMATS", "export", "get_format"]
