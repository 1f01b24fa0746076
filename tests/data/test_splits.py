import torch

from src.data.splits import split_indices


def test_split_is_deterministic_disjoint_and_complete():
    train, val = split_indices(1000, 0.1, "random", seed=3)
    again_train, again_val = split_indices(1000, 0.1, "random", seed=3)
    assert torch.equal(train, again_train) and torch.equal(val, again_val)
    assert len(val) == 100 and len(set(train.tolist()) | set(val.tolist())) == 1000
    tail_train, tail_val = split_indices(1000, 0.1, "tail", seed=0)
    assert tail_val.tolist() == list(range(900, 1000))
    head_train, head_val = split_indices(1000, 0.1, "head", seed=0)
    assert head_val.tolist() == list(range(100))
