"""Datasets (real layouts and the generated SynthReID), transforms, samplers and loaders."""

import importlib.util

from . import samplers
from .datasets import Record, ReIDDataset, build_dataset, list_datasets, register_dataset
from .image_dataset import ReIDImageDataset, check_data
from .transforms import build_transforms

if importlib.util.find_spec(f"{__name__}.synth"):  # temporary guard until synth.py lands
    from . import synth

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
