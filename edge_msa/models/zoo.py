"""Imports every architecture module so each registers itself."""
from . import student  # noqa: F401
from . import fd_cmdie  # noqa: F401
from . import gtf  # noqa: F401
from . import mult  # noqa: F401
