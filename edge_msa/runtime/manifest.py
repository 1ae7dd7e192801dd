"""Bundle manifest (interface 5): what a bundle holds and how to run it. Written by `export`, read here.

Lives in the runtime (numpy-only) because the device reads it; `export` depends on it, never the reverse.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from ..atomic import write_text
from ..digest import file_sha256
from ..errors import ArtifactError, InputError
from ..jsonio import dumps, read_json_object
from ..features.text import TOKENS_PREFIX
from ..spec import PARTS, SINGLE, FeatureSpec, checked_skip_thresholds

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
RECOPY = "re-copy or re-export the bundle"  # the way out of a bundle whose files are not those export recorded


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
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # file -> {"sha256", "bytes"}; {} = not recorded
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        """Refuse a manifest the runtime could not follow: checked here, at load, so a hand-edited or damaged
        manifest is one line naming the field, not an IndexError or KeyError at the first prediction. The line says
        "manifest <field> ..."; from_dict, which knows the file, names it instead of the word (its cause's line)."""
        try:
            self._check_fields()
        except ArtifactError as exc:
            raise ArtifactError(f"manifest {exc}") from exc

    def _check_fields(self) -> None:
        """One ArtifactError line naming the first field the runtime could not follow, without naming the manifest."""
        if self.layout not in ("parts", "single"):
            raise ArtifactError(f"layout '{self.layout}' is unknown; expected 'parts' or 'single'")
        wrong = [f.name for f in fields(self)
                 if f.default_factory is dict and not isinstance(getattr(self, f.name), dict)]
        if wrong:
            raise ArtifactError(f"fields {wrong} are not JSON objects; expected objects")
        _check_files("graphs", self.graphs, PARTS if self.layout == "parts" else (SINGLE,))
        if self.text_encoder is not None:  # token-id models carry only the tokenizer; frozen encoders their graph too
            tokens = self.feature_spec.front_end("text").startswith(TOKENS_PREFIX)
            _check_files("text_encoder", self.text_encoder, ("tokenizer",) if tokens else ("tokenizer", "onnx"))
        if "onnx_graphs" in self.export_options:  # an engine bundle's ONNX sources, which positions_count_padding reads
            _check_files("export_options.onnx_graphs", self.export_options["onnx_graphs"], ())
        _check_records(self.files)
        if self.skip_thresholds is not None:  # the student's own rule: a hand-edited -0.1 acted as 0
            try:
                checked_skip_thresholds(self.skip_thresholds)
            except InputError as exc:
                raise ArtifactError(str(exc)) from None

    @property
    def skipping(self) -> bool:
        """Whether the runtime may skip modality encoders: only the "parts" layout has a gate and encoders to skip."""
        return self.layout == "parts"

    def named_files(self) -> set[str]:
        """Every file this manifest names (graphs, text encoder, an engine's ONNX sources, recorded files)."""
        sources = self.export_options.get("onnx_graphs", {})
        return {*self.graphs.values(), *(self.text_encoder or {}).values(), *sources.values(), *self.files}

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
        dropped, so to_dict's output reads back. Every line names `where`: a field refused by __post_init__ was told
        without the bundle it came from."""
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
        except ArtifactError as exc:  # __post_init__'s checks, which know no file: their line without "manifest"
            raise ArtifactError(f"{where}: {exc.__cause__}") from None


NOT_INSIDE = "are not file names inside the bundle; expected plain relative names such as 'fuse.onnx'"


def _inside(file: Any) -> bool:
    """Whether `file` is a plain relative path inside the bundle: a non-empty string, no '..', not absolute."""
    return (isinstance(file, str) and bool(file) and not PurePosixPath(file).is_absolute()
            and ".." not in PurePosixPath(file).parts)


def _check_files(name: str, files: Any, required: tuple[str, ...]) -> None:
    """`files` maps names to plain relative paths inside the bundle (`_inside`), with `required` keys."""
    if not isinstance(files, dict):
        raise ArtifactError(f"{name} is {type(files).__name__}; expected a map of names to bundle files")
    bad = {k: f for k, f in files.items() if not _inside(f)}
    if bad:
        raise ArtifactError(f"{name} {bad!r:.120} {NOT_INSIDE}")
    missing = [k for k in required if k not in files]
    if missing:
        raise ArtifactError(f"{name} lists no {missing} file; expected {list(required)}")


def _check_records(files: dict[str, Any]) -> None:
    """`files` (see record_files) maps names inside the bundle to {"sha256": 64 hex digits, "bytes": a size}. The
    names are the keys here, so a bad one is listed once (as a map of it to itself, it was printed twice)."""
    outside = [name for name in files if not _inside(name)]
    if outside:
        raise ArtifactError(f"files {outside!r:.120} {NOT_INSIDE}")
    bad = {k: v for k, v in files.items() if not (
        isinstance(v, dict) and isinstance(v.get("sha256"), str) and len(v["sha256"]) == 64
        and isinstance(v.get("bytes"), int) and not isinstance(v["bytes"], bool) and v["bytes"] >= 0)}
    if bad:
        raise ArtifactError(f"files {bad!r:.120} are not file records; expected "
                            '{"sha256": 64 hex digits, "bytes": a size} for each file')


def record_files(bundle: Path) -> dict[str, dict[str, Any]]:
    """The sha256 and size of every file in `bundle` but the manifest, by relative name. Why: a bundle travels
    (scp, SD cards, OTA) and a flipped byte in a graph's weights loads and answers other scores without a word."""
    return {name: {"sha256": file_sha256(p), "bytes": p.stat().st_size} for name, p in _on_disk(bundle).items()}


def _on_disk(bundle: Path) -> dict[str, Path]:
    """Every file in `bundle` but the manifest, by its name relative to the bundle ('/'-separated), sorted."""
    files = sorted(p for p in bundle.rglob("*") if p.is_file() and p != bundle / MANIFEST)
    return {p.relative_to(bundle).as_posix(): p for p in files}


class FileCheck(NamedTuple):
    """How a bundle's files compare with what export recorded: names that differ, are missing, or were added."""

    differ: list[str]
    missing: list[str]
    extra: list[str]


def check_files(bundle: Path, manifest: Manifest, list_extra: bool = True) -> FileCheck:
    """Each recorded file against the bundle on disk: the size first (a truncated copy needs no hashing), then the
    sha256. Nothing recorded (a bundle exported before the record), nothing compared. `list_extra`: list every file
    on disk to name those not recorded, which only `edge-msa info` reports (load needs the recorded files alone, so
    its `extra` is [])."""
    differ, missing = [], []
    for name, record in manifest.files.items():
        path = check_readable(bundle / name)
        if not path.is_file():
            missing.append(name)
        elif path.stat().st_size != record["bytes"] or file_sha256(path) != record["sha256"]:
            differ.append(name)
    extra = [name for name in _on_disk(bundle) if name not in manifest.files] if list_extra and manifest.files else []
    return FileCheck(differ, missing, extra)


def verify_files(bundle: Path, manifest: Manifest) -> None:
    """Refuse, in one line, a bundle whose files differ from what export recorded (load's check; `edge-msa info`
    also names missing and extra files). Missing files are left to the checks of the files load needs."""
    differ = check_files(bundle, manifest, list_extra=False).differ
    if differ:
        files = "files " + ", ".join(differ) + " differ" if len(differ) > 1 else f"file {differ[0]} differs"
        raise ArtifactError(f"bundle '{bundle}' {files} from what export recorded (sha256); {RECOPY}")


def write_manifest(bundle: str | os.PathLike, manifest: Manifest) -> Path:
    """Write `bundle/manifest.json` atomically and return its path, with the sha256 of every file beside it (see
    record_files). Export writes it last, once the graphs are checked: a folder without a complete manifest is not a
    bundle, so an interrupted export is never loaded."""
    manifest.files = record_files(Path(bundle))
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
    manifest = Manifest.from_dict(data, where=str(path))
    _check_inside(bundle, manifest)
    return manifest


def _check_inside(bundle: Path, manifest: Manifest) -> None:
    """Refuse a named file that is a symbolic link resolving outside the bundle. Why: the manifest's names are
    checked to stay inside (no '..', not absolute), and a link would carry them out all the same; export writes no
    links, and a file shared between bundles can be a hard link (`ln` without -s), which stays inside."""
    root = bundle.resolve()
    for name in sorted(manifest.named_files()):
        target = (bundle / name).resolve()
        if not target.is_relative_to(root):
            raise ArtifactError(f"bundle file '{bundle / name}' is a link to '{target}', outside the bundle; expected "
                                "the file itself inside the bundle (copy it in, or hard-link it: `ln` without -s)")


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
