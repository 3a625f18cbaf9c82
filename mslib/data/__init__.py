"""Data for mslib: the prepared layout, the validated folder dataset, joint transforms and
the ``load_dataset`` registry (synthetic or prepared datasets by name).

One path for data: ``load_dataset(DATA, "train", build_transforms(True, size))`` ->
``DataLoader`` -> model. See :mod:`mslib.data.folder` for every check and repair.
"""
from .folder import DataRepairWarning, DatasetError, SegmentationFolder
from .layout import PreparedWriter, read_metadata, read_split
from .registry import list_datasets, load_dataset
from .transforms import AUGMENTATIONS, RandomBatchResize, build_transforms
from .volumes import VolumeDataset

__all__ = ["SegmentationFolder", "DatasetError", "DataRepairWarning", "build_transforms", "AUGMENTATIONS",
           "RandomBatchResize", "load_dataset", "list_datasets", "PreparedWriter", "read_metadata", "read_split",
           "VolumeDataset"]
