"""SynthReID: a procedurally drawn pedestrian ReID benchmark written in the exact Market-1501 layout.

Real benchmarks cannot be downloaded or redistributed here, so the default study runs on this one.
It is built to exercise what the losses and tricks are about (README, "SynthReID"):

- identities with consistent attributes (build, skin, hair, garments with colours and patterns, shoes,
  bags, hats) so that a network can learn them across cameras;
- identity *families* that share all but one or two attributes: hard negatives;
- a per-identity intra-class variation level: items (jacket, bag, hat, sleeves) that change between
  cameras, colour shifts, on top of front/back/side views that look different;
- cameras grouped into scenes (background, illumination, colour cast, blur, noise) with scene labels;
- per-image viewpoint, pose jitter, partial occlusion and bounding-box misalignment;
- disjoint train/test identities, one query per test identity per camera, distractors (pid 0000) and
  junk images (pid -1) in the gallery.

Everything is drawn from ``np.random.default_rng([seed, stream, ...])`` keyed by identity, camera and
image, so the same seed gives byte-identical files whatever the worker count or job order.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from pathlib import Path
from typing import Any

from .config import FORMAT, SPLIT_DIRS, VIEWS, SynthConfig, _check_knob_names, knob_names, parse_knobs
from .layouts import write_layout
from .people import CATEGORIES, GROUPS, attribute_vector, draw_person, visible_attributes
from .plan import build_plan
from .regimes import REGIME_NOTES, REGIMES, regime_knobs
from .render import _init_worker, _render_chunk

__all__ = [
    "CATEGORIES", "FORMAT", "GROUPS", "REGIMES", "REGIME_NOTES", "SPLIT_DIRS", "VIEWS", "SynthConfig", "attribute_vector",
    "build_plan", "draw_person", "generate", "knob_names", "load_meta", "parse_knobs", "regime_knobs",
    "train_identities", "visible_attributes", "write_layout",
]

# --------------------------------------------------------------------------- public API


def _meta(plan: dict[str, Any]) -> dict[str, Any]:
    config: SynthConfig = plan["config"]
    counts = {d: 0 for d in SPLIT_DIRS}
    for job in plan["jobs"]:
        counts[job[4].split("/")[0]] += 1
    families: dict[str, list[str]] = {}
    for pid in sorted(plan["identities"]):
        families.setdefault(str(plan["identities"][pid]["family"]), []).append(f"{pid:04d}")
    return {
        "format": FORMAT,
        "seed": plan["seed"],
        "knobs": config.to_json(),
        "image_size": list(config.image_size),
        "cameras": {str(c + 1): cam for c, cam in plan["cameras"].items()},
        "scenes": {str(s): scene for s, scene in plan["scenes"].items()},
        "identities": {
            f"{pid:04d}": {
                "split": ident["split"], "family": ident["family"], "subject": ident["subject"],
                "variation": ident["variation"],
                "mutated_groups": ident["mutated"], "attributes": ident["attributes"],
                "cameras": {str(c + 1): {"images": ident["counts"][c], **ident["visits"][c]} for c in ident["counts"]},
            }
            for pid, ident in sorted(plan["identities"].items())
        },
        "families": families,
        "counts": counts,
        "num_distractors": config.num_distractors,
        "num_junk": config.num_junk,
    }


def load_meta(root: str | os.PathLike) -> dict[str, Any]:
    """Read a SynthReID ``meta.json``."""
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a SynthReID folder; create one with `reidlab synth {root}` "
                                "or reidlab.data.synth.generate(root)")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}; made by another reidlab version: regenerate it "
                         f"with `reidlab synth --overwrite {root}`")
    return meta


def train_identities(dataset) -> dict[int, dict[str, Any]]:
    """The ``meta.json`` entry (family, variation, attributes) of each train identity of a SynthReID dataset, by
    its relabelled pid (the classifier's row): file names start with the generator's own pid."""
    entries = {}
    for record in dataset.train:
        if record.pid not in entries:
            entries[record.pid] = dataset.meta["identities"][Path(record.path).name.split("_")[0]]
    return entries


def _is_complete(root: Path, seed: int, config: SynthConfig) -> bool:
    try:
        meta = load_meta(root)
    except (FileNotFoundError, ValueError, json.JSONDecodeError):
        return False
    if meta["seed"] != seed or meta["knobs"] != config.to_json():
        return False
    return all(len(list((root / d).glob("*.jpg"))) == n for d, n in meta["counts"].items())


def _difference(root: Path, seed: int, config: SynthConfig) -> str:
    """What separates the SynthReID at `root` from the one asked for, in words."""
    try:
        meta = load_meta(root)
    except (ValueError, json.JSONDecodeError) as error:
        return f"unreadable meta.json: {error}"
    wanted = config.to_json()
    changes = [f"seed {meta['seed']} -> {seed}"] if meta["seed"] != seed else []
    changes += [f"{k} {meta['knobs'].get(k)!r} -> {v!r}" for k, v in wanted.items() if meta["knobs"].get(k) != v]
    return ", ".join(changes) or "same settings but missing images"


def generate(root: str | os.PathLike, seed: int = 0, *, workers: int | None = None, overwrite: bool = False,
             **knobs: Any) -> Path:
    """Write SynthReID to `root` and return its path (knobs: see `SynthConfig`).

    A `root` that already holds this exact dataset (same seed, knobs, file counts) is reused. One holding
    another SynthReID raises FileExistsError naming what differs, unless `overwrite=True` (runs trained on
    it must not find their data swapped underneath); a non-empty folder that is not SynthReID always raises.
    The images are written into ``<root>.partial`` and moved into place at the end, so an interrupted run
    never looks complete. `workers` processes draw images (default: up to 2); output does not depend on it.
    """
    _check_knob_names(knobs)
    config = SynthConfig(**knobs)
    root = Path(root)
    if _is_complete(root, seed, config):
        return root
    if root.exists() and any(root.iterdir()) and not (root / "meta.json").is_file():
        raise FileExistsError(f"{root} exists, is not empty and holds no SynthReID meta.json; choose an empty or new folder")
    if (root / "meta.json").is_file() and not overwrite:
        raise FileExistsError(f"{root} holds another SynthReID ({_difference(root, seed, config)}); pass "
                              "overwrite=True (`reidlab synth --overwrite`) to replace it, or choose another root")
    partial = root.resolve().with_name(root.resolve().name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for d in SPLIT_DIRS:
        (partial / d).mkdir(parents=True)

    plan = build_plan(seed, config)
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    jobs = plan["jobs"]
    if workers <= 1:
        _init_worker(plan)
        _render_chunk((jobs, str(partial)))
    else:
        # Chunks keep the per-camera texture cache warm; files do not depend on which worker draws them.
        chunks = [(jobs[i:i + 64], str(partial)) for i in range(0, len(jobs), 64)]
        ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(plan,)) as pool:
            for _ in pool.imap_unordered(_render_chunk, chunks):
                pass
    (partial / "meta.json").write_text(json.dumps(_meta(plan), indent=1))
    if root.exists():
        shutil.rmtree(root)
    partial.rename(root)
    return root
