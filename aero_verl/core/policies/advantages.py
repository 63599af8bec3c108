"""Group-relative advantages over groups of different sizes (paper Section 2 and Section 3.4).

For a group with at least two rollouts and both outcomes present this is GRPO exactly as verl computes it
(verl/trainer/ppo/core_algos.py, compute_grpo_outcome_advantage): A_i = (r_i - mean) / (std + eps) with
the unbiased (N - 1) std, or A_i = r_i - mean without std normalisation (Dr.GRPO,
`algorithm.norm_adv_by_std_in_grpo=False`).

Zero-variance groups (all rollouts alike, a group of one included) carry no GRPO signal. verl gives a lone
rollout its raw score; AERO never does. What they get depends on the posterior mode (p~ is the prompt's
posterior mean, in (0, 1) because the prior is proper):
    smoothed   A_i = (r_i - p~) / sqrt(p~ (1 - p~))   (reading A: never exactly 0, sign of the outcome);
               without std normalisation A_i = r_i - p~, on the same scale as Dr.GRPO's mixed groups
    constant   A_i = 2 p~ - 1                          (reading D)
    off        A_i = 0                                 (plain GRPO)
"""

from __future__ import annotations

import numpy as np

from aero_verl.core.policies.registry import register

ADVANTAGE_MODES = ("smoothed", "constant", "off")


def group_advantages(rewards: np.ndarray, group: np.ndarray, posterior_mean: np.ndarray, mode: str,
                     epsilon: float = 1e-6, normalize_by_std: bool = True) -> np.ndarray:
    """Advantage per rollout; `group` indexes `posterior_mean` (used for zero-variance groups only)."""
    return advantages_and_scales(rewards, group, posterior_mean, mode, epsilon, normalize_by_std)[0]


def advantages_and_scales(rewards: np.ndarray, group: np.ndarray, posterior_mean: np.ndarray, mode: str,
                          epsilon: float = 1e-6, normalize_by_std: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(advantage, the divisor it was normalised by) per rollout: std + eps of a group with variance,
    sqrt(p~ (1 - p~)) + eps of a smoothed zero-variance group, 1 otherwise."""
    if mode not in ADVANTAGE_MODES:
        raise ValueError(f"advantage mode {mode!r} is not one of {ADVANTAGE_MODES}")
    rewards = np.asarray(rewards, dtype=np.float64)
    group = np.asarray(group, dtype=np.int64)
    posterior_mean = np.asarray(posterior_mean, dtype=np.float64)
    n_groups = posterior_mean.size
    size = np.bincount(group, minlength=n_groups).astype(np.float64)
    mean = np.bincount(group, weights=rewards, minlength=n_groups) / np.maximum(size, 1.0)
    squared_deviation = np.bincount(group, weights=(rewards - mean[group]) ** 2, minlength=n_groups)
    std = np.sqrt(squared_deviation / np.maximum(size - 1.0, 1.0))
    has_variance = (size >= 2) & (squared_deviation > 0)

    centred = rewards - mean[group]
    scale = std[group] + epsilon if normalize_by_std else np.ones(rewards.size)
    advantages = np.where(has_variance[group], centred / scale, 0.0)
    scale = np.where(has_variance[group], scale, 1.0)

    p = posterior_mean[group]
    if mode == "smoothed":
        smoothed_scale = np.sqrt(p * (1.0 - p)) + epsilon if normalize_by_std else np.ones(rewards.size)
        advantages = np.where(has_variance[group], advantages, (rewards - p) / smoothed_scale)
        scale = np.where(has_variance[group], scale, smoothed_scale)
    elif mode == "constant":
        advantages = np.where(has_variance[group], advantages, 2.0 * p - 1.0)
    return advantages, scale


class GroupAdvantages:
    def __init__(self, mode: str, epsilon: float = 1e-6, normalize_by_std: bool = True):
        if mode not in ADVANTAGE_MODES:
            raise ValueError(f"advantage mode {mode!r} is not one of {ADVANTAGE_MODES}")
        self.mode = mode
        self.epsilon = epsilon
        self.normalize_by_std = normalize_by_std

    def advantages(self, success: np.ndarray, group: np.ndarray, posterior_mean: np.ndarray) -> np.ndarray:
        return group_advantages(np.asarray(success, dtype=np.float64), group, posterior_mean, self.mode,
                                self.epsilon, self.normalize_by_std)

    def scales(self, success: np.ndarray, group: np.ndarray, posterior_mean: np.ndarray) -> np.ndarray:
        """The divisor of each advantage (advantages_and_scales): a KL-in-reward term is put on this scale."""
        return advantages_and_scales(np.asarray(success, dtype=np.float64), group, posterior_mean, self.mode,
                                     self.epsilon, self.normalize_by_std)[1]


def _mode(name: str):
    @register("advantage", name)
    def build(cfg, normalize_by_std: bool = True) -> GroupAdvantages:
        return GroupAdvantages(name, cfg.epsilon, normalize_by_std)

    return build


for _name in ADVANTAGE_MODES:
    _mode(_name)
