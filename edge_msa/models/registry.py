"""Model registry: `create_model(name, spec, **params)`, `list_models()`. One file per architecture
registers itself with @register; tiny variants for tests are registered the same way."""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable, Container, Iterable, Mapping, get_type_hints

from ..errors import InputError, check_range
from ..spec import FeatureSpec, ModelConfig, suggest

if TYPE_CHECKING:
    from .base import MSAModel

_REGISTRY: dict[str, Callable[..., Any]] = {}
# The architectures `edge-msa train` and `pipeline` offer as --model. The registry also holds the student (what
# compress builds from a teacher, not a teacher itself) and the *_tiny widths for tests, which train nothing a user
# would want; the Python API (create_model, train_teacher) still builds every registered name.
TEACHERS = ("fd_cmdie", "gtf", "mult")
# How a teacher's text is encoded (train_teacher's text_encoder, --text-encoder): here, beside TEACHERS, so that the
# CLI lists the words without importing the trainer
TEXT_ENCODERS = ("finetune", "frozen")


def register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[name] = factory
        return factory
    return deco


def list_models() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def model_options(name: str) -> tuple[str, ...]:
    """The options model `name` takes, in its constructor's order: the keywords of the class its factory returns,
    less the spec (create_model's own text_bert is no keyword of any class). The one list of them, read from the
    constructor so that it cannot drift from it. Empty where the constructor has an argument without a default (the
    student's), i.e. where the factory works the class's arguments out of options of its own, and checks those."""
    keywords = [p for p in inspect.signature(_model_class(name)).parameters.values() if p.name != "spec"]
    return () if any(p.default is p.empty for p in keywords) else tuple(p.name for p in keywords)


def check_options(name: str, params: Iterable[str], taken: Container[str] = (),
                  options: Iterable[str] | None = None) -> None:
    """One line for the first of `params` that model `name` has no option of (model_options), with the closest of
    them and the rest: Python's TypeError named the class, e.g. FDCMDIE.__init__, which the user never typed, and no
    option. `taken`: the keywords of a caller that builds the model (train_teacher's), which its options cannot
    include, so the line does not offer them (fd_cmdie's text_encoder). `options`: those of a factory that takes
    options of its own (the student's, where model_options is empty), so that its line is this one too."""
    options = [option for option in (model_options(name) if options is None else options) if option not in taken]
    unknown = [key for key in params if key not in options]
    if options and unknown:
        raise InputError(f"model {name} has no option '{unknown[0]}'{suggest(unknown[0], options)}")


def checked_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """`params` with each count of model `name` (its class's COUNTS) as a Python int, or one line naming the first
    option the model lacks (check_options) or the first count that is not a whole number at or above its least
    value. Why: torch took a width as given, so hidden 63.5 or "64" failed with torch's TypeError from a tensor's
    size, numpy's 64 with the LSTM's, heads 0 with a ZeroDivisionError, av_layers 0 with the LSTM's ValueError,
    cmd_moments 2.5 only in the loss, all after the data load. Needs no FeatureSpec: the options are checked as
    given, before the factory runs (the class is found from its factory's return annotation); train_teacher runs it
    before any data load through check_build."""
    check_options(name, params)
    counts = getattr(_model_class(name), "COUNTS", {})
    given = [k for k in counts if k in params]
    for knob in given:
        check_range({knob: params[knob]}, counts[knob], strict=False, whole=True)
    return {**params, **{knob: int(params[knob]) for knob in given}}


def create_model(name: str, spec: FeatureSpec, **params: Any) -> MSAModel:
    """Build a model; its constructor arguments are kept in `model.config_params` for checkpoints."""
    text_bert = params.pop("text_bert", None)
    params = checked_params(name, params)
    try:
        if text_bert:  # the text encoder is part of the model (token-id input)
            from .with_text import with_text_encoder
            model = with_text_encoder(_REGISTRY[name], spec, text_bert, params)
        else:
            model = _REGISTRY[name](spec, **params)
    except (TypeError, ValueError) as exc:  # ValueError: torch's own checks, a float() of a word
        raise InputError(f"bad options for model '{name}': {exc}") from None
    model.spec = spec
    model.model_name = name
    return model


def check_build(name: str, params: Mapping[str, Any]) -> None:
    """Build model `name` with `params` on torch's meta device over a stand-in spec, and throw it away: one line for
    any option the model cannot be built with, before a caller reads any data. Why: an odd width for a BiLSTM, heads
    that do not divide the width and an unknown keyword are refused by the constructors, with the widths the
    factories merge in (the *_tiny ones), so train_teacher and compress (its student) found them only when they built
    the model after the data load. Running the factory runs those very rules; meta tensors allocate no memory and
    draw no random numbers, and the rules do not depend on the features' widths (the real build checks the spec)."""
    import torch

    with torch.device("meta"):
        create_model(name, FeatureSpec(dims=(1, 1, 1), max_lens=(1, 1, 1)), **params)


def model_config(model: MSAModel) -> ModelConfig:
    return ModelConfig(name=model.model_name, params=dict(model.config_params))


def _model_class(name: str) -> Any:
    """The class model `name`'s factory returns (its return annotation), or one line for a name not registered."""
    _load_all()
    if name not in _REGISTRY:
        raise InputError(f"unknown model '{name}'{suggest(name, sorted(_REGISTRY))}")
    return get_type_hints(_REGISTRY[name]).get("return")


def _load_all() -> None:
    """Import the architecture modules so their @register decorators run."""
    from . import zoo  # noqa: F401
