"""Stage I exploration (paper Section 3.2): how many rollouts each prompt gets before it is stratified.

    fixed       every prompt gets n (the paper: n_explore = 8; GRPO: n = N)
    posterior   a prompt already observed whose Beta posterior makes an all-same group of n_explore likely
                (probability >= explore_skip_probability) gets n_explore_min: the evidence of earlier
                steps stands in for the exploration it skips (a GRESO-like saving driven by the posterior)
"""

from __future__ import annotations

import numpy as np

from aero_verl.core.policies.base import PromptsView
from aero_verl.core.policies.registry import register


def all_same_probability(alpha: np.ndarray, beta: np.ndarray, n: int) -> np.ndarray:
    """P(n Bernoulli(p) draws are all equal) with p ~ Beta(alpha, beta): the Beta-Binomial mass at 0 and n.

    Uses P(0 of n) = prod_j (beta + j) / (alpha + beta + j) and its mirror, stable for any n.
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    steps = np.arange(n, dtype=np.float64)[:, None]
    all_wrong = np.prod((beta + steps) / (alpha + beta + steps), axis=0)
    all_right = np.prod((alpha + steps) / (alpha + beta + steps), axis=0)
    return all_wrong + all_right


class FixedExploration:
    def __init__(self, n: int):
        self.n = int(n)

    def counts(self, prompts: PromptsView) -> np.ndarray:
        return np.full(prompts.keys.size, self.n, dtype=np.int64)


class PosteriorExploration:
    def __init__(self, n_explore: int, n_explore_min: int, skip_probability: float):
        self.n_explore = int(n_explore)
        self.n_explore_min = int(n_explore_min)
        self.skip_probability = float(skip_probability)

    def counts(self, prompts: PromptsView) -> np.ndarray:
        counts = np.full(prompts.keys.size, self.n_explore, dtype=np.int64)
        confident = (np.asarray(prompts.observations) > 0) & (
            all_same_probability(prompts.alpha, prompts.beta, self.n_explore) >= self.skip_probability
        )
        counts[confident] = self.n_explore_min
        return counts


@register("exploration", "fixed")
def fixed(cfg) -> FixedExploration:
    return FixedExploration(cfg.n_explore)


@register("exploration", "posterior")
def posterior(cfg) -> PosteriorExploration:
    return PosteriorExploration(cfg.n_explore, cfg.n_explore_min, cfg.explore_skip_probability)
