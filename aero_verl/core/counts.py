"""Per-group counts of one step, built once and read by selection, advantages and accounting.

A group is one prompt's rollouts in a step. Only rollouts with an outcome count here: a rescue rollout
stopped before it finished (barrier-free rescue) has no verified outcome and is left out of `rollouts`.

Strata (paper Section 3.2), from the Stage I success rate u = c / n:

    rescue        u <= u_res            Strategy 1: more rollouts until a new success or no budget
    low success   u_res < u < u_high    Strategy 3: selective rejection (selection.py)
    high accuracy u >= u_high           Strategy 2: trained whole
    no rollouts   none came back        nothing to rescue from or train on, no evidence for the posterior

A rescue group is *rescued* once it has more correct rollouts than it had after Stage I, and its rescue
has *failed* when its requests ended without that. Both are defined here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Stratum(IntEnum):
    RESCUE = 0
    LOW_SUCCESS = 1
    HIGH_ACCURACY = 2
    NO_ROLLOUTS = 3


def stratify(correct: np.ndarray, total: np.ndarray, u_res: float, u_high: float) -> np.ndarray:
    """Stratum of each prompt from its Stage I counts (Section 3.2)."""
    correct = np.asarray(correct, dtype=np.float64)
    total = np.asarray(total, dtype=np.float64)
    success_rate = correct / np.maximum(total, 1.0)
    strata = np.full(success_rate.shape, Stratum.LOW_SUCCESS, dtype=np.int8)
    strata[success_rate <= u_res] = Stratum.RESCUE
    strata[success_rate >= u_high] = Stratum.HIGH_ACCURACY
    strata[total <= 0] = Stratum.NO_ROLLOUTS
    return strata


@dataclass(frozen=True)
class GroupCounts:
    """Counts per group (arrays of one entry per prompt of the step)."""

    rollouts: np.ndarray
    correct: np.ndarray
    stage1_rollouts: np.ndarray
    stage1_correct: np.ndarray
    strata: np.ndarray

    @classmethod
    def from_rollouts(cls, group: np.ndarray, success: np.ndarray, stage1: np.ndarray, n_groups: int,
                      u_res: float, u_high: float) -> GroupCounts:
        """Counts of the rollouts with an outcome (`group` indexes the prompts); strata from Stage I."""
        group = np.asarray(group, dtype=np.int64)
        success = np.asarray(success, dtype=bool)
        stage1 = np.asarray(stage1, dtype=bool)
        rollouts = np.bincount(group, minlength=n_groups)
        correct = np.bincount(group, weights=success, minlength=n_groups).astype(np.int64)
        stage1_rollouts = np.bincount(group[stage1], minlength=n_groups)
        stage1_correct = np.bincount(group[stage1], weights=success[stage1], minlength=n_groups).astype(np.int64)
        return cls.from_tallies(rollouts, correct, stage1_rollouts, stage1_correct, u_res, u_high)

    @classmethod
    def from_tallies(cls, rollouts, correct, stage1_rollouts, stage1_correct, u_res: float, u_high: float) -> GroupCounts:
        """Counts from per-group totals; strata from the Stage I ones."""
        return cls(np.asarray(rollouts), np.asarray(correct), np.asarray(stage1_rollouts), np.asarray(stage1_correct),
                   stratify(stage1_correct, stage1_rollouts, u_res, u_high))

    @property
    def n_groups(self) -> int:
        return int(self.rollouts.size)

    @property
    def incorrect(self) -> np.ndarray:
        return self.rollouts - self.correct

    @property
    def in_rescue(self) -> np.ndarray:
        return self.strata == Stratum.RESCUE

    @property
    def rescued(self) -> np.ndarray:
        """Rescue groups that gained a correct rollout after Stage I."""
        return self.in_rescue & (self.correct > self.stage1_correct)

    @property
    def failed_rescue(self) -> np.ndarray:
        """Rescue groups whose requests ended without a new success."""
        return self.in_rescue & ~self.rescued

    @property
    def zero_variance(self) -> np.ndarray:
        """Groups whose rollouts are all alike (a group of one included): no GRPO signal."""
        return (self.rollouts > 0) & ((self.correct == 0) | (self.correct == self.rollouts))

    @property
    def stage1_zero_variance(self) -> np.ndarray:
        return (self.stage1_rollouts > 0) & ((self.stage1_correct == 0)
                                             | (self.stage1_correct == self.stage1_rollouts))
