"""`python -m aero_verl.main_ppo [+recipe=NAME] [key=value ...]`: verl's PPO entry with AERO's configs.

Hydra composes verl 0.9.1's own `ppo_trainer` config with aero_verl's `hydra_configs/` (the `aero` group
and the `recipe` group), from any working directory, editable install or not. Each job's folder is a
function of its command (`outputs/<experiment>/<overrides>-<hash>`, or `multirun/<experiment>/...` per
sweep job), so relaunching the identical command resumes its own checkpoints (verl's
`trainer.resume_mode=auto`) and the jobs of a sweep never share a folder. Then, before Ray or any worker
starts:
  1. AERO's settings and the verl settings AERO relies on are checked (names key, value and fix);
  2. the env vars a recipe gives verl's Ray workers (`ray_kwargs.ray_init.runtime_env.env_vars`, e.g.
     VERL_PLATFORM=cpu) are set in this process too, since verl's driver code reads them as well;
  3. a recipe's embedded demo (`aero_demo:` block) builds its model and data, or finds them cached;
  4. the data files, the model and the GPUs the run asks for are checked, and the training prompts
     (empty, missing or repeated indices);
and then verl's own `main` body runs unchanged, with the compact console (`aero.trainer.console`). Ray is
shut down after each job, so `-m` sweeps run every job on a fresh local Ray.
"""

from __future__ import annotations

import hashlib
import os
import re
from importlib.resources import files

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

CONFIG_DIR = str(files("aero_verl.hydra_configs"))
DEMO_PLACEHOLDER = "<built by aero_verl.demo>"


def run_folder_name(override_dirname: str) -> str:
    """A job's folder from its overrides: readable, bounded in length, and unique (a hash of all of them)."""
    if not override_dirname:
        return "defaults"
    readable = re.sub(r"[^A-Za-z0-9=._-]+", "_", override_dirname.replace("+", "")).strip("_")[:48]
    return f"{readable}-{hashlib.blake2b(override_dirname.encode(), digest_size=4).hexdigest()}"


OmegaConf.register_new_resolver("aero_run_folder", run_folder_name, replace=True)


def share_worker_env(config: DictConfig) -> None:
    env = OmegaConf.select(config, "ray_kwargs.ray_init.runtime_env.env_vars", default=None)
    # TransferQueue's threads default to 8 and warn, once per transfer, when the machine has fewer cores.
    with open_dict(config):
        if env is None:
            OmegaConf.update(config, "ray_kwargs.ray_init.runtime_env.env_vars", {}, force_add=True)
            env = OmegaConf.select(config, "ray_kwargs.ray_init.runtime_env.env_vars")
        if "TQ_NUM_THREADS" not in env and "TQ_NUM_THREADS" not in os.environ:
            env["TQ_NUM_THREADS"] = str(min(8, os.cpu_count() or 1))
    for name, value in env.items():
        os.environ.setdefault(str(name), str(value))
    # verl is already imported (Hydra found its configs through it) but has not picked a platform yet:
    # the first get_platform() call comes in verl's main body.
    from aero_verl import cpu
    from aero_verl.cpu.platform import cpu_platform_requested

    if cpu_platform_requested():
        cpu.activate()


def build_demo_assets(config: DictConfig) -> None:
    """Fill a demo recipe's model, data and reward paths from the (cached) embedded CPU demo.

    Only values still set to the recipe's placeholder are filled: a user's own model, data or reward
    override wins.
    """
    demo = config.get("aero_demo", None)
    if not demo:
        return
    from aero_verl.demo.assets import DemoConfig, cache_root, prepare_cpu_demo
    from aero_verl.verl_ext.console import say

    knobs = OmegaConf.to_container(demo, resolve=True)
    runtime = {name: knobs.pop(name) for name in ("threads", "cache_dir", "progress") if name in knobs}
    cached = (cache_root(runtime.get("cache_dir")) / DemoConfig.from_knobs(**knobs).cache_key() / "manifest.json").is_file()
    if not cached:
        say("building the CPU demo's model and data (SFT warm start; once per configuration, then cached)")
    assets = prepare_cpu_demo(**runtime, **knobs)
    if not cached:
        say(f"built in {assets.manifest['build_seconds']:.0f} s: {assets.root}")
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
    from aero_verl.ray_setup import prepare_ray_init
    from aero_verl.verl_ext.console import compact_console
    from aero_verl.verl_ext.preflight import check_resources, check_settings, check_training_data

    check_settings(config)
    # Resolved here, where Hydra's own interpolations (e.g. ${hydra:runtime.output_dir}) still resolve;
    # verl resolves the config again inside its Ray task runner, where they would not.
    OmegaConf.resolve(config)
    run_dir = job_folder(config)

    import ray

    try:
        with compact_console(config, run_dir):
            share_worker_env(config)
            build_demo_assets(config)
            check_resources(config)
            check_training_data(config)
            from verl.trainer.main_ppo import main as verl_main

            prepare_ray_init(config)
            verl_main.__wrapped__(config)  # verl's body: auto_set_device, validate_config, run_ppo(TaskRunnerV1)
    finally:
        if ray.is_initialized():
            ray.shutdown()
    if config.get("aero_demo", None) and not config.trainer.get("val_only", False):
        write_demo_report(config.trainer.default_local_dir, run_dir)


def job_folder(config: DictConfig) -> str:
    """The Hydra job's output folder (run.log and report.png go there), else the checkpoints' parent."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return HydraConfig.get().runtime.output_dir
    return os.path.dirname(os.path.abspath(config.trainer.default_local_dir))


def write_demo_report(checkpoints: str, run_dir: str) -> None:
    """The demo's picture of its run (aero_verl.report); a report that cannot be drawn never fails the run."""
    from aero_verl.report import ReportError, write_report

    try:
        path = write_report([checkpoints], os.path.join(run_dir, "report.png"))
    except ReportError as error:
        print(f"[aero] no report: {error}", flush=True)
        return
    print(f"[aero] report: {path}  (python -m aero_verl.report RUN_FOLDER... draws and overlays runs)", flush=True)


@hydra.main(config_path=CONFIG_DIR, config_name="aero_trainer", version_base=None)
def main(config: DictConfig) -> None:
    run(config)


if __name__ == "__main__":
    main()
