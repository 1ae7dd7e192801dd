"""Imports every architecture module so each registers itself."""
from . import student  # noqa: F401
