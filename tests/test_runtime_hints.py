"""The device-side API is typed and documented: every public function and method of edge_msa.runtime and the text
front ends has hints on every parameter and its return, and says what it is for (its own docstring or the one it
overrides). Checked by introspection, so a new public function without them fails here, not in review."""
from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

import edge_msa
import edge_msa.runtime
from edge_msa.runtime.backend import BACKENDS

RUNTIME = Path(edge_msa.runtime.__file__).parent
MODULES = sorted(f"edge_msa.runtime.{p.stem}" for p in RUNTIME.glob("*.py") if p.stem != "__init__") + [
    "edge_msa.features.text"]


def public_functions(module_name: str) -> dict[str, object]:
    """Qualified name -> function (properties: their getter) of everything public `module_name` defines."""
    module = importlib.import_module(module_name)
    found = {}
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module_name:
            continue
        if inspect.isfunction(obj):
            found[name] = obj
        elif inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") and attr != "__init__":
                    continue
                member = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
                if inspect.isfunction(member) and member.__module__ == module_name:  # not typing.Protocol's __init__
                    found[f"{name}.{attr}"] = member
    return found


@pytest.mark.parametrize("module_name", MODULES)
def test_public_functions_have_type_hints(module_name):
    missing = []
    for qualname, func in public_functions(module_name).items():
        sig = inspect.signature(func)
        params = [p for p in sig.parameters.values() if p.name not in ("self", "cls")]
        missing += [f"{qualname}({p.name})" for p in params if p.annotation is inspect.Parameter.empty]
        if sig.return_annotation is inspect.Signature.empty:
            missing.append(f"{qualname} -> ?")
    assert not missing, f"{module_name}: public functions without type hints: {missing}"


@pytest.mark.parametrize("module_name", MODULES)
def test_public_functions_say_why_they_exist(module_name):
    module = importlib.import_module(module_name)
    undocumented = []
    for qualname, func in public_functions(module_name).items():
        owner, _, attr = qualname.rpartition(".")
        if attr == "__init__":  # the class docstring says it
            continue
        member = getattr(getattr(module, owner), attr) if owner else func
        if not inspect.getdoc(member):  # an override inherits the docstring of the method it overrides
            undocumented.append(qualname)
    assert not undocumented, f"{module_name}: public functions without a docstring: {undocumented}"


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_registered_backend_takes_the_label_keyword(name):
    """BackendClass's contract, which open_bundle relies on: each class BACKENDS names (imported without its runtime,
    which it requires only when built) accepts `label=`."""
    module, cls = BACKENDS[name].split(":")
    inspect.signature(getattr(importlib.import_module(module), cls)).bind_partial(label="part")
