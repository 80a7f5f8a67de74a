"""The train notebook's pages: the run's config and settings, training or resuming it, the evaluation of its last
checkpoint (per query, next to the chance level), the ranked examples it shows, the cross-domain evaluation and
the final metrics it writes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from reidlab import engine
from reidlab.evaluation import chance_level, evaluate


def settings_table(config: engine.TrainConfig, resume: bool) -> pd.DataFrame:
    """The settings a reader needs to tell this run from another, one row each (column ``setting``)."""
    settings = {
        "preset": config.preset, "dataset": f"{config.data.name} ({config.data.root})",
        "model": config.model.name, "input": f"{config.data.size[0]} x {config.data.size[1]}",
        "batch (P x K)": f"{config.sampler.p} x {config.sampler.k} ({config.sampler.name} sampler)",
        "loss": f"{config.loss.ce_weight:g} CE + {config.loss.metric_weight:g} {config.loss.metric}",
        "scene removal": config.scene.enabled, "augmentation": config.data.aug,
        "optimizer": f"{config.optim.name} lr {config.optim.lr:g}, {config.optim.scheduler}",
        "epochs": config.epochs, "seed": config.seed, "output_dir": str(Path(config.output_dir)),
        "a run already there": "continued (resume)" if resume else "deleted, trained anew",
    }
    return pd.Series(settings, name="setting").to_frame()


@dataclass
class CheckpointEvaluation:
    """A run's last checkpoint ranked on its query / gallery split as the trainer ranked it, with per-query results
    (``result``: ``evaluate(..., return_per_query=True)``), the split's chance level and the trainer's own final
    metrics of the same checkpoint (``trained``). ``query`` / ``gallery``: (features, pids, camids)."""

    run: engine.TrainedRun
    query: tuple[torch.Tensor, np.ndarray, np.ndarray]
    gallery: tuple[torch.Tensor, np.ndarray, np.ndarray]
    result: dict[str, Any]
    chance: dict[str, float]
    trained: dict[str, Any]

    @property
    def epoch(self) -> int:
        """The epoch the checkpoint ends."""
        return self.trained["epochs_completed"]

    def summary(self) -> str:
        """mAP and rank-1 next to their chance levels, and mINP; a second line when the trainer measured another
        mAP for this checkpoint (VehicleID's trainer averages random galleries instead)."""
        result, chance, config = self.result, self.chance, self.run.config
        lines = [f"{self.run.checkpoint.name} (epoch {self.epoch}): mAP {result['mAP']:.1%} "
                 f"(chance {chance['mAP']:.2%}), rank-1 {result['cmc'][0]:.1%} (chance {chance['rank1']:.2%}), "
                 f"mINP {result['mINP']:.1%} over {result['num_valid_queries']} queries"
                 + (" (k-reciprocal re-ranking)" if config.eval.rerank else "")]
        if self.run.dataset.protocol == "market" and abs(self.trained["mAP"] - result["mAP"]) > 1e-3:
            lines.append(f"note: the trainer measured mAP {self.trained['mAP']:.2%} for this checkpoint "
                         "(numerical differences)")
        return "\n".join(lines)


def evaluate_last_checkpoint(output_dir: str | os.PathLike, device: str = "cpu") -> CheckpointEvaluation:
    """Evaluate the model at the end of training (``last``, the one the trainer's metrics describe; ``best`` was
    chosen by its test score) with the trainer's ranking (re-ranked when ``eval.rerank`` is set), keeping each
    query's result for the figures."""
    run = engine.load_trained(output_dir, "last", device=device)
    (qf, q_pids, q_camids), (gf, g_pids, g_camids) = run.features("query"), run.features("gallery")
    options = run.config.eval
    rerank_kwargs = dict(k1=options.rerank_k1, k2=options.rerank_k2, lambda_value=options.rerank_lambda)
    result = evaluate(qf, gf, q_pids, g_pids, q_camids, g_camids, max_rank=min(max(20, options.max_rank), len(gf)),
                      rerank=options.rerank, rerank_kwargs=rerank_kwargs, return_per_query=True)
    chance = chance_level(q_pids, g_pids, q_camids, g_camids)
    return CheckpointEvaluation(run, (qf, q_pids, q_camids), (gf, g_pids, g_camids), result, chance,
                                engine.RunDir(output_dir).metrics())


class RankedExamples(NamedTuple):
    """Rows of a ranked-results grid, in the order of ``reidlab.viz.ranked_results``'s arguments."""

    query_paths: list[str]
    gallery_paths: list[list[str]]
    correct: list[list[bool]]
    captions: list[list[str]]
    query_captions: list[str]


def ranked_examples(evaluation: CheckpointEvaluation, num_queries: int, top_k: int) -> RankedExamples:
    """``num_queries`` queries spread over difficulty (the rank of their first correct match), worst first, each
    with its ``top_k`` gallery images by cosine distance; the protocol's left-out images (junk, the query's
    identity in the query's camera) are not shown. Only the shown queries' distances are computed."""
    (qf, q_pids, q_camids), (gf, g_pids, g_camids) = evaluation.query, evaluation.gallery
    dataset = evaluation.run.dataset
    first_hit = evaluation.result["first_match_rank"].astype(float)  # 1 = top; 0: no valid match in the gallery
    first_hit[first_hit == 0] = np.inf
    by_difficulty = np.argsort(first_hit, kind="stable")
    spread = np.linspace(0, len(by_difficulty) - 1, min(num_queries, len(by_difficulty))).round().astype(int)
    picks = by_difficulty[spread][::-1].copy()
    distances = (1 - F.normalize(qf[picks], dim=1) @ F.normalize(gf, dim=1).T).numpy()  # shown queries x gallery
    examples = RankedExamples([dataset.query[q].path for q in picks], [], [], [], [])
    for q, dist in zip(picks, distances):
        allowed = np.flatnonzero((g_pids >= 0) & ~((g_pids == q_pids[q]) & (g_camids == q_camids[q])))
        ranked = allowed[np.argsort(dist[allowed], kind="stable")[:top_k]]
        examples.gallery_paths.append([dataset.gallery[g].path for g in ranked])
        examples.correct.append([bool(g_pids[g] == q_pids[q]) for g in ranked])
        examples.captions.append([f"#{r + 1} d={dist[g]:.2f}" for r, g in enumerate(ranked)])
        examples.query_captions.append(f"query id {q_pids[q]}")
    return examples


def cross_domain_evaluation(output_dir: str | os.PathLike, checkpoint: str | os.PathLike,
                            test_data: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's mAP, rank-1 and mINP on another dataset (``test_data``: its ``name``, default the run's, and
    its ``root``), the standard cross-domain experiment, with the run's other settings; {} without ``test_data``."""
    if not test_data:
        return {}
    unknown = set(test_data) - {"name", "root"}
    if unknown or "root" not in test_data:
        raise ValueError(f"test_data takes a dataset 'name' and its 'root', got {test_data}")
    changes = {"data.root": str(test_data["root"]), "data.generate": False}
    if "name" in test_data:
        changes["data.name"] = test_data["name"]
    elsewhere = engine.load_config(engine.RunDir(output_dir).config_path, changes)
    evaluated = engine.evaluate_checkpoint(elsewhere, checkpoint)
    return {"dataset": f"{elsewhere.data.name} ({elsewhere.data.root})",
            **{k: evaluated[k] for k in ("mAP", "rank1", "mINP") if k in evaluated}}


def final_metrics(evaluation: CheckpointEvaluation, cross_domain: dict[str, Any]) -> dict[str, Any]:
    """The notebook's final record (``study.records.write_page_metrics`` adds its figures): the trainer's metrics
    of the last epoch without its best-on-test entries (every number describes one model), the checkpoint
    evaluated, the chance level, the CMC to rank 20 and the cross-domain metrics (when measured)."""
    metrics = {k: v for k, v in evaluation.trained.items() if not k.startswith("best_")}
    metrics["evaluated_checkpoint"] = str(evaluation.run.checkpoint)
    metrics["chance_mAP"], metrics["chance_rank1"] = evaluation.chance["mAP"], evaluation.chance["rank1"]
    metrics["cmc_top20"] = [float(v) for v in evaluation.result["cmc"][:20]]
    if cross_domain:
        metrics["cross_domain"] = cross_domain
    return metrics


def metrics_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """The single-number metrics (column ``value``); lists, nested records and the output folder are left out."""
    return pd.Series({k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and k != "output_dir"},
                     name="value").to_frame()
