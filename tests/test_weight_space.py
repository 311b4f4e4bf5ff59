"""Weight-space views of a store: layers, symmetries, transforms, splits by signal, chunked loading."""
import numpy as np
import pytest
import torch

from nefs import MLP, RFFNet, SIREN, open_store
from nefs.errors import FitnefError
from nefs.splits import check_classes, split_rows, split_signals
from nefs.stack import ParamLayout
from nefs.modality import Metric
from nefs.store import NefStore
from nefs.weight_space import (CanonicalSigns, ChunkedRows, GaussianNoise, RandomPermutation, WeightSpace, linear_chain,
                               normalization_stats, permute_hidden, random_permutations)


def random_rows(module, n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    layout = ParamLayout.of(module)
    return layout, torch.randn(n, layout.size, generator=gen)


def make_store(path, rows=40, seeds=2, classes=4, chunk=8, dataset=None, nef=None, params=None, metric=None):
    """A store of ``params`` (default random) SIREN rows: ``rows`` NeFs of rows // seeds signals; all done.
    ``params`` may be a function of the labels."""
    nef = nef or {"_target_": "nefs.SIREN", "name": "SIREN", "hidden_dim": 8, "num_layers": 3, "omega_0": 8.0}
    from hydra.utils import instantiate
    layout = ParamLayout.of(instantiate({k: v for k, v in nef.items() if k != "name"}))
    m = rows // seeds
    sig = np.arange(rows) % m
    store = NefStore.create_or_open(
        path, identity={"test": 1}, num_rows=rows, layout=layout,
        rows={"labels": sig % classes, "signal_idx": sig, "seed": np.arange(rows) // m}, chunk_rows=chunk,
        modality={"name": "image", "shape": [6, 6, 1], "mean": [0.5], "std": [0.25]}, nef=nef,
        metric=metric or Metric("psnr", "dB"))
    if dataset:
        store.update_attrs({"dataset": dataset})
    if params is None:
        params = torch.randn(rows, layout.size, generator=torch.Generator().manual_seed(1)).numpy() * 0.5
    elif callable(params):
        params = params(sig % classes, layout.size)
    store.write_rows(np.arange(rows), params, np.full(rows, 0.75 if metric else 20.0), np.full(rows, 10))
    return open_store(path)


def test_layers_are_out_by_in_and_round_trip():
    layout, flat = random_rows(SIREN(hidden_dim=8, num_layers=3), 5)
    ws = WeightSpace.from_flat(flat, layout)
    assert [tuple(w.shape) for w in ws.weights] == [(5, 8, 2), (5, 8, 8), (5, 1, 8)]
    assert [tuple(b.shape) for b in ws.biases] == [(5, 8), (5, 8), (5, 1)]
    assert ws.hidden_sizes == [8, 8]
    assert torch.equal(ws.to_flat(), flat)
    params = layout.unflatten(flat)
    assert torch.equal(ws.weights[1], params["layers.1.weight"])  # torch Linear: (out, in)


def test_non_chain_nefs_are_refused():
    with pytest.raises(FitnefError, match="coefficients"):
        linear_chain(ParamLayout.of(RFFNet()))


@pytest.mark.parametrize("module", [SIREN(hidden_dim=8, num_layers=4), MLP(hidden_dim=6, num_layers=2)])
def test_permutation_preserves_the_function(module):
    from nefs.stack import stacked_forward

    layout, flat = random_rows(module, 6)
    flat = flat * 0.3
    ws = WeightSpace.from_flat(flat, layout)
    perms = random_permutations(ws, torch.Generator().manual_seed(3))
    permuted = permute_hidden(ws, perms).to_flat()
    assert not torch.allclose(permuted, flat)  # the parameters did change
    coords = torch.rand(50, 2) * 2 - 1
    f = stacked_forward(module)
    with torch.no_grad():
        assert torch.allclose(f(layout.unflatten(permuted), coords), f(layout.unflatten(flat), coords), atol=1e-5)


def test_permuted_store_rows_reconstruct_the_same_images(tmp_path):
    store = make_store(tmp_path / "s", rows=6, seeds=1, classes=2)
    flat = torch.from_numpy(store.params[:])
    permuted = RandomPermutation(store.layout, torch.Generator().manual_seed(0))(flat)
    assert not torch.allclose(permuted, flat)
    from tasks.image.modality import ImageModality
    a = ImageModality.reconstruct(store, flat)
    b = ImageModality.reconstruct(store, permuted)
    assert torch.allclose(a, b, atol=1e-5) and torch.equal(a, store.reconstruct(np.arange(6)))


def test_gaussian_noise_and_its_bad_std():
    x = torch.zeros(1000, 10)
    y = GaussianNoise(0.1, torch.Generator().manual_seed(0))(x)
    assert abs(float(y.std()) - 0.1) < 0.01
    with pytest.raises(FitnefError, match="must be >= 0"):
        GaussianNoise(-1)


def test_layer_normalisation_keeps_the_symmetry():
    layout, flat = random_rows(SIREN(), 20)
    mean, std = normalization_stats(flat.numpy(), layout, "layer")
    sizes = layout.sizes
    assert np.unique(mean[:sizes[0]]).size == 1 and np.unique(std[sizes[0]:sizes[0] + sizes[1]]).size == 1
    mean_p, std_p = normalization_stats(flat.numpy(), layout, "param")
    assert np.allclose(mean_p, flat.numpy().mean(0), atol=1e-6)
    with pytest.raises(FitnefError, match="normalize='bogus'"):
        normalization_stats(flat.numpy(), layout, "bogus")


def test_splits_are_by_signal_and_standard_where_known():
    sig = np.tile(np.arange(100), 3)                       # 3 seeds of 100 signals
    parts = split_signals(sig, None, (0.6, 0.2, 0.2), seed=0)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [60, 20, 20]
    assert not set(parts["train"]) & set(parts["test"])
    mnist = split_signals(np.arange(70000), "MNIST")
    assert [len(mnist[k]) for k in ("train", "val", "test")] == [55000, 5000, 10000]
    assert mnist["test"][0] == 60000 and mnist["val"][0] == 55000
    sample = split_signals(np.arange(5000), "MNIST", (0.8, 0.1, 0.1))  # a subset of train: fractions
    assert [len(sample[k]) for k in ("train", "val", "test")] == [4000, 500, 500]
    with pytest.raises(FitnefError, match="sum to 1"):
        split_signals(sig, None, (0.5, 0.2, 0.2))


def test_store_dataset_splits_normalises_from_train_and_keeps_seeds_together(tmp_path):
    store = make_store(tmp_path / "s", rows=80, seeds=2, classes=2)
    assert len(store.dataset()) == 80  # the plain dataset is unchanged
    train = store.dataset(split="train", normalize=True)
    test = store.dataset(split="test", normalize=True)
    assert len(train) + len(test) + len(store.dataset(split="val")) == 80
    assert not set(store.signal_idx[train.rows]) & set(store.signal_idx[test.rows])
    x = torch.stack([train[i][0] for i in range(len(train))])
    assert torch.allclose(x.mean(0), torch.zeros(x.shape[1]), atol=1e-4)  # train statistics
    assert torch.equal(test.mean, train.mean)
    ws = store.weight_space()
    assert len(ws) == 80 and tuple(ws.weights[0].shape[1:]) == (8, 2)
    with pytest.raises(FitnefError, match="split='dev'"):
        store.dataset(split="dev")


def test_empty_class_and_no_done_rows_are_one_line_errors(tmp_path):
    store = make_store(tmp_path / "s", rows=12, seeds=1, classes=6)
    splits = split_rows(store, np.arange(12), fractions=(0.5, 0.25, 0.25))
    with pytest.raises(FitnefError, match="split .* has no rows of class"):
        check_classes(store, splits)
    with pytest.raises(FitnefError, match="no done rows"):
        split_rows(store, np.zeros(0, dtype=np.int64))


def test_chunked_rows_read_every_row_once_per_epoch(tmp_path):
    store = make_store(tmp_path / "s", rows=40, seeds=1, chunk=8)
    rows = np.arange(3, 37)
    ds = ChunkedRows(store, rows, batch_size=5, shuffle=True, buffer_chunks=2)
    for _ in range(2):
        got = list(torch.utils.data.DataLoader(ds, batch_size=None))
        x = torch.cat([b[0] for b in got]).numpy()
        y = torch.cat([b[1] for b in got]).numpy()
        assert len(x) == len(rows) and all(len(b[0]) == 5 for b in got[:-1])
        want = store.params[:][rows]
        order = np.lexsort(x.T[::-1])
        assert np.array_equal(x[order], want[np.lexsort(want.T[::-1])])
        assert sorted(y.tolist()) == sorted(store.labels[rows].tolist())


def test_canonical_signs_keep_a_siren_and_make_hidden_biases_non_negative():
    from nefs.stack import stacked_forward

    module = SIREN(hidden_dim=8, num_layers=4)
    layout, flat = random_rows(module, 6)
    flat = flat * 0.3
    canon = CanonicalSigns(layout)(flat)
    ws = WeightSpace.from_flat(canon, layout)
    assert all((b >= 0).all() for b in ws.biases[:-1]) and not torch.equal(canon, flat)
    coords = torch.rand(50, 2) * 2 - 1
    f = stacked_forward(module)
    with torch.no_grad():
        assert torch.allclose(f(layout.unflatten(canon), coords), f(layout.unflatten(flat), coords), atol=1e-6)


def _order(ds, workers):
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
    return torch.cat([b[0][:, 0] for b in loader]).numpy()


def test_chunked_rows_epochs_differ_with_workers_and_follow_set_epoch(tmp_path):
    store = make_store(tmp_path / "s", rows=40, seeds=1, chunk=4)
    ds = ChunkedRows(store, batch_size=5, shuffle=True, buffer_chunks=2)
    one, two = _order(ds, 2), _order(ds, 2)     # fresh worker copies each epoch
    assert sorted(one) == sorted(two) and not np.array_equal(one, two)
    ds.set_epoch(3)
    a, b = _order(ds, 2), _order(ds, 2)
    ds.set_epoch(4)
    c = _order(ds, 2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)   # the epoch set, not how often it ran
    ds.set_epoch(3)
    assert np.array_equal(np.sort(_order(ds, 0)), np.sort(a))
