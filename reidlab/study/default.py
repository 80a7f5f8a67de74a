"""The default study that `reidlab report` / `make report` run."""

from __future__ import annotations

import html
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .io import error_record, utc_now, write_json
from .notebooks import notebook_parameters, resolve_kernel_name, run_notebook
from .ablation import prepare_ablation
from .profile import STUDY_DATA_DIR, StudyProfile, load_profile
from .render import render
from .sweep import check_seeds


class _PrefixedLines:
    """A write()-able that hands complete lines, indented, to a print function."""

    def __init__(self, print_fn: Callable[[str], None], prefix: str = "    ") -> None:
        self.print_fn, self.prefix, self.pending = print_fn, prefix, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.strip():
                self.print_fn(self.prefix + line)
        return len(text)

    def flush(self) -> None:
        pass


STUDY_NOTEBOOKS = ("ablation", "train", "positive_pairs", "retrieval", "class_similarity", "explore")


def report(
    output_root: str | os.PathLike = "reports",
    data_dir: str | os.PathLike = STUDY_DATA_DIR,
    profile: str | os.PathLike = "quick",
    seeds: Sequence[int] | None = None,
    workers: int | None = None,
    notebooks: Sequence[str] = STUDY_NOTEBOOKS,
    kernel_name: str | None = None,
    timeout: float | None = None,
    print_fn: Callable[[str], None] = print,
    executor: str = "local",
    cluster: str | os.PathLike | None = None,
) -> Path:
    """The default study on SynthReID, rendered: what ``reidlab report`` / ``make report`` run.

    Generates the profile's SynthReID copies (once; reused afterwards), executes the notebooks with the
    profile's settings (ablation over its seeds with its worker processes; train; positive pairs on the
    train run's checkpoints; retrieval at scale on its features; class similarity on the HBReID copy; the
    explorer's static views of the train run beside an SP-H run), then renders every executed notebook and
    ``index.html``. A failing notebook is recorded in the index and the study goes on. Re-running resumes:
    finished ablation runs are skipped. ``seeds`` / ``workers`` override the profile's. ``executor="slurm"`` with
    a ``cluster`` YAML runs the ablation sweep (and the shared backbone's pretraining) as SLURM jobs; the
    other notebooks run here. Returns the index path.
    """
    study = load_profile(profile)
    seeds = check_seeds(study.seeds if seeds is None else seeds)
    workers = study.workers if workers is None else workers
    unknown = set(notebooks) - set(STUDY_NOTEBOOKS)
    if unknown:
        raise ValueError(f"unknown study notebooks {sorted(unknown)}; choose from {list(STUDY_NOTEBOOKS)}")
    if executor not in ("local", "slurm"):
        raise ValueError(f"executor must be 'local' or 'slurm', got {executor!r}")
    if executor == "slurm":
        from .slurm import load_cluster

        load_cluster(cluster)  # a bad cluster file fails here, not an hour into the study
        cluster = None if cluster is None else str(Path(cluster).resolve())
    started = time.perf_counter()
    root = Path(output_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    data_dir = Path(data_dir).resolve() / study.name
    kernel = resolve_kernel_name(kernel_name)
    print_fn(f"reidlab study, profile {study.name!r} ({study.description}) -> {root} (kernel {kernel!r})")
    threads = max(1, (os.cpu_count() or 1))
    step = time.perf_counter()
    print_fn("[prepare] the SynthReID copies and the shared backbone ...")
    try:  # the ablation notebook's own setup: it reuses the copies and the backbone made here
        setup = prepare_ablation(profile, root / "ablation", seeds=seeds, data_dir=data_dir, workers=workers,
                                 executor=executor, cluster=cluster, print_fn=lambda line: print_fn("    " + line))
    except FileExistsError as error:  # e.g. copies from an older reidlab, with runs trained on them in output_root
        raise FileExistsError(f"{error}. For the default study: delete {data_dir} and run `make clean-reports` (or "
                              f"remove {root}) so that no run trained on the old copies is reused") from None
    timings = {"prepare": time.perf_counter() - step}
    roots, pretrained = setup.roots, ({"model.pretrained": setup.backbone} if setup.backbone else {})
    print_fn(f"[prepare] ok in {timings['prepare']:.0f} s: copies in {data_dir}"
             + (f", backbone {setup.backbone}" if setup.backbone else ""))
    plans = notebook_plans(study, profile, root, data_dir, seeds, workers, roots, pretrained, threads, executor,
                           cluster)
    for name in notebooks:
        step = time.perf_counter()
        if name != "ablation":  # these train afresh into their folder, which must not hold the previous run
            shutil.rmtree(root / name, ignore_errors=True)
        print_fn(f"[{name}] running notebooks/{name}.ipynb ...")
        try:
            result = run_notebook(name, plans[name], root / name, kernel_name=kernel, timeout=timeout,
                                  stdout=_PrefixedLines(print_fn))
            print_fn(f"[{name}] ok in {result['duration_s']:.0f} s")
        except Exception as exc:  # noqa: BLE001 - recorded in status.json; the index shows it
            print_fn(f"[{name}] FAILED: {error_record(exc)['error'][:300]}")
        timings[name] = time.perf_counter() - step
    total = time.perf_counter() - started
    notes = (f"Study profile {study.name!r} on SynthReID ({len(seeds)} seeds). This invocation took {total / 60:.1f} min "
             "(completed ablation runs are reused): " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    index = render(root, title="reidlab study report", notes=html.escape(notes))
    write_json(root / "study.json", {"profile": study.name, "seconds": round(total, 1),
                                      "timings_s": {k: round(v, 1) for k, v in timings.items()},
                                      "seeds": seeds, "workers": workers, "finished": utc_now()})
    print_fn(f"{notes}\nreport: {index}")
    return index


def notebook_plans(study: StudyProfile, profile: str | os.PathLike, root: Path, data_dir: Path, seeds: Sequence[int],
                   workers: int, roots: dict[str, str], pretrained: dict[str, str], threads: int,
                   executor: str = "local", cluster: str | None = None) -> dict[str, dict[str, Any]]:
    """Each study notebook's papermill parameters: the profile's overrides per table family, the shared backbone,
    the copies in ``roots``, and the profile's device for every notebook that computes (its own ``device``
    parameter would otherwise put it on the CPU)."""
    default_root, hbreid_root = roots["person"], roots["hbreid"]

    def notebook_overrides(name: str, data_root: str, family: str, **extra: Any) -> dict[str, Any]:
        own = study.notebooks.get(name, {}).get("overrides", {})
        return {**study.overrides, **study.table_overrides[family], **pretrained, "data.root": data_root,
                "threads": threads, **extra, **own}

    plans: dict[str, dict[str, Any]] = {
        "ablation": {"profile": str(profile), "seeds": list(seeds), "data_dir": str(data_dir), "workers": workers,
                     "executor": executor, "cluster": cluster},
        "train": {"preset": study.preset, "seed": seeds[0],
                  "overrides": notebook_overrides("train", default_root, "adasp", save_every=1)},
        "positive_pairs": {"run_dir": str(root / "train")},
        "retrieval": {"run_dir": str(root / "train"), "threads": threads},
        "class_similarity": {"preset": study.preset, "seed": seeds[0],
                             "overrides": notebook_overrides("class_similarity", hbreid_root, "hbreid")},
        # the train run beside an SP-H run trained like it: the same queries under both losses
        "explore": {"run_dir": str(root / "train"), "preset": study.preset, "seed": seeds[0],
                    "overrides": notebook_overrides("train", default_root, "adasp"),
                    "compare_overrides": {"loss.metric": "sp-h"}},
    }
    for name, plan in plans.items():
        if "device" in notebook_parameters(name):
            plan["device"] = study.device
        # the profile's extra parameters per notebook (its overrides are merged above)
        plan.update({key: value for key, value in study.notebooks.get(name, {}).items() if key != "overrides"})
    return plans
