"""Batch samplers that are deterministic per (seed, epoch) and tell the dataset the epoch.

Each batch is a list of ``(index, epoch)`` pairs: the dataset draws its random augmentation from
(seed, epoch, index), so results do not depend on the number of workers, and persistent workers
(which hold their own copy of the dataset) still see a new epoch.

Lightning calls ``set_epoch`` at the start of every epoch (also after a resume) only on
``dataloader.sampler`` and ``dataloader.batch_sampler.sampler``, never on the batch sampler itself:
so each batch sampler exposes itself as its ``sampler``.

Distributed training (DDP): Lightning cannot inject a DistributedSampler into a custom batch
sampler, so the pipeline sets ``use_distributed_sampler=False`` and the batch samplers shard
themselves with ``shard(num_replicas, rank)``: the full batch list (identical on every rank, same
seed) is padded by repeating its first batches to a multiple of ``num_replicas`` and rank ``r``
takes batches ``r, r + n, ...``. Every rank then runs the same number of steps (DDP needs that),
and each batch keeps the per-device size or duration budget.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class _EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    def __init__(self, seed: int):
        self.seed = seed
        self.epoch = 0
        self.num_replicas, self.rank = 1, 0
        # Lightning's epoch hook looks for ``batch_sampler.sampler.set_epoch`` (see module doc).
        self.sampler = self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shard(self, num_replicas: int, rank: int) -> "_EpochBatchSampler":
        """Yield only this rank's share of the batches (see module doc)."""
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"bad shard: rank {rank} of {num_replicas}")
        self.num_replicas, self.rank = num_replicas, rank
        return self

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)

    def _batches(self) -> list[list[int]]:
        raise NotImplementedError

    def _num_batches(self) -> int:
        raise NotImplementedError

    def _sharded(self, batches: list[list[int]]) -> list[list[int]]:
        n = self.num_replicas
        if n == 1 or not batches:
            return batches
        total = -(-len(batches) // n) * n
        padded = [batches[k % len(batches)] for k in range(total)]
        return padded[self.rank :: n]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self._sharded(self._batches()):
            yield [(i, self.epoch) for i in batch]

    def __len__(self) -> int:
        return -(-self._num_batches() // self.num_replicas)


class RandomBatchSampler(_EpochBatchSampler):
    """Shuffled fixed-size batches (the last one may be smaller).

    With ``durations`` and ``group`` > 0 (the ``length_grouping`` option): each epoch's shuffled order is cut
    into pools of ``group`` x ``batch_size`` clips, each pool is sorted by duration and cut into batches, and
    the batch order is shuffled. Batches hold clips of similar length (less padding) and still change
    membership every epoch; the number of batches is the same as without grouping (every pool but the last
    is a whole number of batches).
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, durations: Sequence[float] | None = None,
                 group: int = 0):
        super().__init__(seed)
        self.n, self.batch_size = n, batch_size
        if group and (durations is None or len(durations) != n):
            raise ValueError("length grouping needs one duration per clip")
        self.durations, self.group = (list(durations) if group else None), group

    def _batches(self) -> list[list[int]]:
        gen = self._generator()
        order = torch.randperm(self.n, generator=gen).tolist()
        if not self.group:
            return [order[k : k + self.batch_size] for k in range(0, self.n, self.batch_size)]
        durations, pool = self.durations, self.group * self.batch_size
        batches = []
        for start in range(0, self.n, pool):
            # sorted by duration; ties keep the shuffled order (sort is stable)
            members = sorted(order[start : start + pool], key=lambda i: durations[i])
            batches += [members[k : k + self.batch_size] for k in range(0, len(members), self.batch_size)]
        return [batches[k] for k in torch.randperm(len(batches), generator=gen).tolist()]

    def _num_batches(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size


class WeightedBatchSampler(_EpochBatchSampler):
    """``n`` draws with replacement, probability proportional to ``weights`` (speaker_weights)."""

    def __init__(self, weights: Sequence[float], batch_size: int, seed: int = 0):
        super().__init__(seed)
        self.weights = torch.as_tensor(weights, dtype=torch.double)
        if (self.weights < 0).any() or self.weights.sum() <= 0:
            raise ValueError("speaker_weights must be >= 0 and not all zero")
        self.batch_size = batch_size

    def _batches(self) -> list[list[int]]:
        n = len(self.weights)
        draws = torch.multinomial(self.weights, n, replacement=True, generator=self._generator()).tolist()
        return [draws[k : k + self.batch_size] for k in range(0, n, self.batch_size)]

    def _num_batches(self) -> int:
        return (len(self.weights) + self.batch_size - 1) // self.batch_size


class DurationBatchSampler(_EpochBatchSampler):
    """Batches whose padded duration (longest clip x batch size) stays within ``max_seconds``.

    Examples are sorted by duration and cut greedily into batches (little padding); the batch
    order is shuffled per epoch when ``shuffle``. A clip longer than the budget is a batch alone.
    """

    def __init__(self, durations: Sequence[float], max_seconds: float, shuffle: bool = True, seed: int = 0,
                 max_batch_size: int | None = None):
        super().__init__(seed)
        self.shuffle = shuffle
        self._fixed = self._make(list(durations), max_seconds, max_batch_size)

    @staticmethod
    def _make(durations: list[float], max_seconds: float, max_batch_size: int | None) -> list[list[int]]:
        order = sorted(range(len(durations)), key=lambda i: (durations[i], i))
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0.0
        for i in order:
            d = durations[i]
            full = max_batch_size is not None and len(current) >= max_batch_size
            if current and (max(longest, d) * (len(current) + 1) > max_seconds or full):
                batches.append(current)
                current, longest = [], 0.0
            current.append(i)
            longest = max(longest, d)
        if current:
            batches.append(current)
        return batches

    def _batches(self) -> list[list[int]]:
        if not self.shuffle:
            return self._fixed
        return [self._fixed[k] for k in torch.randperm(len(self._fixed), generator=self._generator()).tolist()]

    def _num_batches(self) -> int:
        return len(self._fixed)
