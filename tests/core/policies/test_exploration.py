import numpy as np
import pytest

from aero_verl.core.policies import FixedExploration, PosteriorExploration, PromptsView, all_same_probability


def test_all_same_probability_is_the_beta_binomial_mass():
    # Beta(1,1): P(all n equal) = 2 / (n + 1)
    assert all_same_probability(np.array([1.0]), np.array([1.0]), 8)[0] == pytest.approx(2 / 9)
    assert all_same_probability(np.array([1000.0]), np.array([1.0]), 8)[0] > 0.99


def test_posterior_exploration_shrinks_only_confident_seen_prompts():
    view = PromptsView(keys=np.arange(4, dtype=np.uint64), alpha=np.array([1.0, 200.0, 200.0, 5.0]),
                       beta=np.array([1.0, 1.0, 1.0, 5.0]), observations=np.array([0, 0, 200, 8]))
    assert PosteriorExploration(8, 2, 0.9).counts(view).tolist() == [8, 8, 2, 8]
    assert FixedExploration(8).counts(view).tolist() == [8] * 4
