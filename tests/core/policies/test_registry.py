"""Adding a policy is one module: a toy exploration policy, registered by name, is accepted by the settings
and used by the step the verl trainer builds (`aero_policies`), and the simulator runs an AERO variant of
it, with no other edit. The toy is registered only for these tests and removed afterwards."""

import sys
from pathlib import Path

import numpy as np
import pytest

from aero_verl.core import AEROConfig, AEROStep, BetaPosteriorTable, aero_policies
from aero_verl.core.policies import registry
from aero_verl.core.policies.exploration import FixedExploration
from aero_verl.core.policies.registry import register

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))


@pytest.fixture
def half_exploration(monkeypatch):
    """The toy: every prompt explores with half of n_explore. monkeypatch restores the registry afterwards."""
    monkeypatch.setitem(registry._FACTORIES, "exploration", dict(registry._FACTORIES["exploration"]))
    register("exploration", "half")(lambda cfg: FixedExploration(cfg.n_explore // 2))
    return "half"


def test_a_registered_policy_is_a_valid_setting_and_drives_the_step(half_exploration):
    with pytest.raises(ValueError, match="explore_mode"):
        AEROConfig(explore_mode="quarter")
    cfg = AEROConfig(explore_mode=half_exploration, n_explore=8)
    step = AEROStep(cfg, BetaPosteriorTable(), step=1, policies=aero_policies(cfg))
    assert list(step.add_prompts(np.arange(5, dtype=np.uint64))) == [4] * 5


def test_the_simulator_runs_an_aero_variant_of_each_registered_policy(half_exploration):
    from simulator.experiment import aero_variants

    assert aero_variants()["aero_half"] == {"explore_mode": "half"}


def test_a_second_policy_under_a_taken_name_is_refused(half_exploration):
    with pytest.raises(ValueError, match="already registered"):
        register("exploration", "half")(lambda cfg: FixedExploration(1))
