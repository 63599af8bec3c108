import numpy as np
import pytest
import torch

from aero_verl.core.policies.advantages import advantages_and_scales, group_advantages


def verl_grpo(rewards, group, normalize_by_std=True):
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    scores = torch.zeros(len(rewards), 3)
    scores[:, -1] = torch.tensor(rewards, dtype=torch.float32)
    advantages, _ = compute_grpo_outcome_advantage(
        token_level_rewards=scores, response_mask=torch.ones_like(scores),
        index=np.array([str(g) for g in group], dtype=object), norm_adv_by_std_in_grpo=normalize_by_std,
    )
    return advantages[:, 0].numpy()


@pytest.mark.parametrize("normalize_by_std", [True, False])
def test_equals_verl_grpo_on_equal_size_groups(normalize_by_std):
    rng = np.random.default_rng(0)
    rewards = (rng.random(16 * 32) < rng.random(16 * 32)).astype(float)
    group = np.repeat(np.arange(32), 16)
    ours = group_advantages(rewards, group, np.full(32, 0.5), "off", normalize_by_std=normalize_by_std)
    assert np.abs(ours - verl_grpo(rewards, group, normalize_by_std)).max() < 1e-6


def test_equals_verl_grpo_on_mixed_size_groups_with_variance():
    rewards = np.array([1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1], dtype=float)
    group = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3]) % 3  # sizes 4, 3, 6, not contiguous
    ours = group_advantages(rewards, group, np.full(3, 0.5), "off")
    assert np.abs(ours - verl_grpo(rewards, group)).max() < 1e-6


def test_lone_rollout_gets_zero_where_verl_gives_the_raw_score():
    rewards = np.array([1.0, 1.0, 0.0])
    group = np.array([0, 1, 1])
    assert verl_grpo(rewards, group)[0] == pytest.approx(1.0, abs=1e-5)
    assert group_advantages(rewards, group, np.full(2, 0.5), "off")[0] == 0.0


def test_smoothed_mode_gives_degenerate_groups_the_posterior_signal():
    rewards = np.array([1.0] * 4 + [0.0] * 4 + [1.0, 0.0])
    group = np.repeat([0, 1, 2], [4, 4, 2])
    p = np.array([0.8, 0.1, 0.5])
    advantages = group_advantages(rewards, group, p, "smoothed")
    assert advantages[:4] == pytest.approx(np.full(4, (1 - 0.8) / np.sqrt(0.8 * 0.2)), rel=1e-5)
    assert advantages[4:8] == pytest.approx(np.full(4, -0.1 / np.sqrt(0.1 * 0.9)), rel=1e-5)
    assert advantages[8:] == pytest.approx(group_advantages(rewards[8:], np.zeros(2, int), p[2:], "off"))


def test_constant_mode_gives_two_p_minus_one():
    advantages = group_advantages(np.array([1.0, 1.0, 0.0]), np.array([0, 0, 1]), np.array([0.75, 0.2]), "constant")
    assert advantages.tolist() == pytest.approx([0.5, 0.5, -0.6])


@pytest.mark.parametrize("mode", ["smoothed", "constant", "off"])
def test_never_nan_for_extreme_posteriors_and_empty_groups(mode):
    rewards = np.array([1.0, 0.0])
    advantages = group_advantages(rewards, np.array([0, 2]), np.array([1 - 1e-12, 0.3, 1e-12]), mode)
    assert np.isfinite(advantages).all()


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="advantage mode"):
        group_advantages(np.zeros(1), np.zeros(1, int), np.full(1, 0.5), "bayes")


def test_dr_grpo_puts_smoothed_groups_on_the_unnormalised_scale():
    rewards = np.array([1.0, 1.0, 1.0, 0.0, 1.0])
    group = np.array([0, 0, 0, 1, 1])
    p = np.array([0.8, 0.5])
    advantages = group_advantages(rewards, group, p, "smoothed", normalize_by_std=False)
    assert advantages[:3] == pytest.approx([0.2, 0.2, 0.2])  # r - p~, not (r - p~) / sqrt(p~ (1 - p~))
    assert advantages[3:] == pytest.approx([-0.5, 0.5])  # Dr.GRPO's r - mean for the mixed group


def test_scales_are_the_divisors_of_the_advantages():
    rewards = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    group = np.array([0, 0, 0, 1, 1])
    p = np.array([0.4, 0.9])
    advantages, scale = advantages_and_scales(rewards, group, p, "smoothed")
    std = np.std([1.0, 0.0, 0.0], ddof=1) + 1e-6
    assert scale[:3] == pytest.approx(np.full(3, std))
    assert scale[3:] == pytest.approx(np.full(2, np.sqrt(0.9 * 0.1) + 1e-6))
    assert advantages * scale == pytest.approx(np.r_[rewards[:3] - 1 / 3, rewards[3:] - 0.9])
