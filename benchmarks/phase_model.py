"""A vLLM-like cost model of generation phases, for the simulator's wall clock and the GPU projection.

A model, not a measurement: its assumptions are the fields of `PhaseCostModel`, printed beside every number
made with it. The engine decodes all sequences in flight together, one token each per decode step; a step
takes `step_s` while at most `knee` sequences are in flight (memory-bound: more sequences are nearly free)
and grows in proportion beyond it (compute-bound). A sequence starts at its phase's start or, for a
barrier-free rescue rollout, when its own prompt's Stage I group has finished, and a phase ends with its
slowest sequence: every barrier waits for the longest response in flight. Training time is proportional to
the tokens trained. Prefill is left out (prompts are short next to 3k-token responses).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class PhaseCostModel:
    """The defaults are set so that GRPO with 128 prompts x 16 responses of up to 3k tokens spends about 150 s
    generating and 100 s training a 1.5B model per step on one 8-GPU node (a typical verl GRPO math step;
    not measured here: no GPU in this project).

    Attributes:
        step_s: seconds per decode step with up to `knee` sequences in flight.
        knee: sequences in flight above which a decode step's time grows linearly.
        train_s_per_token: seconds per trained token (old-log-prob, reference and update together).
    """

    step_s: float = 0.03
    knee: int = 1024
    train_s_per_token: float = 5.0e-5

    def describe(self) -> str:
        return ", ".join(f"{name}={value:g}" for name, value in asdict(self).items())

    def decode_time(self, starts: np.ndarray, lengths: np.ndarray) -> float:
        """Seconds until every sequence (starting at decode step `starts`, `lengths` tokens long) is done."""
        starts = np.asarray(starts, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.size == 0:
            return 0.0
        ends = starts + lengths
        horizon = int(ends.max())
        # Sequences in flight at each decode step, from +1 at each start and -1 at each end.
        change = np.bincount(starts, minlength=horizon + 1)[: horizon + 1] - np.bincount(ends, minlength=horizon + 1)
        in_flight = np.cumsum(change)[:horizon]
        return float(self.step_s * np.maximum(1.0, in_flight / self.knee).sum())

    def step_time(self, group: np.ndarray, stage1: np.ndarray, phase: np.ndarray, lengths: np.ndarray,
                  tokens_trained: float) -> float:
        """One training step: its generation phases one after the other, then training.

        Rows of a phase that are not Stage I (a barrier-free rescue in the same phase) start when their
        prompt's Stage I rows of that phase are done."""
        group, stage1, phase, lengths = (np.asarray(a) for a in (group, stage1, phase, lengths))
        total = 0.0
        for p in np.unique(phase):
            rows = phase == p
            starts = np.zeros(rows.sum(), dtype=np.int64)
            later = ~stage1[rows]
            if later.any() and stage1[rows].any():
                first_done = np.zeros(int(group.max()) + 1, dtype=np.int64)
                np.maximum.at(first_done, group[rows][stage1[rows]], lengths[rows][stage1[rows]])
                starts[later] = first_done[group[rows][later]]
            total += self.decode_time(starts, lengths[rows])
        return total + self.train_s_per_token * float(tokens_trained)
