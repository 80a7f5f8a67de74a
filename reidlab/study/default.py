"""The default study that `reidlab report` / `make report` run."""

from __future__ import annotations

import html
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .notebooks import resolve_kernel_name, run_notebook
from .plan import (
    STUDY_OVERRIDES,
    STUDY_SEEDS,
    STUDY_SYNTH_KNOBS,
    VARIATION_LEVELS,
    variation_datasets,
)
from .records import _error_record, _now, _write_json
from .render import render


def study_overrides(data_root: str | None = None, **extra: Any) -> dict[str, Any]:
    """STUDY_OVERRIDES, the dataset folder when given, and extra dotted keys."""
    overrides = {**STUDY_OVERRIDES, **extra}
    if data_root is not None:
        overrides["data.root"] = str(data_root)
    return overrides


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


STUDY_NOTEBOOKS = ("ablation", "train", "positive_pairs", "class_similarity")


def report(
    output_root: str | os.PathLike = "reports",
    data_dir: str | os.PathLike = "data/study",
    seeds: Sequence[int] = STUDY_SEEDS,
    workers: int = 2,
    notebooks: Sequence[str] = STUDY_NOTEBOOKS,
    kernel_name: str | None = None,
    timeout: float | None = None,
    print_fn: Callable[[str], None] = print,
) -> Path:
    """The default study on SynthReID, rendered: what ``reidlab report`` / ``make report`` run.

    Generates the study's SynthReID copies (once; reused afterwards), executes the notebooks with the tiny
    CPU settings (ablation over ``seeds`` with ``workers`` processes; train; positive pairs on the train
    run's checkpoints; class similarity), then renders every executed notebook and ``index.html``.
    A failing notebook is recorded in the index and the study goes on. Re-running resumes: finished
    ablation runs are skipped. Returns the index path.
    """
    unknown = set(notebooks) - set(STUDY_NOTEBOOKS)
    if unknown:
        raise ValueError(f"unknown study notebooks {sorted(unknown)}; choose from {list(STUDY_NOTEBOOKS)}")
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed")
    started = time.perf_counter()
    root = Path(output_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    kernel = resolve_kernel_name(kernel_name)
    print_fn(f"reidlab study -> {root} (kernel {kernel!r})")
    try:
        roots = variation_datasets(data_dir, VARIATION_LEVELS)
    except FileExistsError as error:  # e.g. copies from an older reidlab, with runs trained on them in output_root
        raise FileExistsError(f"{error}. For the default study: delete {data_dir} and run `make clean-reports` (or "
                              f"remove {root}) so that no run trained on the old copies is reused") from None
    default_root = roots[0.5]
    print_fn(f"SynthReID copies ready in {time.perf_counter() - started:.0f} s: {', '.join(roots.values())}")
    threads = max(1, (os.cpu_count() or 1))
    plans: dict[str, dict[str, Any]] = {
        "ablation": {
            "overrides": study_overrides(), "seeds": list(seeds), "data_dir": str(Path(data_dir).resolve()),
            "synth_knobs": dict(STUDY_SYNTH_KNOBS), "variation_levels": list(VARIATION_LEVELS),
            "default_variation": 0.5, "workers": workers,
        },
        "train": {
            "overrides": study_overrides(default_root, **{"eval.every": 2, "save_every": 1, "threads": threads}),
            "seed": 0,
        },
        "positive_pairs": {"run_dir": str(root / "train")},
        "class_similarity": {"overrides": study_overrides(default_root, threads=threads), "seed": 0},
    }
    timings = {}
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
            print_fn(f"[{name}] FAILED: {_error_record(exc)['error'][:300]}")
        timings[name] = time.perf_counter() - step
    total = time.perf_counter() - started
    notes = (f"Default study on SynthReID (64 x 32, {len(seeds)} seeds). This invocation took {total / 60:.1f} min "
             "(completed ablation runs are reused): " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    index = render(root, title="reidlab study report", notes=html.escape(notes))
    _write_json(root / "study.json", {"seconds": round(total, 1), "timings_s": {k: round(v, 1) for k, v in timings.items()},
                                      "seeds": list(seeds), "workers": workers, "finished": _now()})
    print_fn(f"{notes}\nreport: {index}")
    return index
