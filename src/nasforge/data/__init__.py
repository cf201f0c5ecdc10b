"""Dataset registry and device-resident batching."""

from nasforge.data.batches import iterate, random_crop_flip
from nasforge.data.dataset import Dataset, TensorSplit, load_dataset
from nasforge.data.sources import SOURCES, dataset_names

__all__ = ["Dataset", "TensorSplit", "load_dataset", "iterate", "random_crop_flip", "SOURCES",
           "dataset_names"]
