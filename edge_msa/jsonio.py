"""The one JSON writer (and its reader) for everything edge-msa writes: files, printed lines, REST answers.

Why: Python's json writes NaN and inf as bare `NaN` / `Infinity`, which are not JSON; JavaScript's JSON.parse, Go,
jq and most REST clients refuse the whole document. They do occur: `corr` is NaN for a collapsed model, an
unmeasurable figure is NaN, a limit given as `inf` (`--max-drop inf`, `--max-media-s inf`) is infinite. So every
writer goes through `dumps`, which writes strict JSON (allow_nan=False) after this mapping, decided once:

- NaN -> null: the number does not exist (undefined, not measured), which is what null says to every reader;
- +inf / -inf -> the strings "Infinity" / "-Infinity": not null, which would read as "unknown" where the value is a
  real bound ("no limit"); this spelling is the one JavaScript's Number(), Python's float() and Go's
  strconv.ParseFloat all turn back into the number ("inf" is NaN to JavaScript).

`loads` reads both what `dumps` writes (the strings back to +-inf; null stays None) and files written before this
writer (bare NaN / Infinity, which Python's json accepts), so earlier artifacts still load.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArtifactError, one_line

INFINITY = {math.inf: "Infinity", -math.inf: "-Infinity"}  # how dumps writes the infinities (see the docstring)
_FROM_TEXT = {text: value for value, text in INFINITY.items()}


class MayBeInfinite:
    """`Annotated[float, MayBeInfinite()]`: a float that may be infinite (a limit given as inf), whose JSON schema
    then says what `dumps` writes, a number or one of INFINITY's strings; a client generated from a schema saying
    "number" alone fails on "Infinity". pydantic calls this hook where it types the field (the service's
    /openapi.json); nothing here imports pydantic."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        return {"anyOf": [handler(core_schema), {"enum": list(INFINITY.values())}]}


def plain(value: Any) -> Any:
    """`value` as strict JSON can hold it: NaN -> None, +-inf -> INFINITY's strings, numpy scalars and arrays as
    Python numbers and lists, through dicts, lists and tuples; anything else as it is (for json's own `default`)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else INFINITY[value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """json.dumps of `plain(value)` with allow_nan=False (kwargs as json.dumps takes them: indent, default, ...)."""
    return json.dumps(plain(value), allow_nan=False, **kwargs)


def restored(value: Any) -> Any:
    """`value` parsed from a file `dumps` wrote, with INFINITY's strings back as the numbers (null stays None: what
    was NaN is read as 'no value')."""
    if isinstance(value, dict):
        return {k: restored(v) for k, v in value.items()}
    if isinstance(value, list):
        return [restored(v) for v in value]
    return _FROM_TEXT.get(value, value) if isinstance(value, str) else value


def loads(text: str | bytes) -> Any:
    """The value of JSON `text` from `dumps` or from an earlier edge-msa (bare NaN / Infinity still read)."""
    return restored(json.loads(text))


def read_json_object(path: os.PathLike[str] | str, what: str) -> dict:
    """The JSON object in `path`, read by `loads` (an inf limit, `--max-drop inf`, reads back as inf), or one
    ArtifactError line naming the file and `what` it should hold: json's own errors name no file, and a list or a
    number where an object belongs failed later with a KeyError."""
    try:
        data = loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({one_line(exc)}); expected {what}") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path} holds a {type(data).__name__}; expected {what} (an object)")
    return data
