"""Dataset readers for the public MSA formats; all return DatasetSplits of numpy arrays."""
from .base import DatasetSplits, FeatureSet
from .lineage import lineage, rebuild_splits
from .loader import FORMATS, detect_format, load_dataset

__all__ = ["DatasetSplits", "FeatureSet", "FORMATS", "detect_format", "lineage", "load_dataset", "rebuild_splits"]
