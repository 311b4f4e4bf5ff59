"""Which signals a store was fitted on: a cheap fingerprint per store chunk.

A store's config identity says how its NeFs were fitted, not on what: pointing the same command at
another folder with as many images would otherwise "resume" a finished store and keep NeFs of the
old data. So each store chunk records a 64-bit hash of its rows' signals when its rows are written,
and a fit that resumes the chunk (or an inspect that scores it) recomputes it from the data at hand.
Content, not location: data moved elsewhere hashes the same and still resumes.

Modality-agnostic: a modality only says what the bytes of one signal are (``signal_bytes(i)``).
The store keeps the hashes in ``signal_digest`` (one uint64 per store chunk; 0 = not recorded).
"""
import hashlib
from typing import Callable, Dict, Optional

import numpy as np
import zarr

from .diffs import diff_keys
from .errors import FitnefError
from .locking import store_lock

ARRAY = "signal_digest"


def _hash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=8).digest()


def chunk_digests(signal_idx: np.ndarray, chunk_rows: int, chunks, signal_bytes: Callable[[int], bytes],
                  prefetch: Optional[Callable[[np.ndarray], None]] = None) -> Dict[int, int]:
    """{store chunk: digest of its rows' signals, in row order}; each signal is read and hashed once.
    ``prefetch`` (a modality's, optional) is given each chunk's signals first, so that a modality that
    reads its signals lazily loads them a chunk at a time, in parallel."""
    per_signal = {}
    out = {}
    for c in chunks:
        h = hashlib.blake2b(digest_size=8)
        rows = signal_idx[c * chunk_rows:(c + 1) * chunk_rows]
        if prefetch is not None:
            prefetch(np.unique(rows))
        for s in rows.tolist():
            if s not in per_signal:
                per_signal[s] = _hash(signal_bytes(int(s)))
            h.update(per_signal[s])
        out[int(c)] = int.from_bytes(h.digest(), "little") or 1  # 0 means "not recorded"
    return out


def array_signal_bytes(signals: np.ndarray, i: int) -> bytes:
    """Signal i of an (M, ...) array of equally shaped signals, as ``signal_bytes`` gives it: shape and values."""
    return np.asarray(signals.shape[1:], np.int64).tobytes() + np.ascontiguousarray(signals[int(i)]).tobytes()


def _describe(store, chunk: int, stored: int, now: int, now_dataset: Optional[dict]) -> str:
    n = store.chunk_rows
    lo, hi = chunk * n, min((chunk + 1) * n, len(store)) - 1
    what = f"rows {lo}-{hi} (store chunk {chunk}): signal fingerprint {stored:016x} in the store, {now:016x} now"
    before = store.group.attrs.get("dataset")
    if isinstance(before, dict) and isinstance(now_dataset, dict):
        diffs = diff_keys(before, now_dataset, "dataset.")
        if diffs:
            what += f"; {'; '.join(diffs)}"
    return (f"store {store.path} was fitted on other data ({what}); point dataset.* at the data it was "
            f"fitted on, or use another task.nef_dir")


def verify_signals(store, signal_bytes: Callable[[int], bytes], start: Optional[int] = None,
                   end: Optional[int] = None, now_dataset: Optional[dict] = None, record: bool = True,
                   prefetch: Optional[Callable[[np.ndarray], None]] = None) -> int:
    """Check the data at hand against the store's fingerprints, and return how many chunks were checked.

    With a range (a fit): every store chunk overlapping [start, end) is hashed; a recorded hash that differs
    while the chunk has done rows is a one-line error naming the rows and what differs in the dataset
    record; with ``record`` the hashes are kept on ``store`` for ``write_rows`` to record with the rows.
    Without a range (inspect): only chunks that have done rows and a recorded hash are checked.
    """
    if ARRAY not in store.group:
        if not record:
            return 0  # a store from before fingerprints: nothing to check
        num_chunks = -(-len(store) // store.chunk_rows)
        with store_lock(store.path, store.lock_timeout):
            group = zarr.open_group(str(store.path), mode="r+")
            if ARRAY not in group:
                # one file per store chunk: a shard that owns its chunks also owns their hashes (lock-free writes)
                group.create_array(ARRAY, shape=(num_chunks,), chunks=(1,), dtype="uint64", fill_value=0)
            store.group = group
    n = store.chunk_rows
    recorded = np.asarray(store.group[ARRAY][:])
    done = np.asarray(store.done)
    has_done = np.add.reduceat(done, np.arange(0, len(done), n)) > 0 if len(done) else np.zeros(0, bool)
    if start is None:
        chunks = np.flatnonzero((recorded != 0) & has_done)
    else:
        chunks = range(start // n, -(-end // n))
    digests = chunk_digests(np.asarray(store.signal_idx), n, chunks, signal_bytes, prefetch)
    for c, now in digests.items():
        if recorded[c] not in (0, now) and has_done[c]:
            raise FitnefError(_describe(store, c, int(recorded[c]), now, now_dataset))
    if record:
        store.signal_digests = digests
    return len(digests)


def record_digests(group, rows: np.ndarray, digests: Optional[dict], chunk_rows: int) -> None:
    """Inside the store's write lock, before the rows themselves: the hashes of the chunks they touch."""
    if not digests or ARRAY not in group:
        return
    chunks = np.unique(np.asarray(rows) // chunk_rows)
    chunks = [int(c) for c in chunks if int(c) in digests]
    if not chunks:
        return
    arr = group[ARRAY]
    stored = np.asarray(arr.get_orthogonal_selection(np.asarray(chunks)))
    want = np.asarray([digests[c] for c in chunks], dtype=np.uint64)
    if not np.array_equal(stored, want):
        arr.set_orthogonal_selection(np.asarray(chunks), want)
