"""Every recipe composes from aero_verl's Hydra configs, and each AERO recipe and its GRPO baseline run
at the same rollout budget on the same model, data and steps."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from aero_verl.core import AEROConfig
from aero_verl.main_ppo import CONFIG_DIR
from aero_verl.verl_ext.settings import AEROSettings, AEROTrainerSettings, verl_config_problems

PAIRS = [("aero_qwen1.5b", "grpo_qwen1.5b"), ("aero_qwen7b", "grpo_qwen7b"),
         ("aero_qwen7b_instruct", "grpo_qwen7b_instruct"), ("cpu_demo", "grpo_cpu_demo"),
         ("cpu_long", "grpo_cpu_long")]
PAPER_MODELS = {"aero_qwen1.5b": "Qwen2.5-Math-1.5B", "aero_qwen7b": "Qwen2.5-7B",
                "aero_qwen7b_instruct": "Qwen2.5-7B-Instruct"}
SHARED_KEYS = ["actor_rollout_ref.model.path", "data.train_files", "data.val_files", "data.train_batch_size",
               "data.max_prompt_length", "data.max_response_length", "trainer.total_training_steps",
               "actor_rollout_ref.actor.optim.lr", "actor_rollout_ref.rollout.temperature",
               "actor_rollout_ref.rollout.val_kwargs.n", "trainer.n_gpus_per_node", "trainer.nnodes",
               "aero_demo"]  # the demo recipes' model and data are built from their aero_demo knobs
# What the long-response CPU pair changes in the CPU demo pair, and nothing else.
LONG_RESPONSE_KEYS = {"data.max_response_length", "trainer.project_name", "aero_demo.response_format",
                      "aero_demo.max_new_tokens", "aero_demo.max_position_embeddings",
                      "aero_demo.loss_threshold", "aero_demo.max_sft_steps"}


def composed(recipe=None, overrides=()):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        args = ([f"+recipe={recipe}"] if recipe else []) + list(overrides)
        return compose(config_name="aero_trainer", overrides=args)


def select(config, key):
    value = OmegaConf.select(config, key)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def test_the_aero_group_mirrors_the_config_dataclasses():
    block = OmegaConf.to_container(composed().aero, resolve=True)
    trainer = block.pop("trainer")
    assert AEROConfig(**block) == AEROConfig()
    assert AEROTrainerSettings(**trainer) == AEROTrainerSettings()


def test_all_recipe_files_are_covered():
    names = {path.stem for path in Path(CONFIG_DIR, "recipe").glob("*.yaml")}
    covered = {name for pair in PAIRS for name in pair} | {"base_math_gpu", "base_grpo"}
    assert names == covered


@pytest.mark.parametrize("aero_recipe, grpo_recipe", PAIRS)
def test_recipe_pairs_share_budget_model_data_and_steps(aero_recipe, grpo_recipe):
    aero, grpo = composed(aero_recipe), composed(grpo_recipe)
    assert (aero.trainer.v1.trainer_mode, aero.algorithm.adv_estimator) == ("aero", "aero")
    assert (grpo.trainer.v1.trainer_mode, grpo.algorithm.adv_estimator) == ("sync_eval", "grpo")
    settings = AEROSettings.from_verl_config(aero)
    assert verl_config_problems(aero, settings) == []
    # equal rollout budget: GRPO's uniform group is AERO's per-prompt cap
    assert grpo.actor_rollout_ref.rollout.n == settings.algorithm.n_total == 16
    assert aero.actor_rollout_ref.rollout.n == settings.algorithm.n_explore == 8
    for key in SHARED_KEYS:
        assert select(aero, key) == select(grpo, key), key
    # the same number of optimizer steps per training step
    grpo_optimizer_steps = grpo.data.train_batch_size // grpo.actor_rollout_ref.actor.ppo_mini_batch_size
    assert settings.trainer.num_mini_batches == grpo_optimizer_steps


@pytest.mark.parametrize("recipe, model", PAPER_MODELS.items())
def test_paper_recipes_use_the_papers_models_and_gpu_stack(recipe, model):
    config = composed(recipe)
    assert select(config, "actor_rollout_ref.model.path").endswith(model)
    assert config.actor_rollout_ref.rollout.name == "vllm"
    assert config.actor_rollout_ref.model.use_remove_padding is True
    assert config.actor_rollout_ref.rollout.val_kwargs.n == 8
    assert len(config.data.val_files) == 5


def leaves(config) -> dict:
    """Flat `dotted.key: value` of a composed config, interpolations unresolved (so a derived value is not
    counted as a difference of its own)."""
    def walk(node, prefix):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from walk(value, f"{prefix}{key}.")
        else:
            yield prefix[:-1], node

    return dict(walk(OmegaConf.to_container(config, resolve=False), ""))


@pytest.mark.parametrize("demo_recipe, long_recipe", [("cpu_demo", "cpu_long"), ("grpo_cpu_demo", "grpo_cpu_long")])
def test_long_response_recipes_change_only_the_response_keys(demo_recipe, long_recipe):
    demo, long = leaves(composed(demo_recipe)), leaves(composed(long_recipe))
    assert {key for key in demo.keys() | long.keys() if demo.get(key) != long.get(key)} == LONG_RESPONSE_KEYS
    assert long["aero_demo.response_format"] == "scratchpad"
    resolved = composed(long_recipe)
    model_positions = resolved.aero_demo.max_position_embeddings
    assert resolved.aero_demo.max_new_tokens == resolved.data.max_response_length
    assert resolved.data.max_prompt_length + resolved.data.max_response_length <= model_positions


def test_sweep_overrides_compose():
    config = composed("cpu_demo", ["aero.n_explore=4", "aero.k=2"])
    assert config.aero.n_explore == 4 and config.actor_rollout_ref.rollout.n == 4 and config.aero.k == 2


def test_cli_prints_the_composed_job_from_any_directory(tmp_path):
    env = {**os.environ, "AERO_MODEL_DIR": "/models"}
    out = subprocess.run([sys.executable, "-m", "aero_verl.main_ppo", "+recipe=aero_qwen1.5b", "--cfg", "job",
                          "--resolve"], cwd=tmp_path, capture_output=True, text=True, env=env, check=True).stdout
    job = OmegaConf.create(out)
    assert job.actor_rollout_ref.model.path == "/models/Qwen2.5-Math-1.5B"
    assert job.aero.n_total == 16 and job.aero.n_explore == 8


def test_a_jobs_folder_is_a_function_of_its_command():
    """Relaunching the identical command finds the same folder (and so resumes); any other override, except
    those that only extend or observe a run, gives another; sweep jobs get one each."""
    from aero_verl.main_ppo import run_folder_name

    assert run_folder_name("") == "defaults"
    one = run_folder_name("+recipe=cpu_demo,aero.k=2")
    assert one == run_folder_name("+recipe=cpu_demo,aero.k=2") != run_folder_name("+recipe=cpu_demo,aero.k=1")
    assert one.startswith("recipe=cpu_demo_aero.k=2-") and "/" not in run_folder_name("data.train_files=/a/b")
    assert len(run_folder_name("x=" + "y" * 500)) < 64
    hydra = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "aero_trainer.yaml"), resolve=False)["hydra"]
    assert "trainer.total_training_steps" in hydra["job"]["config"]["override_dirname"]["exclude_keys"]
    assert "${aero_run_folder:${hydra:job.override_dirname}}" in hydra["run"]["dir"]
    assert "${aero_run_folder:${hydra:job.override_dirname}}" in hydra["sweep"]["subdir"]
