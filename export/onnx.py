"""fp32 ONNX: each graph the model's export config names (`model.export_config()`: modules, IO names, dynamic batch
and sequence axes, example inputs) exported with the legacy TorchScript exporter (opset 17: fast, and what older
TensorRT parses), then deduplicated and slimmed (slim.py). Host only (torch)."""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from edge_msa.errors import ArtifactError
from edge_msa.models.export_config import ExportConfig

from .slim import slim_file

if TYPE_CHECKING:
    from .exporter import ExportContext


# The legacy exporter prints this from C++ for every pack_padded_sequence (the teachers' LSTMs). The
# shapes it warns about are checked for real: every export ends with a parity run on all modality subsets.
_KNOWN_CPP_NOTE = re.compile(rb"shape inference of prim::(PackPadded|PadPacked) type is missing")


@contextlib.contextmanager
def _quiet_exporter():
    """Capture the process's stderr (fd 2, where C++ writes) and replay all but the known note; nothing when the
    export fails, since export_graphs then raises a one-line error that says what went wrong. The exporter's
    own log goes there too: torch turns it on during every export (its `setup_onnx_logging` tests the function
    `_jit_is_onnx_log_enabled`, always true, not its result) and writes it to stdout, where a failed export
    printed the whole Torch IR graph (~170 lines for student_tiny's text encoder at opset 11)."""
    sys.stderr.flush()
    saved = os.dup(2)
    failed = True
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        torch._C._jit_set_onnx_log_output_stream("stderr")
        try:
            yield
            failed = False
        finally:
            torch._C._jit_set_onnx_log_output_stream("stdout")  # torch's default
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(keepends=True) if not _KNOWN_CPP_NOTE.search(line)]
            if kept and not failed:
                sys.stderr.write(b"".join(kept).decode(errors="replace"))
                sys.stderr.flush()


def export_graphs(config: ExportConfig, out: Path, opset: int, dedupe: bool, short_names: bool) -> dict[str, Any]:
    """Write one .onnx per graph of the model's export `config` into `out`, deduplicated and slimmed (export/slim.py)
    as asked. Returns {graph: {"file", "bytes_exported" (as torch wrote it), "bytes"}}."""
    model = config.model.eval()
    info = {}
    for name, (inputs, outputs) in config.io.items():
        module = config.module(name)
        example = config.example_inputs(name)
        path = out / f"{name}.onnx"
        try:
            with warnings.catch_warnings(), torch.no_grad(), _quiet_exporter():
                warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
                torch.onnx.export(module, example, str(path), dynamo=False, opset_version=opset,
                                  input_names=list(inputs), output_names=list(outputs),
                                  dynamic_axes=config.dynamic_axes(name), do_constant_folding=True)
        except Exception as exc:  # tracer/exporter errors are long; keep the first line
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(f"cannot export graph '{name}' of {model.model_name} to ONNX ({first})") from None
        info[name] = {"file": path.name, "bytes_exported": path.stat().st_size,
                      "bytes": slim_file(path, dedupe=dedupe, short_names=short_names)}
    return info


def build(ctx: ExportContext) -> dict[str, str]:
    """fp32: the exported graphs are the bundle's graphs."""
    return {name: path.name for name, path in ctx.onnx_graphs.items()}
