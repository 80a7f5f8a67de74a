"""Distractor images for retrieval at scale, fitted to a real gallery's features.

ReID galleries at city scale are mostly images of people who are never queried (Market-1501's 500k distractor
set). Without such images, a study's small test gallery can be enlarged with synthetic ones that keep its
geometry: new identity centres drawn from a Gaussian with the mean and covariance of the real identity centres,
and each new image a new centre plus the within-identity residual (image minus its identity's mean) of a
randomly drawn real image, which carries real pose, camera and background variation. Distractors never match
a query: their identities are new.
"""

from __future__ import annotations

import numpy as np
import torch

from reidlab.evaluation.checks import as_label_array, check_positive_int

__all__ = ["fitted_distractors"]


def fitted_distractors(feats, pids, camids, num: int, seed: int = 0,
                       normalize: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features [num, D] float32, pids, camids) of ``num`` distractor images fitted to ``feats`` (a gallery).

    Identity centres: the mean feature of each identity with at least two images. New identities get the
    image counts of randomly drawn real ones and pids above every real pid; each image takes the camera of the
    real image whose residual it reuses. ``normalize``: L2-normalise the result (as reidlab's features are).
    """
    num = check_positive_int(num, "num")
    x = feats.detach().cpu().double().numpy() if isinstance(feats, torch.Tensor) else np.asarray(feats, np.float64)
    pids, camids = as_label_array(pids, "pids"), as_label_array(camids, "camids")
    if x.ndim != 2 or len(x) != len(pids) or len(x) != len(camids):
        raise ValueError(f"feats [N, D], pids and camids must have N rows, got {x.shape}, {len(pids)}, {len(camids)}")
    real = pids >= 0
    ids, inverse, counts = np.unique(pids[real], return_inverse=True, return_counts=True)
    if (counts >= 2).sum() < 2:
        raise ValueError("fitting distractors needs at least 2 identities with 2 or more images each")
    centres = np.zeros((len(ids), x.shape[1]))
    np.add.at(centres, inverse, x[real])
    centres /= counts[:, None]
    residuals, residual_cams = x[real] - centres[inverse], camids[real]
    multi = counts >= 2
    residuals, residual_cams = residuals[multi[inverse]], residual_cams[multi[inverse]]
    rng = np.random.default_rng(seed)
    mean = centres[multi].mean(0)
    # the centres' covariance, as a factor: new centres = mean + (C - mean)^T z / sqrt(n - 1), exact in
    # distribution for a Gaussian with the sample covariance, without forming D x D
    deviations = (centres[multi] - mean) / np.sqrt(max(1, multi.sum() - 1))
    sizes = []
    while sum(sizes) < num:
        sizes.append(int(rng.choice(counts)))
    sizes[-1] -= sum(sizes) - num
    new_centres = mean + rng.standard_normal((len(sizes), len(deviations))) @ deviations
    owner = np.repeat(np.arange(len(sizes)), sizes)
    drawn = rng.integers(0, len(residuals), num)
    out = (new_centres[owner] + residuals[drawn]).astype(np.float32)
    if normalize:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out, (int(pids.max()) + 1 + owner).astype(np.int64), residual_cams[drawn].astype(np.int64)
