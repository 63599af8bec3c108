"""The simulator's policies that are not AERO, on the same step protocols (aero_verl/core/policies/base.py).

GRPO and DAPO are built from the core's own policies (FixedExploration, NoRescue, KeepAll, KeepInformative,
DynamicSampling) in experiment.py; this module holds the two that need what only the simulator has:

    GRESOFill   GRESO's probabilistic pre-rollout skip (Infini-AI-Lab/GRESO `all_probabilistic`) in front
                of DAPO's dynamic sampling; it reads the prompt stream's epoch.
    Oracle*     the upper limit: a policy that knows every prompt's true success probability p.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aero_verl.core import GroupCounts
from aero_verl.core.policies import PromptsView, RescueState
from aero_verl.core.policies.fill import NO_PROMPTS, informative_groups
from simulator.population import PromptStream, zero_variance_probability


@dataclass(frozen=True)
class GRESOSettings:
    """GRESO's pre-rollout filter (docs/paper_readings.md, "Peers").

    Attributes:
        p_easy, p_hard: Initial base of the keep probability p^count of all-correct / all-wrong prompts.
        min_p, max_p: Range p_easy and p_hard adapt in.
        adapt_step: Change of p_easy and p_hard per training step.
        target_zero_variance: Target share of zero-variance groups; 1/3 of it for easy, 2/3 for hard.
        keep_floor: Smallest keep probability, so a skipped prompt is still revisited now and then.
        round_margin: Safety factor on the prompts asked for in a refill round.
    """

    p_easy: float = 0.5
    p_hard: float = 0.5
    min_p: float = 0.05
    max_p: float = 0.95
    adapt_step: float = 0.01
    target_zero_variance: float = 0.25
    keep_floor: float = 0.01
    round_margin: float = 1.25


class GRESOFill:
    """Rounds of prompts that survive GRESO's skip, until batch_size informative groups or max_rounds.

    A prompt whose last `count` visits were all correct (all wrong) is skipped before rollout with
    probability 1 - max(p_easy^count, 0.01) (p_hard for all wrong); p_easy and p_hard start at 0.5 and move
    by 0.01 per step (from the second epoch, within [0.05, 0.95]) so the all-correct and all-wrong shares
    track 1/3 and 2/3 of a 0.25 target. Round 1 asks for batch_size surviving prompts, round r > 1 for
    min(batch_size, (groups still needed) / (1 - last zero-variance share) * 1.25); skipped prompts are
    consumed from the epoch (at most one epoch is read per round).
    """

    def __init__(self, batch_size: int, max_rounds: int, stream: PromptStream, rng: np.random.Generator,
                 settings: GRESOSettings = GRESOSettings()):
        self.batch_size = batch_size
        self.max_rounds = max_rounds
        self.stream = stream
        self.rng = rng
        self.settings = settings
        self.p_easy = settings.p_easy
        self.p_hard = settings.p_hard
        # Consecutive most recent visits that were all correct / all wrong (GRESO's reward trace, reduced).
        self.easy_streak = np.zeros(stream.prompts, dtype=np.int64)
        self.hard_streak = np.zeros(stream.prompts, dtype=np.int64)
        self._last_round_zero_variance = 0.0
        self._sampled = 0

    def skip_probability(self, prompt_ids: np.ndarray) -> np.ndarray:
        easy, hard = self.easy_streak[prompt_ids], self.hard_streak[prompt_ids]
        floor = self.settings.keep_floor
        skip_easy = 1.0 - np.maximum(self.p_easy ** easy, floor)
        skip_hard = 1.0 - np.maximum(self.p_hard ** hard, floor)
        return np.where(easy > 0, skip_easy, np.where(hard > 0, skip_hard, 0.0))

    def next_round(self, take: Callable[[int], np.ndarray], counts: GroupCounts | None, rounds: int) -> np.ndarray:
        wanted = self.batch_size
        if rounds > 0:
            useful = informative_groups(counts)
            still_needed = self.batch_size - int(useful.sum())
            if rounds >= self.max_rounds or still_needed <= 0:
                return NO_PROMPTS
            last = slice(self._sampled, None)
            self._last_round_zero_variance = 1.0 - float(useful[last].mean()) if useful[last].size else 1.0
            expected_useful = max(1.0 - self._last_round_zero_variance, 0.05)
            wanted = min(math.ceil(still_needed / expected_useful * self.settings.round_margin), self.batch_size)
        self._sampled = 0 if counts is None else counts.n_groups
        survivors: list[np.ndarray] = []
        kept = examined = 0
        while kept < wanted and examined < self.stream.prompts:
            candidates = take(wanted - kept).astype(np.int64)
            examined += candidates.size
            chosen = candidates[self.rng.random(candidates.size) >= self.skip_probability(candidates)]
            survivors.append(chosen)
            kept += chosen.size
        return np.concatenate(survivors).astype(np.uint64)

    def observe(self, keys: np.ndarray, counts: GroupCounts) -> None:
        ids = keys.astype(np.int64)
        all_correct = (counts.correct == counts.rollouts) & (counts.rollouts > 0)
        all_wrong = counts.correct == 0
        self.easy_streak[ids] = np.where(all_correct, self.easy_streak[ids] + 1, 0)
        self.hard_streak[ids] = np.where(all_wrong, self.hard_streak[ids] + 1, 0)
        if self.stream.epoch > 0:  # GRESO adapts from the second epoch on
            self.p_easy = self._adapted(self.p_easy, all_correct.mean(), self.settings.target_zero_variance / 3)
            self.p_hard = self._adapted(self.p_hard, all_wrong.mean(), self.settings.target_zero_variance * 2 / 3)

    def _adapted(self, p: float, observed_share: float, target_share: float) -> float:
        """Lower p (skip more) while the share is at or above its target, raise it otherwise."""
        step = -self.settings.adapt_step if observed_share >= target_share else self.settings.adapt_step
        return float(np.clip(p + step, self.settings.min_p, self.settings.max_p))


class Oracle:
    """The upper limit, as four step policies sharing what it knows: every prompt's true p.

    With P_mix(p) = 1 - p^n - (1 - p)^n the chance of both outcomes within the cap n = n_total, and
    E_draws(p) = 1 + sum_{t=1}^{n-1} (p^t + (1 - p)^t) the expected draws until both appear (or the cap),
    one step:
      1. (fill) reads prompts from the stream in chunks of B (at most max_rounds chunks) until the prompts
         worth sampling are expected to give READ_MARGIN * B mixed groups; a prompt is worth sampling when
         P_mix >= min_mixed_probability; the candidates are ordered by yield P_mix / E_draws;
      2. (exploration and rescue) samples one rollout at a time per prompt until both outcomes appeared or
         n were drawn; a candidate starts only while the budget covers the caps of every prompt still
         drawing (so the step never generates more than B * n_total) and fewer than B groups are mixed or
         still drawing;
      3. (selection) trains each mixed group's balanced pair: its first rollout and the first one of the
         other outcome: f(1, 1) = 1/2 is the largest signal a group can carry, at the fewest trained rollouts.
    So its signal per step, per generated rollout and per trained rollout bound what realisable policies reach.
    """

    READ_MARGIN = 1.25

    def __init__(self, success_probability: Callable[[], np.ndarray], batch_size: int, n_total: int,
                 max_rounds: int, min_mixed_probability: float):
        self.success_probability = success_probability
        self.batch_size = batch_size
        self.n_total = n_total
        self.max_rounds = max_rounds
        self.min_mixed_probability = min_mixed_probability
        self.barrier_free = False
        self.stops_at_first_success = False

    def mixed_yield(self, p: np.ndarray) -> np.ndarray:
        """Expected mixed groups per generated rollout: P_mix / E_draws."""
        steps = np.arange(1, self.n_total)[:, None]
        expected_draws = 1.0 + (p**steps + (1.0 - p) ** steps).sum(axis=0)
        return (1.0 - zero_variance_probability(p, self.n_total)) / expected_draws

    # Fill
    def next_round(self, take, counts, rounds: int) -> np.ndarray:
        if rounds > 0:
            return NO_PROMPTS
        p = self.success_probability()
        chunks, expected_mixed = [], 0.0
        while expected_mixed < self.READ_MARGIN * self.batch_size and len(chunks) < self.max_rounds:
            chunk = take(self.batch_size).astype(np.int64)
            mixed_probability = 1.0 - zero_variance_probability(p[chunk], self.n_total)
            worth = mixed_probability >= self.min_mixed_probability
            chunks.append(chunk[worth])
            expected_mixed += mixed_probability[worth].sum()
        candidates = np.concatenate(chunks)
        return candidates[np.argsort(-self.mixed_yield(p[candidates]), kind="stable")].astype(np.uint64)

    def observe(self, keys, counts) -> None:
        """Knows everything already."""

    # Exploration: one rollout for as many leading candidates as the budget's reserve admits.
    def counts(self, prompts: PromptsView) -> np.ndarray:
        admitted = min(prompts.keys.size, self.batch_size)  # each may draw up to n: B * n is the budget
        return (np.arange(prompts.keys.size) < admitted).astype(np.int64)

    # Rescue: +1 for every admitted prompt still unmixed under its cap; admit more while the reserve allows.
    def requests(self, state: RescueState) -> np.ndarray:
        counts, requested = state.counts, state.requested
        mixed = (counts.correct > 0) & (counts.correct < counts.rollouts)
        started = requested > 0
        drawing = started & ~mixed & (requested < self.n_total)
        extra = drawing.astype(np.int64)
        reserve = int(requested.sum()) + int((self.n_total - requested[drawing]).sum())
        slots = self.batch_size - int(mixed.sum()) - int(drawing.sum())
        for position in np.flatnonzero(~started):
            if slots <= 0 or reserve + self.n_total > self.batch_size * self.n_total:
                break
            extra[position] = 1
            reserve += self.n_total
            slots -= 1
        return extra

    # Selection
    def keep(self, success: np.ndarray, group: np.ndarray, counts: GroupCounts, rng) -> np.ndarray:
        """Rows arrive grouped and, within a group, in draw order: its first row and the first of the other
        outcome (a mixed group's draws stop at the first change, so that is its last row)."""
        keep = np.zeros(success.size, dtype=bool)
        if not success.size:
            return keep
        boundary = group[1:] != group[:-1]
        first, last = np.r_[True, boundary], np.r_[boundary, True]
        mixed = (counts.correct > 0) & (counts.correct < counts.rollouts)
        return (first | last) & mixed[group]
