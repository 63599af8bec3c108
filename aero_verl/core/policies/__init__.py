"""The policies a step is made of (protocols in base.py) and the paper's AERO built from an AEROConfig.

Adding a policy: a module here whose factory registers under the setting that chooses it
(registry.py: `@register("rescue", "my_rescue")` makes `aero.rescue_mode=my_rescue` valid), a config
group under hydra_configs/aero/, and its tests. Every module of this package is imported with it, so
nothing else changes: the settings' validation and docs read the registry, the verl trainer and the
simulator build their steps with `aero_policies`, and the simulator runs an AERO variant per registered
policy. The simulator's peers (GRPO, DAPO, GRESO, the oracle) implement the same protocols directly.
"""

from __future__ import annotations

import importlib
import pkgutil

from aero_verl.core.config import AEROConfig
from aero_verl.core.policies import registry
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


for _module in pkgutil.iter_modules(__path__):  # every policy module registers itself (registry.py)
    importlib.import_module(f"{__name__}.{_module.name}")


def aero_policies(cfg: AEROConfig, normalize_by_std: bool = True, fill: Fill | None = None) -> StepPolicies:
    """AERO as configured: each kind's registered policy named by its setting (registry.KINDS), Lemma 4.2's
    rejection, advantages on Dr.GRPO's scale if not normalize_by_std."""
    return StepPolicies(
        exploration=registry.build("exploration", cfg.explore_mode, cfg),
        rescue=registry.build("rescue", cfg.rescue_mode, cfg),
        selection=BalancedRejection(cfg.k, cfg.advantage_mode, cfg.degenerate_keep, cfg.drop_failed_rescues),
        advantage=registry.build("advantage", cfg.advantage_mode, cfg, normalize_by_std=normalize_by_std),
        weighting=registry.build("weighting", cfg.loss_weighting, cfg),
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
