"""Lock-free shards (issue 15, part 3): shard ranges fall on the store's chunk boundaries, so shards
never share a chunk file and write their rows without the store's file lock; writes to chunks a
range only partly covers still take it."""
import itertools

import numpy as np
import pytest

import nefs.fingerprint
import nefs.store
from nefs import open_store
from nefs.modality import Metric
from nefs.stack import ParamLayout
from nefs.store import NefStore
from tasks.fitting import fit
from tasks.runs import shard_bounds

TINY = ["task.train.end_idx=16", "task.train.num_steps=5", "task.train.compile=false", "scheduler.value=1e-2"]


def test_shard_bounds_fall_on_chunk_boundaries():
    assert shard_bounds(0, 1000, 4, 256) == [(0, 256), (256, 512), (512, 768), (768, 1000)]
    assert shard_bounds(10, 100, 3, 16) == [(10, 32), (32, 64), (64, 100)]  # the range's own ends stay
    assert shard_bounds(0, 64, 4, 256) == shard_bounds(0, 64, 4)  # fewer chunks than shards: split by rows
    for start, end, n, c in itertools.product(range(0, 20, 3), range(1, 70, 5), range(1, 6), (1, 3, 8)):
        if end <= start:
            continue
        b = shard_bounds(start, end, n, c)
        assert b[0][0] == start and b[-1][1] == end and all(b[k][1] == b[k + 1][0] for k in range(n - 1))
        if len(range((start // c + 1) * c, end, c)) + 1 >= n:  # enough chunk pieces: every cut is aligned
            assert all(lo % c == 0 for lo, _ in b[1:]) and all(hi > lo for lo, hi in b)


@pytest.fixture
def lock_calls(monkeypatch):
    """Record every acquisition of the store's write lock."""
    calls = []
    real = nefs.store.store_lock

    def recording(path, *args):
        calls.append(path)
        return real(path, *args)

    for module in (nefs.store, nefs.fingerprint):   # the modules that take it
        monkeypatch.setattr(module, "store_lock", recording)
    return calls


def _store(path, rows=20, chunk=8):
    layout = ParamLayout(("w",), ((3,),))
    idx = np.arange(rows)
    return NefStore.create_or_open(path, identity={"a": 1}, num_rows=rows, layout=layout,
                                   rows={"labels": idx, "signal_idx": idx, "seed": idx * 0}, chunk_rows=chunk,
                                   modality={"name": "image"}, nef={}, metric=Metric("psnr", "dB"))


@pytest.mark.parametrize("rows,exclusive,locked", [
    ([8, 9, 15], (8, 16), False),        # inside a chunk the range owns whole
    ([8, 12, 17], (8, 20), False),       # the last chunk is short (rows 16..19): still whole
    ([15, 16], (8, 20), False),
    ([6, 7], (6, 16), True),             # chunk 0..7 is shared with rows 0..5 of someone else
    ([8, 9], None, True),                # no promise of exclusivity: always locked
    ([8, 9], (8, 12), True),             # the range ends inside the chunk
])
def test_write_takes_the_lock_only_for_chunks_shared_with_others(tmp_path, lock_calls, rows, exclusive, locked):
    s = _store(tmp_path / "s")
    lock_calls.clear()
    rows = np.array(rows)
    s.write_rows(rows, np.full((len(rows), 3), 2.0), np.full(len(rows), 30.0), np.full(len(rows), 5),
                 exclusive=exclusive)
    assert bool(lock_calls) == locked
    s = open_store(tmp_path / "s")
    assert np.flatnonzero(s.done).tolist() == rows.tolist()
    assert (np.asarray(s.params[rows]) == 2.0).all() and np.isnan(np.asarray(s.params[:])[~s.done]).all()


@pytest.mark.slow
def test_aligned_shards_write_without_the_lock_and_equal_one_process(compose, tmp_path, lock_calls):
    sharded = tmp_path / "sharded"
    for k in range(2):  # chunks of 4 rows: shard 0 is [0, 8), shard 1 [8, 16), each its own 2 chunks
        lock_calls.clear()
        summary = fit(compose(*TINY, "task.train.num_parallel_nefs=4", "task.num_shards=2", f"task.shard={k}",
                              nef_dir=sharded))
        assert (summary.start_idx, summary.end_idx) == (8 * k, 8 * k + 8)
        # opening (or creating) the store, its attributes, and once the data fingerprint's array; no row write
        assert len(lock_calls) == (3 if k == 0 else 2)
    fit(compose(*TINY, "task.train.num_parallel_nefs=4", nef_dir=tmp_path / "single"))   # same chunks, one process
    a, b = open_store(sharded), open_store(tmp_path / "single")
    assert a.done[:16].all() and not a.done[16:].any()
    assert np.array_equal(np.asarray(a.params[:16]), np.asarray(b.params[:16]))


def test_unaligned_hand_written_ranges_keep_the_lock(compose, tmp_path, lock_calls):
    fit(compose(*TINY, "task.train.num_parallel_nefs=4", "task.train.start_idx=2", "task.train.end_idx=10"))
    assert len(lock_calls) == 3 + 2  # create, fingerprint array, attributes, and each of the 2 chunk writes
