"""HBReID hard batch mining: batches of mutually similar identities, by classifier-weight similarity.

Warm-up epochs use the random P x K plan of `PKSampler`. After that, a *round* draws one random anchor class,
ranks every class by the cosine similarity of its classifier weight row to the anchor's row, and cuts the
ranked list into consecutive groups of P classes; each group becomes one batch of K images per class (drawn
anew for every batch, with replacement only for classes with fewer than K images). Similar classes therefore
share batches and the batch-hard negatives become globally hard. Two plans (``plan``):

- ``"rounds"`` (the default): rounds repeat until the epoch has as many batches as the random plan, so the
  epoch length (and an lr schedule built on it) does not change when mining starts, and an epoch still holds
  about as many images as the train set. A round's last group of fewer than P classes is not used
  (``short_group_classes`` of them per round; the next round draws them again in other groups).
- ``"single_round"``: HBReID's literal plan, one round per epoch: every class once, C / P batches of
  P x K = C x K images per epoch (Market-1501 at K = 4: ~3,000 of its 12,936 train images), the last, short
  group kept as a smaller batch. Epochs then get shorter when mining starts, and a learning-rate schedule
  built on the random plan's epoch length does not run to its end.

The trainer calls `update_weights(classifier_weight)` at each epoch start. The plan depends only on
(seed, epoch, weights): every DDP rank builds the same plan from the same (synchronised) weights and keeps
its share, exactly as `PKSampler` does.

Scale: a round ranks all C classes against one anchor, one [C, L] x [L] product and one sort of C values; no
C x C matrix is ever formed. The weights are kept once, normalised, in float64 (for rankings that do not
depend on the input's precision): at 100,000 identities x 2048 that is 1.6 GB, and a round takes a fraction of
a second. (A k-NN index cannot shorten a round: the round cuts the *whole* ranking into groups, so every class's
position is needed.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .pk import PKSampler

HARD_PLANS = ("rounds", "single_round")


class HardBatchSampler(PKSampler):
    """P x K batches of similar identities after `warmup_epochs` random epochs (HBReID, docs/design.md, "HBReID parts").

    ``pids`` must be the relabelled train identities 0..C-1, so that pid ``c`` is row ``c`` of the
    classifier weight matrix given to ``update_weights``.
    """

    def __init__(
        self,
        pids: Sequence[int],
        p: int,
        k: int,
        warmup_epochs: int = 1,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        plan: str = "rounds",
    ) -> None:
        if plan not in HARD_PLANS:
            raise ValueError(f"plan must be one of {HARD_PLANS}, got {plan!r}")
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        self.class_weights: np.ndarray | None = None
        self.warmup_epochs = 1 << 62  # PKSampler.__init__ checks the random plan, which has the mined plan's length
        super().__init__(pids, p, k, seed=seed, rank=rank, world_size=world_size, drop_last=drop_last)
        self.warmup_epochs = warmup_epochs
        self.mining_plan = plan
        self.clear_plan()
        self.classes = np.asarray(list(self.images_of), dtype=np.int64)
        if self.classes.min() < 0:
            raise ValueError("HardBatchSampler needs relabelled train pids >= 0 (rows of the classifier weights)")

    def update_weights(self, weight_matrix: torch.Tensor | np.ndarray) -> None:
        """Set the classifier weights [C, L] (row c = identity c) that rank the classes from now on."""
        if torch.is_tensor(weight_matrix):
            weight_matrix = weight_matrix.detach().cpu().numpy()
        weights = np.array(weight_matrix, dtype=np.float64)  # a copy: normalised in place below
        if weights.ndim != 2 or weights.shape[0] <= self.classes.max():
            raise ValueError(
                f"classifier weights must be [num_classes, dim] with a row for every train pid "
                f"(max pid {int(self.classes.max())}), got shape {tuple(weights.shape)}"
            )
        if not np.isfinite(weights).all():
            raise ValueError("classifier weights contain NaN or inf; cannot rank classes by similarity")
        # in place, and the norms without a [C, L] temporary: one copy of the weights in all
        weights /= np.maximum(np.sqrt(np.einsum("ij,ij->i", weights, weights)), 1e-12)[:, None]
        self.class_weights = weights
        if not np.array_equal(self.classes, np.arange(len(weights))):
            self.class_weights = self.class_weights[self.classes]  # rows in the order of self.classes
        self.clear_plan()

    def is_mining(self, epoch: int) -> bool:
        return epoch >= self.warmup_epochs

    def plan(self, epoch: int) -> list[list[int]]:
        random_plan = super().plan(epoch)
        if not self.is_mining(epoch):
            return random_plan
        if self.class_weights is None:
            raise RuntimeError(
                f"HardBatchSampler epoch {epoch} mines hard batches but has no classifier weights: "
                "call update_weights(model classifier weight) before iterating"
            )
        if self.mining_plan == "single_round":
            return self.mined_plan(epoch, num_batches=None)
        return self.mined_plan(epoch, num_batches=len(random_plan))

    @property
    def short_group_classes(self) -> int:
        """Classes in a round's last group of fewer than P: unused by ``"rounds"``, a smaller batch in ``"single_round"``."""
        return len(self.classes) % self.p

    def mined_plan(self, epoch: int, num_batches: int | None) -> list[list[int]]:
        """Batches from rounds of similarity-sorted classes (see the module docstring): ``num_batches`` full
        batches from as many rounds as it takes, or (None) one round including its short last group."""
        rng = np.random.default_rng([self.seed, epoch, 1])  # a stream apart from the random plan's
        unit = self.class_weights  # row i: class self.classes[i]
        single_round = num_batches is None
        last_start = len(self.classes) if single_round else len(self.classes) - self.p + 1
        batches: list[list[int]] = []
        while single_round or len(batches) < num_batches:
            anchor = rng.integers(len(self.classes))
            order = self.classes[np.argsort(-(unit @ unit[anchor]), kind="stable")]
            for start in range(0, last_start, self.p):
                batch = []
                for pid in order[start : start + self.p]:
                    images = self.images_of[int(pid)]
                    batch.extend(rng.choice(images, size=self.k, replace=len(images) < self.k).tolist())
                batches.append(batch)
                if len(batches) == num_batches:
                    break
            if single_round:
                break
        return batches

    def state_dict(self) -> dict:
        return {**super().state_dict(), "warmup_epochs": self.warmup_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.warmup_epochs = int(state.get("warmup_epochs", self.warmup_epochs))
        super().load_state_dict(state)
