"""``TwoStreamBatchSampler``: every batch has ``labeled_bs`` labelled and ``unlabeled_bs`` unlabelled images.

Semi-supervised methods (CTS, MCSC; SSL4MIS's sampler of the same name) train on batches of
a fixed labelled share: the first ``labeled_bs`` indices of each batch come from the labelled
subset, the rest from the unlabelled one. An *epoch* is one pass over the labelled indices
(``len(labeled) // labeled_bs`` batches, the incomplete last batch dropped); the unlabelled
indices form an endless stream, reshuffled at every pass over them.

Deterministic and resumable: the order of epoch ``e`` depends only on ``(seed, e)`` and the
unlabelled stream on ``seed`` and its position, so :meth:`state_dict` (``epoch`` and the batches
already served in it) and :meth:`load_state_dict` resume exactly where an interrupted run
stopped. ``seed`` is an int or drawn once from ``generator``. A completed pass advances the
epoch by itself (``set_epoch`` sets it explicitly, as with ``DistributedSampler``).

DDP: :meth:`shard` ``(rank, world)`` gives rank ``rank``'s sampler. The ranks walk the same
permutations; batch ``b`` of rank ``r`` takes the ``(b * world + r)``-th chunk of ``labeled_bs``
labelled indices and the same chunk of the unlabelled stream, so the ranks' batches are
disjoint, each keeps the labelled share, and together they form a global batch of ``world``
times the per-rank batch (an epoch has ``len(labeled) // (labeled_bs * world)`` batches).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

__all__ = ["TwoStreamBatchSampler"]


class TwoStreamBatchSampler(Sampler[list[int]]):
    """Batches of ``labeled_bs`` labelled then ``unlabeled_bs`` unlabelled dataset indices.

    Args:
        labeled: indices of the labelled images (e.g. the first 136 ACDC slices for 7 cases).
        unlabeled: indices of the unlabelled images (disjoint from ``labeled``).
        labeled_bs / unlabeled_bs: the two shares of a batch (MCSC 2 + 2, CTS 8 + 8).
        seed: an int; or ``generator``: a ``torch.Generator`` from which one seed is drawn.
    """

    def __init__(
        self,
        labeled: Sequence[int],
        unlabeled: Sequence[int],
        labeled_bs: int,
        unlabeled_bs: int,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ):
        self.labeled, self.unlabeled = [int(i) for i in labeled], [int(i) for i in unlabeled]
        if labeled_bs < 1 or unlabeled_bs < 0:
            raise ValueError(f"labeled_bs must be >= 1 and unlabeled_bs >= 0, got {labeled_bs} and {unlabeled_bs}")
        if len(self.labeled) < labeled_bs:
            raise ValueError(
                f"labeled has {len(self.labeled)} indices, fewer than labeled_bs={labeled_bs}; "
                "label more images or lower labeled_bs"
            )
        if unlabeled_bs and not self.unlabeled:
            raise ValueError("unlabeled is empty but unlabeled_bs > 0; pass unlabeled indices or unlabeled_bs=0")
        overlap = set(self.labeled) & set(self.unlabeled)
        if overlap:
            raise ValueError(f"labeled and unlabeled share indices {sorted(overlap)[:5]}; they must be disjoint")
        if len(set(self.labeled)) != len(self.labeled):
            raise ValueError("labeled has repeated indices")
        self.labeled_bs, self.unlabeled_bs = int(labeled_bs), int(unlabeled_bs)
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator).item()) if generator is not None else 0
        self.seed, self.epoch, self.batch = int(seed), 0, 0
        self.rank, self.world = 0, 1

    def __len__(self) -> int:
        return len(self.labeled) // (self.labeled_bs * self.world)

    def shard(self, rank: int, world: int) -> TwoStreamBatchSampler:
        """Rank ``rank`` of ``world``'s sampler: the same streams, every ``world``-th chunk (module docstring)."""
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"need 0 <= rank < world, got rank={rank}, world={world}")
        if len(self.labeled) < self.labeled_bs * world:
            raise ValueError(
                f"labeled has {len(self.labeled)} indices, fewer than labeled_bs x world = "
                f"{self.labeled_bs} x {world}; label more images or lower labeled_bs"
            )
        out = TwoStreamBatchSampler(self.labeled, self.unlabeled, self.labeled_bs, self.unlabeled_bs, seed=self.seed)
        out.rank, out.world = int(rank), int(world)
        out.epoch, out.batch = self.epoch, self.batch
        return out

    def _perm(self, stream: int, index: int, n: int) -> list[int]:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + stream * 7_919 + index) % (2**63))
        return torch.randperm(n, generator=g).tolist()

    def _unlabeled_at(self, start: int, count: int) -> list[int]:
        n, out, cache = len(self.unlabeled), [], {}
        for u in range(start, start + count):
            p = u // n
            if p not in cache:
                cache[p] = self._perm(1, p, n)
            out.append(self.unlabeled[cache[p][u % n]])
        return out

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        order = self._perm(0, epoch, len(self.labeled))
        for b in range(self.batch, len(self)):
            chunk = b * self.world + self.rank  # this rank's chunk of the global batch b
            lab = [self.labeled[i] for i in order[chunk * self.labeled_bs : (chunk + 1) * self.labeled_bs]]
            unl = (
                self._unlabeled_at(
                    ((epoch * len(self) + b) * self.world + self.rank) * self.unlabeled_bs, self.unlabeled_bs
                )
                if self.unlabeled_bs
                else []
            )
            self.batch = b + 1
            yield lab + unl
        self.epoch, self.batch = epoch + 1, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.batch = int(epoch), 0

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch, self.batch = int(state["seed"]), int(state["epoch"]), int(state["batch"])
