"""Public error types; the CLI turns any of them into one `error:` line and exit code 2."""
from __future__ import annotations

import importlib
from types import ModuleType


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


def require(module: str, purpose: str, fix: str | None = None) -> ModuleType:
    """Import an optional dependency lazily, or raise one line naming the purpose and the fix.

    Catches OSError too: binding packages (tensorrt, soundfile) can fail on a missing shared library.
    """
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as exc:
        hint = fix or f"pip install {module}"
        raise MissingDependencyError(f"{module} is required for {purpose} ({exc}); fix: {hint}") from None
