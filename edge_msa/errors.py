"""Public error types; the CLI turns any of them into one `error:` line and exit code 2."""
from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from numbers import Integral, Real
from types import FrameType, MappingProxyType, ModuleType
from typing import Any, Iterable, Iterator, Mapping

# The one-line fixes for the optional groups of setup.py (`pip install edge-msa` is the device runtime alone).
TRAIN_FIX = 'pip install "edge-msa[train]"'
MEDIA_FIX = 'pip install "edge-msa[media]"'
PLOT_FIX = 'pip install "edge-msa[plot]"'
GPU_FIX = 'pip install "edge-msa[gpu]"'


class EdgeMSAError(Exception):
    """Base of every error a user should see as one line (what was wrong; expected what)."""


class InputError(EdgeMSAError):
    """Bad user input: a missing file, a wrong shape, NaN features, an impossible option."""


class ArtifactError(EdgeMSAError):
    """A checkpoint, bundle or graph file that is corrupt, truncated or from an unknown version."""


class MissingDependencyError(EdgeMSAError):
    """An optional dependency is not installed; the message carries the fix."""


class ParityError(EdgeMSAError):
    """An exported graph disagrees with the torch reference beyond tolerance."""


def one_line(exc: BaseException | str, limit: int = 200) -> str:
    """`exc`'s message (or a text) as one line of at most `limit` characters (its type name when empty). Why:
    messages from libraries (pickle, json, safetensors, torch) may span lines, and our errors are one `error:` line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def plural(count: int, noun: str) -> str:
    """'1 clip' / '3 clips' for a regular noun: a count in a message reads as English, not '1 clips' or 'clip(s)'."""
    return f"{count} {noun}{'s' * (count != 1)}"


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """`warnings.warn` attributed to the first caller outside edge-msa: a fixed stacklevel named a line inside the
    package whenever a public call reached the warning through more frames than counted (`load(...).predict(text=...)`
    named predictor.py), and warnings filters and "once per location" key on that line. Python 3.12's
    skip_file_prefixes skips the package's frames; on older versions the same frames are counted here."""
    prefixes = _package_dirs()
    if sys.version_info >= (3, 12):
        warnings.warn(message, category, skip_file_prefixes=prefixes)
        return
    frame: FrameType | None = sys._getframe(1)
    level = 2  # the caller of warn()
    while frame is not None and frame.f_code.co_filename.startswith(prefixes):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def _package_dirs() -> tuple[str, ...]:
    """The folders of every loaded edge_msa package, each ending in a separator: compress/, export/ and benchmarks/
    install inside edge_msa/, but an editable install maps them to the repository's top (setup.py's package_dir).
    Read from sys.modules, as each frame of a call stack runs in a module already imported."""
    top = __name__.partition(".")[0]
    return tuple({os.path.join(folder, "") for name, module in list(sys.modules.items())
                  if name.partition(".")[0] == top for folder in getattr(module, "__path__", ())})


def not_found(what: str, path: os.PathLike[str] | str, expected: str) -> InputError:
    """The one line for an input that is not there, `<what> not found: <path>; expected <expected>`: each reader
    said only "not found", in its own words, so a user learnt which path was wrong but not what belonged there."""
    return InputError(f"{what} not found: {path}; expected {expected}")


def checked_threads(threads: int | None) -> int | None:
    """A thread count as the libraries take it: None (also for 0) means the library's own default, as
    ONNX Runtime's intra_op_num_threads=0 does, so every --threads flag reads 0 alike (serve's default of 1 needs a
    way to ask for the library's choice); a negative count, which onnxruntime refused deep in session creation and
    torch.set_num_threads with a RuntimeError, is one line here (check_range), named as given (`load(bundle,
    threads=-1)` was told `--threads -1`; the commands with a --threads flag name it with named_as_flags)."""
    if threads is not None:  # 1.5 ran on int(1.5); "2": TypeError
        check_range({"threads": threads}, 0, strict=False, whole=True, why="0: the library's default")
    return threads or None


def is_whole(value: object) -> bool:
    """An int (numpy's too), not a bool: the one test of a count, a seed or a dim that int() would round or convert.
    A float is refused even when it is whole (16.0, as a JSON or YAML config may write it): the command line's
    type=int refuses "16.0" too, and a count taken as 16.0 would travel on as a float (range(16.0) is a TypeError, a
    checkpoint's JSON would record 16.0) unless every caller converted it; check_range says which int to write."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def checked_seeds(seeds: Iterable[int], name: str = "seeds") -> tuple[int, ...]:
    """The seeds as ints, or one line saying why not: at least one, each an integer (int() made seed 0.5 seed 0
    without a word) in 0 .. 2**32 - 1, the range numpy's seeding (training.seed_everything) accepts, so a bad seed
    fails before any data is read, not inside numpy; each by check_range, the one rule (its own wording said
    "seeds 0.0 not an integer"). `name` is the knob, named as given (option_name)."""
    flag = option_name(name)
    seeds = tuple(seeds)
    if not seeds:
        raise InputError(f"no seeds given; expected at least one seed, e.g. {flag} 0")
    for seed in seeds:
        check_range({name: seed}, 0, strict=False, whole=True, top=2 ** 32 - 1)
    seeds = tuple(int(s) for s in seeds)  # numpy's ints as Python's
    if len(set(seeds)) < len(seeds):  # a repeated seed trains the same model twice and shrinks the reported std
        raise InputError(f"{flag} {' '.join(map(str, seeds))} repeats a seed; expected distinct seeds")
    return seeds


# The knobs a command line set, named by their flags in messages while the library runs for it (named_as_flags).
_FLAG_KNOBS: ContextVar[Mapping[str, str]] = ContextVar("flag_knobs", default=MappingProxyType({}))


@contextmanager
def named_as_flags(knobs: Iterable[str], spelled: Mapping[str, str] | None = None) -> Iterator[None]:
    """Within it, messages name `knobs` by the flags that set them: a CLI user typed `--epochs 0` and was told
    `epochs = 0`, a library caller passes the keyword, and some knobs (lr, max_minutes, ...) have no flag at all.
    Set by the commands whose flags are their library call's keywords (compress, train); `spelled` maps a knob to
    its flag where the two are spelled apart (serve's --max-body sets Limits.max_body_bytes), or to the whole flag as
    typed where the flag takes KEY=VALUE (`--model-param hidden=1e2` sets a model's hidden: its value as parsed,
    100.0, is not what the user typed)."""
    flags = {name: f"--{name.replace('_', '-')}" for name in knobs}
    token = _FLAG_KNOBS.set(MappingProxyType({**flags, **(spelled or {})}))
    try:
        yield
    finally:
        _FLAG_KNOBS.reset(token)


def option_name(name: str) -> str:
    """A knob as its user spelled it: the flag (argparse's dest of --text-kd-epochs is text_kd_epochs) where the
    command line set it (named_as_flags), else the Python keyword. The one map from knob to flag."""
    return _FLAG_KNOBS.get().get(name, name)


def given(name: str, value: Any) -> str:
    """A knob and its value as the user gave them: `--share all` on the command line, `share = 'all'` in Python, and
    `--model-param hidden="64"` where a flag sets it as KEY=VALUE (spelled whole as typed, with its '=',
    named_as_flags)."""
    spelled = option_name(name)
    if spelled != name:
        return spelled if "=" in spelled else f"{spelled} {value}"
    return f"{name} = {value!r}" if isinstance(value, str) else f"{name} = {value}"


def check_range(values: Mapping[str, float], bound: float, strict: bool, no_limit: bool = False,
                whole: bool = False, top: float | None = None, exclusive_top: bool = False, why: str = "") -> None:
    """One line for the first of `values` (name -> value) that is not a finite number > `bound` (`strict`) or
    >= `bound`: the comparison is negated so that NaN fails it too, before any training (it failed mid-run inside
    torch, or trained on NaN). The one rule for the training and compress knobs, each named as its user gave it
    (`given`: `--epochs 0` from the command line of compress or train, `epochs = 0` in Python). `no_limit`: the
    values are limits that +inf lifts (serve's --max-media-s inf, as in predict). `whole`: the values are counts
    (is_whole), which a CLI parses with type=int but Python took as given: batch 1.5 ran as batch 1, and a string
    failed the comparison with a bare TypeError (as a string or a bool in place of any number does). A count that is
    NaN or inf is told it must be finite, as any other knob is (serve's `max_steps = inf` was told so before its
    limits were counts). `top`: an upper bound as well, inclusive (opset 14 <= opset <= 20, a seed's range), so a
    two-sided range follows the same rule and wording; `exclusive_top` makes it a bound the value stays below (a
    probability or prune_ratio in [0, 1)), which was told by hand or by a rule of its own that said only ">= 0" or
    only "[0, 1)". `why`: what the range serves, said after it in parentheses."""
    op, top_op = (">" if strict else ">="), ("<" if exclusive_top else "<=")
    for name, value in values.items():
        number = isinstance(value, Real) and not isinstance(value, bool)
        span = f"{op} {bound}" if top is None else f"{bound} {op.replace('>', '<')} {name} {top_op} {top}"
        if not number or (whole and math.isfinite(value) and not is_whole(value)):
            # 16.0 (is_whole): told which int to write, where that int is in range
            said = number and value == int(value) and _inside(value, bound, strict, top, exclusive_top)
            kind, fix = (f" is a {type(value).__name__}", f"write {int(value)}") if said else ("", "")
            raise InputError(f"{given(name, value)}{kind}; expected a {'whole ' * whole}number {span}"
                             f"{_notes(no_limit, why, fix)}")
        finite = math.isfinite(value) or (no_limit and value == math.inf)
        if not _inside(value, bound, strict, top, exclusive_top) or not finite:
            what = "" if finite or no_limit else "a finite number "
            raise InputError(f"{given(name, value)}; expected {what}{span}{_notes(no_limit, why)}")


def _inside(value: float, bound: float, strict: bool, top: float | None, exclusive_top: bool) -> bool:
    """check_range's comparison, False for NaN."""
    below_top = top is None or (value < top if exclusive_top else value <= top)
    return (value > bound if strict else value >= bound) and below_top


def _notes(no_limit: bool, *notes: str) -> str:
    """check_range's parenthesis after the range: that inf lifts it, why the range, which int to write."""
    said = [note for note in ("inf: no limit" if no_limit else "", *notes) if note]
    return f" ({'; '.join(said)})" if said else ""


def require(module: str, purpose: str, fix: str | None = None) -> ModuleType:
    """Import an optional dependency lazily, or raise one line naming the purpose and the fix.

    Catches OSError too: binding packages (tensorrt, soundfile) can fail on a missing shared library.
    """
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as exc:
        hint = fix or f"pip install {module}"
        raise MissingDependencyError(f"{module} is required for {purpose} ({exc}); fix: {hint}") from None


def require_installed(modules: tuple[str, ...], purpose: str, fix: str) -> None:
    """Fail in one line when any of `modules` is not installed, without importing them: an up-front check
    (e.g. before a command reads any data) that costs nothing when they are present."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependencyError(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required for "
                                     f"{purpose} and not installed; fix: {fix}")
