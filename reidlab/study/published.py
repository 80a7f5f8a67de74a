"""The sources' published numbers (``reidlab/configs/study/_published.yaml``) and each claim's value in them, so
that a study shows the source beside its measurement."""

from __future__ import annotations

from functools import cache
from typing import Any

from .profile import STUDY_CONFIG_DIR

PUBLISHED_FILE = STUDY_CONFIG_DIR / "_published.yaml"


@cache
def published_tables() -> dict[str, Any]:
    """``{table: {source, metrics: {dataset: metric}, rows: {row: {dataset: value}}, ...}}`` in % (as printed)."""
    import yaml

    return yaml.safe_load(PUBLISHED_FILE.read_text())


def published(table: str, row: str, dataset: str) -> float | None:
    """One published number (%), or None where the source prints none."""
    value = published_tables().get(table, {}).get("rows", {}).get(row, {}).get(dataset)
    return None if value is None else float(value)


def published_metric(table: str, dataset: str) -> str:
    """The metric the source reports for ``dataset`` in ``table`` (mAP unless stated, e.g. VehicleID's rank-1)."""
    return published_tables()[table]["metrics"].get(dataset, "mAP")


def published_difference(table: str, arm: str, reference: str, dataset: str) -> float | None:
    """``arm - reference`` in the source's numbers, rounded as printed (one decimal)."""
    a, b = published(table, arm, dataset), published(table, reference, dataset)
    return None if a is None or b is None else round(a - b, 1)


def hbreid_claim_values() -> dict[str, float]:
    """The HBReID claims' values in the source's MSMT17 numbers, by claim id (reidlab.study.plan.ablation_claims)."""
    def table2(arm: str, reference: str) -> float | None:
        return published_difference("hbreid2", arm, reference, "msmt17")

    gs = published("hbreid1", "+GS", "msmt17")
    others = [published("hbreid1", row, "msmt17") for row in ("+CJ", "+GB", "+GT")]
    rerank = published_tables()["hbreid2"]["rerank"]["msmt17"]
    return {"gs-beats-baseline": table2("+GS", "baseline"), "hm-beats-gs": table2("+GS +HM", "+GS"),
            "sr-beats-gs": table2("+GS +SR", "+GS"), "sr-beats-gs-hm": table2("+GS +HM +SR", "+GS +HM"),
            "gs-best-augmentation": round(gs - max(others), 1),  # the least favourable competitor, as tested
            "rerank-raises-map": round(rerank - published("hbreid2", "+GS +HM +SR", "msmt17"), 1)}
