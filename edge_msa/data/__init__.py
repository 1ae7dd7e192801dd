"""Dataset readers for the public MSA formats; all return DatasetSplits of numpy arrays."""
from .base import DatasetSplits, FeatureSet

__all__ = ["DatasetSplits", "FeatureSet"]
