"""Which prompts a step samples, for callers that let the step draw them (the simulator).

In verl the trainer's prompts come from verl's dataloader and AERO never refills; DAPO runs there as verl's
own `algorithm.filter_groups`. These fills let the simulator run the same step object for every policy.

    SingleBatch        one round of batch_size fresh prompts (GRPO, AERO)
    DynamicSampling    DAPO's dynamic sampling: rounds of batch_size fresh prompts until batch_size groups
                       with both outcomes were generated, or max_rounds rounds; the selection policy then
                       trains the informative groups (surplus groups are generated and discarded)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from aero_verl.core.counts import GroupCounts

NO_PROMPTS = np.zeros(0, dtype=np.uint64)


class SingleBatch:
    def __init__(self, batch_size: int):
        self.batch_size = int(batch_size)

    def next_round(self, take: Callable[[int], np.ndarray], counts: GroupCounts | None, rounds: int) -> np.ndarray:
        return take(self.batch_size) if rounds == 0 else NO_PROMPTS

    def observe(self, keys: np.ndarray, counts: GroupCounts) -> None:
        """Keeps no history."""


def informative_groups(counts: GroupCounts) -> np.ndarray:
    return (counts.correct > 0) & (counts.correct < counts.rollouts)


class DynamicSampling:
    def __init__(self, batch_size: int, max_rounds: int):
        self.batch_size = int(batch_size)
        self.max_rounds = int(max_rounds)

    def next_round(self, take: Callable[[int], np.ndarray], counts: GroupCounts | None, rounds: int) -> np.ndarray:
        if rounds == 0:
            return take(self.batch_size)
        if rounds >= self.max_rounds or informative_groups(counts).sum() >= self.batch_size:
            return NO_PROMPTS
        return take(self.batch_size)

    def observe(self, keys: np.ndarray, counts: GroupCounts) -> None:
        """Keeps no history."""
