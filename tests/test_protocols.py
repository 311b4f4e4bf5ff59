"""evaluate.protocol: each party's split of its INR dataset (tasks/protocols.py), scaled to a small store."""
import numpy as np
import pytest

from nefs.errors import FitnefError
from tasks.protocols import protocol_splits

from test_weight_space import make_store


def test_the_parties_splits_on_a_scaled_mnist_store(tmp_path):
    store = make_store(tmp_path / "s", rows=280, seeds=2, classes=4, chunk=40, dataset={"name": "MNIST"})
    rows = np.arange(280)    # 140 signals x 2 seeds; MNIST's 70000 scaled by 140 / 70000
    sig, seed = store.signal_idx, store.seed
    nfn, info = protocol_splits(store, rows, "nfn", (0.8, 0.1, 0.1), 0)
    assert info == {"protocol": "nfn", "cuts": [90, 100], "scaled": True}
    assert set(sig[nfn["train"]]) == set(range(90)) and set(seed[nfn["train"]]) == {0, 1}   # copies train
    assert set(sig[nfn["val"]]) == set(range(90, 100)) and set(seed[nfn["val"]]) == {0}     # originals only
    assert set(sig[nfn["test"]]) == set(range(100, 140)) and set(seed[nfn["test"]]) == {0}
    dws, info = protocol_splits(store, rows, "dwsnets", (0.8, 0.1, 0.1), 0)
    assert info["train_images"] == 120 and info["val_images"] == 10
    assert set(seed[np.concatenate(list(dws.values()))]) == {0}                           # one INR per image
    assert set(sig[dws["test"]]) == set(range(120, 140)) and len(dws["train"]) == 110
    assert not set(sig[dws["val"]]) & set(sig[dws["train"]]) and max(sig[dws["val"]]) < 120
    arena, info = protocol_splits(store, rows, "arena", (0.8, 0.1, 0.1), 0)
    assert info["cuts"] == [220, 240]                                                    # by NeF index (rows)
    assert arena["val"].tolist() == list(range(220, 240)) and arena["test"].tolist() == list(range(240, 280))
    std, _ = protocol_splits(store, rows, "standard", (0.8, 0.1, 0.1), 0)
    assert not set(sig[std["train"]]) & set(sig[std["test"]])


def test_unknown_protocols_and_datasets_are_one_line(tmp_path):
    store = make_store(tmp_path / "s", rows=40, seeds=1, dataset={"name": "digits"})
    with pytest.raises(FitnefError, match="allowed standard, dwsnets, nfn, arena"):
        protocol_splits(store, np.arange(40), "dws", (0.8, 0.1, 0.1), 0)
    with pytest.raises(FitnefError, match="arena splits MNIST and CIFAR-10 only"):
        protocol_splits(store, np.arange(40), "arena", (0.8, 0.1, 0.1), 0)
