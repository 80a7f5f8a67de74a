"""Evaluation of a model during or after training: DDP-sharded feature extraction, then the exact ranking
metrics (or VehicleID's protocol) on rank 0, shared with every rank."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Subset

from reidlab.data import ReIDImageDataset, build_transforms, collate_skipping
from reidlab.utils.distributed import gather_with_grad

from .builders import autocast_dtype
from .config import TrainConfig
from .distributed import DistContext, broadcast_object

VEHICLEID_DRAWS = 10  # random galleries averaged by the VehicleID protocol


def _shard(dataset, ctx: DistContext):
    """This rank's contiguous slice of an evaluation set (concatenating ranks restores the order)."""
    if not ctx.distributed:
        return dataset
    n = len(dataset)
    start, stop = n * ctx.rank // ctx.world_size, n * (ctx.rank + 1) // ctx.world_size
    return Subset(dataset, range(start, stop))


def eval_loader(records, config: TrainConfig, ctx: DistContext = DistContext()) -> DataLoader:
    transform = build_transforms(False, size=tuple(config.data.size))
    return DataLoader(
        _shard(ReIDImageDataset(records, transform, skip_corrupt=config.data.skip_corrupt), ctx),
        batch_size=config.data.test_batch_size,
        shuffle=False,
        num_workers=config.data.num_workers,
        pin_memory=ctx.device.type == "cuda",
        collate_fn=collate_skipping,
    )


def _noting_skipped(loader, skipped: list[str]):
    """The loader's batches, with the paths it skipped as unreadable appended to `skipped`."""
    for batch in loader:
        skipped.extend(batch["skipped"])
        yield batch


def run_evaluation(model: nn.Module, dataset, config: TrainConfig, ctx: DistContext = DistContext()) -> dict[str, Any]:
    """Query/gallery retrieval metrics (fractions) of `model`; every rank extracts its share of the images,
    rank 0 gathers and ranks, every rank gets the result."""
    from reidlab.evaluation import evaluate, extract_features

    if not dataset.query or not dataset.gallery:
        raise ValueError(f"{config.data.name} has an empty query or gallery split; nothing to evaluate")
    amp = autocast_dtype(config, ctx.device)
    parts = []
    skipped: list[str] = []
    for records in (dataset.query, dataset.gallery):
        feats, pids, camids = extract_features(
            model, _noting_skipped(eval_loader(records, config, ctx), skipped), device=ctx.device,
            flip=config.eval.flip, amp=amp or False,
        )
        if ctx.distributed:
            labels = torch.stack([torch.as_tensor(pids), torch.as_tensor(camids)], dim=1).to(ctx.device)
            with torch.no_grad():
                feats, labels = gather_with_grad(feats.to(ctx.device), labels)
            pids, camids = labels[:, 0].cpu().numpy(), labels[:, 1].cpu().numpy()
        parts.append((feats.cpu(), pids, camids))
    metrics = None
    search = dict(
        rerank=config.eval.rerank,
        rerank_kwargs=dict(k1=config.eval.rerank_k1, k2=config.eval.rerank_k2, lambda_value=config.eval.rerank_lambda),
        device=ctx.device,
    )
    if ctx.is_main and dataset.protocol == "draws":
        metrics = _vehicleid_metrics(parts, search)
    elif ctx.is_main:
        (qf, qp, qc), (gf, gp, gc) = parts
        result = evaluate(qf, gf, qp, gp, qc, gc, max_rank=config.eval.max_rank, **search)
        cmc = result["cmc"]
        metrics = {"mAP": float(result["mAP"]), "mINP": float(result["mINP"]), "embedding_spread": embedding_spread(qf)}
        for k in (1, 5, 10):
            if len(cmc) >= k:
                metrics[f"rank{k}"] = float(cmc[k - 1])
        metrics["num_valid_queries"] = int(result["num_valid_queries"])
        metrics["cmc"] = [float(x) for x in cmc]
        metrics["rerank"] = config.eval.rerank
    if config.data.skip_corrupt:
        if ctx.distributed:
            shares: list = [None] * ctx.world_size
            dist.all_gather_object(shares, skipped)
            skipped = [path for share in shares for path in share]
        if ctx.is_main:
            metrics["skipped_images"] = len(skipped)
            metrics["skipped_paths"] = skipped[:100]
    return broadcast_object(metrics, ctx)


def embedding_spread(feats: torch.Tensor) -> float:
    """1 - |mean of the L2-normalized features|^2, about the mean pairwise cosine distance: 0 when every image
    maps to the same direction (a collapsed embedding, e.g. a triplet loss stuck at its margin)."""
    unit = torch.nn.functional.normalize(feats.double(), dim=1)
    return float(1.0 - unit.mean(0).pow(2).sum())


def _vehicleid_metrics(parts, evaluate_kwargs: dict) -> dict[str, Any]:
    """VehicleID's protocol: the dataset's one gallery draw is not the benchmark; the mean over 10 seeded
    one-image-per-vehicle galleries of all test images is (mINP and the full CMC are not part of it)."""
    from reidlab.evaluation import evaluate_vehicleid

    feats = torch.cat([part[0] for part in parts])
    vids = np.concatenate([np.asarray(part[1]) for part in parts])
    result = evaluate_vehicleid(feats, vids, num_draws=VEHICLEID_DRAWS, **evaluate_kwargs)
    metrics = {}
    for name, key in (("mAP", "mAP"), ("rank1", "R1"), ("rank5", "R5")):
        metrics[name], metrics[f"{name}_std"] = result[key], result[f"{key}_std"]
    metrics["num_draws"] = result["num_draws"]
    metrics["rerank"] = evaluate_kwargs["rerank"]
    return metrics
