"""One AERO step, top to bottom, in the order of the paper's Algorithm 1 (as reconstructed in
docs/paper_readings.md). The only implementation of the step's order: the verl trainer, the simulator and
the benchmarks all drive this object.

    step = AEROStep(cfg, table, step=t)                      # the paper's AERO, policies from cfg
    explore = step.add_prompts(keys)                         # Stage I rollouts per prompt (Section 3.2)
    step.record(group, rewards, lengths, stage1=True)        # their outcomes, as they come back
    while (extra := step.rescue_requests()).any():           # Stage II rescue phases (Section 3.3)
        step.record(group, rewards, lengths, stage1=False)
    result = step.finish()                                   # posterior update (Section 3.4), selective
                                                             # rejection (Strategies 2-3), advantages,
                                                             # loss weights and accounting

`AEROStep.run(sample)` drives it with a sampler callback (the simulator, the README example). A rescue
executor that decides per prompt (verl's agent-loop worker in barrier-free mode) asks `rescue_allowance()`
up front, runs the rescue itself and reports it with `note_requests` and `record(..., new_phase=False)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from aero_verl.core.accounting import StepAccounting, account_step
from aero_verl.core.config import AEROConfig
from aero_verl.core.counts import GroupCounts
from aero_verl.core.outcomes import binary_outcomes
from aero_verl.core.policies import PromptsView, RescueState, StepPolicies, aero_policies, concurrent_stops, step_rng
from aero_verl.core.posterior import BetaPosteriorTable, as_prompt_keys

# sample(prompt_keys, counts) -> (rewards, response_lengths) for the rollouts np.repeat(prompt_keys, counts)
Sampler = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class StepResult:
    """What a step decided, per recorded rollout (in recording order) and per prompt.

    Attributes:
        keys: the prompts' stable keys; `group` indexes them.
        group, success, stage1, stopped, phase, lengths: per rollout (lengths are the tokens generated, a
            stopped rollout's included; a stopped rollout has no outcome and success False).
        invalid: rollouts whose reward was not 0/1 (counted as failures under invalid_reward=failure).
        keep: rollouts that go to training; advantages: theirs (0 elsewhere); advantage_scale: the
            divisor each kept advantage was normalised by (its group's std, sqrt(p~(1-p~)) or 1).
        training_order: the kept rollouts' indices in canonical order (prompt, response digest): training
            on them in that order makes the update independent of completion order.
        counts: the per-group counts everything was decided from.
        predicted, posterior_mean: posterior mean per prompt before and after the step's update.
        accounting: what the step generated, kept and saved.
    """

    keys: np.ndarray
    group: np.ndarray
    success: np.ndarray
    stage1: np.ndarray
    stopped: np.ndarray
    phase: np.ndarray
    lengths: np.ndarray
    invalid: np.ndarray
    keep: np.ndarray
    advantages: np.ndarray
    advantage_scale: np.ndarray
    training_order: np.ndarray
    counts: GroupCounts
    predicted: np.ndarray
    posterior_mean: np.ndarray
    accounting: StepAccounting
    weighting: object = field(repr=False, default=None)

    @property
    def strata(self) -> np.ndarray:
        return self.counts.strata

    def loss_weights(self, rows: np.ndarray, minibatch: np.ndarray | None = None) -> np.ndarray:
        """The loss weighting policy's factor for kept rollouts `rows` laid out in optimizer steps `minibatch`
        (default: one optimizer step for all of them)."""
        rows = np.asarray(rows, dtype=np.int64)
        minibatch = np.zeros(rows.size, dtype=np.int64) if minibatch is None else np.asarray(minibatch)
        return self.weighting.weights(self.group[rows], self.lengths[rows], minibatch)


class AEROStep:
    """The state of one step: its prompts, what was requested for them, and every rollout recorded.

    Args:
        cfg: the AERO settings (n_total, invalid-reward policy, seed; the default policies).
        table: the per-prompt Beta posterior, read for planning and updated by `finish`.
        step: the global step (seeds selective rejection with (cfg.seed, step)).
        policies: what the step is made of; default `aero_policies(cfg)`.
        keys: the step's prompts, if known up front (else `add_prompts`, or `run` with a Fill).
    """

    def __init__(self, cfg: AEROConfig, table: BetaPosteriorTable, step: int, policies: StepPolicies | None = None,
                 keys=None):
        self.cfg = cfg
        self.table = table
        self.step = int(step)
        self.policies = policies if policies is not None else aero_policies(cfg)
        self.keys = np.zeros(0, dtype=np.uint64)
        self._alpha = self._beta = np.zeros(0)
        self._observations = np.zeros(0, dtype=np.int64)
        self.explore = np.zeros(0, dtype=np.int64)
        self.requested = np.zeros(0, dtype=np.int64)
        self.rescue_phases = 0  # rescue requests made (the rescue policy's own count)
        self.generation_phases = 0  # waits for a set of rollouts: Stage I, then each rescue barrier
        self.rescue_barriers = 0
        self._rows: list[dict[str, np.ndarray]] = []
        # Running per-prompt counts of what was recorded, so each rescue phase reads them in O(prompts).
        self._tallies = {name: np.zeros(0, dtype=np.int64) for name in
                         ("returned", "rollouts", "correct", "stage1_rollouts", "stage1_correct")}
        self._finished = False
        if keys is not None:
            self.add_prompts(keys)

    # ------------------------------------------------------------------ prompts and Stage I

    @property
    def prompts(self) -> PromptsView:
        return PromptsView(self.keys, self._alpha, self._beta, self._observations)

    def add_prompts(self, keys) -> np.ndarray:
        """Add prompts to the step; returns their Stage I rollout counts (the exploration policy's)."""
        keys = as_prompt_keys(keys)
        alpha, beta = self.table.alpha_beta(keys)
        observations = self.table.observations(keys)
        explore = np.asarray(self.policies.exploration.counts(PromptsView(keys, alpha, beta, observations)),
                             dtype=np.int64)
        self.keys = np.concatenate([self.keys, keys])
        self._alpha = np.concatenate([self._alpha, alpha])
        self._beta = np.concatenate([self._beta, beta])
        self._observations = np.concatenate([self._observations, observations])
        self.explore = np.concatenate([self.explore, explore])
        self.requested = np.concatenate([self.requested, explore])
        for name in self._tallies:
            self._tallies[name] = np.concatenate([self._tallies[name], np.zeros(keys.size, dtype=np.int64)])
        return explore

    @property
    def n_prompts(self) -> int:
        return int(self.keys.size)

    # ------------------------------------------------------------------ outcomes

    def record(self, group, rewards, lengths, *, stage1: bool, stopped=None, digest=None, row_labels=None,
               new_phase: bool = True) -> None:
        """Add rollouts that came back: prompt position, reward and tokens generated per rollout.

        Args:
            stage1: whether these are Stage I rollouts (else rescue rollouts).
            stopped: per rollout, True if it was stopped before it finished (no outcome; its reward is
                ignored, its tokens still count).
            digest: per rollout, a deterministic function of its response (e.g. a hash of its tokens); rows
                are ordered by (prompt, digest) before the random choice of selective rejection, so that
                choice depends on what was sampled, not on the order it came back in.
            row_labels: what names a rollout in an invalid-reward error (e.g. its prompt key).
            new_phase: False if these rollouts were generated in the same generation phase as the last
                recorded ones (no barrier between them).
        """
        group = np.asarray(group, dtype=np.int64).ravel()
        stopped = np.zeros(group.size, dtype=bool) if stopped is None else np.asarray(stopped, dtype=bool).ravel()
        rewards = np.asarray(rewards, dtype=np.float64).ravel()
        if (group < 0).any() or (group >= self.n_prompts).any():
            raise ValueError(f"rollout prompt positions must be in [0, {self.n_prompts}), got {group.min()}..{group.max()}")
        success, invalid = np.zeros(group.size, dtype=bool), np.zeros(group.size, dtype=bool)
        labels = None if row_labels is None else [label for label, s in zip(row_labels, stopped) if not s]
        success[~stopped], invalid[~stopped] = binary_outcomes(rewards[~stopped], self.cfg.invalid_reward, labels)
        if new_phase or not self._rows:
            self.generation_phases += 1
            self.rescue_barriers += not stage1
        finished = group[~stopped]
        tallies, n = self._tallies, self.n_prompts
        tallies["returned"] += np.bincount(group, minlength=n)
        tallies["rollouts"] += np.bincount(finished, minlength=n)
        tallies["correct"] += np.bincount(finished, weights=success[~stopped], minlength=n).astype(np.int64)
        if stage1:
            tallies["stage1_rollouts"] += np.bincount(finished, minlength=n)
            tallies["stage1_correct"] += np.bincount(finished, weights=success[~stopped], minlength=n).astype(np.int64)
        self._rows.append({
            "group": group,
            "success": success,
            "invalid": invalid,
            "stage1": np.full(group.size, bool(stage1)),
            "stopped": stopped,
            "lengths": np.asarray(lengths, dtype=np.int64).ravel(),
            "digest": np.zeros(group.size, dtype=np.uint64) if digest is None else np.asarray(digest, dtype=np.uint64),
            "phase": np.full(group.size, self.generation_phases - 1, dtype=np.int64),
        })

    def _column(self, name: str, dtype) -> np.ndarray:
        return np.concatenate([rows[name] for rows in self._rows]) if self._rows else np.zeros(0, dtype=dtype)

    def rollouts_recorded(self) -> np.ndarray:
        """Rollouts that came back per prompt, stopped ones included (against `requested`: the lost ones)."""
        return self._tallies["returned"].copy()

    def counts(self) -> GroupCounts:
        """Counts per prompt over the rollouts with an outcome recorded so far."""
        t = self._tallies
        return GroupCounts.from_tallies(t["rollouts"], t["correct"], t["stage1_rollouts"], t["stage1_correct"],
                                        self.cfg.u_res, self.cfg.u_high)

    # ------------------------------------------------------------------ Stage II

    def rescue_requests(self) -> np.ndarray:
        """Rescue rollouts per prompt for the next phase (all zeros: Stage II is over); counted as requested."""
        extra = np.asarray(self.policies.rescue.requests(
            RescueState(self.requested.copy(), self.counts(), self.rescue_phases, self.prompts)), dtype=np.int64)
        if extra.any():
            self.note_requests(extra)
            self.rescue_phases += 1
        return extra

    def rescue_allowance(self) -> np.ndarray:
        """For an executor that rescues per prompt (barrier-free): the rollouts each prompt may request if its
        Stage I leaves it in the rescue stratum (core.counts.stratify, the same rule as here)."""
        allowance = getattr(self.policies.rescue, "allowance", None)
        if allowance is None:
            raise TypeError(f"{type(self.policies.rescue).__name__} plans rescue phases for the whole batch; "
                            "only a per-prompt rescue policy (BarrierFreeRescue) has an allowance")
        return allowance(self.explore)

    def note_requests(self, extra) -> None:
        """Count rollouts requested for the prompts outside `rescue_requests` (a per-prompt executor's)."""
        self.requested = self.requested + np.asarray(extra, dtype=np.int64)

    # ------------------------------------------------------------------ the end of the step

    def finish(self) -> StepResult:
        """Update the posterior from every rollout with an outcome, select, compute advantages, account."""
        if self._finished:
            raise RuntimeError("finish() was already called for this step")
        self._finished = True
        group, success, stage1 = self._column("group", np.int64), self._column("success", bool), \
            self._column("stage1", bool)
        stopped, lengths, digest = self._column("stopped", bool), self._column("lengths", np.int64), \
            self._column("digest", np.uint64)
        counts = self.counts()
        predicted = self.prompts.posterior_mean

        # The posterior learns from both stages (Section 3.4): Bayesian updating stays valid under the
        # rescue's data-dependent stopping. A stopped rollout has no outcome and is not evidence.
        self.table.update(self.keys, counts.correct, counts.incorrect)
        posterior_mean = self.table.mean(self.keys)

        # Strategies 2-3: selection among rollouts with an outcome, in canonical order.
        outcome = np.flatnonzero(~stopped)
        order = outcome[np.lexsort((outcome, digest[outcome], group[outcome]))]
        kept_in_order = self.policies.selection.keep(success[order], group[order], counts,
                                                     step_rng(self.cfg.seed, self.step))
        training_order = order[np.asarray(kept_in_order, dtype=bool)]
        keep = np.zeros(group.size, dtype=bool)
        keep[training_order] = True
        advantages, scale = np.zeros(group.size), np.ones(group.size)
        advantages[training_order] = self.policies.advantage.advantages(success[training_order],
                                                                        group[training_order], posterior_mean)
        scales = getattr(self.policies.advantage, "scales", None)
        if scales is not None:
            scale[training_order] = scales(success[training_order], group[training_order], posterior_mean)
        invalid = self._column("invalid", bool)
        accounting = account_step(
            self.cfg, counts=counts, group=group, success=success, stage1=stage1, stopped=stopped, lengths=lengths,
            keep=keep, advantages=advantages, invalid=invalid, requested=self.requested,
            rescue_barriers=self.rescue_barriers, generation_phases=self.generation_phases, predicted=predicted,
        )
        if self.policies.fill is not None:
            self.policies.fill.observe(self.keys, counts)
        return StepResult(keys=self.keys, group=group, success=success, stage1=stage1, stopped=stopped,
                          phase=self._column("phase", np.int64), lengths=lengths, invalid=invalid, keep=keep,
                          advantages=advantages, advantage_scale=scale,
                          training_order=training_order, counts=counts, predicted=predicted,
                          posterior_mean=posterior_mean, accounting=accounting, weighting=self.policies.weighting)

    # ------------------------------------------------------------------ a driver with a sampler callback

    def run(self, sample: Sampler, take: Callable[[int], np.ndarray] | None = None) -> StepResult:
        """Drive the whole step with `sample(prompt_keys, counts) -> (rewards, lengths)`.

        With a Fill policy, prompts are drawn round by round with `take(n)`; otherwise the step's prompts
        must already be added. A rescue policy that stops at the first success runs its phase as rollouts
        generated concurrently (`concurrent_stops`)."""
        if self.policies.fill is not None:
            if take is None:
                raise TypeError("a step with a Fill policy needs take(n) to draw prompts")
            rounds = 0
            while (new := self.policies.fill.next_round(take, self.counts() if rounds else None, rounds)).size:
                first = self.n_prompts
                explore = self.add_prompts(new)
                self._sample_into(sample, first + np.arange(new.size), explore, stage1=True)
                rounds += 1
        else:
            self._sample_into(sample, np.arange(self.n_prompts), self.explore, stage1=True)
        while (extra := self.rescue_requests()).any():
            asked = np.flatnonzero(extra)
            self._sample_into(sample, asked, extra[asked], stage1=False,
                              concurrent=self.policies.rescue.stops_at_first_success,
                              new_phase=not self.policies.rescue.barrier_free)
        return self.finish()

    def _sample_into(self, sample: Sampler, positions: np.ndarray, counts: np.ndarray, stage1: bool,
                     concurrent: bool = False, new_phase: bool = True) -> None:
        asked = counts > 0
        positions, counts = positions[asked], counts[asked]
        if not positions.size:
            return
        rewards, lengths = sample(self.keys[positions], counts)
        group = np.repeat(positions, counts)
        stopped = None
        if concurrent:
            success, _ = binary_outcomes(rewards, "failure")
            stopped, lengths = concurrent_stops(group, success, lengths)
        self.record(group, rewards, lengths, stage1=stage1, stopped=stopped, new_phase=new_phase)


def run_aero_step(cfg: AEROConfig, table: BetaPosteriorTable, keys, sample: Sampler, step: int,
                  policies: StepPolicies | None = None) -> StepResult:
    """One step over `keys` with a sampler callback (the README example, the benchmarks)."""
    return AEROStep(cfg, table, step, policies, keys=keys).run(sample)
