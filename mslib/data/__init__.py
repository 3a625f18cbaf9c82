"""Data for mslib: the prepared layout, the validated folder dataset, joint transforms and
the ``load_dataset`` registry (synthetic or prepared datasets by name).

One path for data: ``load_dataset(DATA, "train", build_transforms(True, size))`` ->
``DataLoader`` -> model. See :mod:`mslib.data.folder` for every check and repair.
The synthetic generators and the on-disk layout constants are re-exported as modules
(``mslib.data.synthetic.generate``, ``mslib.data.layout.META``).
"""

from mslib.data import labelled, layout, synthetic, synthetic_dermoscopy, synthetic_volumes
from mslib.data.folder import IMAGE_EXTENSIONS, DataRepairWarning, DatasetError, SegmentationFolder
from mslib.data.labelled import labelled_split, read_labelled_split
from mslib.data.layout import PreparedWriter, UnsafeRootError, read_metadata, read_split
from mslib.data.registry import PREPARERS, SYNTHETIC_TASKS, list_datasets, load_dataset, synthetic_path
from mslib.data.samplers import TwoStreamBatchSampler
from mslib.data.transforms import AUGMENTATIONS, JointResize, RandomBatchResize, RandomRot90Flip, build_transforms
from mslib.data.volumes import VolumeDataset

__all__ = [
    # datasets
    "SegmentationFolder",
    "DatasetError",
    "DataRepairWarning",
    "IMAGE_EXTENSIONS",
    "VolumeDataset",
    "load_dataset",
    "list_datasets",
    "synthetic_path",
    "SYNTHETIC_TASKS",
    "PREPARERS",
    # layout on disk
    "PreparedWriter",
    "UnsafeRootError",
    "read_metadata",
    "read_split",
    "layout",
    # transforms and sampling
    "build_transforms",
    "AUGMENTATIONS",
    "RandomBatchResize",
    "RandomRot90Flip",
    "JointResize",
    "TwoStreamBatchSampler",
    # semi-supervised splits
    "labelled_split",
    "read_labelled_split",
    "labelled",
    # synthetic generators (modules)
    "synthetic",
    "synthetic_dermoscopy",
    "synthetic_volumes",
]
