"""The query browser: a query and its top-k gallery images under one run, or two runs side by side."""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from reidlab.viz.images import ranked_results
from reidlab.viz.pairs import MapPanel, activation_rows_figure

from .activation import ActivationMap, maps_html, with_maps_below
from .run import MARKS, ExploredRun, Ranking
from .tiles import COLOURS, STYLE, View, legend, row, tile

ALL = -1  # the filter dropdowns' "any" entry


class QueryBrowser(View):
    """Pick a query (slider or dropdown; filters: failures only, camera, identity) and see its top ``top_k``
    gallery images marked true / wrong / junk / same-camera, with its AP and the rank of its first true match;
    re-ranking on or off; ``compare``: a second run on the same query, one row each. A click on a rank (``match``)
    shows the query's and that match's activation maps for their similarity (:class:`ActivationMap`); the maps
    follow the query shown.

    Failures (rank-1 wrong) are those of the first run under the current re-ranking setting.
    """

    def __init__(self, run: ExploredRun, compare: ExploredRun | None = None, top_k: int = 10,
                 rerank: bool = False) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        if compare is not None and not run.same_test_split(compare):
            raise ValueError(f"cannot compare {run.run_dir} with {compare.run_dir}: they were tested on different "
                             "query/gallery images; compare runs of the same dataset")
        self.run, self.compare, self.top_k = run, compare, top_k
        self.runs = [run] if compare is None else [run, compare]
        cameras = sorted(set(run.q_camids.tolist()))
        identities = sorted(set(run.q_pids.tolist()))
        self.failures_only = widgets.Checkbox(value=False, description="failures only (rank-1 wrong)", indent=False)
        self.failures_only.add_class("reidlab-failures-only")
        self.camera = widgets.Dropdown(options=[("any", ALL)] + [(str(c + 1), c) for c in cameras], value=ALL,
                                       description="camera", layout=widgets.Layout(width="160px"))
        self.identity = widgets.Dropdown(options=[("any", ALL)] + [(str(p), p) for p in identities], value=ALL,
                                         description="identity", layout=widgets.Layout(width="180px"))
        self.rerank = widgets.Checkbox(value=rerank, description="k-reciprocal re-ranking", indent=False)
        self.slider = widgets.IntSlider(min=0, max=0, description="query", continuous_update=False,
                                        layout=widgets.Layout(width="420px"))
        self.slider.add_class("reidlab-query-slider")
        self.query = widgets.Dropdown(description="", layout=widgets.Layout(width="330px"))
        self.summary = widgets.HTML()
        self.grid = widgets.HTML()
        self.grid.add_class("reidlab-query-grid")
        ranks = range(min(top_k, len(run.g_pids)))
        prefixes = [""] if compare is None else [f"{explored.name}: " for explored in self.runs]
        self.match = widgets.ToggleButtons(
            options=[(f"{prefix}{i + 1}", (r, i)) for r, prefix in enumerate(prefixes) for i in ranks], value=None,
            description="maps of", style={"button_width": "auto"})
        self.match.add_class("reidlab-match")
        self.maps = widgets.HTML()
        self.maps.add_class("reidlab-query-maps")
        self._maps: dict[int, ActivationMap] = {}
        for control in (self.failures_only, self.camera, self.identity, self.rerank):
            control.observe(self._refilter, names="value")
        self.slider.observe(self._slider_moved, names="value")
        self.query.observe(self._query_picked, names="value")
        self.match.observe(self._show_maps, names="value")
        self.widget = widgets.VBox([
            widgets.HBox([self.failures_only, self.camera, self.identity, self.rerank]),
            widgets.HBox([self.slider, self.query]), self.summary, self.grid, self.match, self.maps])
        self.widget.add_class("reidlab-query-browser")
        self.shown: list[int] = []
        self._syncing = False
        self._refilter()

    def rankings(self) -> list[Ranking]:
        """Each shown run's ranking under the current re-ranking setting."""
        return [r.ranking(self.rerank.value) for r in self.runs]

    def candidates(self) -> np.ndarray:
        """The query indices that pass the filters, in query order."""
        run, keep = self.run, np.ones(len(self.run.q_pids), dtype=bool)
        if self.failures_only.value:
            keep &= np.isin(np.arange(len(keep)), run.ranking(self.rerank.value).failures)
        if self.camera.value != ALL:
            keep &= run.q_camids == self.camera.value
        if self.identity.value != ALL:
            keep &= run.q_pids == self.identity.value
        return np.flatnonzero(keep)

    def _label(self, q: int) -> str:
        ranking = self.run.ranking(self.rerank.value)
        return (f"#{q}: id {self.run.q_pids[q]}, cam {self.run.q_camids[q] + 1}, AP {ranking.ap[q]:.2f}, "
                f"first true match {ranking.first_match_rank[q] or '-'}")

    def _refilter(self, _change=None) -> None:
        current = self.query.value
        self.shown = self.candidates().tolist()
        position = self.shown.index(current) if current in self.shown else 0
        self._syncing = True  # the two controls follow each other; draw once, below
        try:
            self.query.options = [(self._label(q), q) for q in self.shown]
            self.query.value = self.shown[position] if self.shown else None
            self.slider.max = max(len(self.shown) - 1, 0)
            self.slider.value = position
        finally:
            self._syncing = False
        self.slider.disabled = self.query.disabled = len(self.shown) < 2
        self.show(self.query.value)

    def _slider_moved(self, change) -> None:
        if not self._syncing and self.shown:
            self.query.value = self.shown[change["new"]]

    def _query_picked(self, change) -> None:
        if self._syncing or change["new"] is None:
            return
        self._syncing = True
        try:
            self.slider.value = self.shown.index(change["new"])
        finally:
            self._syncing = False
        self.show(change["new"])

    def show(self, query: int | None) -> None:
        """Draw one query's rows (None: say that no query passes the filters)."""
        if query is None:
            self.summary.value = "<i>no query passes these filters</i>"
            self.grid.value = self.maps.value = ""
            return
        run, size = self.run, self.run.image_size
        lines, rows = [], []
        for explored, ranking in zip(self.runs, self.rankings()):
            gallery, keys = ranking.top(query, self.top_k)
            marks = ranking.marks(query, gallery)
            lines.append(f"<b>{explored.name}</b>: AP {ranking.ap[query]:.3f}, first true match at rank "
                         f"{ranking.first_match_rank[query] or 'none'} (mAP {ranking.mAP:.1%})")
            tiles = [tile(run.dataset.query[query].path, size, f"query id {run.q_pids[query]}<br>cam "
                          f"{run.q_camids[query] + 1}", "query", query=query)]
            tiles += [tile(run.dataset.gallery[g].path, size, f"{i + 1}. id {run.g_pids[g]}<br>{mark}<br>"
                           f"{ranking.describe(key)}", mark, gallery=g)
                      for i, (g, mark, key) in enumerate(zip(gallery, marks, keys))]
            rows.append(row(explored.name, tiles))
        suffix = " (k-reciprocal re-ranking)" if self.rerank.value else ""
        self.summary.value = f"query #{query}{suffix}: " + "; ".join(lines)
        self.grid.value = STYLE + "".join(rows) + legend(list(MARKS))
        self._show_maps()

    def _show_maps(self, _change=None) -> None:
        choice, query = self.match.value, self.query.value
        self.maps.value = "" if choice is None or query is None else maps_html(
            self.maps_figure(query, *choice), query=query, run=choice[0], rank=choice[1] + 1)

    def activation_maps(self, run_index: int) -> ActivationMap:
        """Activation maps under the checkpoint a shown run ranks with (made once per run)."""
        if run_index not in self._maps:
            explored = self.runs[run_index]
            self._maps[run_index] = ActivationMap(explored.model, explored.config)
        return self._maps[run_index]

    def maps_figure(self, query: int, run_index: int, rank: int) -> plt.Figure:
        """The query and its match at 0-based ``rank`` under one shown run's ranking (current re-ranking setting),
        each with its activation map for their similarity, the cosine of their evaluation features."""
        explored, ranking = self.runs[run_index], self.rankings()[run_index]
        gallery = int(ranking.top(query, rank + 1)[0][rank])
        first, second = explored.dataset.query[query], explored.dataset.gallery[gallery]
        maps = self.activation_maps(run_index)
        images = maps.overlays(first.path, second.path, self.run.image_size, (first.camid, second.camid))
        features = explored.features()
        mark = ranking.marks(query, np.array([gallery]))[0]
        panels = [MapPanel(images[0], COLOURS["query"], f"query #{query}"),
                  MapPanel(images[1], COLOURS[mark], f"{rank + 1}. id {explored.g_pids[gallery]}, {mark}")]
        caption = f"{explored.name}\ncos {float(features.query[query] @ features.gallery[gallery]):.3f}"
        return activation_rows_figure([panels], [caption], f"{maps.method}: query and match {rank + 1}")

    def static_figure(self, num_queries: int = 8) -> plt.Figure:
        """The first ``num_queries`` failures of the first run (all queries when none fail), top ``top_k`` each;
        below, the first one's activation maps with its rank-1 match."""
        ranking = self.run.ranking(self.rerank.value)
        picked = (ranking.failures if len(ranking.failures) else np.arange(len(self.run.q_pids)))[:num_queries]
        paths, colours, captions = [], [], []
        for q in picked:
            gallery, _ = ranking.top(q, self.top_k)
            marks = ranking.marks(q, gallery)
            paths.append([self.run.dataset.gallery[g].path for g in gallery])
            colours.append([COLOURS[m] for m in marks])
            captions.append([f"{i + 1}. {m}" for i, m in enumerate(marks)])
        fig = ranked_results([self.run.dataset.query[q].path for q in picked], paths, colours, captions,
                             [f"#{q} AP {ranking.ap[q]:.2f}" for q in picked], size=self.run.image_size)
        fig.suptitle(f"{self.run.name}: first {len(picked)} failures (rank-1 wrong), top {self.top_k}", y=1.0)
        return with_maps_below(fig, self.maps_figure(int(picked[0]), 0, 0))
