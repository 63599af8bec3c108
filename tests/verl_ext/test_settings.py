"""The `aero:` block and the verl settings AERO relies on: names, ranges, the fix; the docs generated from them."""

import pytest
from omegaconf import OmegaConf

from aero_verl.core import AEROConfigError
from aero_verl.verl_ext.settings import AEROSettings, verl_config_problems


def test_settings_split_algorithm_and_trainer_keys():
    settings = AEROSettings.from_mapping({"n_explore": 4, "trainer": {"num_mini_batches": 2}})
    assert settings.algorithm.n_explore == 4 and settings.trainer.num_mini_batches == 2
    assert AEROSettings.from_mapping(None).algorithm.n_total == 16

@pytest.mark.parametrize("block, fragment", [
    ({"trainer": {"prompt_key": "uid"}}, "aero.trainer.prompt_key='uid'"),
    ({"trainer": {"num_mini_batches": 0}}, "aero.trainer.num_mini_batches=0"),
    ({"trainer": {"pol_interval": 1}}, "aero.trainer.pol_interval"),
    ({"k": -1}, "aero.k=-1"),
])
def test_bad_settings_are_named(block, fragment):
    with pytest.raises(AEROConfigError, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        AEROSettings.from_mapping(block)

def verl_config(**overrides):
    base = {
        "trainer": {"use_v1": True, "v1": {"trainer_mode": "aero", "sync": {"parameter_sync_step": 1}}},
        "algorithm": {"adv_estimator": "aero", "filter_groups": {"enable": False}},
        "reward": {"reward_model": {"enable": False, "enable_resource_pool": False}},
        "critic": {"enable": None},
        "actor_rollout_ref": {"rollout": {"n": 8}, "actor": {"loss_agg_mode": "token-mean"}},
    }
    config = OmegaConf.create(base)
    for key, value in overrides.items():
        OmegaConf.update(config, key, value, force_add=True)
    return config

def test_a_compatible_verl_config_has_no_problems():
    assert verl_config_problems(verl_config(), AEROSettings.from_mapping({})) == []

@pytest.mark.parametrize("key, value, fragment", [
    ("algorithm.adv_estimator", "grpo", "algorithm.adv_estimator='grpo'"),
    ("algorithm.filter_groups.enable", True, "algorithm.filter_groups.enable=True"),
    ("trainer.v1.sync.parameter_sync_step", 2, "parameter_sync_step=2"),
    ("reward.reward_model.enable", True, "enable_resource_pool"),
    ("critic.enable", True, "critic.enable=True"),
    ("actor_rollout_ref.rollout.n", 16, "rollout.n=16 differs from aero.n_explore=8"),
    ("actor_rollout_ref.actor.loss_agg_mode", "seq-mean-token-mean", "use token-mean"),
    ("trainer.use_v1", False, "trainer.use_v1=False"),
    ("actor_rollout_ref.rollout.full_determinism", True, "every copy of a prompt then samples the same response"),
])
def test_incompatible_verl_settings_are_named_with_the_fix(key, value, fragment):
    problems = verl_config_problems(verl_config(**{key: value}), AEROSettings.from_mapping({}))
    assert any(fragment in problem for problem in problems), problems


def test_the_yaml_group_and_the_readme_table_agree_with_the_settings_descriptions():
    """Each setting is described once (its dataclass field); the YAML group and the README are checked
    against that description, so neither can drift."""
    import dataclasses
    from pathlib import Path

    from aero_verl.core import AEROConfig
    from aero_verl.verl_ext.settings import AEROTrainerSettings, settings_markdown

    repo = Path(__file__).resolve().parents[2]
    block = OmegaConf.to_container(OmegaConf.load(repo / "hydra_configs" / "aero" / "paper.yaml"))
    trainer = block.pop("trainer")
    for values, settings_class in ((block, AEROConfig), (trainer, AEROTrainerSettings)):
        fields = {f.name: f.default for f in dataclasses.fields(settings_class)}
        assert list(values) == list(fields), f"paper.yaml keys differ from {settings_class.__name__}'s fields"
        assert values == fields, f"paper.yaml defaults differ from {settings_class.__name__}'s"
    readme = (repo / "README.md").read_text()
    assert settings_markdown() in readme, "README's configuration tables are stale: regenerate them with " \
        "`python -m aero_verl.verl_ext.settings`"


def test_per_group_weighting_over_several_shuffled_mini_batches_is_refused():
    settings = AEROSettings.from_mapping({"loss_weighting": "per_group", "trainer": {"num_mini_batches": 2}})
    problems = verl_config_problems(verl_config(**{"actor_rollout_ref.actor.shuffle": True}), settings)
    assert any("actor_rollout_ref.actor.shuffle=True" in p for p in problems)
    assert verl_config_problems(verl_config(), settings) == []


def test_barrier_free_rescue_selects_aeros_agent_loop_manager_or_refuses_another():
    from aero_verl.verl_ext.settings import RESCUE_AGENT_LOOP_MANAGER, verified_settings

    config = verl_config(aero={"rescue_mode": "barrier_free"})
    verified_settings(config)
    assert config.actor_rollout_ref.rollout.agent.agent_loop_manager_class == RESCUE_AGENT_LOOP_MANAGER
    other = verl_config(aero={"rescue_mode": "barrier_free"},
                        **{"actor_rollout_ref.rollout.agent": {"agent_loop_manager_class": "my.Manager"}})
    with pytest.raises(AEROConfigError, match="my.Manager.*barrier-free rescue runs in AERO's own agent-loop manager"):
        verified_settings(other)
