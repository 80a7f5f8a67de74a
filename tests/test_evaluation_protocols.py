"""VehicleID draws, TAR@FAR and feature extraction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from reidlab.evaluation import (draw_gallery, evaluate, evaluate_vehicleid, evaluate_vehicleid_sizes,
                                extract_features, pairwise_tar_at_far, tar_at_far)


def vehicle_features(seed=0, num_vehicles=25, dim=12):
    rng = np.random.default_rng(seed)
    vids = np.repeat(np.arange(num_vehicles), rng.integers(1, 6, num_vehicles))
    feats = rng.normal(size=(num_vehicles, dim))[vids] + 0.9 * rng.normal(size=(len(vids), dim))
    return feats.astype(np.float32), vids


def test_draw_gallery_one_image_per_vehicle_and_seeded():
    _, vids = vehicle_features()
    gallery = draw_gallery(vids, seed=3)
    assert sorted(vids[gallery].tolist()) == sorted(set(vids.tolist()))
    np.testing.assert_array_equal(gallery, draw_gallery(vids, seed=3))
    assert any(not np.array_equal(draw_gallery(vids, s), gallery) for s in range(4, 8))


def test_vehicleid_protocol_is_deterministic_and_averages_draws():
    feats, vids = vehicle_features()
    a = evaluate_vehicleid(feats, vids, num_draws=4, seed=1)
    assert a == evaluate_vehicleid(feats, vids, num_draws=4, seed=1)
    assert a != evaluate_vehicleid(feats, vids, num_draws=4, seed=2)
    for draw in range(4):  # each draw is one plain evaluation with never-colliding cameras
        gallery = draw_gallery(vids, 1 + draw)
        query = np.setdiff1d(np.arange(len(vids)), gallery)
        one = evaluate(feats[query], feats[gallery], vids[query], vids[gallery], np.zeros(len(query)),
                       np.ones(len(gallery)), max_rank=5)
        assert a["per_draw"]["R1"][draw] == one["cmc"][0] and a["per_draw"]["mAP"][draw] == one["mAP"]
        assert one["num_invalid_queries"] == 0
    assert a["R5"] == pytest.approx(np.mean(a["per_draw"]["R5"]))
    assert a["mAP_std"] == pytest.approx(np.std(a["per_draw"]["mAP"]))
    sizes = evaluate_vehicleid_sizes({800: (feats, vids), 1600: vehicle_features(1)}, num_draws=2)
    assert set(sizes) == {800, 1600} and sizes[800]["num_draws"] == 2


def test_vehicleid_bad_input():
    feats, vids = vehicle_features()
    with pytest.raises(ValueError, match="vids"):
        evaluate_vehicleid(feats, vids[:-1])
    with pytest.raises(ValueError, match="single image"):
        evaluate_vehicleid(feats, np.arange(len(feats)))


def test_tar_at_far_hand_built():
    impostor = [0.9, 0.5, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.1, -0.2]  # 10 impostor pairs
    genuine = [0.95, 0.85, 0.6, 0.45, 0.2]
    scores = np.array(impostor + genuine)
    flags = np.array([False] * 10 + [True] * 5)
    out = tar_at_far(scores, flags, far=(0.0, 0.1, 0.2, 0.3, 0.5))
    # far 0: threshold = highest impostor 0.9 -> only 0.95 accepted
    assert out[0.0] == {"tar": 0.2, "threshold": 0.9, "far_achieved": 0.0}
    # far 0.1: one impostor may pass -> threshold 0.5 (2nd highest) -> 0.95, 0.85, 0.6
    assert out[0.1]["tar"] == 0.6 and out[0.1]["threshold"] == 0.5 and out[0.1]["far_achieved"] == 0.1
    # far 0.2: the 3rd highest impostor ties with the 2nd: still threshold 0.5, FAR achieved 0.1 <= 0.2
    assert out[0.2]["threshold"] == 0.5 and out[0.2]["far_achieved"] == 0.1
    assert out[0.3]["threshold"] == 0.4 and out[0.3]["tar"] == 0.8
    assert out[0.5]["threshold"] == 0.2 and out[0.5]["tar"] == 0.8  # 0.2 genuine is not strictly above
    with pytest.raises(ValueError, match="impostor"):
        tar_at_far(scores[10:], flags[10:])


def test_pairwise_tar_at_far_matches_explicit_pairs():
    feats, vids = vehicle_features(2)
    q, g = feats[:20], feats[20:]
    got = pairwise_tar_at_far(q, g, vids[:20], vids[20:], far=(0.01, 0.1))
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    scores = [float(a @ b) for a in qn for b in gn]
    flags = [pa == pb for pa in vids[:20] for pb in vids[20:]]
    want = tar_at_far(np.array(scores), np.array(flags), far=(0.01, 0.1))
    for far in (0.01, 0.1):
        assert got[far]["tar"] == pytest.approx(want[far]["tar"], abs=1e-6)


class TinyReID(nn.Module):
    def __init__(self, uses_camids=False):
        super().__init__()
        self.proj = nn.Linear(3 * 4 * 6, 5)
        self.drop = nn.Dropout(0.5)
        self.uses_camids = uses_camids
        self.seen_camids = []

    def forward(self, images, camids=None):
        self.seen_camids.append(camids)
        out = self.proj(self.drop(images.flatten(1)))
        return out + (camids[:, None].float() if camids is not None else 0)


def loader(num_batches=3, batch=4):
    gen = torch.Generator().manual_seed(0)
    for i in range(num_batches):
        yield dict(image=torch.randn(batch, 3, 4, 6, generator=gen), pid=torch.arange(batch) + 10 * i,
                   camid=torch.arange(batch) % 2, index=torch.arange(batch), path=["x"] * batch)


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("uses_camids", [False, True])
def test_extract_features(flip, uses_camids):
    torch.manual_seed(0)
    model = TinyReID(uses_camids).train()
    feats, pids, camids = extract_features(model, loader(), flip=flip, normalize=False)
    assert model.training  # restored
    assert feats.shape == (12, 5) and pids.tolist() == [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23]
    assert camids.tolist() == [0, 1] * 6
    assert all((c is not None) == uses_camids for c in model.seen_camids)
    images = torch.cat([b["image"] for b in loader()])
    cams = torch.cat([b["camid"] for b in loader()])[:, None].float() if uses_camids else 0
    with torch.no_grad():
        want = model.proj(images.flatten(1)) + cams  # eval mode: dropout off
        if flip:
            want = (want + model.proj(images.flip(-1).flatten(1)) + cams) / 2
    torch.testing.assert_close(feats, want)
    normalized, _, _ = extract_features(model, loader(), flip=flip)
    torch.testing.assert_close(normalized, torch.nn.functional.normalize(want, dim=1))
    assert not feats.requires_grad


def test_extract_features_empty_loader():
    with pytest.raises(ValueError, match="no batch"):
        extract_features(TinyReID(), [])


def test_extract_features_amp_dtype():
    from reidlab.evaluation.extract import _amp_dtype

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert _amp_dtype(cpu, True) is None and _amp_dtype(cpu, torch.bfloat16) is None
    assert _amp_dtype(cuda, None) is torch.float16 and _amp_dtype(cuda, True) is torch.float16
    assert _amp_dtype(cuda, torch.bfloat16) is torch.bfloat16 and _amp_dtype(cuda, False) is None
    with pytest.raises(ValueError, match="torch.bfloat16"):
        _amp_dtype(cuda, torch.float64)
