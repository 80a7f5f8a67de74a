"""DistributedLossWrapper on a 2-process gloo group equals the single-process loss on the whole batch."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from reidlab.losses import CircleLoss, DistributedLossWrapper, SparsePairwiseLoss, TripletLoss, build_loss, gather_with_grad

WORLD_SIZE = 2
# Unequal local batch sizes exercise the padded gather.
SPLIT = (7, 9)


def full_batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(sum(SPLIT), 6, generator=generator, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 4, 3, 0, 1, 5, 2, 3, 4, 0])
    return embeddings, labels


def make_losses():
    return {
        "adasp": DistributedLossWrapper(SparsePairwiseLoss("adasp", 0.1)),
        "sp-h": DistributedLossWrapper(SparsePairwiseLoss("sp-h", 0.1)),
        "triplet": DistributedLossWrapper(TripletLoss(0.3)),
        "circle": DistributedLossWrapper(CircleLoss()),
    }


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        embeddings, labels = full_batch()
        start = sum(SPLIT[:rank])
        local_x = embeddings[start : start + SPLIT[rank]].clone().requires_grad_(True)
        local_y = labels[start : start + SPLIT[rank]]
        results = {}
        for name, loss in make_losses().items():
            value = loss(local_x, local_y)
            (grad,) = torch.autograd.grad(value, local_x)
            results[name] = (value.detach(), grad)
        gathered_x, gathered_y = gather_with_grad(local_x.detach(), local_y)
        results["gathered"] = (gathered_x, gathered_y)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_gather_matches_single_process_global_batch(tmp_path):
    mp.start_processes(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE, join=True, start_method="spawn")
    embeddings, labels = full_batch()
    for rank in range(WORLD_SIZE):
        results = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(results["gathered"][0], embeddings)
        assert torch.equal(results["gathered"][1], labels)
        start = sum(SPLIT[:rank])
        for name, loss in make_losses().items():
            x = embeddings.clone().requires_grad_(True)
            value = loss(x, labels)  # not initialized here: gather is a no-op
            (grad,) = torch.autograd.grad(value, x)
            local_value, local_grad = results[name]
            torch.testing.assert_close(local_value, value.detach(), rtol=1e-12, atol=1e-12)
            # Each rank receives the sum over ranks of the identical losses' gradients: DDP's averaging
            # then gives exactly the single-device gradient of the global-batch loss.
            torch.testing.assert_close(local_grad, WORLD_SIZE * grad[start : start + SPLIT[rank]], rtol=1e-10, atol=1e-12)


def test_gather_is_noop_without_process_group():
    embeddings, labels = full_batch()
    assert not dist.is_initialized()
    gathered_x, gathered_y = gather_with_grad(embeddings, labels)
    assert gathered_x is embeddings and gathered_y is labels


def test_build_loss_wraps_the_metric_loss_only_when_gathering():
    (metric_term,) = build_loss(ce_weight=0.0, metric="sp-h", gather=True).terms
    assert isinstance(metric_term.loss, DistributedLossWrapper) and isinstance(metric_term.loss.loss, SparsePairwiseLoss)
    (plain,) = build_loss(ce_weight=0.0, metric="sp-h").terms
    assert isinstance(plain.loss, SparsePairwiseLoss)
