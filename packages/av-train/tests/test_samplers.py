import pytest

from av_train.data.samplers import DurationBatchSampler, RandomBatchSampler, WeightedBatchSampler


def _indices(sampler):
    return [[i for i, _ in batch] for batch in sampler]


def test_duration_budget_respected_and_every_index_once():
    durations = [0.5, 2.9, 1.0, 1.2, 0.7, 3.5, 1.1, 0.9]
    s = DurationBatchSampler(durations, max_seconds=3.0, shuffle=True, seed=1)
    batches = _indices(s)
    assert sorted(i for b in batches for i in b) == list(range(len(durations)))
    for b in batches:
        # padded duration = longest x size; a clip longer than the budget stands alone
        assert max(durations[i] for i in b) * len(b) <= 3.0 or len(b) == 1
    assert len(s) == len(batches)


def test_duration_batches_hand_checked():
    # sorted: 0.5(0) 0.7(4) 0.9(7) 1.0(2) | 1.1(6) 1.2(3) | 2.9(1) | 3.5(5)
    s = DurationBatchSampler([0.5, 2.9, 1.0, 1.2, 0.7, 3.5, 1.1, 0.9], max_seconds=4.0, shuffle=False)
    assert _indices(s) == [[0, 4, 7, 2], [6, 3], [1], [5]]


def test_order_is_deterministic_per_seed_and_epoch_and_carries_the_epoch():
    a, b = RandomBatchSampler(50, 8, seed=3), RandomBatchSampler(50, 8, seed=3)
    assert _indices(a) == _indices(b)
    first = _indices(a)
    a.set_epoch(1)
    assert _indices(a) != first
    assert {e for batch in a for _, e in batch} == {1}
    b.set_epoch(1)
    assert _indices(a) == _indices(b)
    assert _indices(RandomBatchSampler(50, 8, seed=4)) != first


def test_length_grouping_sorts_pools_and_still_reshuffles():
    """length_grouping: every clip once per epoch, the same number of batches as plain shuffling, each batch
    a run of its pool sorted by duration (so the padding shrinks), and membership changes between epochs."""
    import random

    rng = random.Random(0)
    durations = [rng.uniform(0.6, 3.2) for _ in range(203)]
    plain, grouped = RandomBatchSampler(203, 16, seed=5), RandomBatchSampler(203, 16, seed=5, durations=durations,
                                                                                group=4)
    batches = _indices(grouped)
    assert len(batches) == len(grouped) == len(plain) == 13
    assert sorted(i for b in batches for i in b) == list(range(203))
    assert sorted(map(len, batches)) == [11] + [16] * 12

    # each pool of 4 x 16 clips of the shuffled order is sorted and cut: rebuild it by hand
    import torch

    gen = torch.Generator().manual_seed(5 * 100_003 + 0)
    order = torch.randperm(203, generator=gen).tolist()
    expected = []
    for start in range(0, 203, 64):
        members = sorted(order[start:start + 64], key=lambda i: durations[i])
        expected += [members[k:k + 16] for k in range(0, len(members), 16)]
    assert sorted(map(tuple, batches)) == sorted(map(tuple, expected))
    assert batches != expected  # the batch order is shuffled too

    def padding(bs):  # padded seconds / real seconds
        return sum(max(durations[i] for i in b) * len(b) for b in bs) / sum(durations)

    assert padding(batches) < 0.85 * padding(_indices(plain))
    grouped.set_epoch(1)
    assert {tuple(b) for b in _indices(grouped)}.isdisjoint(map(tuple, batches))
    with pytest.raises(ValueError, match="one duration per clip"):
        RandomBatchSampler(10, 2, durations=[1.0] * 9, group=2)


def test_weighted_sampler_follows_weights():
    weights = [0.0] * 10 + [1.0] * 10
    s = WeightedBatchSampler(weights, batch_size=5, seed=0)
    drawn = [i for b in _indices(s) for i in b]
    assert len(drawn) == 20 and all(i >= 10 for i in drawn)
    with pytest.raises(ValueError, match="speaker_weights"):
        WeightedBatchSampler([0.0, 0.0], 2)


def test_lightning_epoch_hook_reaches_the_batch_sampler():
    # Lightning calls set_epoch only on dataloader.sampler and dataloader.batch_sampler.sampler.
    from lightning.fabric.utilities.data import _set_sampler_epoch
    from torch.utils.data import DataLoader

    s = RandomBatchSampler(10, 4, seed=0)
    _set_sampler_epoch(DataLoader(list(range(10)), batch_sampler=s, collate_fn=list), 3)
    assert s.epoch == 3 and {e for b in s for _, e in b} == {3}


@pytest.mark.parametrize("make", [
    lambda: RandomBatchSampler(10, 3, seed=2),                       # 4 batches
    lambda: RandomBatchSampler(10, 3, seed=2, durations=[0.1 * i for i in range(10)], group=2),  # 4 batches
    lambda: WeightedBatchSampler([1.0] * 7, 2, seed=2),             # 4 batches
    lambda: DurationBatchSampler([0.5, 2.9, 1.0, 1.2, 0.7, 3.5, 1.1, 0.9], 4.0, seed=2),  # 4 batches
])
@pytest.mark.parametrize("world", [2, 3])
def test_shards_cover_every_batch_with_equal_step_counts(make, world):
    full = _indices(make())
    shards = [_indices(make().shard(world, r)) for r in range(world)]
    steps = -(-len(full) // world)
    assert all(len(sh) == steps for sh in shards)           # DDP needs the same number of steps per rank
    assert all(len(make().shard(world, r)) == steps for r in range(world))
    # rank r takes batches r, r + world, ... of the padded list; padding repeats the first batches
    padded = [full[k % len(full)] for k in range(steps * world)]
    for r, sh in enumerate(shards):
        assert sh == padded[r::world]
    assert sorted(map(tuple, full)) == sorted({tuple(b) for sh in shards for b in sh})


def test_bad_shard_is_an_error():
    with pytest.raises(ValueError, match="rank 2 of 2"):
        RandomBatchSampler(4, 2).shard(2, 2)
