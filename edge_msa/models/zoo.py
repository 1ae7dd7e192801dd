"""Imports every architecture module so each registers itself."""
