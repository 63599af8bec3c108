"""`algorithm.adv_estimator=aero`: the step's advantages through verl's advantage-estimator registry.

verl calls the estimator with the batch's token-level rewards, response mask and per-row `uid`, rows in
the order of the batch it trains (verl/trainer/ppo/ray_trainer.py, compute_advantage, reached from
verl/trainer/ppo/v1/trainer_base.py `_compute_advantage`). The AERO trainer has already decided every
row's advantage and loss weight in its AEROStep; it publishes them, in that order, with
`publish_advantages` around verl's advantage step (both run in the trainer process), and the estimator
returns advantage x weight on every response token.

KL in the reward (`algorithm.use_kl_in_reward=True`): verl subtracts beta * KL from the token rewards before
the estimator, so sum(token_level_rewards) = r_i + kl_i with r_i the verified 0/1 outcome and kl_i =
-beta sum_t KL_t. The step decided strata, posterior and advantages from r_i alone; the KL penalty then
enters as verl's GRPO would take it, on the advantage's own scale: A_i + (kl_i - mean_group(kl)) / s_i,
s_i the divisor of row i's advantage (its group's std, sqrt(p~(1-p~)), or 1). For a group with both
outcomes this is GRPO on the shaped score up to the std's own O(beta) change, so signs and values match
the run without KL up to that documented term.

The estimator outside the AERO trainer has no step to read from: verl_ext/settings.py refuses
`adv_estimator=aero` with any other trainer before Ray starts, and the estimator itself raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from verl.trainer.ppo.core_algos import register_adv_est

from aero_verl.verl_ext.batches import token_level_advantages

ESTIMATOR_NAME = "aero"


@dataclass(frozen=True)
class RowAdvantages:
    """Per row of the trained batch, in its order: uid, advantage, loss weight, 0/1 outcome, advantage
    divisor, and the row's group (-1 for verl's padding rows)."""

    uids: list[str]
    advantages: np.ndarray
    weights: np.ndarray
    outcomes: np.ndarray
    scale: np.ndarray
    group: np.ndarray


_published: RowAdvantages | None = None


@contextmanager
def publish_advantages(rows: RowAdvantages) -> Iterator[None]:
    """Make the step's per-row decisions visible to the estimator for one advantage computation."""
    global _published
    previous, _published = _published, rows
    try:
        yield
    finally:
        _published = previous


def kl_term(shaped_scores: np.ndarray, rows: RowAdvantages) -> np.ndarray:
    """(kl_i - mean over the row's group of kl) / s_i per row (module docstring); 0 for padding rows."""
    kl = np.where(rows.group >= 0, shaped_scores - rows.outcomes, 0.0)
    real = rows.group >= 0
    term = np.zeros(kl.size)
    if real.any():
        group = rows.group[real]
        n_groups = int(group.max()) + 1
        mean = np.bincount(group, weights=kl[real], minlength=n_groups) / np.maximum(
            np.bincount(group, minlength=n_groups), 1)
        term[real] = (kl[real] - mean[group]) / rows.scale[real]
    return term


@register_adv_est(ESTIMATOR_NAME)
def compute_aero_advantage(token_level_rewards, response_mask, index=None, config=None, **unused):
    """(advantages, returns), both (bs, L): the AERO step's per-row advantage x loss weight."""
    rows = _published
    if rows is None:
        raise RuntimeError("algorithm.adv_estimator=aero runs only inside the AERO trainer (trainer.v1.trainer_mode="
                           "aero), which decides each rollout's advantage in its step; use adv_estimator=grpo "
                           "with other trainers")
    uids = [str(uid) for uid in np.asarray(index, dtype=object)]
    if uids != rows.uids:
        raise RuntimeError(f"the advantage batch ({len(uids)} rows) is not the batch the AERO step published "
                           f"({len(rows.uids)} rows); the rows verl trains must not change between selection and "
                           "the advantage step")
    advantages = rows.advantages.copy()
    if config is not None and config.get("use_kl_in_reward", False):
        shaped = token_level_rewards.sum(dim=-1).double().cpu().numpy()
        advantages = advantages + kl_term(shaped, rows)
    values = token_level_advantages(advantages * rows.weights, response_mask, token_level_rewards)
    return values, values
