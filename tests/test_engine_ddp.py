"""Two CPU processes with gloo through the trainer's DDP code path (torch.multiprocessing, explicit ranks)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD_SIZE = 2


def _worker(rank: int, init_file: str, root: str, out: str, results: str) -> None:
    from reidlab.engine import Callback, DistContext, load_config
    from reidlab.engine.evaluator import run_evaluation
    from reidlab.engine.trainer import Trainer

    class RecordBatches(Callback):
        indices: list[list[int]] = []

        def on_step_end(self, trainer, step, batch, logs):
            self.indices.append(batch["index"].tolist())

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        config = load_config("synth_cpu", [
            f"data.root={root}", f"output_dir={out}", "data.generate=false", "data.size=[64, 32]",
            "data.num_workers=0", "progress=false", "threads=1", "model.name=resnet18_tiny", "sampler.p=4",
            "sampler.k=4", "epochs=1", "max_iters_per_epoch=2", "eval.every=1",
        ])
        ctx = DistContext(rank=rank, world_size=WORLD_SIZE, local_rank=rank, device=torch.device("cpu"))
        trainer = Trainer(config, callbacks=[RecordBatches()], ctx=ctx)
        initial = {k: v.clone() for k, v in trainer.model.named_parameters()}
        metrics = trainer.fit()
        # the same weights evaluated by one process, without the feature gather
        single = run_evaluation(trainer.model, trainer.dataset, config, DistContext(device=torch.device("cpu")))
        torch.save({
            "indices": RecordBatches.indices,
            "initial": initial,
            "params": {k: v.detach().clone() for k, v in trainer.model.named_parameters()},
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
            "single": {k: v for k, v in single.items() if isinstance(v, (int, float))},
        }, Path(results) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_see_disjoint_batches_and_keep_identical_weights(synth_root, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(synth_root), str(tmp_path / "run"), str(results)),
             nprocs=WORLD_SIZE, join=True)
    ranks = [torch.load(results / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE)]
    first, second = (set(i for batch in r["indices"] for i in batch) for r in ranks)
    assert len(ranks[0]["indices"]) == len(ranks[1]["indices"]) == 2
    assert first and second and not first & second  # disjoint shares of one plan
    for name, value in ranks[0]["params"].items():
        assert torch.equal(value, ranks[1]["params"][name]), name  # DDP kept the replicas identical
    assert any(not torch.equal(ranks[0]["initial"][k], v) for k, v in ranks[0]["params"].items())  # it trained
    timing = {"train_seconds_this_session", "images_per_second", "seconds_per_step", "eval_seconds"}  # per rank
    assert {k: v for k, v in ranks[0]["metrics"].items() if k not in timing} == {
        k: v for k, v in ranks[1]["metrics"].items() if k not in timing}  # gathered features, one evaluation, shared
    assert 0.0 <= ranks[0]["metrics"]["mAP"] <= 1.0
    assert {k: ranks[0]["metrics"][k] for k in ranks[0]["single"]} == ranks[0]["single"]  # gather kept every row, in order
    # only rank 0 wrote files
    assert (tmp_path / "run" / "metrics.json").is_file() and (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
