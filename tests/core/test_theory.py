"""Theorem 4.1 / Lemma 4.2 checked numerically on a toy softmax policy (docs/paper_readings.md Section 2).

Policy: pi_theta(o) = softmax(theta)[o] over V one-token responses, a fixed subset of which is correct.
Small-step GRPO (ratio 1, no clipping): the per-query gradient is (1/n) sum_i A_i grad log pi(o_i). With c
correct and m incorrect rollouts drawn from the policy conditioned on their outcome, its expectation is
built below by autograd and compared with the closed form sqrt(c m) / (c + m) ||mu+ - mu-||.
"""

import numpy as np
import pytest
import torch

from aero_verl.core import GroupCounts, gradient_scale, per_group_loss_weights, step_rng
from aero_verl.core.policies import BalancedRejection

V = 12
CORRECT = torch.tensor([True, False, False, True, False, False, False, False, False, True, False, False])


def policy():
    torch.manual_seed(0)
    return torch.randn(V, dtype=torch.float64, requires_grad=True)


def conditional(theta, mask):
    probs = torch.softmax(theta.detach(), dim=0) * mask
    return probs / probs.sum()


def expected_group_gradient(theta, c, m):
    """Autograd gradient of E[(1/n) sum_i A_i log pi(o_i)] with population-std GRPO advantages."""
    n = c + m
    a_plus, a_minus = np.sqrt(m / c), -np.sqrt(c / m)
    log_pi = torch.log_softmax(theta, dim=0)
    objective = (c * a_plus * (conditional(theta, CORRECT) * log_pi).sum()
                 + m * a_minus * (conditional(theta, ~CORRECT) * log_pi).sum()) / n
    (gradient,) = torch.autograd.grad(objective, theta)
    return gradient


def mean_score(theta, mask):
    log_pi = torch.log_softmax(theta, dim=0)
    (gradient,) = torch.autograd.grad((conditional(theta, mask) * log_pi).sum(), theta)
    return gradient


@pytest.mark.parametrize("c, m", [(1, 1), (1, 7), (2, 6), (3, 5), (5, 3), (4, 12)])
def test_theorem_4_1_closed_form(c, m):
    theta = policy()
    gap = (mean_score(theta, CORRECT) - mean_score(theta, ~CORRECT)).norm().item()
    autograd_norm = expected_group_gradient(theta, c, m).norm().item()
    assert autograd_norm == pytest.approx(gradient_scale(c, m) * gap, rel=1e-9)


def test_monte_carlo_groups_agree_with_the_expectation():
    theta = policy()
    rng = np.random.default_rng(0)
    c, m = 2, 6
    p_plus, p_minus = conditional(theta, CORRECT).numpy(), conditional(theta, ~CORRECT).numpy()
    a_plus, a_minus = np.sqrt(m / c), -np.sqrt(c / m)
    total = torch.zeros(V, dtype=torch.float64)
    draws = 4000
    for _ in range(draws):
        responses = np.r_[rng.choice(V, c, p=p_plus), rng.choice(V, m, p=p_minus)]
        advantages = np.r_[np.full(c, a_plus), np.full(m, a_minus)]
        log_pi = torch.log_softmax(theta, dim=0)
        objective = (torch.tensor(advantages) * log_pi[torch.tensor(responses)]).sum() / (c + m)
        total += torch.autograd.grad(objective, theta)[0]
    assert torch.allclose(total / draws, expected_group_gradient(theta, c, m), atol=0.01)


def test_lemma_4_2_and_the_rejection_rule_agree():
    """For fixed c the expected gradient norm over kept subsets peaks at m = c, the subset k = 1 keeps."""
    theta = policy()
    c, available_incorrect = 3, 13
    norms = [expected_group_gradient(theta, c, m).norm().item() for m in range(1, available_incorrect + 1)]
    best_m = 1 + int(np.argmax(norms))
    assert best_m == c

    success = np.r_[np.ones(c), np.zeros(available_incorrect)].astype(bool)
    group = np.zeros(success.size, dtype=int)
    counts = GroupCounts.from_rollouts(group, success, np.ones(success.size, dtype=bool), 1, u_res=0.0, u_high=0.5)
    keep = BalancedRejection(k=1.0, advantage_mode="smoothed", degenerate_keep=4,
                             drop_failed_rescues=True).keep(success, group, counts, step_rng(0, 0))
    assert keep[success].all() and (~success & keep).sum() == best_m


def test_gradient_scale_peaks_at_one_half():
    assert gradient_scale(4, 4) == pytest.approx(0.5)
    assert gradient_scale(0, 5) == 0.0 and gradient_scale(5, 0) == 0.0
    assert gradient_scale(1, 8) < gradient_scale(1, 1)


def token_mean_gradient(theta, rows, advantages, minibatch):
    """verl's token-mean loss, summed over optimizer steps: per mini-batch, sum over its tokens of
    A_i log pi(token) divided by the mini-batch's token count (ratio 1, no clipping)."""
    log_pi = torch.log_softmax(theta, dim=0)
    total = torch.zeros((), dtype=torch.float64)
    for mb in np.unique(minibatch):
        members = np.flatnonzero(minibatch == mb)
        tokens = sum(len(rows[i]) for i in members)
        total = total + sum(advantages[i] * log_pi[torch.tensor(rows[i])].sum() for i in members) / tokens
    return torch.autograd.grad(total, theta)[0]


def per_group_mean_gradient(theta, rows, advantages, group, minibatch):
    """Theorem 4.1's normalisation per optimizer step: (1/G_mb) sum_q (1/n_q) sum_i (1/|o_i|) sum_t A_i
    grad log pi, with a group split across mini-batches counted by its share of rows."""
    log_pi = torch.log_softmax(theta, dim=0)
    sizes = np.bincount(group)
    total = torch.zeros((), dtype=torch.float64)
    for mb in np.unique(minibatch):
        members = np.flatnonzero(minibatch == mb)
        groups_here = sum(1.0 / sizes[group[i]] for i in members)
        total = total + sum(advantages[i] * log_pi[torch.tensor(rows[i])].sum() / (sizes[group[i]] * len(rows[i]))
                            for i in members) / groups_here
    return torch.autograd.grad(total, theta)[0]


@pytest.mark.parametrize("minibatches", [1, 2])
def test_per_group_weights_turn_token_mean_into_theorem_4_1s_normalisation(minibatches):
    """Token-mean of w_i A_i equals the per-group mean objective exactly, for groups of different sizes,
    rows of different lengths and several optimizer steps."""
    theta = policy()
    rng = np.random.default_rng(3)
    group = np.repeat(np.arange(4), [2, 5, 3, 8])
    rows = [rng.integers(0, V, rng.integers(1, 9)).tolist() for _ in group]
    advantages = rng.normal(size=group.size)
    lengths = np.array([len(r) for r in rows])
    minibatch = np.arange(group.size) % minibatches
    weights = per_group_loss_weights(group, lengths, minibatch)
    weighted = token_mean_gradient(theta, rows, advantages * weights, minibatch)
    assert torch.allclose(weighted, per_group_mean_gradient(theta, rows, advantages, group, minibatch), atol=1e-12)
    # the loss's scale is kept: the token-weighted mean of the weights is 1 in every mini-batch
    for mb in range(minibatches):
        members = minibatch == mb
        assert np.average(weights[members], weights=lengths[members]) == pytest.approx(1.0)


def test_under_per_group_weights_each_group_pushes_with_theorem_4_1s_norm_whatever_its_size():
    """One-token responses: with per-group weights a group's expected push is f(c, m) ||mu+ - mu-|| / G, as
    Theorem 4.1 states it, for a 1+1 rescued group and a 12/16 group alike; under plain token-mean the push
    scales with the group's size instead."""
    theta = policy()
    p_plus, p_minus = conditional(theta, CORRECT.double()), conditional(theta, (~CORRECT).double())
    grad_log = torch.eye(V, dtype=torch.float64) - torch.softmax(theta.detach(), 0)[None, :]
    mu_plus, mu_minus = p_plus @ grad_log, p_minus @ grad_log
    shapes = [(1, 1), (12, 4)]
    group = np.repeat(np.arange(2), [c + m for c, m in shapes])
    lengths = np.ones(group.size, dtype=int)
    weights = per_group_loss_weights(group, lengths, np.zeros(group.size, dtype=int))
    start = 0
    for (c, m), size in zip(shapes, np.bincount(group)):
        a_plus, a_minus = np.sqrt(m / c), -np.sqrt(c / m)
        w = weights[start:start + size]
        # expected push of the group in token-mean with weights: sum_i w_i A_i E[s_i] / T
        push = (w[:c].sum() * a_plus * mu_plus + w[c:].sum() * a_minus * mu_minus) / group.size
        expected = float(gradient_scale(c, m)) * (mu_plus - mu_minus) / 2  # G = 2 groups
        assert torch.allclose(push, expected, atol=1e-12)
        unweighted = (c * a_plus * mu_plus + m * a_minus * mu_minus) / group.size
        assert unweighted.norm() / expected.norm() == pytest.approx(2 * size / group.size, rel=1e-9)
        start += size
