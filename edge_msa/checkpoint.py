"""Checkpoints are config + FeatureSpec + state_dict + meta, saved atomically and loaded with
`torch.load(weights_only=True)` and a rebuild from config. Never a pickled model object."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import atomic_path, check_file_out
from .errors import ArtifactError, InputError, one_line
from .spec import FeatureSpec, ModelConfig

if TYPE_CHECKING:
    from .models.base import MSAModel
    from .models.text_bert import BertEncoder

FORMAT_VERSION = 1


def require_writable_pt(path: str | os.PathLike, what: str) -> Path:
    """`path` as a Path, checked before any work: a .pt file name (not a folder) in a folder that can be written.
    Why: train and compress write only after minutes of work, and a refused write there lost it all."""
    path = Path(path)
    if path.suffix.lower() != ".pt":  # any case: the readers (read_checkpoint, info) never look at it
        raise InputError(f"--out '{path}' does not end in .pt; expected the {what} checkpoint to write, e.g. {what}.pt")
    check_file_out(path)
    return path


def save_checkpoint(path: str | os.PathLike, model: MSAModel, meta: dict[str, Any] | None = None) -> Path:
    """Write model (config, spec, weights) + plain-type meta atomically to `path`.

    A model with its own text encoder also stores its tokenizer (`model.tokenizer_path`, tokenizer.json text),
    so the checkpoint alone tokenizes the way the model was trained; one without a readable tokenizer, or with one
    other than its spec names, is refused, writing nothing, as load_checkpoint would refuse the file.

    A model built the same way, with the same meta, gives the same bytes wherever it is saved: torch.save names the
    zip's folder after a file it is given by path (here a random temp name), `archive/` in one given open. Why: a
    rerun stage that made the same model looked changed to all that compares sha256s (pipeline.json for --resume)."""
    import torch

    from .models import model_config

    tokenizer_json = _tokenizer_json(model, path)
    payload = {
        "format_version": FORMAT_VERSION,
        "config": model_config(model).to_dict(),
        "feature_spec": model.spec.to_dict(),
        "state_dict": cpu_state_dict(model.state_dict()),
        "meta": meta or {},
    }
    if tokenizer_json is not None:
        payload["tokenizer_json"] = tokenizer_json
    with atomic_path(path, suffix=".pt") as tmp, tmp.open("wb") as file:
        torch.save(payload, file)
    return Path(path)


def _tokenizer_json(model: MSAModel, path: str | os.PathLike) -> str | None:
    """The tokenizer.json text save_checkpoint stores beside `model` (None for a model that reads text features),
    checked before anything is written as load_checkpoint will check it: a model with its own text encoder needs a
    readable tokenizer, the one its spec's `wordpiece:<sha12>` names. Why: a missing file raised FileNotFoundError,
    and another tokenizer was saved into a file load_checkpoint then refused."""
    from .features.text import check_tokenizer_tag
    from .models.with_text import WithTextEncoder, tokenizer_of

    expected = "expected model.tokenizer_path to name the tokenizer.json its token ids come from"
    if isinstance(model, WithTextEncoder) and model.tokenizer_path is None:
        raise InputError(f"cannot save '{path}': the '{model.model_name}' model carries its own text encoder but no "
                         f"tokenizer (its tokenizer_path is None); {expected}")
    tokenizer = tokenizer_of(model)
    if tokenizer is None:
        return None
    try:
        data = tokenizer.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot save '{path}': the model's tokenizer '{tokenizer}' cannot be read "
                         f"({exc.strerror or one_line(exc, 80)}); {expected}") from None
    check_tokenizer_tag(tokenizer, model.spec.front_end("text"), f"cannot save '{path}'")
    return data.decode("utf-8")  # the spec's tokenizer: one a WordPiece front end read, so UTF-8 JSON


def cpu_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """`state` on the CPU with each storage moved once, so tensors that shared one before share one after. Why:
    torch.save writes a storage once however many tensors view it, but `.cpu()` of a GPU tensor makes a new one
    per call, so a student's block shared across depths and streams was saved once per name (a bigger file)."""
    import torch

    moved: dict[tuple[str, int | str], Any] = {}  # (device, storage address) -> that storage on the CPU
    out = {}
    for name, tensor in state.items():
        storage = tensor.untyped_storage()
        key = (str(tensor.device), storage.data_ptr() or name)  # empty storages all sit at 0: each its own
        if key not in moved:
            moved[key] = storage.cpu()  # the CPU storage itself when already there: CPU checkpoints are unchanged
        out[name] = torch.empty(0, dtype=tensor.dtype).set_(moved[key], tensor.storage_offset(), tensor.size(),
                                                            tensor.stride())
    return out


def torch_load_safe(path: Path, expected: str) -> Any:
    """`torch.load(weights_only=True)` of `path`, its failures one line ending in "expected `expected`". Why: a
    torch file may come from anyone, and weights_only refuses the Python objects a full unpickle would run; torch's
    own messages span many lines."""
    import pickle
    import zipfile

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        first = next((line for line in lines if "unsupported" in line.lower()), lines[0])[:160]  # what was refused
        what = ("holds pickled Python objects that weights_only loading refuses"
                if isinstance(exc, pickle.UnpicklingError) else "is not a readable torch file")
        raise ArtifactError(f"'{path}' {what} ({first}); expected {expected}") from None


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load the raw checkpoint dict safely (weights_only), with one-line errors for bad files."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint '{path}' does not exist; expected a .pt file written by edge-msa")
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since torch 1.6; edge-msa never wrote others
        raise ArtifactError(f"'{path}' is not a torch checkpoint (not the zip archive torch.save writes); "
                            "expected a .pt file written by edge-msa")
    payload = torch_load_safe(path, "a .pt file written by edge-msa (config + state_dict)")
    if not isinstance(payload, dict) or not {"config", "feature_spec", "state_dict"} <= set(payload):
        raise ArtifactError(f"'{path}' is a torch file but not an edge-msa checkpoint; expected keys "
                            "format_version, config, feature_spec, state_dict, meta")
    _check_fields(payload, path)
    version = payload.get("format_version", 0)
    if version > FORMAT_VERSION:
        raise ArtifactError(f"'{path}' has checkpoint format {version}, newer than this edge-msa reads "
                            f"({FORMAT_VERSION}); upgrade edge-msa")
    return payload


# the type of each field save_checkpoint writes (format_version, meta and tokenizer_json may be absent)
FIELD_TYPES = {"format_version": int, "config": dict, "feature_spec": dict, "state_dict": dict, "meta": dict,
               "tokenizer_json": str}


def _check_fields(payload: dict[str, Any], path: Path) -> None:
    """Each field of the type save_checkpoint writes, config with its name and feature_spec with dims and max_lens.
    Why: info, export and compress read the fields directly, so a hand-edited one ("1" for format 1, a list for
    meta, bytes for the tokenizer, an empty spec) failed there with a TypeError or AttributeError traceback."""
    for key, kind in FIELD_TYPES.items():
        value = payload.get(key)
        if key in payload and (not isinstance(value, kind) or isinstance(value, bool)):
            raise ArtifactError(f"'{path}': {key} is a {type(value).__name__} ({value!r:.60}); expected type "
                                f"{kind.__name__}, as edge-msa writes it")
    config, spec = payload["config"], payload["feature_spec"]
    if not isinstance(config.get("name"), str) or not isinstance(config.get("params", {}), dict):
        raise ArtifactError(f"'{path}': config is {config!r:.80}; expected a model name and a params dict")
    missing = sorted({"dims", "max_lens"} - set(spec))
    if missing:
        raise ArtifactError(f"'{path}': feature_spec lacks {' and '.join(missing)}; expected dims, max_lens and "
                            "front_ends per modality")


def data_record(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The data lineage of a checkpoint (`edge_msa.data.lineage`): meta["data"]; for checkpoints saved before
    lineage, a partial record (path + seed of the validation carve: students recorded `data_seed`, teachers
    loaded their data with their first seed), or None when nothing was recorded."""
    data = meta.get("data")
    if isinstance(data, dict):
        return data
    if data is None and "data_seed" not in meta and not meta.get("seeds"):
        return None
    return {"path": data, "seed": int(meta.get("data_seed", (meta.get("seeds") or [0])[0]))}


def load_checkpoint(path: str | os.PathLike) -> tuple[MSAModel, dict[str, Any]]:
    """Rebuild the model from a checkpoint. Returns (model in eval mode, meta dict).

    A spec or config the constructors refuse (a hand-edited file, or one from a version with other rules) is told
    with the file's name before the constructor's line. Why: `skip_thresholds[1] = -0.1; expected >= 0` told the user
    of `edge-msa export old.pt` what was wrong but not where."""
    from .models import create_model

    payload = read_checkpoint(path)
    config = ModelConfig.from_dict(payload["config"])
    try:
        spec = FeatureSpec.from_dict(payload["feature_spec"])
        model = create_model(config.name, spec, **config.params)
    except InputError as exc:  # the spec's and the constructors' checks, which know no file
        raise ArtifactError(f"'{path}': {exc}") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:  # torch: a header line, then one line per tensor; the first tensor says enough
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise ArtifactError(f"'{path}': weights do not fit the '{config.name}' config "
                            f"({one_line(lines[min(1, len(lines) - 1)], 240).rstrip('.')}); "
                            "expected the weights saved with this config") from None
    _attach_tokenizer(model, payload, spec, path)
    model.eval()
    return model, dict(payload.get("meta", {}))


def _attach_tokenizer(model: MSAModel, payload: dict[str, Any], spec: FeatureSpec, path: str | os.PathLike) -> None:
    """Give a model with its own text encoder the checkpoint's tokenizer, once the spec and tokenizer are shown to
    fit the encoder. Why: a text max_len past the encoder's positions failed inside export (IndexError), one under
    [CLS] word [SEP] only when a text was tokenized, a tokenizer of another vocabulary (or a token-row map past the
    embedding) exported and predicted with wrong scores, and without a tokenizer the model could read no text. A
    tokenizer beside a model without a text encoder (only a hand-edited file has one) would make its readers feed
    token ids to a model built for text features."""
    from .features.text import MIN_MAX_LEN
    from .models.with_text import WithTextEncoder

    if not isinstance(model, WithTextEncoder):
        if "tokenizer_json" in payload:
            raise ArtifactError(f"'{path}': it holds a tokenizer but its '{model.model_name}' model has no text "
                                "encoder to read token ids; expected tokenizer_json only with a text_bert config, "
                                "as save_checkpoint stores it")
        return
    low, high, max_len = MIN_MAX_LEN, model.bert.config["max_positions"], spec.max_len("text")
    if not low <= max_len <= high:
        raise ArtifactError(f"'{path}': its spec's text max_len {max_len} does not fit the text encoder "
                            f"([CLS] word [SEP] at least, its {high} positions at most); expected {low} <= "
                            f"max_len <= {high}")
    if "tokenizer_json" not in payload:
        raise ArtifactError(f"'{path}': the model carries its own text encoder but no tokenizer; expected the "
                            "tokenizer_json save_checkpoint stores with such a model")
    model.tokenizer_path = checkpoint_tokenizer(payload, spec, path, model.bert)


def checkpoint_tokenizer(payload: dict[str, Any], spec: FeatureSpec, path: str | os.PathLike,
                         encoder: BertEncoder) -> Path:
    """The checkpoint's tokenizer.json as a file (content-addressed in the cache); it must be the one the
    model's spec names (`wordpiece:<sha12>`) and fit the text `encoder` (check_tokenizer_fits)."""
    from .features.text import WordPiece, check_tokenizer_tag, tokenizer_file
    from .models.text_bert import check_tokenizer_fits

    file = tokenizer_file(payload["tokenizer_json"])
    check_tokenizer_tag(file, spec.front_end("text"), f"'{path}'")
    check_tokenizer_fits(WordPiece(file).vocab_size, encoder, f"'{path}': its tokenizer", ArtifactError)
    return file
