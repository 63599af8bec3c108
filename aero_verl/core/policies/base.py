"""What a policy may change in a step, as small protocols; `AEROStep` (core/step.py) calls them in order.

    Fill          which prompts a step samples, round by round (the trainer's prompts come from verl's
                  dataloader; DAPO/GRESO-style refilling is a Fill)
    Exploration   how many Stage I rollouts each prompt gets
    Rescue        after Stage I, which prompts get how many more rollouts, phase by phase, when a prompt's
                  requests end, and whether its in-flight rollouts stop at its first new success
    Selection     which rollouts with an outcome are trained
    Advantage     the advantage of each kept rollout
    LossWeighting the positive per-row factor on the advantage that sets how much each kept row weighs in
                  the loss

A policy is a class with these methods (duck typing: no base class is required). The paper's AERO is the
default of each (core/policies/aero.py builds it from an AEROConfig).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from aero_verl.core.counts import GroupCounts


@dataclass(frozen=True)
class PromptsView:
    """The step's prompts as policies see them before any rollout: stable key and posterior state."""

    keys: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    observations: np.ndarray

    @property
    def posterior_mean(self) -> np.ndarray:
        return self.alpha / (self.alpha + self.beta)


@dataclass(frozen=True)
class RescueState:
    """Where Stage II stands for every prompt of the step.

    Attributes:
        requested: rollouts asked for per prompt so far, both stages (the budget spent: a rollout that was
            lost still spent its share).
        counts: outcomes so far (GroupCounts; strata from Stage I).
        phases: rescue phases already run.
        prompts: the prompts' keys and posterior before the step.
    """

    requested: np.ndarray
    counts: GroupCounts
    phases: int
    prompts: PromptsView


class Fill(Protocol):
    def next_round(self, take: Callable[[int], np.ndarray], counts: GroupCounts | None, rounds: int) -> np.ndarray:
        """Keys of the prompts to sample in the next round (empty: the step samples no more prompts).

        `take(n)` draws n fresh prompts from the data; `counts` covers every prompt sampled so far (None
        before the first round); `rounds` is how many rounds were sampled."""

    def observe(self, keys: np.ndarray, counts: GroupCounts) -> None:
        """End of step: the step's prompts and their final counts (for policies that keep history)."""


class Exploration(Protocol):
    def counts(self, prompts: PromptsView) -> np.ndarray:
        """Stage I rollouts per prompt (int64, >= 0)."""


class Rescue(Protocol):
    barrier_free: bool  # a prompt's rescue starts when its own Stage I group ends, not the batch's
    stops_at_first_success: bool  # its rollouts still running are stopped at its first new success

    def requests(self, state: RescueState) -> np.ndarray:
        """Rollouts per prompt for the next rescue phase (int64); all zeros ends Stage II."""


class Selection(Protocol):
    def keep(self, success: np.ndarray, group: np.ndarray, counts: GroupCounts,
             rng: np.random.Generator) -> np.ndarray:
        """Bool mask over rollouts with an outcome: True for those trained. Draws depend on row order only."""


class Advantage(Protocol):
    def advantages(self, success: np.ndarray, group: np.ndarray, posterior_mean: np.ndarray) -> np.ndarray:
        """Advantage per kept rollout (float64, never NaN); `group` indexes `posterior_mean`."""


class LossWeighting(Protocol):
    def weights(self, group: np.ndarray, lengths: np.ndarray, minibatch: np.ndarray) -> np.ndarray:
        """Positive factor per trained row (its advantage is multiplied by it); verl's token-mean loss then
        weighs each row by factor x tokens / tokens of its mini-batch. `minibatch` is each row's
        optimizer step."""


@dataclass(frozen=True)
class StepPolicies:
    """One implementation of each kind; `fill` is None when the caller supplies the prompts."""

    exploration: Exploration
    rescue: Rescue
    selection: Selection
    advantage: Advantage
    weighting: LossWeighting
    fill: Fill | None = None
