"""Datasets (real layouts and the generated SynthReID), transforms, samplers and loaders."""

from . import samplers, synth
from .datasets import Record, ReIDDataset, build_dataset, dataset_class, list_datasets, register_dataset
from .image_dataset import CorruptImageError, ReIDImageDataset, check_data, collate_skipping
from .transforms import build_transforms

__all__ = [
    "CorruptImageError",
    "Record",
    "ReIDDataset",
    "ReIDImageDataset",
    "build_dataset",
    "build_transforms",
    "check_data",
    "collate_skipping",
    "dataset_class",
    "list_datasets",
    "register_dataset",
    "samplers",
    "synth",
]
