"""The AERO mathematics and the step's order: numpy only, no verl, no Ray (importing it leaves verl out
of sys.modules).

    config      AEROConfig: every setting described once (default, group, provenance, range, meaning)
    posterior   BetaPosteriorTable: per-prompt Beta posterior carried across steps (Section 3.4)
    counts      GroupCounts and strata: the per-group counts every decision reads (Section 3.2)
    outcomes    binary outcomes from verified rewards, with a policy for invalid ones
    policies    the protocols a step is made of and their implementations: exploration, rescue
                (Section 3.3), selection (Strategies 2-3, Lemma 4.2), advantages (Section 3.4), loss
                weighting (Theorem 4.1's normalisation), prompt fill (the simulator's peers)
    accounting  what a step generated, kept and saved; posterior calibration
    theory      the closed form of Theorem 4.1
    step        AEROStep: one whole step, the only implementation of the order of the calls above
"""

from aero_verl.core.accounting import StepAccounting, account_step, brier_score
from aero_verl.core.config import AEROConfig, AEROConfigError, settings_table
from aero_verl.core.counts import GroupCounts, Stratum, stratify
from aero_verl.core.outcomes import InvalidRewardError, binary_outcomes
from aero_verl.core.policies import (
    StepPolicies,
    aero_policies,
    all_same_probability,
    group_advantages,
    incorrect_quota,
    per_group_loss_weights,
    step_rng,
)
from aero_verl.core.posterior import BetaPosteriorTable, as_prompt_keys
from aero_verl.core.step import AEROStep, StepResult, run_aero_step
from aero_verl.core.theory import gradient_scale

__all__ = [
    "AEROConfig",
    "AEROConfigError",
    "AEROStep",
    "BetaPosteriorTable",
    "GroupCounts",
    "InvalidRewardError",
    "StepAccounting",
    "StepPolicies",
    "StepResult",
    "Stratum",
    "aero_policies",
    "account_step",
    "all_same_probability",
    "as_prompt_keys",
    "binary_outcomes",
    "brier_score",
    "gradient_scale",
    "group_advantages",
    "incorrect_quota",
    "per_group_loss_weights",
    "run_aero_step",
    "settings_table",
    "step_rng",
    "stratify",
]
