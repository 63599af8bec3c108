"""`python -m aero_verl.main_ppo [+recipe=NAME] [key=value ...]`: verl's PPO entry with AERO's configs.

Hydra composes verl 0.9.1's own `ppo_trainer` config with aero_verl's `hydra_configs/` (the `aero` group
and the `recipe` group), from any working directory, editable install or not. Then, before Ray or any
worker starts:
  1. AERO's settings and the verl settings AERO relies on are checked (names key, value and fix);
  2. the env vars a recipe gives verl's Ray workers (`ray_kwargs.ray_init.runtime_env.env_vars`, e.g.
     VERL_PLATFORM=cpu) are set in this process too, since verl's driver code reads them as well;
  3. a recipe's embedded demo (`aero_demo:` block) builds its model and data, or finds them cached;
  4. the training prompts are checked (empty, missing or repeated indices);
and then verl's own `main` body runs unchanged. Ray is shut down after each job, so `-m` sweeps run every
job on a fresh local Ray.
"""

from __future__ import annotations

import os
from importlib.resources import files

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

CONFIG_DIR = str(files("aero_verl.hydra_configs"))


def share_worker_env(config: DictConfig) -> None:
    env_vars = OmegaConf.select(config, "ray_kwargs.ray_init.runtime_env.env_vars", default=None) or {}
    for name, value in env_vars.items():
        os.environ.setdefault(str(name), str(value))
    # verl is already imported (Hydra found its configs through it) but has not picked a platform yet:
    # the first get_platform() call comes in verl's main body.
    from aero_verl import cpu
    from aero_verl.cpu.platform import cpu_platform_requested

    if cpu_platform_requested():
        cpu.activate()


DEMO_PLACEHOLDER = "<built by aero_verl.demo>"


def build_demo_assets(config: DictConfig) -> None:
    """Fill a demo recipe's model, data and reward paths from the (cached) embedded CPU demo.

    Only values still set to the recipe's placeholder are filled: a user's own model, data or reward
    override wins.
    """
    demo = config.get("aero_demo", None)
    if not demo:
        return
    from aero_verl.demo.assets import prepare_cpu_demo

    assets = prepare_cpu_demo(**OmegaConf.to_container(demo, resolve=True))
    built = {
        "actor_rollout_ref.model.path": assets.model_dir,
        "data.train_files": assets.train_parquet,
        "data.val_files": assets.val_parquet,
        "reward.custom_reward_function.path": assets.reward_path,
    }
    with open_dict(config):
        for key, value in built.items():
            if OmegaConf.select(config, key) == DEMO_PLACEHOLDER:
                OmegaConf.update(config, key, value)


def run(config: DictConfig) -> None:
    from aero_verl.verl_ext.preflight import check_settings, check_training_data

    check_settings(config)
    share_worker_env(config)
    build_demo_assets(config)
    check_training_data(config)
    # Resolved here, where Hydra's own interpolations (e.g. ${hydra:runtime.output_dir}) still resolve;
    # verl resolves the config again inside its Ray task runner, where they would not.
    OmegaConf.resolve(config)

    import ray
    from verl.trainer.main_ppo import main as verl_main

    try:
        verl_main.__wrapped__(config)  # verl's body: auto_set_device, validate_config, run_ppo(TaskRunnerV1)
    finally:
        if ray.is_initialized():
            ray.shutdown()


@hydra.main(config_path=CONFIG_DIR, config_name="aero_trainer", version_base=None)
def main(config: DictConfig) -> None:
    run(config)


if __name__ == "__main__":
    main()
