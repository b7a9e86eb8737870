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


def test_weighted_sampler_follows_weights():
    weights = [0.0] * 10 + [1.0] * 10
    s = WeightedBatchSampler(weights, batch_size=5, seed=0)
    drawn = [i for b in _indices(s) for i in b]
    assert len(drawn) == 20 and all(i >= 10 for i in drawn)
    with pytest.raises(ValueError, match="speaker_weights"):
        WeightedBatchSampler([0.0, 0.0], 2)
