"""Your own images (``reidlab embed``, ``search``, ``calibrate``; ``reidlab.search``) on SynthReID folders with the
labels stripped: the images copied under random names, a third of them in a subfolder, their identities known only
to the test."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from reidlab.cli import main
from reidlab.data import build_dataset
from reidlab.engine import load_config, train
from reidlab.explore import ExploredRun
from reidlab.search import CALIBRATION_FILE, HISTOGRAM_FILE, EmbeddedImages, Gallery

from test_engine_train import overrides

REPO = Path(__file__).resolve().parent.parent
# the run's test_batch_size (FAST) and no loader workers: the evaluation's batches, so the very same features
EMBEDDING = ["--batch-size", "64", "--workers", "0"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, synth_root) -> Path:
    """A tiny run on the shared SynthReID, with a checkpoint per epoch (epoch_001.pt: another checkpoint)."""
    out = tmp_path_factory.mktemp("own_images") / "run"
    train(load_config("synth_cpu", overrides(synth_root, out, "epochs=2", "max_iters_per_epoch=6", "save_every=1")),
          print_fn=None)
    return out


def strip_labels(records, folder: Path, seed: int) -> dict:
    """Copy the records' images into ``folder`` under random names; relative name -> record."""
    rng = np.random.default_rng(seed)
    names = {}
    for record in records:
        name = f"{'more/' if rng.random() < 1 / 3 else ''}{rng.integers(1 << 48):012x}.jpg"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(record.path, folder / name)
        names[name] = record
    return names


def stripped_split(query, gallery, folder: Path) -> SimpleNamespace:
    """Query and gallery records stripped of their labels into ``folder/query`` and ``folder/gallery``."""
    return SimpleNamespace(query=folder / "query", gallery=folder / "gallery",
                           query_of=strip_labels(query, folder / "query", 1),
                           gallery_of=strip_labels(gallery, folder / "gallery", 2))


@pytest.fixture(scope="module")
def stripped(tmp_path_factory, synth_root) -> SimpleNamespace:
    """The shared SynthReID's test split, stripped."""
    dataset = build_dataset("synthreid", synth_root)
    return stripped_split(dataset.query, dataset.gallery, tmp_path_factory.mktemp("stripped"))


def fails_in_one_line(argv: list[str], capsys, *words: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err  # a progress bar may come first
    last = err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and "Traceback" not in err and last.startswith(f"reidlab {argv[0]}: error:"), err
    for word in words:
        assert word in last, err


def test_embed_and_search_rank_the_gallery_as_evaluate_does(run_dir, stripped, tmp_path):
    """`embed` (a real subprocess) and `search` give each query the top-10 of the evaluation's own ranking.

    The evaluation ranks by ``-q.g`` of its L2-normalised features with a stable sort (ties to the lower gallery
    position); its protocol then leaves out, per query, the gallery images of the query's identity and camera, and
    junk. A user's folder has no labels, so the reference is the explorer's plain ranking (``ExploredRun.ranking``:
    the evaluation's key and sort over the whole gallery). The stripped gallery is in another order (names are
    random), so the order would differ only at exact ties; the features are the same bit for bit, and so the
    distances, ``1 - cos = 1 + key``."""
    checkpoint, features = run_dir / "checkpoints" / "last.pt", tmp_path / "gallery.npz"
    done = subprocess.run([sys.executable, "-m", "reidlab", "embed", str(checkpoint), str(stripped.gallery), "--out",
                           str(features), *EMBEDDING], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert f"{len(stripped.gallery_of)} images embedded" in done.stdout
    results, page = tmp_path / "results.csv", tmp_path / "results.html"
    assert main(["search", str(features), "--query", str(stripped.query), "--top-k", "10", "--out", str(results),
                 "--html", str(page), *EMBEDDING]) == 0

    run = ExploredRun(run_dir, progress=False)
    gallery_position = {record.path: i for i, record in enumerate(run.dataset.gallery)}
    query_position = {record.path: i for i, record in enumerate(run.dataset.query)}
    gallery = Gallery.load(features)
    in_folder_order = [gallery_position[stripped.gallery_of[path].path] for path in gallery.images.paths]
    np.testing.assert_array_equal(gallery.images.features, run.features().gallery.numpy()[in_folder_order])

    table = pd.read_csv(results)
    assert table["query"].nunique() == len(stripped.query_of)
    for name, matches in table.groupby("query"):
        expected, keys = run.ranking().top(query_position[stripped.query_of[name].path], 10)
        assert matches["rank"].tolist() == list(range(1, 11))
        assert [gallery_position[stripped.gallery_of[path].path] for path in matches["path"]] == expected.tolist()
        np.testing.assert_allclose(matches["distance"], 1 + keys, atol=1e-5)
    html = page.read_text()
    assert html.count('class="reidlab-tile"') == 11 * len(stripped.query_of)
    assert html.count('data-rank="1"') == len(stripped.query_of)


def test_an_approximate_index_is_tuned_saved_next_to_the_features_and_reused(run_dir, stripped, tmp_path, capsys):
    """An hnsw index is tuned on held-out gallery images, saved next to FEATURES, and loaded by the next search;
    the Python API gives what the command wrote."""
    gallery = Gallery.from_folder(run_dir, stripped.gallery, batch_size=64, progress=False)
    features = gallery.save(tmp_path / "gallery.npz")
    argv = ["search", str(features), "--query", str(stripped.query), "--top-k", "5", "--index", "hnsw",
            "--out", str(tmp_path / "results.json"), *EMBEDDING]
    assert main(argv) == 0
    assert "tuned" in capsys.readouterr().out
    saved = list(tmp_path.glob("gallery.npz.hnsw-*.index.npz"))
    assert len(saved) == 1
    assert main(argv) == 0
    assert f"loaded from {saved[0]}" in capsys.readouterr().out
    table = pd.read_json(tmp_path / "results.json")
    again = Gallery.load(features).search(stripped.query, top_k=5, index="hnsw")
    assert table["path"].tolist() == again["path"].tolist()


def kept_pairs(results: pd.DataFrame, split: SimpleNamespace) -> tuple[int, int, int, int]:
    """(true pairs kept, false pairs kept, true pairs, false pairs) of a search of every query in the whole gallery;
    junk gallery images (pid < 0) are left out, as calibrate leaves them out."""
    q_pids = np.array([record.pid for record in split.query_of.values()])
    g_pids = np.array([record.pid for record in split.gallery_of.values()])
    g_pids = g_pids[g_pids >= 0]
    num_true = int((q_pids[:, None] == g_pids[None, :]).sum())
    num_false = len(q_pids) * len(g_pids) - num_true
    pairs = [(split.query_of[q].pid, split.gallery_of[g].pid) for q, g in zip(results["query"], results["path"])]
    kept_true = sum(q == g for q, g in pairs)
    kept_false = sum(q != g and g >= 0 for q, g in pairs)
    return kept_true, kept_false, num_true, num_false


def search_with_threshold(checkpoint: Path, split: SimpleNamespace, calibration: Path, far: str) -> pd.DataFrame:
    """Every query's matches in the whole gallery under the calibrated threshold at ``far``."""
    out = split.query.parent
    features = out / "gallery.npz"
    assert main(["embed", str(checkpoint), str(split.gallery), "--out", str(features), *EMBEDDING]) == 0
    results = out / "kept.csv"
    assert main(["search", str(features), "--query", str(split.query), "--top-k", str(len(split.gallery_of)),
                 "--threshold-from", str(calibration), "--far", far, "--out", str(results), *EMBEDDING]) == 0
    return pd.read_csv(results)


def test_a_calibrated_threshold_keeps_the_calibrated_shares(run_dir, synth_root, tmp_path):
    """`calibrate` on half of the test identities, then `search --threshold-from` at FAR 1e-2 over every query x
    gallery pair of either half, stripped.

    Half A (even identities, every other distractor) is calibrated as a labelled folder (the `folder` dataset:
    Market names). On its own images the kept counts are its TAR and FAR, to a pair: the same distances, computed by
    faiss instead of torch, so a pair at the threshold may round to the other side. Half B, the other identities of
    the same SynthReID (its scenes and cameras; a SynthReID of another seed is another world, to which a threshold
    does not carry), is a new sample: the share of true pairs kept must lie within the 99% two-sample bound around
    the calibrated TAR, z * sqrt(p (1 - p) (1 / n_A + 1 / n_B)) with p pooled, and the share of false pairs kept at
    most that bound (with p = FAR) above the FAR. The bound counts pairs as independent; pairs that share an image
    are not, so the true spread is somewhat wider: the seeds are fixed and the test deterministic."""
    dataset = build_dataset("synthreid", synth_root)
    halves = [[[r for i, r in enumerate(records) if (r.pid or i) % 2 == half]  # distractors (pid 0) by position
               for records in (dataset.query, dataset.gallery)] for half in (0, 1)]
    labelled = tmp_path / "labelled"
    for split, records in zip(("bounding_box_train", "query", "bounding_box_test"), ([], *halves[0])):
        (labelled / split).mkdir(parents=True)
        for record in records:
            shutil.copyfile(record.path, labelled / split / Path(record.path).name)
    checkpoint, out = run_dir / "checkpoints" / "last.pt", tmp_path / "calibration"
    assert main(["calibrate", str(checkpoint), "--data", "folder", "--root", str(labelled), "--far", "1e-2", "1e-3",
                 "--out", str(out), *EMBEDDING]) == 0
    record = json.loads((out / CALIBRATION_FILE).read_text())
    assert (out / HISTOGRAM_FILE).stat().st_size > 10_000
    far = record["thresholds"][0]
    assert far["far"] == 1e-2 and 0 < far["far_achieved"] <= 1e-2 and far["tar"] > 0
    genuine, impostor = record["pairs"]["genuine"], record["pairs"]["impostor"]

    same = stripped_split(*halves[0], tmp_path / "A")
    kept_true, kept_false, num_true, num_false = kept_pairs(
        search_with_threshold(checkpoint, same, out / CALIBRATION_FILE, "1e-2"), same)
    assert (num_true, num_false) == (genuine, impostor)
    assert abs(kept_true - round(far["tar"] * genuine)) <= 1
    assert abs(kept_false - round(far["far_achieved"] * impostor)) <= 1

    other = stripped_split(*halves[1], tmp_path / "B")
    kept_true, kept_false, num_true, num_false = kept_pairs(
        search_with_threshold(checkpoint, other, out / CALIBRATION_FILE, "1e-2"), other)
    z, tar = stats.norm.ppf(0.995), (far["tar"] * genuine + kept_true) / (genuine + num_true)
    assert abs(kept_true / num_true - far["tar"]) <= z * np.sqrt(tar * (1 - tar) * (1 / genuine + 1 / num_true))
    assert kept_false / num_false <= far["far"] + z * np.sqrt(far["far"] * (1 - far["far"]) * (1 / impostor + 1 / num_false))


def test_unreadable_images_are_listed_and_skipped(run_dir, stripped, tmp_path, capsys):
    """A truncated JPEG and a text file named .png are listed with the reason and left out, in the gallery and
    among the queries; a file without an image suffix is not picked up at all."""
    folder = tmp_path / "folder"
    good = sorted(stripped.gallery_of)[:3]
    for name in good:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stripped.gallery / name, folder / name)
    (folder / "truncated.jpg").write_bytes((stripped.gallery / good[0]).read_bytes()[:400])
    (folder / "notes.png").write_text("not an image")
    (folder / "notes.txt").write_text("not an image either")
    features = tmp_path / "gallery.npz"
    assert main(["embed", str(run_dir), str(folder), "--out", str(features), *EMBEDDING]) == 0
    out = capsys.readouterr().out
    assert "2 unreadable image(s) skipped" in out and "truncated.jpg: " in out and "notes.png: " in out
    images = EmbeddedImages.load(features)
    assert images.paths == good and [path for path, _ in images.skipped] == ["notes.png", "truncated.jpg"]
    assert all(reason for _, reason in images.skipped)
    results = tmp_path / "results.csv"
    assert main(["search", str(features), "--query", str(folder), "--top-k", "2", "--out", str(results),
                 *EMBEDDING]) == 0
    assert "2 unreadable image(s) skipped" in capsys.readouterr().out
    table = pd.read_csv(results)
    assert sorted(set(table["query"])) == good and set(table["path"]) <= set(good) and len(table) == 2 * len(good)


def test_bad_input_is_one_line(run_dir, stripped, synth_root, tmp_path, capsys):
    """Missing or empty folders, folders without a readable image, a file that is no features file, another
    checkpoint (for the queries, their features or the calibration): one line on stderr, exit status 2."""
    checkpoint, other = run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "epoch_001.pt"
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.jpg").write_text("no image")
    features = tmp_path / "gallery.npz"
    fails_in_one_line(["embed", str(checkpoint), str(tmp_path / "missing"), "--out", str(features)], capsys,
                      "does not exist")
    fails_in_one_line(["embed", str(checkpoint), str(tmp_path / "empty"), "--out", str(features)], capsys, "no images")
    fails_in_one_line(["embed", str(checkpoint), str(tmp_path / "broken"), "--out", str(features), *EMBEDDING],
                      capsys, "none of the 1 image(s) decodes")
    fails_in_one_line(["embed", str(tmp_path / "none.pt"), str(stripped.query), "--out", str(features)], capsys,
                      "does not exist")
    assert not features.exists()
    (tmp_path / "text.npz").write_text("not a features file")
    fails_in_one_line(["search", str(tmp_path / "text.npz"), "--query", str(stripped.query)], capsys,
                      "not a features file")

    assert main(["embed", str(checkpoint), str(stripped.gallery), "--out", str(features), *EMBEDDING]) == 0
    assert main(["embed", str(other), str(stripped.query), "--out", str(tmp_path / "query.npz"), *EMBEDDING]) == 0
    assert main(["calibrate", str(other), "--data", str(synth_root), "--far", "1e-2", "--out",
                 str(tmp_path / "calibration"), *EMBEDDING]) == 0
    capsys.readouterr()
    fails_in_one_line(["search", str(features), "--query", str(stripped.query), "--checkpoint", str(other),
                       *EMBEDDING], capsys, "is not the checkpoint that embedded the gallery")
    fails_in_one_line(["search", str(features), "--query-features", str(tmp_path / "query.npz")], capsys,
                      "embed both with one checkpoint")
    fails_in_one_line(["search", str(features), "--query", str(stripped.query), "--threshold-from",
                       str(tmp_path / "calibration" / CALIBRATION_FILE), *EMBEDDING], capsys, "calibrate that checkpoint")
    fails_in_one_line(["calibrate", str(checkpoint), "--data", "market1501", "--out", str(tmp_path)], capsys,
                      "pass --root")
