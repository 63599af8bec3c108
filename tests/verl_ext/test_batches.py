"""verl's rollout rows to the core's arrays, on hand-made verl batches."""

import numpy as np
import pytest
import torch

from aero_verl.verl_ext.batches import RolloutCountError, check_rollout_counts, response_digests, rollout_rows

GROUPS = [("u-a", [1, 0, 0, 0, 0, 0, 0, 0, 1, 0]), ("u-b", [1] * 8), ("u-c", [0] * 12), ("u-d", [1, 1, 1, 1, 1, 0, 0, 0])]


def keys_of(groups):
    return [f"{uid}_{session}_0" for uid, rewards in groups for session in range(len(rewards))]


def test_rows_map_to_prompt_positions_sessions_rewards_and_lengths(make_batch):
    data = make_batch(GROUPS)
    rows = rollout_rows(keys_of(GROUPS), data, {"u-d": 0, "u-c": 1, "u-b": 2, "u-a": 3})
    assert np.bincount(rows.group).tolist() == [8, 12, 8, 10]
    assert rows.session[:10].tolist() == list(range(10))
    assert rows.rewards.tolist() == [float(r) for _, rewards in GROUPS for r in rewards]
    assert rows.lengths.tolist() == data.batch["response_mask"].sum(-1).int().tolist()


def test_unknown_uids_and_multi_output_sessions_are_refused(make_batch):
    data = make_batch([("u-a", [1, 0])])
    with pytest.raises(KeyError, match="belong to no prompt"):
        rollout_rows(["u-a_0_0", "u-a_1_0"], data, {"u-z": 0})
    with pytest.raises(RolloutCountError, match="more than one output.*single_turn_agent"):
        rollout_rows(["u-a_0_0", "u-a_0_1"], data, {"u-a": 0})


def test_more_rollouts_than_requested_name_the_prompt_and_the_agent_loop_setting():
    check_rollout_counts(np.array([8, 8]), np.array([8, 6]), np.array([11, 12], dtype=np.uint64))
    with pytest.raises(RolloutCountError, match=r"prompt key 12: 10 came back, 8 were requested.*__rollout_n__"):
        check_rollout_counts(np.array([8, 8]), np.array([8, 10]), np.array([11, 12], dtype=np.uint64))


def test_digests_are_a_function_of_the_valid_tokens_only():
    responses = torch.tensor([[5, 6, 7, 0], [5, 6, 7, 9], [5, 6, 8, 0]])
    digests = response_digests(responses, np.array([3, 3, 3]))
    assert digests[0] == digests[1] != digests[2]  # padding past the length does not count
