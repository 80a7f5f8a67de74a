"""Charts of a run and of a study: training curves, CMC, results tables with confidence intervals."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from reidlab.study.records import FIGURES_DIR
from reidlab.utils import atomic_write

# Metric-curve keys shown first (eval records), in percent.
EVAL_KEYS = ("mAP", "rank1", "rank5", "mINP")


def figure_path(output_dir: str | os.PathLike, name: str) -> Path:
    """Where a notebook's figure ``name`` goes: the folder the report index looks in."""
    return Path(output_dir) / FIGURES_DIR / f"{name}.png"


def save_figure(fig: plt.Figure, output_dir: str | os.PathLike, name: str, dpi: int = 110) -> Path:
    """Write ``fig`` to :func:`figure_path` (``summary`` is the one the index card shows)."""
    path = figure_path(output_dir, name)
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"))


def _numeric_keys(records: Sequence[Mapping[str, Any]], exclude: set[str]) -> list[str]:
    keys: dict[str, None] = {}
    for r in records:
        for k, v in r.items():
            if k not in exclude and isinstance(v, (int, float)) and not isinstance(v, bool):
                keys[k] = None
    return list(keys)


def training_curves(records: Sequence[Mapping[str, Any]], title: str | None = None) -> plt.Figure:
    """Loss terms and learning rate per logged step, evaluation metrics per epoch, from a run's log
    (``reidlab.engine.read_metrics``) records (``{"type": "step"|"epoch"|"eval", "step": ..., ...}``)."""
    steps = [r for r in records if r.get("type") == "step"]
    evals = [r for r in records if r.get("type") == "eval"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    ax_loss, ax_lr, ax_eval = axes
    # Everything numeric in a step record is a loss term except these bookkeeping keys and the accuracies.
    skip = {"step", "epoch", "lr", "img_per_s", "epoch_seconds", "scene_strength", "time", "data_time", "batch_time"}
    numeric = _numeric_keys(steps, skip)
    loss_keys = [k for k in numeric if "acc" not in k]
    x = np.array([r["step"] for r in steps])
    for key in loss_keys:
        y = np.array([np.nan if r.get(key) is None else r[key] for r in steps], float)
        main = key in ("total", "loss")
        ax_loss.plot(x, y, "-" if main else "--", label=key, lw=1.8 if main else 1.1, color="black" if main else None)
    ax_loss.set(title="training losses", xlabel="iteration")
    if loss_keys:
        ax_loss.legend(fontsize=8)
    lr_key = next((k for k in ("lr", "learning_rate") if any(k in r for r in steps)), None)
    if lr_key:
        ax_lr.plot(x, [r.get(lr_key, np.nan) for r in steps], color="tab:purple")
    acc_keys = [k for k in numeric if "acc" in k]
    if acc_keys:
        twin = ax_lr.twinx()
        for key in acc_keys:
            twin.plot(x, [r.get(key, np.nan) if r.get(key) is not None else np.nan for r in steps], alpha=0.7, label=key)
        twin.set_ylabel("accuracy")
        twin.legend(fontsize=8, loc="center right")
    ax_lr.set(title="learning rate" + (" / accuracies" if acc_keys else ""), xlabel="iteration", ylabel="lr")
    for key in EVAL_KEYS:
        pts = [(r.get("epoch", r["step"]), r[key]) for r in evals if isinstance(r.get(key), (int, float))]
        if pts:
            ex, ey = zip(*pts)
            ax_eval.plot(ex, np.array(ey) * 100, "o-", label=key)
    ax_eval.set(title="evaluation (query vs gallery)", xlabel="epoch", ylabel="%")
    if evals:
        ax_eval.legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def cmc_curve(cmcs: Mapping[str, Sequence[float]], max_rank: int = 20, ax: plt.Axes | None = None) -> plt.Axes:
    """CMC (fraction of queries whose first correct match is within rank r) for one or more labelled runs."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.8))
    for label, cmc in cmcs.items():
        cmc = np.asarray(cmc, float)[:max_rank] * 100
        ax.plot(np.arange(1, len(cmc) + 1), cmc, "o-", ms=3, label=f"{label} (R1 {cmc[0]:.1f})")
    ax.set(xlabel="rank", ylabel="matching rate (%)", title="CMC", xlim=(0.5, max_rank + 0.5))
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_ylim(top=100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return ax


def format_p(p: float) -> str:
    """p-values as tables show them: two decimals, "p<0.01" below that."""
    return "p=n/a" if math.isnan(p) else ("p<0.01" if p < 0.01 else f"p={p:.2f}")


def _interval(delta: float, low: float, high: float, decimals: int) -> str:
    if math.isnan(delta):
        return ""
    if math.isnan(low):
        return f"{delta:+.{decimals}f}"
    return f"{delta:+.{decimals}f} [{low:+.{decimals}f}, {high:+.{decimals}f}]"


def format_ci_table(
    table: "pandas.DataFrame",  # noqa: F821
    metrics: Sequence[str] = ("mAP", "rank1"),
    decimals: int = 1,
    alpha: float = 0.05,
) -> "pandas.DataFrame":  # noqa: F821
    """A compact, paper-shaped view of :func:`reidlab.study.paired_table`: per metric ``mean ± CI`` and the
    paired ``Δ [low, high]`` with its p; on the table's primary metric (the one with a Holm column) the Holm p,
    and a star when it is below ``alpha``."""
    import pandas as pd

    out = pd.DataFrame(index=table.index.rename(None))
    out["runs"] = table["runs"]
    for m in metrics:
        mean, half = table[f"{m} mean"], table[f"{m} ±CI"]
        out[m] = [
            "–" if math.isnan(a) else (f"{a:.{decimals}f}" if math.isnan(b) else f"{a:.{decimals}f} ± {b:.{decimals}f}")
            for a, b in zip(mean, half)
        ]
        holm = table[f"{m} p_holm"] if f"{m} p_holm" in table else None
        cells = []
        for i, (d, low, high, p) in enumerate(zip(table[f"{m} Δ"], table[f"{m} Δ low"], table[f"{m} Δ high"], table[f"{m} p"])):
            text = _interval(d, low, high, decimals)
            if text and holm is not None and not math.isnan(holm.iloc[i]):
                text += ("*" if holm.iloc[i] < alpha else "") + f" ({format_p(holm.iloc[i])} Holm)"
            elif text and not math.isnan(p):
                text += f" ({format_p(p)})"
            cells.append(text)
        out[f"Δ{m}"] = cells
    return out


def ci_table_view(table: "pandas.DataFrame", metrics: Sequence[str], caption: str = "") -> Any:  # noqa: F821
    """A paired table (``reidlab.study.table_page``) formatted and styled: :func:`format_ci_table`, then
    :func:`style_ci_table`."""
    return style_ci_table(format_ci_table(table, metrics), caption)


def source_table_view(frame: "pandas.DataFrame", rows: Mapping[str, Mapping[str, str]], table: str,  # noqa: F821
                      out: Any, confidence: float = 0.95) -> Any:
    """One source table of the ablation page (``reidlab.study.table_page``, written to its CSV) as
    :func:`ci_table_view`, or a line saying it is not in the study's plan (``tables`` / ``only``)."""
    from reidlab import study

    if table not in rows:
        return f"table {table!r} is not in this study's plan (tables / only)"
    return ci_table_view(*study.table_page(frame, rows, table, out, confidence))


def style_ci_table(table: "pandas.DataFrame", caption: str = "") -> Any:  # noqa: F821
    """A pandas Styler of :func:`format_ci_table` output: deltas that pass Holm's correction in bold green/red."""

    def colour(value: str) -> str:
        if not isinstance(value, str) or "*" not in value:
            return ""
        return "font-weight:bold;color:#1a7f37" if value.startswith("+") else "font-weight:bold;color:#cf222e"

    delta_cols = [c for c in table.columns if str(c).startswith("Δ")]
    styler = table.style.map(colour, subset=delta_cols) if delta_cols else table.style
    return _table_style(styler, caption)


def _table_style(styler: Any, caption: str) -> Any:
    styler = styler.set_table_styles([
        {"selector": "th, td", "props": "padding:3px 10px;text-align:right;font-variant-numeric:tabular-nums"},
        {"selector": "caption", "props": "caption-side:top;font-weight:bold;text-align:left;padding-bottom:4px"},
    ])
    return styler.set_caption(caption) if caption else styler


VERDICT_COLOURS = {"supported": "#1a7f37", "contradicted": "#cf222e", "no-effect": "#6e7781", "inconclusive": "#9a6700",
                   "untestable": "#8250df"}


def style_claims_table(claims: "pandas.DataFrame", caption: str = "", decimals: int = 1) -> Any:  # noqa: F821
    """The claims of :func:`reidlab.study.evaluate_claims` (indexed by id) as a table: statement, Δ with its
    interval, margin, pairs, p and Holm p (direction; equivalence where the claim has one), its manipulation
    checks (✓ passed, ✗ failed) and the verdict in its colour."""
    import pandas as pd

    def p_text(column: str) -> list[str]:
        values = claims[column] if column in claims else [None] * len(claims)
        return [format_p(float("nan") if p is None else p) for p in values]

    checks = claims["controls"] if "controls" in claims else [[]] * len(claims)
    shown = pd.DataFrame({
        "source": claims["source"],
        "claim": claims["statement"],
        "Δ [95% CI] (points)": [_interval(*(float("nan") if v is None else v for v in row), decimals)
                               for row in claims[["delta", "ci_low", "ci_high"]].itertuples(index=False)],
        **({"published": [f"{v:+.1f}" if v is not None and v == v else "" for v in claims["published"]]}
           if "published" in claims else {}),
        "margin": claims["margin"] if "margin" in claims else float("nan"),
        "pairs": claims["n_pairs"],
        "p": p_text("p"),
        "p Holm": p_text("p_holm"),
        "p Holm (equiv.)": [text if text != "n/a" else "" for text in p_text("p_holm_equivalence")],
        "checks": [", ".join(("✓ " if c.get("passed") else "✗ ") + c["name"] for c in row) for row in checks],
        "verdict": claims["verdict"],
    }, index=claims.index.rename(None))
    styler = shown.style.map(lambda v: f"font-weight:bold;color:{VERDICT_COLOURS.get(v, '#222')}", subset=["verdict"])
    styler = styler.set_properties(subset=["claim"], **{"text-align": "left", "white-space": "normal", "max-width": "28rem"})
    return _table_style(styler, caption)


def style_published_table(table: "pandas.DataFrame", caption: str = "", decimals: int = 1) -> Any:  # noqa: F821
    """:func:`reidlab.study.published_table` as a table: the source's number, the measured mean ± CI and the
    difference to the source."""
    import pandas as pd

    def number(value: float, sign: str = "") -> str:
        return "" if value is None or value != value else f"{value:{sign}.{decimals}f}"

    shown = pd.DataFrame({
        "dataset": table["dataset"], "row": table["row"], "metric": table["metric"],
        "published": [number(v) for v in table["published"]],
        "measured (mean ± CI)": [number(m) + ("" if h != h else f" ± {h:.{decimals}f}") + f" (n={n})"
                                 for m, h, n in zip(table["measured"], table["ci_half_width"], table["n"], strict=True)],
        "Δ to published": [number(v, "+") for v in table["delta_to_published"]],
    })
    return _table_style(shown.style.hide(axis="index"), caption)


def style_controls_table(controls: "pandas.DataFrame", caption: str = "") -> Any:  # noqa: F821
    """Manipulation checks (indexed by name): measured value, the threshold it must meet, passed, and what was
    measured."""
    import pandas as pd

    shown = pd.DataFrame({
        "value": [f"{v:.3f}" if v is not None and v == v else "n/a" for v in controls["value"]],
        "must be": [f"{d} {t:g}" for d, t in zip(controls["direction"], controls["threshold"], strict=True)],
        "passed": ["yes" if p else "NO" for p in controls["passed"]],
        "measured": controls["description"],
    }, index=controls.index.rename(None))
    styler = shown.style.map(lambda v: "font-weight:bold;color:#cf222e" if v == "NO" else "", subset=["passed"])
    styler = styler.set_properties(subset=["measured"], **{"text-align": "left", "white-space": "normal"})
    return _table_style(styler, caption)


def metric_vs_knob(
    frame: "pandas.DataFrame",  # noqa: F821
    knob: str,
    group: str,
    metric: str = "mAP",
    confidence: float = 0.95,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """Mean and t-interval (error bars) of ``metric`` (in %) against a ``knob`` column, one line per ``group``
    value (e.g. the loss). A numeric knob is placed by value, a categorical one (a regime) in order of appearance."""
    import pandas as pd

    from reidlab.utils.stats import mean_ci

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    ok = frame[frame["status"] == "ok"]
    numeric = pd.api.types.is_numeric_dtype(ok[knob])
    if not numeric:  # categories at 0, 1, ... in order of appearance
        labels = list(dict.fromkeys(ok[knob]))
        ok = ok.assign(**{knob: ok[knob].map({label: i for i, label in enumerate(labels)})})
    groups = list(ok.groupby(group, sort=False))
    values = sorted(ok[knob].unique())
    spread = (max(values) - min(values)) if len(values) > 1 else 1.0
    for i, (name, sub) in enumerate(groups):
        levels = sorted(sub[knob].unique())
        dodge = (i - (len(groups) - 1) / 2) * 0.012 * spread  # side by side, so the error bars stay readable
        stats = [mean_ci(sub[sub[knob] == lv][metric] * 100, confidence) for lv in levels]
        means = np.array([s[0] for s in stats])
        halves = np.nan_to_num(np.array([s[1] for s in stats]))
        ax.errorbar(np.asarray(levels, float) + dodge, means, yerr=halves, marker="o", capsize=4, label=str(name))
    ax.set_xticks(values, None if numeric else labels)
    ax.set(xlabel=knob, ylabel=f"{metric} (%)", title=f"{metric} vs {knob} (mean, {confidence:.0%} CI)")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def regime_figure(by_regime: "pandas.DataFrame", confidence: float = 0.95) -> plt.Figure:  # noqa: F821
    """mAP of each loss on the person-like and vehicle-like regimes, with intervals over seeds (the AdaSP
    reversal at a glance); ``by_regime``: ``reidlab.study.regime_page``'s per-seed frame."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    metric_vs_knob(by_regime, "regime", "loss", "mAP", confidence, ax=ax)
    ax.set_title(f"mAP by regime ({by_regime['seed'].nunique()} seeds, {confidence:.0%} CI)")
    fig.tight_layout()
    return fig
