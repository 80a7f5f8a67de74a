"""The explorer views built headless: widgets created, callbacks driven as a user would, content checked against
brute-force answers; the feature and map caches reused and invalidated; the activation maps a click shows."""

from __future__ import annotations

import re
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from reidlab import study
from reidlab.engine import load_checkpoint, load_trained, save_checkpoint
from reidlab.engine.evaluator import eval_loader
from reidlab.evaluation import extract_features
from reidlab.explore import (MARKS, ActivationMap, ClassMap, ExploredRun, PairInspector, QueryBrowser, Ranking,
                             metric_features)
from reidlab.explore.pairs import training_images

from test_notebooks import tiny_overrides


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synth_root):
    """Two tiny runs on the shared SynthReID, with per-epoch checkpoints: AdaSP and SP-H."""
    out = tmp_path_factory.mktemp("explore")
    trained = {}
    for name, metric in (("adasp", "adasp"), ("sph", "sp-h")):
        trained[name] = study.finished_run(None, out, "synth_cpu", tiny_overrides(synth_root, **{"loss.metric": metric}),
                                           0, 2, str(synth_root), "cpu", True, name=name, training_log=False,
                                           save_every=1)
    return trained


@pytest.fixture(scope="module")
def explored(runs):
    return ExploredRun(runs["adasp"], progress=False), ExploredRun(runs["sph"], progress=False)


def tiles(html: str, attribute: str) -> list[tuple[str, str]]:
    """(data-<attribute>, data-mark) of every tile in a view's HTML, in order."""
    return re.findall(rf'<figure class="reidlab-tile" data-{attribute}="(-?\d+)" data-mark="([a-z-]*)"', html)


def expected_mark(run: ExploredRun, q: int, g: int) -> str:
    if run.g_pids[g] < 0:
        return "junk"
    if run.g_pids[g] == run.q_pids[q]:
        return "same-camera" if run.g_camids[g] == run.q_camids[q] else "true"
    return "wrong"


def brute_force_ranking(run: ExploredRun, rerank: bool):
    """Per query: the full shown order, its marks checked against the labels, and AP and first-match rank
    recomputed from the counted entries."""
    ranking = run.ranking(rerank)
    aps, firsts = [], []
    for q in range(len(run.q_pids)):
        order, keys = ranking.top(q, len(run.g_pids))
        assert np.all(np.diff(keys) >= 0)
        marks = ranking.marks(q, order)
        assert marks == [expected_mark(run, q, g) for g in order]
        counted = [m for m in marks if m in ("true", "wrong")]
        hits = np.flatnonzero(np.array(counted) == "true") + 1
        firsts.append(int(hits[0]) if len(hits) else 0)
        aps.append(float(np.mean(np.arange(1, len(hits) + 1) / hits)) if len(hits) else np.nan)
    return ranking, np.array(aps), np.array(firsts)


@pytest.mark.parametrize("rerank", [False, True])
def test_ranking_shown_is_the_one_evaluated(explored, rerank):
    run = explored[0]
    ranking, aps, firsts = brute_force_ranking(run, rerank)
    np.testing.assert_array_equal(firsts, ranking.first_match_rank)
    np.testing.assert_allclose(aps, ranking.ap, rtol=1e-9, equal_nan=True)
    assert set(np.flatnonzero(firsts > 1)) == set(ranking.failures)
    everything = np.concatenate([ranking.marks(q, np.arange(len(run.g_pids))) for q in range(len(run.q_pids))])
    assert set(everything) == set(MARKS) - {"junk"}, "the split has every case but junk (the Market parser drops it)"


def test_marks_follow_the_protocol_junk_included():
    labels = SimpleNamespace(q_pids=np.array([7]), q_camids=np.array([0]), g_pids=np.array([7, 7, 3, -1, 3]),
                             g_camids=np.array([0, 1, 0, 1, 1]))
    ranking = SimpleNamespace(run=labels)
    assert Ranking.marks(ranking, 0, np.array([4, 3, 1, 0, 2])) == ["wrong", "junk", "true", "same-camera", "wrong"]


def copied_run(run_dir, to):
    """A copy of a run to change, without its explorer caches."""
    return shutil.copytree(run_dir, to, ignore=shutil.ignore_patterns("explore"))


def test_feature_cache_is_reused_and_invalidated(runs, synth_root, tmp_path, monkeypatch):
    data = shutil.copytree(synth_root, tmp_path / "synth")
    run_dir = copied_run(runs["adasp"], tmp_path / "run")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["data"]["root"] = str(data)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))

    first = ExploredRun(run_dir, progress=False).features()
    assert not first.from_cache and (run_dir / "explore" / "features.last.pt").is_file()
    monkeypatch.setattr(ExploredRun, "_extract", lambda self, *args: pytest.fail("extracted again"))
    again = ExploredRun(run_dir, progress=False).features()
    assert again.from_cache and torch.equal(again.query, first.query) and torch.equal(again.gallery, first.gallery)
    monkeypatch.undo()

    checkpoint = run_dir / "checkpoints" / "last.pt"  # a checkpoint rewritten in place: other weights
    state = load_checkpoint(checkpoint, map_location="cpu")
    name = next(k for k, v in state["model"].items() if v.dtype == torch.float32 and v.dim() == 4)
    state["model"][name] = state["model"][name] * 1.5
    save_checkpoint(state, checkpoint)
    changed = ExploredRun(run_dir, progress=False).features()
    assert not changed.from_cache and not torch.equal(changed.gallery, first.gallery)

    removed = sorted((data / "bounding_box_test").glob("*.jpg"))[-1]  # the dataset changes: its fingerprint too
    removed.unlink()
    smaller = ExploredRun(run_dir, progress=False).features()
    assert not smaller.from_cache and len(smaller.gallery) == len(first.gallery) - 1


def test_the_default_checkpoint_is_last_never_the_test_chosen_best(runs, tmp_path):
    """best.pt is the epoch of highest test mAP: opening a run without naming a checkpoint must give last.pt."""
    run_dir = copied_run(runs["adasp"], tmp_path / "run")
    checkpoints = run_dir / "checkpoints"
    (checkpoints / "best.pt").unlink()
    shutil.copyfile(checkpoints / "epoch_001.pt", checkpoints / "best.pt")  # as if epoch 1 had scored best on test
    last, best = (load_checkpoint(checkpoints / name)["model"] for name in ("last.pt", "best.pt"))
    assert not all(torch.equal(v, best[k]) for k, v in last.items())

    explored, trained = ExploredRun(run_dir, progress=False), load_trained(run_dir)
    for opened in (explored, trained):
        assert opened.checkpoint == checkpoints / "last.pt"
        assert all(torch.equal(v, last[k]) for k, v in opened.model.state_dict().items())
    assert explored.cache_path().name == "features.last.pt"
    assert load_trained(run_dir, "best").checkpoint == checkpoints / "best.pt"  # still there when asked for
    (checkpoints / "best.pt").unlink()
    assert load_trained(run_dir, "best").checkpoint == checkpoints / "last.pt"  # the documented fallback


def test_train_features_are_training_images_never_test_queries(runs, tmp_path, monkeypatch):
    """The validation queries retrieval.ipynb tunes its index knobs on: a seeded draw of training images,
    extracted as the test features are, and cached under the test features' key plus the draw."""
    run = ExploredRun(copied_run(runs["adasp"], tmp_path / "run"), progress=False)
    drawn = run.train_features(sample=20, seed=1)
    train = {r.path: r for r in run.dataset.train}
    assert len(drawn.features) == len(set(drawn.paths)) == 20 and set(drawn.paths) <= set(train)
    assert not set(drawn.paths) & {r.path for r in (*run.dataset.query, *run.dataset.gallery)}
    expected, _, _ = extract_features(run.model, eval_loader([train[p] for p in drawn.paths], run.config),
                                      flip=run.config.eval.flip)
    torch.testing.assert_close(drawn.features, expected)  # row i is paths[i]'s feature, L2-normalized
    assert not drawn.from_cache and (run.run_dir / "explore" / "train_features.last.pt").is_file()

    monkeypatch.setattr(ExploredRun, "_extract", lambda self, *args: pytest.fail("extracted again"))
    again = ExploredRun(run.run_dir, progress=False).train_features(sample=20, seed=1)
    assert again.from_cache and again.paths == drawn.paths and torch.equal(again.features, drawn.features)
    monkeypatch.undo()
    other = run.train_features(sample=20, seed=2)  # another draw is extracted anew
    assert not other.from_cache and other.paths != drawn.paths
    assert len(run.train_features(sample=10**6).paths) == len(train)  # a sample larger than the split: all of it


def test_query_browser_controls_change_what_is_shown(explored):
    run, _ = explored
    browser = QueryBrowser(run, top_k=6)
    assert browser.shown == list(range(len(run.q_pids))) and browser.slider.max == len(run.q_pids) - 1
    ranking = run.ranking()

    def shown_gallery():
        return [int(g) for g, _ in tiles(browser.grid.value, "gallery")]

    assert shown_gallery() == ranking.top(0, 6)[0].tolist()
    before = browser.grid.value
    browser.slider.value = 3  # the slider moves the dropdown and the grid with it
    assert browser.query.value == 3 and browser.grid.value != before
    assert tiles(browser.grid.value, "query") == [("3", "query")]
    assert [m for _, m in tiles(browser.grid.value, "gallery")] == ranking.marks(3, ranking.top(3, 6)[0])
    assert f"AP {ranking.ap[3]:.3f}" in browser.summary.value
    first = ranking.first_match_rank[3]
    assert f"first true match at rank {first or 'none'}" in browser.summary.value

    browser.query.value = 5  # and the dropdown moves the slider
    assert browser.slider.value == 5

    browser.failures_only.value = True
    assert browser.shown == ranking.failures.tolist() and len(browser.shown) > 0
    assert int(tiles(browser.grid.value, "query")[0][0]) in browser.shown
    camera = int(run.q_camids[browser.shown[0]])
    browser.camera.value = camera
    assert browser.shown and all(run.q_camids[q] == camera and ranking.first_match_rank[q] > 1 for q in browser.shown)
    browser.failures_only.value = False
    identity = int(run.q_pids[0])
    browser.camera.value, browser.identity.value = -1, identity
    assert browser.shown == np.flatnonzero(run.q_pids == identity).tolist()
    missing = next(c for _, c in browser.camera.options[1:] if not np.any((run.q_pids == identity) & (run.q_camids == c)))
    browser.camera.value = missing
    assert browser.shown == [] and "no query passes" in browser.summary.value and browser.grid.value == ""

    browser.camera.value, browser.identity.value = -1, -1
    browser.query.value = 2
    browser.rerank.value = True
    reranked = run.ranking(rerank=True)
    assert "re-ranking" in browser.summary.value and browser.query.value == 2
    assert shown_gallery() == reranked.top(2, 6)[0].tolist()


def test_query_browser_puts_a_second_run_beside_the_first(explored, tmp_path):
    run, other = explored
    browser = QueryBrowser(run, compare=other, top_k=4)
    browser.slider.value = 7
    galleries = [int(g) for g, _ in tiles(browser.grid.value, "gallery")]
    assert galleries == run.ranking().top(7, 4)[0].tolist() + other.ranking().top(7, 4)[0].tolist()
    assert tiles(browser.grid.value, "query") == [("7", "query")] * 2
    assert "<b>adasp (adasp)</b>" in browser.summary.value and "<b>sph (sp-h)</b>" in browser.summary.value


def test_query_browser_refuses_runs_on_other_test_images(explored, monkeypatch):
    run, other = explored
    monkeypatch.setattr(other, "same_test_split", lambda _other: False)
    monkeypatch.setattr(run, "same_test_split", lambda _other: False)
    with pytest.raises(ValueError, match="tested on different query/gallery images"):
        QueryBrowser(run, compare=other)


def test_pair_inspector_shows_the_pairs_the_loss_selects(explored):
    run, _ = explored
    inspector = PairInspector(run)
    assert list(inspector.epoch.options) == [1, 2] and inspector.epoch.value == 2
    batch = inspector.batches[0]
    pids = [run.dataset.train[i].pid for i in batch]
    assert [pid for _, pid in inspector.identity.options] == sorted(set(pids))

    pid = inspector.identity.options[1][1]
    inspector.identity.value = pid
    # brute force: the hardest positive pair is the least cosine-similar pair of the identity's images, at the run's
    # input size without augmentation (as the loss saw them), not at the views' thumbnail size
    images = torch.stack([training_images(run)[i]["image"] for i in batch])
    assert tuple(images.shape[-2:]) == tuple(run.config.data.size) != run.image_size
    features = F.normalize(metric_features(run.model_at(run.epoch_checkpoints[2]), images), dim=1)
    own = [j for j, p in enumerate(pids) if p == pid]
    similarity = features[own] @ features[own].T
    similarity.fill_diagonal_(np.inf)
    a, b = np.unravel_index(int(similarity.argmin()), similarity.shape)
    marked = dict(tiles(inspector.grid.value, "row"))
    assert {j for j, m in marked.items() if m == "sp-h"} | {j for j, m in marked.items() if m == "sp-lh"} >= {str(own[a]), str(own[b])}
    record = inspector.records()[pid]
    assert sorted(record["positive_pair"]) == sorted([own[a], own[b]])
    assert f"w = {record['w']:.3f}" in inspector.summary.value
    assert f"hardest negative identity {record['negative_label']}" in inspector.summary.value
    assert marked[str(record["negative_pair"][1])] == "negative"

    at_epoch_2 = inspector.summary.value
    inspector.epoch.value = 1
    assert inspector.summary.value != at_epoch_2 and "epoch 1" in inspector.summary.value
    assert inspector.identity.value == pid  # the identity stays picked while it is in the batch
    inspector.batch.value = 1
    assert [p for _, p in inspector.identity.options] == sorted({run.dataset.train[i].pid for i in inspector.batches[1]})


def shown_maps(html: str) -> dict[str, str]:
    """The data-* attributes of a view's activation-map panel (empty when it shows none)."""
    found = re.search(r'<div class="reidlab-maps"([^>]*)><img src="data:image/png;base64,[A-Za-z0-9+/=]{2000,}">', html)
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', found.group(1))) if found else {}


def drawn_images(fig) -> list[np.ndarray]:
    """The images a figure's axes show, in axes order."""
    return [np.asarray(image.get_array()) for ax in fig.axes for image in ax.images]


def test_query_browser_click_on_a_match_shows_both_images_maps(explored):
    run, other = explored
    browser = QueryBrowser(run, compare=other, top_k=4)
    browser.slider.value = 2
    assert browser.match.value is None and browser.maps.value == ""
    assert len(browser.match.options) == 2 * 4
    browser.match.value = (0, 1)  # a click on the first run's second match
    assert shown_maps(browser.maps.value) == {"query": "2", "run": "0", "rank": "2"}
    gallery = run.ranking().top(2, 2)[0][1]
    query_record, match_record = run.dataset.query[2], run.dataset.gallery[gallery]
    expected = ActivationMap(run.model, run.config).overlays(query_record.path, match_record.path, run.image_size,
                                                             (query_record.camid, match_record.camid))
    fig = browser.maps_figure(2, 0, 1)
    for drawn, image in zip(drawn_images(fig), expected):
        np.testing.assert_array_equal(drawn, image)
    cosine = float(run.features().query[2] @ run.features().gallery[gallery])
    assert fig.axes[2].texts[0].get_text() == f"{run.name}\ncos {cosine:.3f}"

    browser.slider.value = 3  # the maps follow the query shown
    assert shown_maps(browser.maps.value)["query"] == "3"
    browser.match.value = (1, 0)  # the compared run's first match
    assert shown_maps(browser.maps.value) == {"query": "3", "run": "1", "rank": "1"}
    assert browser.activation_maps(1).model is other.model


def test_pair_inspector_click_on_a_pair_shows_its_maps(explored):
    run, _ = explored
    inspector = PairInspector(run)
    assert inspector.maps_of.value is None and inspector.maps.value == ""
    pid = inspector.identity.value
    inspector.maps_of.value = "sp-lh"
    assert shown_maps(inspector.maps.value) == {"pair": "sp-lh", "identity": str(pid)}
    record = inspector.records()[pid]
    batch = [run.dataset.train[i] for i in inspector.batches[0]]
    anchor, positive = batch[record["anchor"]], batch[record["anchor_positive"]]
    # a model loaded for the maps: the selections' train-mode passes moved the other one's BatchNorm statistics
    fresh = ActivationMap(run.model_at(run.epoch_checkpoints[2]), run.config)
    expected = fresh.overlays(anchor.path, positive.path, run.image_size, (anchor.camid, positive.camid))
    for drawn, image in zip(drawn_images(inspector.maps_figure(record, ["sp-lh"])), expected):
        np.testing.assert_array_equal(drawn, image)

    other = inspector.identity.options[1][1]
    inspector.identity.value = other  # the maps follow the identity, the epoch and the pair picked
    assert shown_maps(inspector.maps.value) == {"pair": "sp-lh", "identity": str(other)}
    at_epoch_2 = inspector.maps.value
    inspector.epoch.value = 1
    assert inspector.maps.value != at_epoch_2
    inspector.maps_of.value = "negative"
    assert shown_maps(inspector.maps.value)["pair"] == "negative"


def test_class_map_click_shows_images_and_hard_batch_neighbours(explored):
    run, _ = explored
    shutil.rmtree(run.run_dir / "explore", ignore_errors=True)
    run._features = None
    class_map = ClassMap(run)
    assert class_map.map_at(2)["from_cache"] is False
    class_map.scatter.selected = [3]  # a click on identity 3
    assert class_map.identity.value == 3
    weights = F.normalize(run.model_at(run.epoch_checkpoints[2]).classifier_weight().detach().double(), dim=1)
    similarity = weights @ weights[3]
    similarity[3] = -np.inf
    expected = torch.argsort(similarity, descending=True, stable=True)[: class_map.p - 1].tolist()
    assert [int(c) for c, _ in tiles(class_map.details.value, "identity")] == expected
    own = [int(i) for i, _ in tiles(class_map.details.value, "image")]
    assert own and all(run.dataset.train[i].pid == 3 for i in own)
    xy = class_map.map_at(2)["xy"].numpy()
    np.testing.assert_allclose(class_map.neighbour_marks.x, xy[expected, 0])

    last_x = np.array(class_map.scatter.x)
    class_map.epoch.value = 1
    assert not np.allclose(class_map.scatter.x, last_x) and "epoch 1" in class_map.details.value
    class_map.identity.value = 5  # the dropdown selects on the map too
    assert list(class_map.scatter.selected) == [5]

    reopened = ClassMap(ExploredRun(run.run_dir, progress=False))
    assert reopened.map_at(2)["from_cache"] is True and reopened.map_at(1)["from_cache"] is True
    np.testing.assert_allclose(reopened.map_at(1)["xy"], class_map.map_at(1)["xy"])


def test_views_fall_back_to_a_static_figure(explored):
    run, _ = explored
    for view in (QueryBrowser(run), PairInspector(run), ClassMap(run)):
        bundle = view._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert len(bundle["image/png"]) > 2000


def test_a_run_without_a_fixed_test_split_is_refused_with_the_reason(runs):
    run = ExploredRun(runs["adasp"], progress=False)
    run.dataset = SimpleNamespace(query=[], gallery=run.dataset.gallery)  # as a VehicleID run's dataset
    with pytest.raises(ValueError, match="no fixed query/gallery split"):
        QueryBrowser(run)


def test_a_folder_that_is_no_run_names_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="is .* the output_dir of a training run"):
        ExploredRun(tmp_path)
