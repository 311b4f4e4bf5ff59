import torch

from nefs.keyed import key, keyed_subset, keyed_uniform


def test_key_is_deterministic_and_order_sensitive():
    assert key(1, 2, 3) == key(1, 2, 3)
    assert key(1, 2, 3) != key(3, 2, 1)
    assert 0 <= key(2**40, 5) < 2**63


def test_rows_depend_only_on_their_own_key():
    seeds = torch.tensor([0, 0, 1, 1])
    idx = torch.tensor([10, 11, 10, 11])
    full = keyed_uniform(seeds, idx, step=3, n=100)
    alone = keyed_uniform(seeds[2:3], idx[2:3], step=3, n=100)
    assert torch.equal(full[2], alone[0])
    assert not torch.equal(full[0], full[1]) and not torch.equal(full[0], full[2])
    assert not torch.equal(full, keyed_uniform(seeds, idx, step=4, n=100))
    assert 0 <= full.min() and full.max() < 1
    assert abs(full.mean().item() - 0.5) < 0.05


def test_subset_is_distinct_indices():
    s = keyed_subset(torch.tensor([0, 1]), torch.tensor([0, 1]), step=0, n=50, k=20)
    assert s.shape == (2, 20)
    for row in s:
        assert len(set(row.tolist())) == 20 and row.max() < 50
