"""Training runs as sweep runners: a notebook's parameters -> TrainConfig -> metrics."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reidlab.utils import parse_key_values

from .notebooks import default_data_root
from .io import read_json
from .records import STATUS_FILE, run_folder


def as_override_dict(overrides: Mapping[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    """``{"a.b": 1}`` or ``["a.b=1"]`` (values typed by YAML, as on the command line) -> a flat dict."""
    if not overrides:
        return {}
    if isinstance(overrides, Mapping):
        return dict(overrides)
    return parse_key_values(overrides)


def training_config(
    preset: str = "synth_cpu",
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    seed: int | None = None,
    epochs: int | None = None,
    data_root: str | None = None,
    output_dir: str | os.PathLike | None = None,
):
    """The engine's ``TrainConfig`` for a notebook's parameters: preset + overrides, then the explicit
    ``seed`` / ``epochs`` / ``data_root`` / ``output_dir`` arguments (None keeps the preset's value)."""
    from reidlab.engine import load_config

    merged = as_override_dict(overrides)
    for key, value in (("seed", seed), ("epochs", epochs), ("data.root", data_root), ("output_dir", output_dir)):
        if value is not None:
            merged[key] = str(value) if key in ("data.root", "output_dir") else value
    return load_config(preset, merged)


def train_run(parameters: Mapping[str, Any], output_dir: Path) -> dict:
    """Sweep runner: train one configuration in this process and return its final metrics.

    ``parameters``: ``preset``, ``overrides``, ``seed``, ``epochs``, ``data_root`` as in
    :func:`training_config`; ``rerank`` (also evaluate with k-reciprocal re-ranking, adding ``mAP_rerank``
    and ``rank1_rerank``); ``evaluations`` (``{name: overrides}``: also evaluate the final model under other
    evaluation settings, e.g. VehicleID's 1,600-vehicle test set, adding ``mAP_<name>``, ``rank1_<name>``, ...);
    ``keep_checkpoints`` (default False: a sweep needs the numbers, not the weights).

    A checkpoint in ``output_dir`` is continued from (``resume=auto``): the sweep deletes a failed attempt's
    folder, so one is there only when SLURM requeued this very run. In a SLURM job the trainer's log goes to
    stdout, i.e. the job's log file; in a DDP run (several tasks) only rank 0 deletes the checkpoints.
    """
    import dataclasses

    from reidlab.engine import evaluate_checkpoint, train

    parameters = dict(parameters)
    valid = ("preset", "overrides", "seed", "epochs", "data_root", "rerank", "evaluations", "keep_checkpoints")
    unknown = set(parameters) - set(valid)
    if unknown:
        raise ValueError(f"train_run got unknown parameters {sorted(unknown)}; valid: {', '.join(valid)}")
    config = training_config(
        parameters.get("preset", "synth_cpu"), parameters.get("overrides"), parameters.get("seed"),
        parameters.get("epochs"), parameters.get("data_root"), output_dir,
    )
    config = dataclasses.replace(config, resume="auto")
    metrics = dict(train(config, print_fn=print if "SLURM_JOB_ID" in os.environ else None))
    if parameters.get("rerank"):
        reranked = dataclasses.replace(config, eval=dataclasses.replace(config.eval, rerank=True))
        extra = evaluate_checkpoint(reranked, metrics["checkpoint"], print_fn=None)
        metrics.update({f"{k}_rerank": extra[k] for k in ("mAP", "rank1", "mINP") if k in extra})
    for name, changes in (parameters.get("evaluations") or {}).items():
        overrides = {**as_override_dict(parameters.get("overrides")), **changes}
        other = training_config(parameters.get("preset", "synth_cpu"), overrides, parameters.get("seed"),
                                parameters.get("epochs"), parameters.get("data_root"), output_dir)
        extra = evaluate_checkpoint(other, metrics["checkpoint"], print_fn=None)
        metrics.update({f"{k}_{name}": extra[k] for k in ("mAP", "rank1", "rank5", "mINP") if k in extra})
    if not parameters.get("keep_checkpoints", False) and int(os.environ.get("RANK", "0")) == 0:
        shutil.rmtree(run_folder(output_dir).checkpoint_dir, ignore_errors=True)
        metrics.pop("checkpoint", None)
        metrics.pop("best_checkpoint", None)
    return metrics


def notebook_config(preset: str, overrides: Mapping[str, Any], seed: int | None, epochs: int | None,
                    data_root: str | None, output_dir: str | os.PathLike, device: str, resume: bool):
    """A notebook's parameters as the trainer's config. ``data_root = None`` takes the preset's ``data.root`` under
    the repository root, not under the kernel's folder (JupyterLab: ``notebooks/``); ``resume`` continues a run
    already in ``output_dir`` (``resume=auto``) or trains from scratch."""
    if data_root is None:
        data_root = default_data_root(training_config(preset, overrides).data.root)
    return training_config(preset, {**overrides, "device": device, "resume": "auto" if resume else False}, seed,
                           epochs, data_root, output_dir)


def train_here(config, resume: bool, print_fn=print, training_log: bool = True) -> dict[str, Any]:
    """Train ``config`` into its ``output_dir`` and return the trainer's final metrics. With ``resume`` a run there
    is continued (a finished one is not retrained); without, it is deleted first (``print_fn`` names what went);
    ``training_log``: print the trainer's log too."""
    from reidlab.engine import train

    run = run_folder(config.output_dir)
    if not resume and (removed := run.clear()):
        print_fn(f"resume = False: deleted the previous run in {run.path} ({', '.join(removed)})")
    return train(config, print_fn=print_fn if training_log else None)


def finished_run(run_dir: str | os.PathLike | None, output_dir: str | os.PathLike, preset: str,
                 overrides: Mapping[str, Any], seed: int, epochs: int | None, data_root: str | None,
                 device: str, resume: bool, name: str = "run", print_fn=print, training_log: bool = True,
                 **run_overrides: Any) -> Path:
    """The finished training run an analysis notebook reads: ``run_dir`` when given, else one trained here into
    ``output_dir/name`` (preset + overrides + ``run_overrides``, e.g. ``save_every=1``; ``training_log``: print
    the trainer's log); ``resume`` reuses or continues a run there, False deletes it first. Raises, naming the
    cause, when the run has not finished."""
    if run_dir is None:
        run_dir = Path(output_dir) / name
        train_here(notebook_config(preset, {**overrides, **run_overrides}, seed, epochs, data_root, run_dir, device,
                                   resume), resume, print_fn, training_log)
    run_dir = Path(run_dir)
    if not run_folder(run_dir).is_finished():
        error = read_json(run_dir / STATUS_FILE).get("error", "")
        raise RuntimeError(f"{run_dir} holds no finished training run ({run_folder(run_dir).status()})"
                           + (f"; it failed: {error}" if error else ""))
    return run_dir
