"""The explorer's latencies on a finished run: opening it cold (features extracted) and again (read back), and
each view's first build and its controls (slider, re-ranking switch, epoch sliders).

The run folder is copied to a temporary one first, so its own ``explore/`` cache is neither used nor changed.
Prints one JSON object of seconds.

    python benchmarks/explore.py RUN_DIR [--moves 20]     # e.g. reports/train after `make report`
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from reidlab.explore import ClassMap, ExploredRun, PairInspector, QueryBrowser


def seconds(action) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def opened(run_dir: Path) -> ExploredRun:
    run = ExploredRun(run_dir, progress=False)
    run.features()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--moves", type=int, default=20, help="query slider moves timed")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*n_jobs value.*")
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = shutil.copytree(args.run_dir, Path(tmp) / "run", ignore=shutil.ignore_patterns("explore"))
        out["open_cold_s"], run = seconds(lambda: opened(run_dir))
        out["open_cached_s"], again = seconds(lambda: opened(run_dir))
        assert again.features().from_cache and not run.features().from_cache
        out.update(queries=len(run.q_pids), gallery=len(run.g_pids), checkpoints=len(run.epoch_checkpoints))
        out["query_browser_build_s"], browser = seconds(lambda: QueryBrowser(again, top_k=10))
        moves = []
        for position in range(1, args.moves + 1):
            moves.append(seconds(lambda: setattr(browser.slider, "value", position))[0])
        out["query_slider_move_s"] = sum(moves) / len(moves)
        out["rerank_first_s"] = seconds(lambda: setattr(browser.rerank, "value", True))[0]
        out["rerank_slider_move_s"] = seconds(lambda: setattr(browser.slider, "value", 0))[0]
        out["pair_inspector_build_s"], pairs = seconds(lambda: PairInspector(again))
        first_epoch = next(iter(again.epoch_checkpoints))
        out["pair_epoch_change_s"] = seconds(lambda: setattr(pairs.epoch, "value", first_epoch))[0]
        out["pair_batch_change_s"] = seconds(lambda: setattr(pairs.batch, "value", 1))[0]
        out["class_map_build_cold_s"], class_map = seconds(lambda: ClassMap(again))
        out["class_map_epoch_change_cold_s"] = seconds(lambda: setattr(class_map.epoch, "value", first_epoch))[0]
        out["class_map_click_s"] = seconds(lambda: setattr(class_map.scatter, "selected", [1]))[0]
        out["class_map_build_cached_s"] = seconds(lambda: ClassMap(again))[0]
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}, indent=2))


if __name__ == "__main__":
    main()
