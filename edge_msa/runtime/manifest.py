"""Bundle manifest (interface 5): what a bundle holds and how to run it. Written by `export`, read here.

Lives in the runtime (numpy-only) because the device reads it; `export` depends on it, never the reverse.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

from ..atomic import write_text
from ..errors import ArtifactError, InputError, read_json_object
from ..jsonio import dumps, restored
from ..features.text import TOKENS_PREFIX
from ..spec import PARTS, SINGLE, SKIPPABLE, FeatureSpec

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclass
class Manifest:
    """manifest.json of a bundle; `graphs` maps part name (or "model") to a file inside the bundle."""

    feature_spec: FeatureSpec
    graphs: dict[str, str]
    layout: str  # "parts" (gate + encoders + fuse, modality skipping) | "single" (one graph, no skipping)
    precision: str  # fp32 | fp16 | int8 | engine-fp16 | engine-int8 | engine-fp32
    model: str
    io: dict[str, list[list[str]]] = field(default_factory=dict)  # graph -> [input names, output names]
    skip_thresholds: list[float] | None = None
    front_ends: dict[str, str] = field(default_factory=dict)  # modality -> front end name
    text_encoder: dict[str, str] | None = None  # {"onnx": file, "tokenizer": file} when bundled
    export_options: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)  # checkpoint_meta, valid, count (params + MACs)
    parity: dict[str, Any] = field(default_factory=dict)
    tensorrt_check: dict[str, Any] = field(default_factory=dict)
    backend: str = "onnxruntime"  # the runtime these graphs are for (onnxruntime | tensorrt)
    data: dict[str, Any] | None = None  # lineage of the training data (edge_msa.data.lineage); None = unknown
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        """Refuse a manifest the runtime could not follow: checked here, at load, so a hand-edited or damaged
        manifest is one line naming the field, not an IndexError or KeyError at the first prediction."""
        if self.layout not in ("parts", "single"):
            raise ArtifactError(f"manifest layout '{self.layout}' is unknown; expected 'parts' or 'single'")
        wrong = [f.name for f in fields(self)
                 if f.default_factory is dict and not isinstance(getattr(self, f.name), dict)]
        if wrong:
            raise ArtifactError(f"manifest fields {wrong} are not JSON objects; expected objects")
        _check_files("graphs", self.graphs, PARTS if self.layout == "parts" else (SINGLE,))
        if self.text_encoder is not None:  # token-id models carry only the tokenizer; frozen encoders their graph too
            tokens = self.feature_spec.front_end("text").startswith(TOKENS_PREFIX)
            _check_files("text_encoder", self.text_encoder, ("tokenizer",) if tokens else ("tokenizer", "onnx"))
        if "onnx_graphs" in self.export_options:  # an engine bundle's ONNX sources, which positions_count_padding reads
            _check_files("export_options.onnx_graphs", self.export_options["onnx_graphs"], ())
        t = self.skip_thresholds
        if t is not None and not (isinstance(t, list) and len(t) == len(SKIPPABLE) and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in t)):
            raise ArtifactError(f"manifest skip_thresholds {t!r:.80} are not {len(SKIPPABLE)} finite numbers "
                                f"({', '.join(SKIPPABLE)}); expected a list like [0.5, 0.5], or null")

    @property
    def skipping(self) -> bool:
        """Whether the runtime may skip modality encoders: only the "parts" layout has a gate and encoders to skip."""
        return self.layout == "parts"

    def to_dict(self) -> dict[str, Any]:
        """manifest.json's content: every field, the FeatureSpec as its own dict, and `skipping` spelled out for
        readers of the file (`edge-msa info`, the service's /info) that should not need to know what a layout means."""
        data = asdict(self)
        data["feature_spec"] = self.feature_spec.to_dict()
        data["skipping"] = self.skipping
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "manifest") -> "Manifest":
        """The Manifest of a parsed manifest.json, or one ArtifactError line naming `where`: a format newer than this
        edge-msa reads is refused rather than misread, and keys that are not fields (the derived `skipping`) are
        dropped, so to_dict's output reads back."""
        version = data.get("format_version")
        if not isinstance(version, int):
            raise ArtifactError(f"{where} has no integer format_version; expected an edge-msa bundle manifest")
        if version > FORMAT_VERSION:
            raise ArtifactError(f"{where} has bundle format_version {version}, newer than this edge-msa reads "
                                f"({FORMAT_VERSION}); upgrade edge-msa")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        try:
            kwargs["feature_spec"] = FeatureSpec.from_dict(data["feature_spec"])
            return cls(**kwargs)
        except (KeyError, TypeError, InputError) as exc:
            raise ArtifactError(f"{where} is malformed ({exc}); expected the fields of edge-msa bundle "
                                f"format {FORMAT_VERSION}") from None


def _check_files(name: str, files: Any, required: tuple[str, ...]) -> None:
    """`files` maps names to plain relative paths inside the bundle (no '..', not absolute), with `required` keys."""
    if not isinstance(files, dict):
        raise ArtifactError(f"manifest {name} is {type(files).__name__}; expected a map of names to bundle files")
    bad = {k: f for k, f in files.items() if not isinstance(f, str) or not f or PurePosixPath(f).is_absolute()
           or ".." in PurePosixPath(f).parts}
    if bad:
        raise ArtifactError(f"manifest {name} {bad!r:.120} are not file names inside the bundle; expected plain "
                            "relative names such as 'fuse.onnx'")
    missing = [k for k in required if k not in files]
    if missing:
        raise ArtifactError(f"manifest {name} lists no {missing} file; expected {list(required)}")


def write_manifest(bundle: str | os.PathLike, manifest: Manifest) -> Path:
    """Write `bundle/manifest.json` atomically and return its path. Export writes it last, once the graphs are
    checked: a folder without a complete manifest is not a bundle, so an interrupted export is never loaded."""
    path = Path(bundle) / MANIFEST
    write_text(path, dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n")
    return path


def read_manifest(bundle: str | os.PathLike) -> Manifest:
    """Read `bundle/manifest.json`; one-line ArtifactError/InputError for anything wrong."""
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise InputError(f"bundle '{bundle}' is not a directory; expected the folder written by `edge-msa export`")
    path = check_readable(bundle / MANIFEST)
    if not path.is_file():
        raise ArtifactError(f"'{bundle}' has no {MANIFEST}; expected a bundle written by `edge-msa export`")
    data = read_json_object(path, "the manifest `edge-msa export` writes (re-export the bundle)")
    return Manifest.from_dict(restored(data), where=str(path))  # an inf limit (--max-drop inf) reads back as inf


def check_readable(path: Path) -> Path:
    """`path`, or one line where this user may not read it. Why: a bundle copied from another user or machine keeps
    their permissions (0600 files, a folder without x), and onnxruntime's refusal read as a corrupt graph ('re-export
    the bundle') while the manifest and tokenizer raised PermissionError tracebacks. A missing file passes: the
    caller's own check says what belonged there."""
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise ArtifactError(f"'{path}' cannot be read by this user (permission denied); expected bundle files this "
                            "user can read (e.g. chmod -R a+rX on the bundle)") from None
    except OSError:
        pass
    return path
