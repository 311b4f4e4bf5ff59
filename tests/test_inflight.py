"""The engine's typed in-flight state (nefs/inflight.py) and its on-disk record: what a rerun continues from."""
import numpy as np
import torch

from nefs.inflight import InFlight, InFlightFile, LoopState, UnitProgress


def _loop(live):
    return LoopState(np.array([7, 7, 3]), False, np.array(live), {"w": torch.arange(6.0).reshape(3, 2)},
                     {"state": {"w": torch.ones(3, 2)}})


def test_a_fixed_chunk_state_survives_the_file_and_counts_what_is_left(tmp_path):
    keep = {"params": {"w": torch.zeros(3, 2)}, "metric": torch.tensor([30.0, 0, 0]), "steps": torch.tensor([5, 0, 0])}
    state = InFlight(_loop([False, True, True]), units=UnitProgress(3, 1, [{"metric": torch.ones(3)}], keep),
                     rows=np.arange(10, 18))
    assert state.mode == "chunk" and state.step_text() == "steps 3-7"
    assert state.pending_count() == 2 + 2   # two live slots, and 8 - 3 * 2 rows of the last unit
    file = InFlightFile(tmp_path, 10, 18)
    rows, engine = state.record()
    file.save({"rows": rows, "engine": engine})
    back = file.read()
    again = InFlight.from_record(back["rows"], back["engine"])
    assert again.mode == "chunk" and again.units.unit == 3 and again.units.part == 1
    assert np.array_equal(again.rows, np.arange(10, 18)) and np.array_equal(again.loop.live, [False, True, True])
    assert torch.equal(again.loop.params["w"], state.loop.params["w"]) and again.loop.uniform is False
    assert again.pending_count() == state.pending_count() and again.held_rows().tolist() == list(range(10, 18))
    file.clear()
    assert file.read() is None


def test_a_stream_state_names_its_slots_rows():
    state = InFlight(_loop([True, False, True]), slot_row=np.array([4, -1, 9]))
    rows, engine = state.record()
    assert rows is None and engine["slot_row"].tolist() == [4, -1, 9] and "unit" not in engine
    again = InFlight.from_record(rows, engine)
    assert again.mode == "stream" and again.pending_count() == 2 and again.held_rows().tolist() == [4, 9]
