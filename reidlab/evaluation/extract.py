"""Feature extraction over a DataLoader of ``ReIDImageDataset`` batches."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["extract_features"]


def _forward(model: nn.Module, images: torch.Tensor, camids: torch.Tensor | None) -> torch.Tensor:
    return model(images, camids=camids) if camids is not None else model(images)


def _amp_dtype(device: torch.device, amp: bool | torch.dtype | None) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``: None off CUDA or when disabled; float16 for True/None."""
    if device.type != "cuda" or amp is False:
        return None
    if amp is None or amp is True:
        return torch.float16
    if amp not in (torch.float16, torch.bfloat16):
        raise ValueError(f"amp={amp!r}: use True/False, torch.float16 or torch.bfloat16")
    return amp


def extract_features(model: nn.Module, loader, device=None, flip: bool = False,
                     amp: bool | torch.dtype | None = None,
                     normalize: bool = True) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(features [N, D] float32 on CPU, pids [N], camids [N]) of every batch of ``loader``.

    The model runs in eval mode under ``torch.no_grad`` (its training mode is restored afterwards) and
    receives ``camids=`` when ``model.uses_camids``.  ``flip``: average the features of each image and
    its horizontal mirror.  ``amp``: autocast on CUDA only (default: on when the device is CUDA; ignored
    elsewhere): True means float16; pass ``torch.bfloat16`` to extract as a bf16 run was trained.
    ``normalize``: L2-normalize the final features.
    """
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)
    amp_dtype = _amp_dtype(device, amp)
    uses_camids = bool(getattr(model, "uses_camids", False))
    feats, pids, camids = [], [], []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                images = batch["image"].to(device, non_blocking=True)
                cams = torch.as_tensor(batch["camid"])
                cams_on_device = cams.to(device) if uses_camids else None
                autocast = torch.autocast("cuda", dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
                with autocast:
                    out = _forward(model, images, cams_on_device).float()
                    if flip:
                        out = (out + _forward(model, images.flip(-1), cams_on_device).float()) / 2
                feats.append(out.cpu())
                pids.append(torch.as_tensor(batch["pid"]).reshape(-1).cpu())
                camids.append(cams.reshape(-1).cpu())
    finally:
        model.train(was_training)
    if not feats:
        raise ValueError("the loader yielded no batch: nothing to extract")
    features = torch.cat(feats)
    if normalize:
        features = F.normalize(features, dim=1)
    return features, torch.cat(pids).numpy().astype(np.int64), torch.cat(camids).numpy().astype(np.int64)
