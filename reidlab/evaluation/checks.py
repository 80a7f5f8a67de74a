"""Input checks of the evaluators, in one leaf module (numpy and torch only) that every evaluator imports.

Why a leaf: the metric modules (rank, search, rerank, vehicleid, verification) call each other; their shared
checks must not make them import each other for a helper.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_feature_tensor", "as_label_array", "check_positive_int"]


def as_label_array(values, name: str) -> np.ndarray:
    """1-D int64 numpy copy-free view of labels given as a list, numpy array or torch tensor."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)):
        rounded = np.asarray(arr, dtype=np.float64)
        if not np.all(np.isfinite(rounded)) or np.any(rounded != np.round(rounded)):
            raise ValueError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def as_feature_tensor(feats, name: str, device=None) -> torch.Tensor:
    """A 2-D float tensor (float64 kept, other dtypes -> float32) on ``device``; rejects NaN/inf."""
    x = feats if isinstance(feats, torch.Tensor) else torch.from_numpy(np.asarray(feats))
    x = x.detach()
    if device is not None:
        x = x.to(device)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [num_images, dim], got shape {tuple(x.shape)}")
    x = x if x.dtype == torch.float64 else x.float()
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).any(1).nonzero()[0])
        raise ValueError(f"{name} has NaN or infinite values (first in row {bad}); check the model's output")
    return x


def check_positive_int(value, name: str) -> int:
    """``value`` as an int >= 1 (an integral float such as 5.0 is accepted), or a ValueError naming ``name``."""
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
