"""Datasets (real layouts and the generated SynthReID), transforms, samplers and loaders."""

from . import samplers, synth
from .datasets import Record, ReIDDataset, build_dataset, list_datasets, register_dataset
from .image_dataset import ReIDImageDataset, check_data
from .transforms import build_transforms

__all__ = [
    "Record",
    "ReIDDataset",
    "ReIDImageDataset",
    "build_dataset",
    "build_transforms",
    "check_data",
    "list_datasets",
    "register_dataset",
    "samplers",
    "synth",
]
