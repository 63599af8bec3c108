"""AERO's resumable state in verl's checkpoint folder."""

import json
import os

import numpy as np
import pytest

from aero_verl.core import BetaPosteriorTable
from aero_verl.verl_ext.state import STATE_FILE, AEROState, StateCompatibilityError, load_state, save_state


def sample_state(fingerprint="f1"):
    table = BetaPosteriorTable()
    table.update([3, 5, 2**63], [1, 2, 0], [4, 0, 1])
    return AEROState(posterior=table.state_dict(), dataset_fingerprint=fingerprint, prompt_key="index",
                     global_step=7, cumulative={"steps": 7, "rollouts_kept": 100}, algorithm={"k": 1.0})

def test_state_round_trips_exactly(tmp_path):
    save_state(str(tmp_path), sample_state())
    assert os.listdir(tmp_path) == [STATE_FILE]  # the temporary file is gone
    state = load_state(str(tmp_path), "f1", "index")
    restored = BetaPosteriorTable()
    restored.load_state_dict(state.posterior)
    assert restored.alpha_beta([3, 5, 2**63])[0].tolist() == [2.0, 3.0, 1.0]
    assert state.global_step == 7 and state.cumulative["rollouts_kept"] == 100
    assert load_state(str(tmp_path / "absent"), "f1", "index") is None

@pytest.mark.parametrize("fingerprint, prompt_key, fragment", [
    ("other", "index", "different training set"),
    ("f1", "content", "aero.trainer.prompt_key=index"),
])
def test_state_for_another_dataset_or_key_mode_is_refused(tmp_path, fingerprint, prompt_key, fragment):
    save_state(str(tmp_path), sample_state())
    with pytest.raises(StateCompatibilityError, match=fragment):
        load_state(str(tmp_path), fingerprint, prompt_key)

def test_state_of_another_schema_or_torn_file_is_refused(tmp_path):
    path = save_state(str(tmp_path), sample_state())
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(str(arrays.pop("meta")))
    meta["schema_version"] = 99
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
    with pytest.raises(StateCompatibilityError, match="schema_version=99"):
        load_state(str(tmp_path), "f1", "index")
    with open(path, "wb") as handle:
        handle.write(b"PK\x03\x04 truncated")
    with pytest.raises(StateCompatibilityError, match="unreadable"):
        load_state(str(tmp_path), "f1", "index")
