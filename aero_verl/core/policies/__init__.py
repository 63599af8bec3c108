"""The policies a step is made of (protocols in base.py) and the paper's AERO built from an AEROConfig.

Adding a policy: write its class in a module here (or anywhere: the step only needs the protocol's
methods), choose it in `aero_policies` from a setting of core/config.py, and add its config group under
hydra_configs/aero/. The simulator and the verl trainer both build their step from `aero_policies`.
"""

from __future__ import annotations

from aero_verl.core.config import AEROConfig
from aero_verl.core.policies.advantages import GroupAdvantages, group_advantages
from aero_verl.core.policies.base import (
    Advantage,
    Exploration,
    Fill,
    LossWeighting,
    PromptsView,
    Rescue,
    RescueState,
    Selection,
    StepPolicies,
)
from aero_verl.core.policies.exploration import FixedExploration, PosteriorExploration, all_same_probability
from aero_verl.core.policies.fill import DynamicSampling, SingleBatch
from aero_verl.core.policies.rescue import BarrierFreeRescue, NoRescue, RescueRounds, concurrent_stops
from aero_verl.core.policies.selection import (
    BalancedRejection,
    KeepAll,
    KeepInformative,
    incorrect_quota,
    step_rng,
)
from aero_verl.core.policies.weighting import PerGroupWeighting, TokenMeanWeighting, per_group_loss_weights


def aero_policies(cfg: AEROConfig, normalize_by_std: bool = True, fill: Fill | None = None) -> StepPolicies:
    """AERO as configured: exploration by explore_mode, rescue by rescue_mode, Lemma 4.2's rejection,
    advantages by advantage_mode (Dr.GRPO's scale if not normalize_by_std), weighting by loss_weighting."""
    exploration = (FixedExploration(cfg.n_explore) if cfg.explore_mode == "fixed"
                   else PosteriorExploration(cfg.n_explore, cfg.n_explore_min, cfg.explore_skip_probability))
    rescue = (RescueRounds(cfg.n_total, cfg.n_extra, cfg.budget_mode, cfg.max_rescue_rounds)
              if cfg.rescue_mode == "rounds" else BarrierFreeRescue(cfg.n_total))
    weighting = TokenMeanWeighting() if cfg.loss_weighting == "token_mean" else PerGroupWeighting()
    return StepPolicies(
        exploration=exploration,
        rescue=rescue,
        selection=BalancedRejection(cfg.k, cfg.advantage_mode, cfg.degenerate_keep, cfg.drop_failed_rescues),
        advantage=GroupAdvantages(cfg.advantage_mode, cfg.epsilon, normalize_by_std),
        weighting=weighting,
        fill=fill,
    )


__all__ = [
    "Advantage",
    "BalancedRejection",
    "BarrierFreeRescue",
    "DynamicSampling",
    "Exploration",
    "Fill",
    "FixedExploration",
    "GroupAdvantages",
    "KeepAll",
    "KeepInformative",
    "LossWeighting",
    "NoRescue",
    "PerGroupWeighting",
    "PosteriorExploration",
    "PromptsView",
    "Rescue",
    "RescueRounds",
    "RescueState",
    "Selection",
    "SingleBatch",
    "StepPolicies",
    "TokenMeanWeighting",
    "aero_policies",
    "all_same_probability",
    "concurrent_stops",
    "group_advantages",
    "incorrect_quota",
    "per_group_loss_weights",
    "step_rng",
]
