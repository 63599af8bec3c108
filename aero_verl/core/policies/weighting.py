"""How much each kept row weighs in the loss, as a positive factor on its advantage.

verl's `token-mean` loss is sum over the mini-batch's tokens / T_mb (its response tokens, across DP ranks),
so a row of |o_i| tokens weighs |o_i| / T_mb and a group pushes with the sum of its rows' advantages
times their lengths. Theorem 4.1 (core/theory.py) is stated for the per-group mean

    J = (1 / G) sum_q (1 / n_q) sum_{i in q} (1 / |o_i|) sum_t (...)

(G kept groups, n_q the kept size of group q), the normalisation under which keeping m = c incorrect
rollouts maximises a group's push (Lemma 4.2). Under token-mean, the factor

    w_i = T_mb / (G_mb * n_q(i) * |o_i|)

turns verl's loss into exactly that: token-mean of w_i A_i (...) = (1/G_mb) sum_q (1/n_q) sum_i (1/|o_i|)
sum_t A_i (...). PPO's min(rho A, clip(rho) A) is positively homogeneous in A, so a positive per-row factor
passes through the clipped objective unchanged. With several optimizer steps per training step each
mini-batch is normalised on its own: G_mb counts the groups in it, a group split across mini-batches
counting by the share n_{q, mb} / n_q of its rows, so the G_mb sum to G. The token-weighted mean of w over
a mini-batch is 1, so the loss's overall scale (the learning rate's meaning) is kept. verl's KL loss term
is aggregated separately and is not reweighted. Rows of zero length (verl's padding) get 0.

    TokenMeanWeighting   w_i = 1 (verl's loss as it is)
    PerGroupWeighting    w_i above
"""

from __future__ import annotations

import numpy as np

from aero_verl.core.policies.registry import register


def per_group_loss_weights(group: np.ndarray, lengths: np.ndarray, minibatch: np.ndarray) -> np.ndarray:
    """w_i = T_mb / (G_mb n_q(i) |o_i|) per row (module docstring); 0 for rows of zero length."""
    group = np.asarray(group, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.float64)
    minibatch = np.asarray(minibatch, dtype=np.int64)
    weights = np.zeros(group.size)
    real = lengths > 0
    if not real.any():
        return weights
    group, lengths, minibatch = group[real], lengths[real], minibatch[real]
    n_groups, n_minibatches = int(group.max()) + 1, int(minibatch.max()) + 1
    group_size = np.bincount(group, minlength=n_groups).astype(np.float64)
    tokens_per_minibatch = np.bincount(minibatch, weights=lengths, minlength=n_minibatches)
    # Whole-group equivalents per mini-batch: each row is 1 / n_q of its group.
    groups_per_minibatch = np.bincount(minibatch, weights=1.0 / group_size[group], minlength=n_minibatches)
    weights[real] = tokens_per_minibatch[minibatch] / (groups_per_minibatch[minibatch] * group_size[group] * lengths)
    return weights


@register("weighting", "token_mean")
class TokenMeanWeighting:
    def __init__(self, cfg=None):
        """Takes no setting (the AEROConfig argument is the registry's calling convention)."""

    def weights(self, group: np.ndarray, lengths: np.ndarray, minibatch: np.ndarray) -> np.ndarray:
        return np.where(np.asarray(lengths) > 0, 1.0, 0.0)


@register("weighting", "per_group")
class PerGroupWeighting:
    def __init__(self, cfg=None):
        """Takes no setting (the AEROConfig argument is the registry's calling convention)."""

    def weights(self, group: np.ndarray, lengths: np.ndarray, minibatch: np.ndarray) -> np.ndarray:
        return per_group_loss_weights(group, lengths, minibatch)
