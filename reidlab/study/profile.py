"""Study profiles: the settings of a whole study (seeds, SynthReID copies, training per table family), read
from ``reidlab/configs/study/<name>.yaml`` at the CLI / notebook edge."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Sequence

STUDY_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "study"
STUDY_SYNTH_SEED = 0  # generator seed of the study's SynthReID copies
STUDY_DATA_DIR = "data/study"  # where a study generates its copies and backbone: <STUDY_DATA_DIR>/<profile>
PRETRAIN_SYNTH_SEED = 1000  # default generator seed of the backbone's copy: identities the tables never test on
PRETRAIN_KEYS = ("regimes", "synth", "synth_seed", "epochs", "overrides")
# The copies every profile generates: the two AdaSP regimes the person-vs-vehicle claims contrast, the copy of the
# HBReID tables and the copy of the HM claim (``hm``: docs/study.md, "Arms and data").
STUDY_COPIES = ("person", "vehicle", "hbreid", "hm")
COPY_KEYS = ("regimes", "knobs")
# What a profile may change of a copy: its scale (identities, images, frame). Every other knob, i.e. the
# regime that carries a claim's mechanism, is the same in every profile (tests/test_study_plan.py).
SCALE_KNOBS = ("image_size", "num_train_ids", "num_test_ids", "num_distractors", "num_junk", "images_per_camera")
# What a profile may change of the AdaSP tables' overrides: the square frame of the person / vehicle copies.
PROFILE_ADASP_KEYS = ("data.size",)


@dataclass
class StudyProfile:
    """What ``reidlab report --profile NAME`` and the ablation notebook's ``profile`` parameter run.

    ``overrides`` apply to every training run, ``adasp_overrides`` / ``hbreid_overrides`` on top of them to
    the AdaSP tables (adasp, regime) and the HBReID tables (hbreid2, hbreid1, hm), ``hm_overrides`` on top of
    those to the HM table. ``synth`` holds the SynthReID knobs shared by the study's copies. ``copies`` names,
    per copy (``person``, ``vehicle``, ``hbreid``, ``hm``), the
    SynthReID regimes it is made of (``reidlab.data.synth.REGIMES``, merged in order over ``synth``) and knobs
    on top of them. ``pretrain`` describes the shared backbone (its copy's regimes and knobs, epochs and
    training overrides). ``notebooks`` holds extra parameters for the visual notebooks.
    """

    name: str
    description: str = ""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    workers: int = 2
    preset: str = "synth_cpu"
    overrides: dict[str, Any] = field(default_factory=dict)
    synth: dict[str, Any] = field(default_factory=dict)
    copies: dict[str, dict[str, Any]] = field(default_factory=dict)
    adasp_overrides: dict[str, Any] = field(default_factory=dict)
    hbreid_overrides: dict[str, Any] = field(default_factory=dict)
    hm_overrides: dict[str, Any] = field(default_factory=dict)
    notebooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    pretrain: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        from .sweep import check_seeds

        self.seeds = check_seeds(self.seeds, f"study profile {self.name!r}: seeds")
        missing = [name for name in STUDY_COPIES if name not in self.copies]
        unknown = sorted(set(self.copies) - set(STUDY_COPIES))
        if missing or unknown:
            raise ValueError(f"study profile {self.name!r}: copies must name exactly {list(STUDY_COPIES)}"
                             + (f"; missing {missing}" if missing else "") + (f"; unknown {unknown}" if unknown else ""))
        for name, spec in self.copies.items():
            extra = sorted(set(spec) - set(COPY_KEYS))
            if extra or not spec.get("regimes"):
                raise ValueError(f"study profile {self.name!r}: copies.{name} needs 'regimes' (a list of SynthReID "
                                 f"regimes) and takes only {list(COPY_KEYS)}" + (f"; unknown keys {extra}" if extra else ""))
        for name in STUDY_COPIES:
            self.copy_knobs(name)  # an unknown regime or knob fails here, not after the backbone's pretraining
        if self.workers < 1:
            raise ValueError(f"study profile {self.name!r}: workers must be >= 1, got {self.workers}")
        if self.pretrain is not None:
            unknown = sorted(set(self.pretrain) - set(PRETRAIN_KEYS))
            if unknown or "epochs" not in self.pretrain:
                raise ValueError(f"study profile {self.name!r}: pretrain needs 'epochs' and takes only {list(PRETRAIN_KEYS)}"
                                 + (f"; unknown keys {unknown}" if unknown else ""))
            if self.pretrain.get("synth_seed", PRETRAIN_SYNTH_SEED) == STUDY_SYNTH_SEED:
                raise ValueError(f"study profile {self.name!r}: pretrain.synth_seed must differ from the study copies' "
                                 f"generator seed {STUDY_SYNTH_SEED}, or the backbone would see the test identities")
            self._knobs(self.pretrain.get("regimes", []), self.pretrain.get("synth"), "pretrain")

    def copy_knobs(self, name: str) -> dict[str, Any]:
        """The SynthReID knobs of one study copy: ``synth``, then its regimes in order, then its own knobs."""
        spec = self.copies[name]
        return self._knobs(spec["regimes"], spec.get("knobs"), f"copies.{name}")

    @property
    def pretrain_knobs(self) -> dict[str, Any]:
        pretrain = self.pretrain or {}
        return self._knobs(pretrain.get("regimes", []), pretrain.get("synth"), "pretrain")

    def _knobs(self, regimes: list[str], knobs: dict[str, Any] | None, where: str) -> dict[str, Any]:
        from reidlab.data import synth

        try:
            merged = {**self.synth, **synth.regime_knobs(*regimes, **(knobs or {}))}
            synth.SynthConfig(**merged)
        except (ValueError, TypeError) as error:
            raise ValueError(f"study profile {self.name!r}: {where}: {error}") from None
        return merged

    @property
    def device(self) -> str:
        """Where every run and every visual notebook of the study computes (``overrides.device``)."""
        return str(self.overrides.get("device", "cpu"))

    @property
    def table_overrides(self) -> dict[str, dict[str, Any]]:
        return {"adasp": dict(self.adasp_overrides), "hbreid": dict(self.hbreid_overrides),
                "hm": {**self.hbreid_overrides, **self.hm_overrides}}


def available_profiles() -> list[str]:
    return sorted(p.stem for p in STUDY_CONFIG_DIR.glob("*.yaml") if not p.stem.startswith("_"))


def load_profile_data(name: str | os.PathLike, sets: Sequence[str], kind: type,
                      mapping_fields: Sequence[str] = ()) -> tuple[Path, dict[str, Any]]:
    """A profile's YAML (by name in reidlab/configs/study or a path) as a dict of ``kind``'s fields, with ``sets``
    (``["seeds=[0,1]", "overrides.epochs=1"]``, values typed by YAML) applied: a dotted key sets one entry of a
    mapping field (``mapping_fields``). A --set key that is no field is a ValueError naming the valid ones; the
    caller types the rest through :func:`load_typed_profile`."""
    import yaml

    from reidlab.utils import parse_key_values

    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = STUDY_CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"no study profile {name!r}: not a YAML file and not one of {available_profiles()}")
    data = yaml.safe_load(path.read_text()) or {}
    paper = any(f.name == "kind" for f in dataclasses.fields(kind))  # only the paper profile declares its kind
    if (data.get("kind") == "paper") != paper:
        raise ValueError(f"study profile {path.stem!r} runs on the real benchmarks: give it their folders with "
                         "--datasets datasets.yaml" if data.get("kind") == "paper" else
                         f"study profile {path.stem!r} runs on SynthReID (no 'kind: paper'): leave out --datasets")
    known = sorted({f.name for f in dataclasses.fields(kind)} - {"name"})
    for key, value in parse_key_values(list(sets), what="--set").items():
        top, _, rest = key.partition(".")
        if top not in known or (rest and top not in mapping_fields) or (not rest and top in mapping_fields):
            raise ValueError(f"--set {key}: no such profile key; valid keys: "
                             + ", ".join(f"{k}.KEY" if k in mapping_fields else k for k in known))
        if rest:
            data[top] = {**(data.get(top) or {}), rest: value}
        else:
            data[top] = value
    return path, data


def load_profile(name: str | os.PathLike, sets: Sequence[str] = ()) -> StudyProfile:
    """A profile by name (``quick``, ``full``, ``gpu``) or a path to a YAML file of the same keys, with ``sets``
    applied (``--set``)."""
    path, data = load_profile_data(name, sets, StudyProfile, mapping_fields=("overrides", "adasp_overrides",
                                                                             "hbreid_overrides", "hm_overrides", "synth"))
    return load_typed_profile(StudyProfile, path, data)


def load_typed_profile(kind: type, path: Path, data: dict[str, Any]) -> Any:
    """``kind(name=<file stem>, **data)`` through the engine's typed parser (the same checks and error form as a
    training config's)."""
    from reidlab.engine.config import load_dataclass

    return load_dataclass(kind, {"name": path.stem, **data}, f"study profile {path}")
