"""teacher.pt -> student.pt + report: distillation, structural pruning (torch-pruning), parameter sharing and
modality-skip calibration. Host only (torch)."""
from .options import CompressOptions
from .pipeline import compress, report_paths

__all__ = ["CompressOptions", "compress", "report_paths"]
