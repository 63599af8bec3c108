import numpy as np

from aero_verl.core import GroupCounts
from aero_verl.core.policies import BarrierFreeRescue, PromptsView, RescueRounds, RescueState, concurrent_stops


def run_rounds(policy, stage1_correct, outcomes, priority=None, n_explore=8):
    """Drive a rescue policy: prompt i's r-th rescue rollout is correct iff outcomes[i][r]."""
    n = len(stage1_correct)
    rows = {i: [True] * c + [False] * (n_explore - c) for i, c in enumerate(stage1_correct)}
    stage1 = {i: [True] * n_explore for i in range(n)}
    requested = np.full(n, n_explore)
    view = PromptsView(np.arange(n, dtype=np.uint64), np.ones(n), np.ones(n), np.zeros(n, dtype=int)) \
        if priority is None else PromptsView(np.arange(n, dtype=np.uint64), np.asarray(priority), 1 - np.asarray(priority),
                                             np.zeros(n, dtype=int))
    rounds = []
    while True:
        group = np.concatenate([np.full(len(rows[i]), i) for i in range(n)])
        counts = GroupCounts.from_rollouts(group, np.concatenate([rows[i] for i in range(n)]),
                                           np.concatenate([stage1[i] for i in range(n)]), n, 0.0, 0.5)
        extra = policy.requests(RescueState(requested.copy(), counts, len(rounds), view))
        if not extra.any():
            return rounds, requested, counts
        rounds.append(extra.tolist())
        requested += extra
        for i in np.flatnonzero(extra):
            drawn = len(rows[i]) - n_explore
            rows[i] += (list(outcomes.get(i, [])) + [0] * 99)[drawn: drawn + extra[i]]
            stage1[i] += [False] * extra[i]


def test_per_query_rounds_stop_at_first_success_or_the_cap():
    rounds, requested, counts = run_rounds(RescueRounds(16, 2), [0, 0, 3], {0: [0, 0, 0, 1, 0], 1: [0] * 8})
    assert rounds == [[2, 2, 0], [2, 2, 0], [0, 2, 0], [0, 2, 0]]
    assert requested.tolist() == [12, 16, 8]
    assert counts.rescued.tolist() == [True, False, False]
    assert counts.failed_rescue.tolist() == [False, True, False]


def test_last_round_is_truncated_to_the_remaining_budget():
    rounds, requested, _ = run_rounds(RescueRounds(11, 2), [0], {})
    assert rounds == [[2], [1]] and requested.tolist() == [11]


def test_pooled_budget_serves_priority_first_and_may_exceed_n_total():
    rounds, requested, _ = run_rounds(RescueRounds(12, 2, "pooled"), [0, 8, 0], {2: [1]}, priority=[0.1, 0.9, 0.3])
    assert rounds[0] == [2, 0, 2]
    assert requested.sum() == 36 and requested[0] == 18  # the pool is used up; one prompt above n_total
    rounds, _, _ = run_rounds(RescueRounds(9, 2, "pooled"), [0, 0, 0], {}, priority=[0.2, 0.5, 0.2])
    assert rounds[0] == [1, 2, 0]


def test_round_cap():
    rounds, _, _ = run_rounds(RescueRounds(16, 2, max_rounds=1), [0], {})
    assert rounds == [[2]]


def test_barrier_free_asks_the_whole_remaining_budget_once():
    policy = BarrierFreeRescue(16)
    rounds, requested, _ = run_rounds(policy, [0, 4, 0], {0: [0, 0, 1] + [0] * 5})
    assert rounds == [[8, 0, 8]] and requested.tolist() == [16, 8, 16]
    assert policy.allowance(np.array([8, 2, 16])).tolist() == [8, 14, 0]
    assert policy.barrier_free and policy.stops_at_first_success


def test_concurrent_stops_end_every_rollout_longer_than_the_first_success():
    group = np.array([0, 0, 0, 0, 1, 1])
    success = np.array([False, True, False, True, False, False])
    lengths = np.array([30, 50, 80, 70, 40, 90])
    stopped, tokens = concurrent_stops(group, success, lengths)
    assert stopped.tolist() == [False, False, True, True, False, False]  # prompt 1 has no success: runs out
    assert tokens.tolist() == [30, 50, 50, 50, 40, 90]
