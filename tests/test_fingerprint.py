"""A store remembers which signals it was fitted on: other data with as many signals is refused, moved data resumes."""
import shutil

import numpy as np
import pytest
from PIL import Image

from nefs.errors import FitnefError
from nefs.fingerprint import ARRAY, chunk_digests
from nefs.store import open_store

QUICK = ("task.train.num_steps=2", "task.train.compile=false", "task.train.num_parallel_nefs=4",
         "nef.hidden_dim=8")


def _folder(path, seed, n=6):
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(path / f"{i}.png")
    return path


def test_chunk_digests_follow_content_and_order():
    data = {0: b"a", 1: b"b", 2: b"c"}
    a = chunk_digests(np.array([0, 1, 2, 0]), 2, [0, 1], data.__getitem__)
    assert a == chunk_digests(np.array([0, 1, 2, 0]), 2, [0, 1], data.__getitem__)
    b = chunk_digests(np.array([0, 1, 2, 0]), 2, [0, 1], {0: b"a", 1: b"b", 2: b"x"}.__getitem__)
    assert a[0] == b[0] and a[1] != b[1]
    assert chunk_digests(np.array([1, 0]), 2, [0], data.__getitem__)[0] != a[0]


def test_other_folder_with_as_many_images_is_refused(compose, tmp_path):
    from tasks.fitting import fit

    a, b = _folder(tmp_path / "A", 0), _folder(tmp_path / "B", 1)
    first = fit(compose(*QUICK, "dataset=folder", f"dataset.path={a}"))
    assert first.fitted == 6
    store = open_store(tmp_path / "store")
    assert (np.asarray(store.group[ARRAY][:]) != 0).all()  # both chunks recorded
    with pytest.raises(FitnefError, match=r"fitted on other data \(rows 0-3 \(store chunk 0\).*dataset\.path: "
                                          r"'.*A' \(store\) != '.*B' \(now\)") as e:
        fit(compose(*QUICK, "dataset=folder", f"dataset.path={b}"))
    assert "\n" not in str(e.value)
    # and inspect does not score A's NeFs against B's images
    from tasks.image.inspect import load_images

    with pytest.raises(FitnefError, match="fitted on other data"):
        load_images(open_store(tmp_path / "store"), str(b))
    assert load_images(open_store(tmp_path / "store"), str(a)).shape == (6, 8, 8, 1)


def test_moved_data_with_the_same_content_resumes(compose, tmp_path):
    from tasks.fitting import fit

    a = _folder(tmp_path / "A", 0)
    fit(compose(*QUICK, "dataset=folder", f"dataset.path={a}", "task.train.end_idx=4"))
    moved = tmp_path / "elsewhere" / "A2"
    shutil.move(str(a), str(moved))
    again = fit(compose(*QUICK, "dataset=folder", f"dataset.path={moved}"))
    assert again.fitted == 2 and again.total_done == 6


def test_a_changed_image_in_an_unfitted_chunk_is_fine_but_in_a_fitted_one_is_refused(compose, tmp_path):
    from tasks.fitting import fit

    a = _folder(tmp_path / "A", 0)
    fit(compose(*QUICK, "dataset=folder", f"dataset.path={a}", "task.train.end_idx=4"))  # chunk 0 only
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(a / "5.png")    # row 5: chunk 1, not fitted yet
    assert fit(compose(*QUICK, "dataset=folder", f"dataset.path={a}")).fitted == 2
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(a / "0.png")    # row 0: fitted
    with pytest.raises(FitnefError, match=r"rows 0-3 \(store chunk 0\)"):
        fit(compose(*QUICK, "dataset=folder", f"dataset.path={a}"))
