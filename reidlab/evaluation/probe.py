"""A linear probe: how much of a nuisance label (the scene, the camera) a ReID feature still carries."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def linear_probe_accuracy(features: np.ndarray, labels: Sequence[int], seed: int = 0, folds: int = 3,
                          groups: Sequence[int] | None = None) -> float:
    """Cross-validated accuracy of a logistic-regression probe predicting ``labels`` from ``features``:
    how much of e.g. the scene is still linearly decodable from a ReID feature (chance = majority class).

    ``groups`` (e.g. identities) keeps each group within one fold, so the probe is scored on held-out groups:
    a feature that knows an identity, and the identity's scenes, does not count as knowing the scene."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    counts = np.bincount(np.unique(labels, return_inverse=True)[1])
    folds = int(max(2, min(folds, counts.min())))
    if groups is not None:
        folds = int(max(2, min(folds, len(set(groups)))))
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    splitter = StratifiedKFold if groups is None else StratifiedGroupKFold
    cv = splitter(n_splits=folds, shuffle=True, random_state=seed)
    features = np.asarray(features, np.float64)
    return float(cross_val_score(probe, features, labels, cv=cv, groups=groups).mean())
