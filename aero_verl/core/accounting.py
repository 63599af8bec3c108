"""Per-step accounting of what AERO generated, kept and saved, and how calibrated its posterior is.

The counterfactual is uniform GRPO at the same budget: n_total rollouts per prompt, all generated and all
trained. Posterior calibration is the Brier score of the posterior mean held before the step (the
prediction) against the step's Stage I outcomes (unbiased draws; Stage II stops on success, so it is not),
next to the Brier score of the prior mean as a reference.

Rollouts stopped before they finished (barrier-free rescue) are counted apart: they have no outcome, so
they are not in `rollouts_generated`, but the tokens they generated are in `tokens_generated` (and in
`tokens_stopped`): they cost the budget what they generated. `tokens_spared_estimate` is what stopping
them saved, estimated per stopped rollout as the mean length of its prompt's finished incorrect
rollouts minus what it had generated (an estimate: how long it would have run is unknown).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from aero_verl.core.config import AEROConfig
from aero_verl.core.counts import GroupCounts, Stratum


@dataclass(frozen=True)
class StepAccounting:
    """One AERO step, in counts; `metrics()` adds the derived ratios."""

    prompts: int
    rollouts_stage1: int
    rollouts_stage2: int
    rollouts_requested: int
    rollouts_stopped: int
    generation_phases: int
    rescue_rounds: int
    rollouts_kept: int
    rollouts_per_prompt_max: int
    tokens_generated: int
    tokens_stopped: int
    tokens_spared_estimate: int
    tokens_kept: int
    budget: int
    prompts_rescue: int
    prompts_low_success: int
    prompts_high_accuracy: int
    prompts_without_rollouts: int
    prompts_rescued: int
    prompts_failed_rescue: int
    zero_variance_groups_stage1: int
    zero_variance_groups: int
    groups_kept: int
    zero_advantage_groups_kept: int
    success_rate_stage1: float
    success_rate_generated: float
    success_rate_kept: float
    posterior_brier: float
    prior_brier: float
    invalid_rewards: int

    @property
    def rollouts_generated(self) -> int:
        """Rollouts with an outcome (stopped ones are not)."""
        return self.rollouts_stage1 + self.rollouts_stage2

    def metrics(self, prefix: str = "aero/") -> dict[str, float]:
        """Flat scalar metrics for verl's logger (ints and floats only: verl drops bools)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        generated = self.rollouts_generated
        values.update(
            rollouts_generated=generated,
            rollouts_rejected=generated - self.rollouts_kept,
            budget_used_frac=generated / max(self.budget, 1),
            # Savings against uniform GRPO at the same budget (n_total generated and trained per prompt).
            generation_saved_frac=1.0 - generated / max(self.budget, 1),
            training_saved_frac=1.0 - self.rollouts_kept / max(self.budget, 1),
            kept_per_prompt=self.rollouts_kept / max(self.prompts, 1),
            zero_variance_share_stage1=self.zero_variance_groups_stage1 / max(self.prompts, 1),
            zero_advantage_share_kept=self.zero_advantage_groups_kept / max(self.groups_kept, 1),
            rescued_share=self.prompts_rescued / max(self.prompts_rescue, 1),
        )
        return {prefix + name: float(value) for name, value in values.items()}


def brier_score(predicted: np.ndarray, outcomes: np.ndarray) -> float:
    """mean((p - y)^2) over rollouts; NaN if there are none."""
    predicted = np.asarray(predicted, dtype=np.float64)
    outcomes = np.asarray(outcomes, dtype=np.float64)
    return float(np.mean((predicted - outcomes) ** 2)) if outcomes.size else float("nan")


def spared_tokens(group: np.ndarray, success: np.ndarray, stopped: np.ndarray, lengths: np.ndarray,
                  n_groups: int) -> int:
    """Estimated tokens the stopped rollouts would still have generated (module docstring)."""
    finished_wrong = ~stopped & ~success
    wrong_tokens = np.bincount(group[finished_wrong], weights=lengths[finished_wrong], minlength=n_groups)
    wrong_count = np.bincount(group[finished_wrong], minlength=n_groups)
    typical = np.where(wrong_count > 0, wrong_tokens / np.maximum(wrong_count, 1), 0.0)
    return int(np.maximum(typical[group[stopped]] - lengths[stopped], 0.0).sum())


def account_step(cfg: AEROConfig, *, counts: GroupCounts, group: np.ndarray, success: np.ndarray, stage1: np.ndarray,
                 stopped: np.ndarray, lengths: np.ndarray, keep: np.ndarray, advantages: np.ndarray,
                 invalid: np.ndarray, requested: np.ndarray, rescue_barriers: int, generation_phases: int,
                 predicted: np.ndarray) -> StepAccounting:
    """Count one step; per-rollout arrays in recording order, per-prompt arrays in prompt order."""
    group = np.asarray(group, dtype=np.int64)
    success, stage1 = np.asarray(success, dtype=bool), np.asarray(stage1, dtype=bool)
    stopped, keep = np.asarray(stopped, dtype=bool), np.asarray(keep, dtype=bool)
    lengths = np.asarray(lengths, dtype=np.int64)
    n_groups = counts.n_groups
    finished = ~stopped
    stage1_rows = stage1 & finished
    kept_groups = np.bincount(group[keep], minlength=n_groups) > 0
    nonzero = np.bincount(group[keep], weights=np.abs(advantages[keep]) > 0, minlength=n_groups) > 0
    prior_mean = cfg.prior_alpha / (cfg.prior_alpha + cfg.prior_beta)
    return StepAccounting(
        prompts=n_groups,
        rollouts_stage1=int(stage1_rows.sum()),
        rollouts_stage2=int((~stage1 & finished).sum()),
        rollouts_requested=int(np.asarray(requested).sum()),
        rollouts_stopped=int(stopped.sum()),
        generation_phases=int(generation_phases),
        rescue_rounds=int(rescue_barriers),
        rollouts_kept=int(keep.sum()),
        rollouts_per_prompt_max=int(counts.rollouts.max(initial=0)),
        tokens_generated=int(lengths.sum()),
        tokens_stopped=int(lengths[stopped].sum()),
        tokens_spared_estimate=spared_tokens(group, success, stopped, lengths, n_groups),
        tokens_kept=int(lengths[keep].sum()),
        budget=n_groups * cfg.n_total,
        prompts_rescue=int(counts.in_rescue.sum()),
        prompts_low_success=int((counts.strata == Stratum.LOW_SUCCESS).sum()),
        prompts_high_accuracy=int((counts.strata == Stratum.HIGH_ACCURACY).sum()),
        prompts_without_rollouts=int((counts.strata == Stratum.NO_ROLLOUTS).sum()),
        prompts_rescued=int(counts.rescued.sum()),
        prompts_failed_rescue=int(counts.failed_rescue.sum()),
        zero_variance_groups_stage1=int(counts.stage1_zero_variance.sum()),
        zero_variance_groups=int(counts.zero_variance.sum()),
        groups_kept=int(kept_groups.sum()),
        zero_advantage_groups_kept=int((kept_groups & ~nonzero).sum()),
        success_rate_stage1=float(success[stage1_rows].mean()) if stage1_rows.any() else 0.0,
        success_rate_generated=float(success[finished].mean()) if finished.any() else 0.0,
        success_rate_kept=float(success[keep].mean()) if keep.any() else 0.0,
        posterior_brier=brier_score(np.asarray(predicted)[group[stage1_rows]], success[stage1_rows]),
        prior_brier=brier_score(np.full(int(stage1_rows.sum()), prior_mean), success[stage1_rows]),
        invalid_rewards=int(np.asarray(invalid, dtype=bool).sum()),
    )
