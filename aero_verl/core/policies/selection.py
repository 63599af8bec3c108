"""Which rollouts reach training (paper Strategies 2-3, Theorem 4.1 / Lemma 4.2).

BalancedRejection, AERO's rule. A group with c correct and m incorrect rollouts has an expected GRPO
gradient of norm f(c, m) ||mu+ - mu-|| with f(c, m) = sqrt(c m) / (c + m) (core/theory.py), which for fixed
c peaks at m = c. So a low-success group keeps every correct rollout (they are scarce and carry the
positive signal) and ceil(k c) incorrect ones, chosen uniformly at random; at k = 1 the kept group is
balanced and its training cost drops with it. Per group, after Stage II:

    low success, or rescued      all correct + ceil(k c) incorrect (Strategy 3; a rescue is low success)
    high accuracy                whole (Strategy 2), except zero-variance groups in `constant` mode
    failed rescue, still all-wrong   dropped if drop_failed_rescues, else a zero-variance group
    zero-variance groups         `smoothed`: whole; `constant`: degenerate_keep at random; `off`: dropped
                                 (plain GRPO gives them zero advantage, so no gradient)

KeepAll trains every rollout (GRPO as verl runs it); KeepInformative trains only groups with both
outcomes (DAPO's filter).
"""

from __future__ import annotations

import numpy as np

from aero_verl.core.counts import GroupCounts, Stratum


def incorrect_quota(correct: np.ndarray, incorrect: np.ndarray, k: float) -> np.ndarray:
    """ceil(k c) incorrect rollouts per low-success group, never more than it has (Lemma 4.2)."""
    # The tolerance keeps k*c that is an integer in exact arithmetic (e.g. 0.1 * 30) from rounding up.
    quota = np.ceil(k * np.asarray(correct, dtype=np.float64) - 1e-9).astype(np.int64)
    return np.minimum(quota, np.asarray(incorrect, dtype=np.int64))


def step_rng(seed: int, step: int) -> np.random.Generator:
    """Rejection randomness of one step, derived from (seed, step) so that a resumed run draws the same."""
    return np.random.default_rng([int(seed), int(step)])


def keep_by_quota(success: np.ndarray, group: np.ndarray, keep_correct: np.ndarray, keep_incorrect: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """Keep quota[g] rollouts of each (group g, outcome) at random; a quota of -1 keeps them all."""
    priority = rng.random(success.size)
    order = np.lexsort((priority, success, group))
    sorted_key = group[order] * 2 + success[order]
    run_start = np.r_[0, np.flatnonzero(np.diff(sorted_key)) + 1]
    run_lengths = np.diff(np.r_[run_start, sorted_key.size])
    rank = np.empty(success.size, dtype=np.int64)
    rank[order] = np.arange(sorted_key.size) - np.repeat(run_start, run_lengths)
    quota = np.where(success, keep_correct[group], keep_incorrect[group])
    return (quota < 0) | (rank < quota)


class BalancedRejection:
    def __init__(self, k: float, advantage_mode: str, degenerate_keep: int, drop_failed_rescues: bool):
        self.k = k
        self.advantage_mode = advantage_mode
        self.degenerate_keep = degenerate_keep
        self.drop_failed_rescues = drop_failed_rescues

    def keep(self, success: np.ndarray, group: np.ndarray, counts: GroupCounts,
             rng: np.random.Generator) -> np.ndarray:
        success = np.asarray(success, dtype=bool)
        group = np.asarray(group, dtype=np.int64)
        zero_variance = counts.zero_variance
        low_success = (counts.strata != Stratum.HIGH_ACCURACY) & ~zero_variance
        still_all_wrong = counts.failed_rescue & zero_variance

        keep_correct = np.full(counts.n_groups, -1, dtype=np.int64)
        keep_incorrect = np.full(counts.n_groups, -1, dtype=np.int64)
        keep_incorrect[low_success] = incorrect_quota(counts.correct[low_success], counts.incorrect[low_success],
                                                      self.k)
        degenerate_kept = zero_variance & ~(still_all_wrong & self.drop_failed_rescues)
        if self.advantage_mode == "off":
            keep_correct[zero_variance] = keep_incorrect[zero_variance] = 0
        elif self.advantage_mode == "constant":
            # A zero-variance group has one kind of rollout only, so the quota applies to that kind.
            keep_correct[degenerate_kept] = np.minimum(self.degenerate_keep, counts.correct[degenerate_kept])
            keep_incorrect[degenerate_kept] = np.minimum(self.degenerate_keep, counts.incorrect[degenerate_kept])
        if self.drop_failed_rescues:
            keep_correct[still_all_wrong] = keep_incorrect[still_all_wrong] = 0
        return keep_by_quota(success, group, keep_correct, keep_incorrect, rng)


class KeepAll:
    def keep(self, success, group, counts: GroupCounts, rng) -> np.ndarray:
        return np.ones(np.asarray(success).size, dtype=bool)


class KeepInformative:
    """Groups with both outcomes; with a `limit`, only the first `limit` of them in group order (DAPO trains
    the first batch_size informative groups it generated and discards the surplus)."""

    def __init__(self, limit: int | None = None):
        self.limit = limit

    def keep(self, success, group, counts: GroupCounts, rng) -> np.ndarray:
        informative = (counts.correct > 0) & (counts.correct < counts.rollouts)
        if self.limit is not None:
            informative &= np.cumsum(informative) <= self.limit
        return informative[np.asarray(group, dtype=np.int64)]
