import numpy as np
import pytest

from aero_verl.core import GroupCounts, step_rng
from aero_verl.core.policies import BalancedRejection, KeepInformative, incorrect_quota


def counts_for(success, group, stage1_sizes, u_res=0.0):
    stage1 = np.zeros(group.size, dtype=bool)
    for g, n in enumerate(stage1_sizes):
        stage1[np.flatnonzero(group == g)[:n]] = True
    return GroupCounts.from_rollouts(group, success, stage1, len(stage1_sizes), u_res=u_res, u_high=0.5)


def rejection(k=1.0, mode="smoothed", drop=True):
    return BalancedRejection(k=k, advantage_mode=mode, degenerate_keep=4, drop_failed_rescues=drop)


def test_low_success_group_keeps_all_correct_and_k_times_as_many_incorrect():
    success = np.array([1, 0, 0, 0, 0, 0, 1, 0], dtype=bool)  # c = 2, m = 6
    group = np.zeros(8, dtype=int)
    counts = counts_for(success, group, [8])
    keep = rejection(1.0).keep(success, group, counts, step_rng(0, 1))
    assert keep[success].all() and (~success & keep).sum() == 2
    keep = rejection(2.0).keep(success, group, counts, step_rng(0, 1))
    assert (~success & keep).sum() == 4


def test_strategy_two_and_degenerate_groups_per_mode():
    # groups: high-accuracy mixed (6/8), all-correct (8/8), failed rescue (0/16), rescued (1/12)
    success = np.concatenate([[1] * 6 + [0] * 2, [1] * 8, [0] * 16, [0] * 11 + [1]]).astype(bool)
    group = np.repeat(np.arange(4), [8, 8, 16, 12])
    counts = counts_for(success, group, [8, 8, 8, 8])

    def sizes(policy):
        keep = policy.keep(success, group, counts, step_rng(0, 3))
        return np.bincount(group[keep], minlength=4).tolist(), np.bincount(group[keep & success], minlength=4).tolist()

    assert sizes(rejection()) == ([8, 8, 0, 2], [6, 8, 0, 1])
    assert sizes(rejection(mode="constant"))[0] == [8, 4, 0, 2]
    assert sizes(rejection(mode="constant", drop=False))[0] == [8, 4, 4, 2]
    assert sizes(rejection(drop=False))[0] == [8, 8, 16, 2]
    assert sizes(rejection(mode="off", drop=False))[0] == [8, 0, 0, 2]


def test_a_failed_rescue_with_a_stage1_success_is_a_low_success_group_not_dropped():
    """u_res > 0: the rescue stratum can hold prompts with a correct Stage I rollout; one whose rescue found
    nothing new still has both outcomes, so it is trained under Strategy 3."""
    success = np.array([1] + [0] * 11, dtype=bool)
    group = np.zeros(12, dtype=int)
    counts = counts_for(success, group, [8], u_res=0.125)
    assert counts.failed_rescue[0]
    keep = rejection().keep(success, group, counts, step_rng(0, 0))
    assert keep.sum() == 2 and keep[0]


def test_incorrect_quota_rounds_up_and_is_capped():
    assert incorrect_quota(np.array([1, 3, 2, 30]), np.array([7, 5, 1, 40]), 0.5).tolist() == [1, 2, 1, 15]
    assert incorrect_quota(np.array([30]), np.array([40]), 0.1).tolist() == [3]


def test_same_seed_and_step_give_the_same_choice_and_other_steps_differ():
    rng = np.random.default_rng(0)
    success = rng.random(400) < 0.2
    group = np.repeat(np.arange(25), 16)
    counts = counts_for(success, group, [8] * 25)
    first = rejection().keep(success, group, counts, step_rng(7, 3))
    assert np.array_equal(first, rejection().keep(success, group, counts, step_rng(7, 3)))
    assert not np.array_equal(first, rejection().keep(success, group, counts, step_rng(7, 4)))


def test_choice_among_incorrect_rollouts_is_uniform():
    success = np.array([1, 0, 0, 0, 0], dtype=bool)
    group = np.zeros(5, dtype=int)
    counts = counts_for(success, group, [5])
    hits = np.zeros(5)
    for step in range(4000):
        hits += rejection().keep(success, group, counts, step_rng(0, step))
    assert hits[0] == 4000
    assert hits[1:] == pytest.approx(np.full(4, 1000), rel=0.1)


def test_keep_informative_with_a_limit_keeps_the_first_groups():
    success = np.array([1, 0, 1, 1, 0, 1, 0, 0], dtype=bool)
    group = np.repeat(np.arange(4), 2)
    counts = counts_for(success, group, [2] * 4)
    assert KeepInformative().keep(success, group, counts, None).tolist() == [1, 1, 0, 0, 1, 1, 0, 0]
    assert KeepInformative(limit=1).keep(success, group, counts, None).tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
