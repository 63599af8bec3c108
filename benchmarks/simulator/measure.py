"""What one policy step generated, trained and learned, measured the same way for every policy.

Every policy is an AEROStep (aero_verl.core) with its own StepPolicies; this module reads the StepResult.

Useful gradient signal of a trained group (the quantity the population learns from and the efficiency
measures divide): the projection of the group's expected gradient, given its outcomes, on the direction
d = mu+ - mu- that raises the prompt's success probability, in units of ||d||.
  - A group with both outcomes: Theorem 4.1's f(c, m) = sqrt(c m) / (c + m) (core.gradient_scale) over
    the rollouts actually trained: the per-group mean normalisation of the theorem.
  - A zero-variance group trained with a non-zero advantage (AERO's posterior modes):
    (1/n) sum_i A_i E[s_i | r_i] with E[s | correct] = (1 - p) d and E[s | wrong] = -p d (p the prompt's
    true success probability; these follow from p mu+ + (1 - p) mu- = 0).
The loss weighting the step actually used scales it: verl's token-mean gives a group G x (its share of the
weighted trained tokens), so a small kept group pushes less than a large one, while AERO's per_group
weighting gives every group 1 (core/policies/weighting.py). Gradient noise: the signal the population
learns from is that expectation plus Gaussian noise of sd `noise_sd` x multiplier / sqrt(rows trained in
the group), so groups of few rollouts are noisier (PopulationConfig.noise_sd); the efficiency measures
use the expectation.

Wall clock: phase_model.PhaseCostModel over the step's generation phases (each a barrier that waits for
its slowest response; a barrier-free rescue starts when its own prompt's Stage I ends) and its trained
tokens. It is a model: its assumptions are printed with its numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aero_verl.core import StepResult, gradient_scale
from phase_model import PhaseCostModel


@dataclass(frozen=True)
class StepRecord:
    """One policy step, per generated group and in totals.

    Attributes:
        prompt_ids: Prompt of each generated group.
        signal: Expected useful gradient signal of each group's trained rollouts (0 if not trained), under
            the loss weighting the step used.
        noise_scale: sd of the gradient noise of each group's signal, per unit of PopulationConfig.noise_sd.
        rollouts_generated, tokens_generated: Everything sampled this step, regeneration included.
        rollouts_trained, tokens_trained: What went into the policy update.
        groups_generated: Groups sampled.
        zero_variance_groups: Generated groups whose rollouts were all correct or all wrong once the
            step's generation for them ended (zero advantage under plain GRPO).
        groups_trained: Groups with at least one trained rollout.
        zero_advantage_groups_trained: Trained groups whose every advantage is 0 (pure training waste).
        generation_rounds: Generation phases (each a barrier for wall-clock).
        wall_s: The step's wall clock under the phase cost model.
    """

    prompt_ids: np.ndarray
    signal: np.ndarray
    noise_scale: np.ndarray
    rollouts_generated: int
    tokens_generated: int
    rollouts_trained: int
    tokens_trained: int
    groups_generated: int
    zero_variance_groups: int
    groups_trained: int
    zero_advantage_groups_trained: int
    generation_rounds: int
    wall_s: float


def expected_score(success: np.ndarray, p: np.ndarray) -> np.ndarray:
    """E[s_i | r_i] along d: (1 - p) for a correct rollout, -p for a wrong one."""
    return np.where(success, 1.0 - p, -p)


def group_signals(success: np.ndarray, group: np.ndarray, keep: np.ndarray, advantages: np.ndarray,
                  true_p: np.ndarray) -> np.ndarray:
    """Useful gradient signal per group under the per-group mean (module docstring); advantages are per
    rollout, 0 where not kept."""
    n_groups = true_p.size
    kept_group = group[keep]
    correct = np.bincount(kept_group, weights=success[keep], minlength=n_groups)
    size = np.bincount(kept_group, minlength=n_groups)
    mixed = gradient_scale(correct, size - correct)
    projected = advantages * expected_score(success, true_p[group])
    degenerate = np.bincount(kept_group, weights=projected[keep], minlength=n_groups) / np.maximum(size, 1)
    return np.where((correct > 0) & (correct < size), mixed, degenerate)


def loss_multipliers(result: StepResult) -> np.ndarray:
    """G x each group's share of the loss's weighted tokens: 1 for every group under per-group weighting."""
    rows = result.training_order
    n_groups = result.keys.size
    if rows.size == 0:
        return np.zeros(n_groups)
    mass = result.loss_weights(rows) * result.lengths[rows]
    groups_trained = np.unique(result.group[rows]).size
    return np.bincount(result.group[rows], weights=mass, minlength=n_groups) / mass.sum() * groups_trained


def measure_step(result: StepResult, true_p: np.ndarray, phases: PhaseCostModel) -> StepRecord:
    """A StepRecord from an AEROStep's result; true_p is every prompt's success probability (by prompt id)."""
    prompt_ids = result.keys.astype(np.int64)
    counts, accounting = result.counts, result.accounting
    generated = (counts.rollouts + np.bincount(result.group[result.stopped], minlength=prompt_ids.size)) > 0
    kept_size = np.bincount(result.group[result.keep], minlength=prompt_ids.size)
    multiplier = loss_multipliers(result)
    signal = group_signals(result.success, result.group, result.keep, result.advantages, true_p[prompt_ids])
    return StepRecord(
        prompt_ids=prompt_ids,
        signal=signal * multiplier,
        noise_scale=np.where(kept_size > 0, multiplier / np.sqrt(np.maximum(kept_size, 1)), 0.0),
        rollouts_generated=accounting.rollouts_generated + accounting.rollouts_stopped,
        tokens_generated=accounting.tokens_generated,
        rollouts_trained=accounting.rollouts_kept,
        tokens_trained=accounting.tokens_kept,
        groups_generated=int(generated.sum()),
        zero_variance_groups=int((generated & counts.zero_variance).sum()),
        groups_trained=accounting.groups_kept,
        zero_advantage_groups_trained=accounting.zero_advantage_groups_kept,
        generation_rounds=accounting.generation_phases,
        wall_s=phases.step_time(result.group, result.stage1, result.phase, result.lengths, accounting.tokens_kept),
    )
