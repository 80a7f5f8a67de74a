"""Losses against float64 brute-force references written here with explicit loops over pairs."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F

import reidlab.losses.sparse_pairwise as sparse_pairwise_module
from reidlab.losses import (
    CircleLoss,
    CombinedLoss,
    LossTerm,
    SparsePairwiseLoss,
    TripletLoss,
    build_loss,
)

SP_MODES = ("sp-h", "sp-lh", "adasp")

# Label layouts: contiguous equal blocks (the published implementation's assumption), interleaved,
# unequal counts with single-image identities and arbitrary label values.
LAYOUTS = {
    "contiguous": [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3],
    "interleaved": [0, 1, 2, 3] * 4,
    "unequal": [7, 3, 7, 42, 3, 7, 5, 3, 7, 11, 42, 7, 3],  # 5, 4, 2, 1, 1 images; 5 and 11 single
}


def clustered_batch(labels: list[int], dim: int = 8, seed: int = 0) -> torch.Tensor:
    """float64 embeddings; identities alternate loose (independent random rows: some pair has s < 0, so
    h < 0 and w = 0) and tight (center plus small noise: h >= 0, w > 0)."""
    generator = torch.Generator().manual_seed(seed)
    ids = sorted(set(labels))
    centers = {a: torch.randn(dim, generator=generator, dtype=torch.float64) for a in ids}
    tight = {a: k % 2 == 1 for k, a in enumerate(ids)}
    rows = []
    for a in labels:
        noise = torch.randn(dim, generator=generator, dtype=torch.float64)
        rows.append(centers[a] + 0.15 * centers[a].norm() * noise / math.sqrt(dim) if tight[a] else noise)
    return torch.stack(rows)


# ---------------------------------------------------------------- brute-force references (float64)


def ref_similarity(x: torch.Tensor, i: int, j: int) -> torch.Tensor:
    zi = x[i] / x[i].norm().clamp_min(1e-12)
    zj = x[j] / x[j].norm().clamp_min(1e-12)
    return (zi * zj).sum()


def ref_sparse_pairwise(x: torch.Tensor, labels: list[int], temperature: float, mode: str):
    """Returns (loss, {a: dict(n={b: n_ab}, pH, pLH, h, l, w, p, loss)}) with raw float64 exps."""
    ids = sorted(set(labels))
    members = {a: [i for i, label in enumerate(labels) if label == a] for a in ids}
    s = {(i, j): ref_similarity(x, i, j) for i in range(len(labels)) for j in range(len(labels))}
    out = {}
    for a in ids:
        total = 0
        for i in members[a]:
            for j in members[a]:
                total = total + torch.exp(-s[i, j] / temperature)
        p_h = -torch.log(total)
        total = 0
        for i in members[a]:
            anchor_sum = 0
            for j in members[a]:
                anchor_sum = anchor_sum + torch.exp(-s[i, j] / temperature)
            total = total + 1 / anchor_sum
        p_lh = torch.log(total)
        negatives = {}
        for b in ids:
            if b == a:
                continue
            total = 0
            for i in members[a]:
                for j in members[b]:
                    total = total + torch.exp(s[i, j] / temperature)
            negatives[b] = torch.log(total)
        h, l = (temperature * p_h).detach(), (temperature * p_lh).detach()
        w = 2 * h * l / (h + l) if h >= 0 else torch.zeros((), dtype=torch.float64)
        p = {"sp-h": p_h, "sp-lh": p_lh, "adasp": w * p_h + (1 - w) * p_lh}[mode]
        loss = torch.log(1 + sum(torch.exp(n - p) for n in negatives.values()))
        out[a] = dict(n=negatives, pH=p_h, pLH=p_lh, h=h, l=l, w=w, p=p, loss=loss)
    return sum(v["loss"] for v in out.values()) / len(ids), out


def published_port(x: torch.Tensor, num_ids: int, temperature: float, mode: str) -> torch.Tensor:
    """The published algorithm for contiguous, equally many rows per identity (identity = block position),
    re-derived from docs/design.md, "Losses": block masks, raw exponentials, per-identity sums by matmul with the
    block indicator, inverse sums on the positive blocks, L1-normalized rows, -log of the diagonal."""
    batch = x.shape[0]
    per_id = batch // num_ids
    z = F.normalize(x, dim=1)
    logits = z @ z.T / temperature
    indicator = torch.kron(torch.eye(num_ids, dtype=x.dtype), torch.ones(per_id, 1, dtype=x.dtype))  # [B, P]
    in_block = indicator @ indicator.T
    exps = torch.exp(torch.where(in_block > 0, -logits, logits))
    id_eye = torch.eye(num_ids, dtype=x.dtype)
    hard = indicator.T @ exps @ indicator  # [P, P]; diagonal: sum exp(-s/T) over the block
    hard = hard * (1 - id_eye) + torch.diag(1 / hard.diagonal())
    row_sums = exps @ indicator  # [B, P]
    row_sums = torch.where(indicator > 0, 1 / row_sums, row_sums)
    least_hard = indicator.T @ row_sums  # [P, P]
    p_h = torch.log(hard.diagonal())
    p_lh = torch.log(least_hard.diagonal())
    if mode == "sp-h":
        matrix = hard
    elif mode == "sp-lh":
        matrix = least_hard
    else:
        h, l = (p_h * temperature).detach(), (p_lh * temperature).detach()
        w = torch.where(h < 0, torch.zeros_like(h), 2 * h * l / (h + l))
        positive = torch.exp(w * p_h + (1 - w) * p_lh)
        matrix = positive.diag() + least_hard * (1 - id_eye)
    normalized = matrix / matrix.abs().sum(1, keepdim=True)
    return -torch.log(normalized.diagonal()).mean()


def ref_euclidean(x, i, j):
    return torch.sqrt(torch.clamp((x[i] * x[i]).sum() + (x[j] * x[j]).sum() - 2 * (x[i] * x[j]).sum(), min=1e-12))


def ref_triplet(x, labels, margin, hard_mining, normalize):
    n = len(labels)
    if normalize:
        dist = lambda i, j: 2 - 2 * ref_similarity(x, i, j)  # noqa: E731
    else:
        dist = lambda i, j: ref_euclidean(x, i, j)  # noqa: E731
    losses = []
    for i in range(n):
        pos = [dist(i, j) for j in range(n) if labels[j] == labels[i]]
        neg = [dist(i, j) for j in range(n) if labels[j] != labels[i]]
        if hard_mining:
            d_ap, d_an = max(pos), min(neg)
        else:
            wp = [torch.exp(d) for d in pos]
            wn = [torch.exp(-d) for d in neg]
            d_ap = sum(d * w for d, w in zip(pos, wp)) / sum(wp)
            d_an = sum(d * w for d, w in zip(neg, wn)) / sum(wn)
        diff = d_ap - d_an
        losses.append(torch.clamp(diff + margin, min=0) if margin > 0 else torch.log(1 + torch.exp(diff)))
    return sum(losses) / n


def ref_circle(x, labels, margin, gamma):
    n = len(labels)
    losses = []
    for i in range(n):
        pos_terms, neg_terms = [], []
        for j in range(n):
            s = ref_similarity(x, i, j)
            if j != i and labels[j] == labels[i]:
                alpha = torch.clamp(1 + margin - s.detach(), min=0)
                pos_terms.append(torch.exp(-gamma * alpha * (s - (1 - margin))))
            elif labels[j] != labels[i]:
                alpha = torch.clamp(s.detach() + margin, min=0)
                neg_terms.append(torch.exp(gamma * alpha * (s - margin)))
        if not pos_terms:
            losses.append(torch.zeros((), dtype=x.dtype))
            continue
        losses.append(torch.log(1 + sum(pos_terms) * sum(neg_terms)))
    return sum(losses) / n


def value_and_grad(fn, x):
    x = x.detach().clone().requires_grad_(True)
    value = fn(x)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


# ---------------------------------------------------------------- sparse pairwise losses


@pytest.mark.parametrize("mode", SP_MODES)
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("temperature", [0.04, 0.01])
def test_sparse_pairwise_matches_bruteforce(mode, layout, temperature):
    labels = LAYOUTS[layout]
    x = clustered_batch(labels, seed=len(labels))
    loss = SparsePairwiseLoss(mode, temperature)
    value, grad = value_and_grad(lambda x: loss(x, torch.tensor(labels)), x)
    ref_value, ref_grad = value_and_grad(lambda x: ref_sparse_pairwise(x, labels, temperature, mode)[0], x)
    torch.testing.assert_close(value, ref_value, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("mode", SP_MODES)
@pytest.mark.parametrize("block_labels", [[0, 1, 2, 3], [3, 9, 1, 4]])
def test_sparse_pairwise_equals_published_on_contiguous_layout(mode, block_labels):
    labels = [a for a in block_labels for _ in range(4)]
    x = clustered_batch(labels, seed=3)
    ours, our_grad = value_and_grad(lambda x: SparsePairwiseLoss(mode, 0.04)(x, torch.tensor(labels)), x)
    theirs, their_grad = value_and_grad(lambda x: published_port(x, 4, 0.04, mode), x)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(our_grad, their_grad, rtol=1e-8, atol=1e-10)


def test_published_layout_assumption_breaks_on_interleaved_labels():
    """Why label masks: the block-position algorithm gives another (wrong) value for interleaved rows."""
    labels = LAYOUTS["interleaved"]
    x = clustered_batch(labels, seed=5)
    ours = SparsePairwiseLoss("adasp", 0.04)(x, torch.tensor(labels))
    reference = ref_sparse_pairwise(x, labels, 0.04, "adasp")[0]
    torch.testing.assert_close(ours, reference)
    assert not torch.isclose(published_port(x, 4, 0.04, "adasp"), reference, rtol=1e-3)


@pytest.mark.parametrize("mode", SP_MODES)
def test_sparse_pairwise_gradcheck(mode, monkeypatch):
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 3])
    x = clustered_batch(labels.tolist(), dim=5, seed=11).requires_grad_(True)
    loss = SparsePairwiseLoss(mode, 0.1)
    if mode == "adasp":
        # w is detached by definition: gradcheck the function with w frozen at its value for this x.
        terms = sparse_pairwise_module.sparse_pairwise_terms(x.detach(), labels, 0.1)
        frozen = sparse_pairwise_module.adaptive_weight(0.1 * terms["positive_h"], 0.1 * terms["positive_lh"])
        assert (frozen > 0).any() and (frozen == 0).any()
        monkeypatch.setattr(sparse_pairwise_module, "adaptive_weight", lambda h, l: frozen)
    assert torch.autograd.gradcheck(lambda x: loss(x, labels), (x,))


@pytest.mark.parametrize("mode", SP_MODES + ("triplet", "circle"))
def test_losses_invariant_to_batch_permutation(mode):
    loss = {"triplet": TripletLoss(), "circle": CircleLoss()}.get(mode) or SparsePairwiseLoss(mode)
    labels = torch.tensor(LAYOUTS["unequal"])
    x = clustered_batch(labels.tolist(), seed=2)
    permutation = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss(x[permutation], labels[permutation]), loss(x, labels), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("temperature", [0.04, 0.01])
@pytest.mark.parametrize("mode", SP_MODES)
def test_autocast_inputs_are_upcast(dtype, temperature, mode):
    torch.manual_seed(0)
    labels = torch.arange(8).repeat_interleave(4)
    features = torch.randn(32, 64)
    layer = torch.nn.Linear(64, 128)
    loss = SparsePairwiseLoss(mode, temperature)
    with torch.autocast("cpu", dtype=dtype):
        embeddings = layer(features)
        assert embeddings.dtype == dtype
        value = loss(embeddings, labels)
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
    # Same value as fp32 on the same (rounded) inputs, and close to the unrounded fp32 loss.
    torch.testing.assert_close(value, loss(embeddings.detach().float(), labels))
    full_precision = loss(layer(features), labels)
    tolerance = {torch.float16: 2e-2, torch.bfloat16: 1e-1}[dtype] * (0.04 / temperature)
    assert abs(value.item() - full_precision.item()) <= tolerance * max(1.0, abs(full_precision.item()))


def test_sparse_pairwise_is_stable_where_raw_exp_overflows():
    labels = torch.arange(4).repeat_interleave(2)
    x = clustered_batch(labels.tolist(), seed=1).float().requires_grad_(True)
    assert torch.isinf(torch.exp(torch.tensor(1.0) / 0.001))
    for mode in SP_MODES:
        value = SparsePairwiseLoss(mode, 0.001)(x, labels)
        (grad,) = torch.autograd.grad(value, x)
        assert torch.isfinite(value) and torch.isfinite(grad).all()


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_adasp_structure(layout):
    labels = torch.tensor(LAYOUTS[layout])
    x = clustered_batch(labels.tolist(), seed=7)
    selection = SparsePairwiseLoss("adasp", 0.04).select(x, labels)
    assert (selection.l >= selection.h - 1e-12).all()
    assert (selection.w[selection.h < 0] == 0).all() and (selection.h < 0).any()
    positive = selection.h >= 0
    assert positive.any()
    assert ((selection.w >= selection.h - 1e-12) & (selection.w <= selection.l + 1e-12))[positive].all()
    per_mode = {mode: SparsePairwiseLoss(mode, 0.04).per_identity(x, labels) for mode in SP_MODES}
    low = torch.minimum(per_mode["sp-h"], per_mode["sp-lh"]) - 1e-12
    high = torch.maximum(per_mode["sp-h"], per_mode["sp-lh"]) + 1e-12
    assert ((per_mode["adasp"] >= low) & (per_mode["adasp"] <= high)).all()
    assert (per_mode["sp-h"] >= per_mode["sp-lh"] - 1e-12).all()  # p^H <= p^LH: SP-H is the harder loss
    _, reference = ref_sparse_pairwise(x, labels.tolist(), 0.04, "adasp")
    for k, a in enumerate(selection.labels.tolist()):
        torch.testing.assert_close(selection.h[k], reference[a]["h"])
        torch.testing.assert_close(selection.l[k], reference[a]["l"])
        torch.testing.assert_close(selection.w[k], torch.as_tensor(reference[a]["w"], dtype=torch.float64))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_select_indices_match_bruteforce(layout):
    labels = LAYOUTS[layout]
    x = clustered_batch(labels, seed=9)
    selection = SparsePairwiseLoss("adasp", 0.04).select(x, torch.tensor(labels))
    _, reference = ref_sparse_pairwise(x, labels, 0.04, "adasp")
    s = lambda i, j: ref_similarity(x, i, j).item()  # noqa: E731
    ids = sorted(set(labels))
    assert selection.labels.tolist() == ids
    for k, a in enumerate(ids):
        rows = [i for i in range(len(labels)) if labels[i] == a]
        pairs = [(i, j) for i in rows for j in rows if i != j] or [(rows[0], rows[0])]
        hardest = min(pairs, key=lambda p: s(*p))
        assert sorted(selection.positive_pair[k].tolist()) == sorted(hardest)
        assert selection.positive_similarity[k].item() == pytest.approx(s(*hardest))

        def hardest_positive(i):
            return min((j for j in rows if j != i), key=lambda j: s(i, j), default=i)

        # Two-image classes tie between their two anchors: compare similarities, then the pairing.
        best = max(s(i, hardest_positive(i)) for i in rows)
        anchor, anchor_positive = selection.anchor[k].item(), selection.anchor_positive[k].item()
        assert anchor in rows and anchor_positive == hardest_positive(anchor)
        assert s(anchor, anchor_positive) == pytest.approx(best, abs=1e-12)
        assert selection.anchor_similarity[k].item() == pytest.approx(best, abs=1e-12)

        negative_id = max(reference[a]["n"], key=lambda b: reference[a]["n"][b].item())
        assert selection.negative_label[k].item() == negative_id
        cross = [(i, j) for i in rows for j in range(len(labels)) if labels[j] == negative_id]
        assert tuple(selection.negative_pair[k].tolist()) == max(cross, key=lambda p: s(*p))
    records = selection.to_records()
    assert len(records) == len(ids) and records[0]["labels"] == ids[0]


# ---------------------------------------------------------------- triplet and circle

TRIPLET_VARIANTS = {
    "hard": dict(margin=0.3, hard_mining=True, normalize=False),
    "soft": dict(margin=0.0, hard_mining=True, normalize=False),
    "weighted": dict(margin=0.3, hard_mining=False, normalize=False),
    "cosine": dict(margin=0.3, hard_mining=True, normalize=True),
    "weighted-soft-cosine": dict(margin=0.0, hard_mining=False, normalize=True),
}


@pytest.mark.parametrize("variant", sorted(TRIPLET_VARIANTS))
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_triplet_matches_bruteforce(variant, layout):
    labels = LAYOUTS[layout]
    kwargs = TRIPLET_VARIANTS[variant]
    x = clustered_batch(labels, seed=4)
    value, grad = value_and_grad(lambda x: TripletLoss(**kwargs)(x, torch.tensor(labels)), x)
    ref_value, ref_grad = value_and_grad(lambda x: ref_triplet(x, labels, **kwargs), x)
    torch.testing.assert_close(value, ref_value, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("variant", sorted(TRIPLET_VARIANTS))
def test_triplet_gradcheck(variant):
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 3, 2])
    x = clustered_batch(labels.tolist(), dim=5, seed=12).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: TripletLoss(**TRIPLET_VARIANTS[variant])(x, labels), (x,))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("margin,gamma", [(0.25, 128.0), (0.4, 16.0)])
def test_circle_matches_bruteforce(layout, margin, gamma):
    labels = LAYOUTS[layout]
    x = clustered_batch(labels, seed=6)
    value, grad = value_and_grad(lambda x: CircleLoss(margin, gamma)(x, torch.tensor(labels)), x)
    ref_value, ref_grad = value_and_grad(lambda x: ref_circle(x, labels, margin, gamma), x)
    # gamma * alpha * s reaches ~200: the reference's raw exps lose a few more digits than the LSE form.
    torch.testing.assert_close(value, ref_value, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-6, atol=1e-9)


def test_circle_gradcheck_away_from_detached_weights():
    """alpha_p and alpha_n are detached, so gradcheck the function with alphas frozen at x and check that
    the loss's backward equals that function's gradient."""
    labels = torch.tensor([0, 0, 1, 1, 2])
    x = clustered_batch(labels.tolist(), dim=4, seed=13)
    loss = CircleLoss(0.25, 4.0)
    value, grad = value_and_grad(lambda x: loss(x, labels), x)
    # Finite differences of the reference with alphas frozen at x (the function the backward differentiates).
    with torch.no_grad():
        z = F.normalize(x, dim=1)
        s0 = z @ z.T
    alpha_p, alpha_n = F.relu(1.25 - s0), F.relu(s0 + 0.25)

    def frozen(x):
        z = F.normalize(x, dim=1)
        s = z @ z.T
        total = 0
        for i in range(5):
            pos = [torch.exp(-4.0 * alpha_p[i, j] * (s[i, j] - 0.75)) for j in range(5) if j != i and labels[j] == labels[i]]
            neg = [torch.exp(4.0 * alpha_n[i, j] * (s[i, j] - 0.25)) for j in range(5) if labels[j] != labels[i]]
            total = total + (torch.log(1 + sum(pos) * sum(neg)) if pos else 0)
        return total / 5

    x_check = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(frozen, (x_check,))
    _, frozen_grad = value_and_grad(frozen, x)
    torch.testing.assert_close(grad, frozen_grad, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(value, frozen(x).detach())


# ---------------------------------------------------------------- bad input

ALL_LOSSES = {
    "adasp": lambda: SparsePairwiseLoss("adasp"),
    "sp-h": lambda: SparsePairwiseLoss("sp-h"),
    "triplet": lambda: TripletLoss(),
    "circle": lambda: CircleLoss(),
}


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
@pytest.mark.parametrize(
    "embeddings,labels,message",
    [
        (torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2]), "mismatched lengths"),
        (torch.randn(6, 4), torch.zeros(6, dtype=torch.long), "at least 2"),
        (torch.randn(6, 4).index_put_((torch.tensor([2]),), torch.tensor(float("nan"))), torch.tensor([0, 0, 1, 1, 2, 2]), "NaN or Inf"),
        (torch.randn(6, 4), torch.tensor([0.0, 0, 1, 1, 2, 2]), "integer"),
        (torch.randn(6, 4, 1), torch.tensor([0, 0, 1, 1, 2, 2]), "2-D"),
        (torch.randn(6, 4), torch.tensor([[0, 0, 1, 1, 2, 2]]), "1-D"),
        (torch.randint(0, 3, (6, 4)), torch.tensor([0, 0, 1, 1, 2, 2]), "floating-point"),
    ],
    ids=["length", "one-identity", "nan", "float-labels", "3d", "2d-labels", "int-embeddings"],
)
def test_bad_input_raises_value_error(name, embeddings, labels, message):
    with pytest.raises(ValueError, match=message):
        ALL_LOSSES[name]()(embeddings, labels)


def test_label_layout_is_computed_once_per_labels_tensor_and_in_place_version():
    """MGN's feature groups of one step share one torch.unique (a device-to-host wait on an accelerator)."""
    from reidlab.losses import label_layout

    labels = torch.tensor([5, 2, 5, 9, 2, 9])
    layout = label_layout(labels)
    assert layout.labels.tolist() == [2, 5, 9] and layout.inverse.tolist() == [1, 0, 1, 2, 0, 2] and layout.num_ids == 3
    assert label_layout(labels) is layout
    assert label_layout(labels.clone()) is not layout  # another tensor, even with the same values
    labels[0] = 7  # an in-place change bumps the version
    assert label_layout(labels).labels.tolist() == [2, 5, 7, 9]
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(SparsePairwiseLoss()(x, labels), SparsePairwiseLoss()(x, labels.clone()))


def test_value_checks_run_on_cpu_by_default_and_can_be_switched():
    """Finite-embedding checks read values: free on CPU, a stall on an accelerator (off there unless asked)."""
    from reidlab.losses import value_checks

    bad, labels = torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2])
    bad[2, 1] = float("inf")
    for name in sorted(ALL_LOSSES):
        loss = ALL_LOSSES[name]()
        with pytest.raises(ValueError, match="NaN or Inf"):
            loss(bad, labels)
        with value_checks(False):  # what an accelerator gets by default: the trainer's finite-loss check instead
            assert not torch.isfinite(loss(bad, labels))
            with value_checks(True), pytest.raises(ValueError, match="NaN or Inf"):
                loss(bad, labels)
        with pytest.raises(ValueError, match="NaN or Inf"):  # the previous setting is back
            loss(bad, labels)


def test_a_batch_without_positive_pairs_warns_and_can_be_made_an_error():
    import warnings

    from reidlab.losses import DegenerateBatchWarning

    unique = torch.arange(6)
    for name in sorted(ALL_LOSSES):
        with pytest.warns(DegenerateBatchWarning, match="no positive pair"):
            ALL_LOSSES[name]()(torch.randn(6, 4), unique)
        with warnings.catch_warnings():
            warnings.simplefilter("error", DegenerateBatchWarning)
            with pytest.raises(DegenerateBatchWarning, match="PKSampler k >= 2"):
                ALL_LOSSES[name]()(torch.randn(6, 4), unique)
            ALL_LOSSES[name]()(torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 5]))  # one pair is enough


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="unknown sparse pairwise mode"):
        SparsePairwiseLoss("sp")
    with pytest.raises(ValueError, match="temperature"):
        SparsePairwiseLoss(temperature=0)
    with pytest.raises(ValueError, match="margin"):
        TripletLoss(margin=-1)
    with pytest.raises(ValueError, match="unknown metric loss"):
        build_loss(metric="arcface")


# ---------------------------------------------------------------- combiner


def mgn_like_outputs(batch=8, num_classes=4, num_scenes=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {
        "features": [torch.randn(batch, 6, generator=generator, requires_grad=True) for _ in range(5)],
        "logits": [torch.randn(batch, num_classes, generator=generator, requires_grad=True) for _ in range(8)],
        "global_feature": torch.randn(batch, 6, generator=generator),
        "scene_logits": torch.randn(batch, num_scenes, generator=generator, requires_grad=True),
    }


def test_combined_loss_sums_weighted_terms_and_reports_each():
    outputs = mgn_like_outputs()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    scenes = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    criterion = build_loss(ce_weight=1.0, label_smoothing=0.1, metric="adasp", metric_weight=0.1, scene_objective="reverse")
    total, logs = criterion(outputs, labels, scene_labels=scenes)
    ce = sum(F.cross_entropy(logits, labels, label_smoothing=0.1) for logits in outputs["logits"])
    adasp = sum(SparsePairwiseLoss("adasp", 0.04)(f, labels) for f in outputs["features"]) / 5
    scene = F.cross_entropy(outputs["scene_logits"], scenes)
    torch.testing.assert_close(total, ce + 0.1 * adasp + scene)
    assert set(logs) == {"ce", "ce_accuracy", "adasp", "scene", "scene_accuracy", "total"}
    torch.testing.assert_close(logs["adasp"], adasp.detach())
    assert all(not value.requires_grad for value in logs.values())
    total.backward()
    assert all(f.grad is not None for f in outputs["features"])


def test_combined_loss_single_group_custom_callable_and_errors():
    labels = torch.tensor([0, 0, 1, 1])
    features = torch.randn(4, 5)
    criterion = CombinedLoss([LossTerm("tri", TripletLoss(margin=0.0), 2.0), LossTerm("zero", TripletLoss(), 0.0)])
    total, logs = criterion({"features": features}, labels)
    torch.testing.assert_close(total, 2.0 * TripletLoss(margin=0.0)(features, labels))
    assert set(logs) == {"tri", "total"}
    with pytest.raises(KeyError, match="scene_logits"):
        build_loss(scene_objective="reverse", ce_weight=0, metric=None)({"features": features}, labels)
    with pytest.raises(ValueError, match="scene_labels"):
        build_loss(scene_objective="reverse", ce_weight=0, metric=None)({"scene_logits": torch.randn(4, 2)}, labels)
    with pytest.raises(ValueError, match="unique names"):
        CombinedLoss([LossTerm("a", TripletLoss()), LossTerm("a", TripletLoss())])
    with pytest.raises(ValueError, match="group_reduction"):
        LossTerm("a", TripletLoss(), group_reduction="max")


@pytest.mark.parametrize("objective", ["confusion", "entropy"])
def test_confusion_scene_objectives_add_the_backbone_term(objective):
    from reidlab.losses import SCENE_PUSH_LOSSES

    outputs = mgn_like_outputs()
    outputs["scene_confusion_logits"] = torch.randn(8, 3, generator=torch.Generator().manual_seed(2))
    labels, scenes = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    total, logs = build_loss(ce_weight=0, metric=None, scene_objective=objective)(outputs, labels, scenes)
    confusion = SCENE_PUSH_LOSSES[objective][0](outputs["scene_confusion_logits"])
    torch.testing.assert_close(total, F.cross_entropy(outputs["scene_logits"], scenes) + confusion)
    assert set(logs) == {"scene", "scene_accuracy", f"scene_{objective}", "total"}
    with pytest.raises(ValueError, match="unknown scene objective 'flip'"):
        build_loss(scene_objective="flip")


def test_group_weights_weigh_each_group_and_log_the_weighted_mean():
    outputs = mgn_like_outputs()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    jpm = (0.5, 0.125, 0.125, 0.125, 0.125)
    criterion = build_loss(ce_weight=0, metric="adasp", metric_weight=0.7, group_weights={"features": jpm})
    total, logs = criterion(outputs, labels)
    per_group = [SparsePairwiseLoss("adasp", 0.04)(f, labels) for f in outputs["features"]]
    torch.testing.assert_close(total, 0.7 * sum(w * v for w, v in zip(jpm, per_group)))
    torch.testing.assert_close(logs["adasp"], sum(w * v for w, v in zip(jpm, per_group)).detach() / sum(jpm))
    assert [logs[f"adasp_{g}"].item() for g in range(5)] == pytest.approx([v.item() for v in per_group])
    uniform = build_loss(ce_weight=1.0, metric=None, group_weights={"logits": (0.125,) * 8})
    total, logs = uniform(outputs, labels)
    ce = [F.cross_entropy(x, labels, label_smoothing=0.1) for x in outputs["logits"]]
    torch.testing.assert_close(total, 0.125 * sum(ce))
    assert set(logs) == {"ce", "ce_accuracy", "total"}  # uniform weights: no per-group entries
    with pytest.raises(ValueError, match="3 group weights, but model output 'features' has 5 groups"):
        build_loss(ce_weight=0, group_weights={"features": (1, 1, 1)})(outputs, labels)
    with pytest.raises(ValueError, match="positive sum"):
        LossTerm("a", TripletLoss(), group_weights=(0.5, -0.5))


@pytest.mark.parametrize("metric", ["adasp", "sp-h", "sp-lh", "triplet", "circle"])
def test_build_loss_metric_options(metric):
    criterion = build_loss(ce_weight=0, metric=metric, temperature=0.05, margin=0.2)
    (term,) = criterion.terms
    assert term.name == metric and term.source == "features"
    if metric in ("triplet", "circle"):
        assert term.loss.margin == 0.2
    else:
        assert term.loss.temperature == 0.05 and term.loss.mode == metric
    features = torch.randn(8, 6)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    torch.testing.assert_close(criterion({"features": features}, labels)[0], term.loss(features, labels))


def test_partial_cross_entropy_is_the_ce_term():
    ce = functools.partial(F.cross_entropy, label_smoothing=0.1)
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    (term,) = build_loss(metric=None, label_smoothing=0.1).terms
    torch.testing.assert_close(term.loss(logits, labels), ce(logits, labels))


def test_registry_adds_a_metric_loss_in_one_function():
    """A new metric loss is one registered class (its options declared) plus its test: the config offers it, passes
    it its options (also through loss.kwargs) and refuses options it does not take."""
    from reidlab.engine import ConfigError, load_config
    from reidlab.losses import METRIC_LOSSES, build_loss, register_metric_loss

    @register_metric_loss("test-contrastive", "margin", "scale")
    class Contrastive(torch.nn.Module):
        def __init__(self, margin: float = 0.5, scale: float = 1.0):
            super().__init__()
            self.margin, self.scale = margin, scale

        def forward(self, embeddings, labels):
            distance = torch.cdist(embeddings, embeddings)
            same = labels[:, None] == labels[None, :]
            return self.scale * torch.where(same, distance, (self.margin - distance).clamp(min=0)).mean()

    try:
        config = load_config("synth_cpu", {"loss.metric": "test-contrastive", "loss.margin": 0.2,
                                           "loss.kwargs": {"scale": 3.0}})
        loss = build_loss(metric=config.loss.metric, margin=config.loss.margin, temperature=config.loss.temperature,
                          metric_kwargs=config.loss.kwargs)
        term = loss.terms[-1].loss
        assert isinstance(term, Contrastive) and (term.margin, term.scale) == (0.2, 3.0)  # no temperature reached it
        with pytest.raises(ConfigError, match=r"'loss.kwargs' has \['gamma'\], which loss.metric=test-contrastive does"):
            load_config("synth_cpu", {"loss.metric": "test-contrastive", "loss.kwargs": {"gamma": 2.0}})
        with pytest.raises(ValueError, match="already registered"):
            register_metric_loss("test-contrastive")(Contrastive)
    finally:
        METRIC_LOSSES.pop("test-contrastive")
    with pytest.raises(ConfigError, match="invalid value 'test-contrastive'"):
        load_config("synth_cpu", {"loss.metric": "test-contrastive"})
