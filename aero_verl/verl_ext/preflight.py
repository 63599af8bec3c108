"""Checks that run before Ray starts, so a bad setting or bad data fails in seconds with a clear message.

For every run: `algorithm.adv_estimator=aero` only with the AERO trainer. For an AERO run
(trainer.v1.trainer_mode=aero): the `aero` block and the verl settings AERO relies on
(settings.verified_settings, which the trainer's constructor runs again for runs started through verl's
own entry point), and the training prompts (empty prompts, missing or repeated `extra_info.index`; the
trainer checks the prompts verl loaded again in `_init_dataloader`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from omegaconf import DictConfig, OmegaConf

from aero_verl.core import AEROConfigError
from aero_verl.verl_ext.prompts import check_training_prompts, read_parquet_prompts
from aero_verl.verl_ext.settings import AEROSettings, estimator_problems, is_aero_run, verified_settings

logger = logging.getLogger(__name__)
CLUSTER_PROBE_TIMEOUT_S = 60


def check_settings(config: DictConfig) -> None:
    """The estimator's trainer, the `aero` block and the verl settings AERO relies on (seconds, no data)."""
    problems = estimator_problems(config)
    if problems:
        raise AEROConfigError("; ".join(problems))
    if is_aero_run(config):
        verified_settings(config)


def check_training_data(config: DictConfig) -> None:
    """Empty prompts and missing or repeated prompt indices in local parquet training files."""
    if not is_aero_run(config):
        return
    settings = AEROSettings.from_verl_config(config)
    train_files = OmegaConf.to_container(config.data.train_files, resolve=True) \
        if OmegaConf.is_list(config.data.train_files) else config.data.train_files
    paths = [train_files] if isinstance(train_files, str) else list(train_files)
    local = [path for path in paths if os.path.isfile(path) and path.endswith(".parquet")]
    if len(local) != len(paths):
        logger.info("[aero] training files are not all local parquet files; prompts are checked when verl loads them")
        return
    messages, indices = read_parquet_prompts(local, config.data.get("prompt_key", "prompt"))
    check_training_prompts(settings.trainer.prompt_key, messages, indices, source=f"data.train_files={paths}")


def _paths(value) -> list[str]:
    value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    return [value] if isinstance(value, str) else list(value or [])


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def check_resources(config: DictConfig) -> None:
    """Data files, the model, and the GPUs the run asks for: each missing one fails here, before Ray starts,
    naming what is missing and what makes it (seconds instead of a hang while Ray waits for GPUs)."""
    problems = []
    for key in ("data.train_files", "data.val_files"):
        missing = [path for path in _paths(OmegaConf.select(config, key)) if not _is_remote(path)
                   and not os.path.exists(path)]
        if missing:
            problems.append(f"{key}: {', '.join(missing)} does not exist. Make the paper recipes' data with "
                            "`bash recipes/prepare_math_data.sh` (it writes into ${AERO_DATA_DIR:-data}; set "
                            "AERO_DATA_DIR to where your parquet files are), or point the key at your files")
    model_path = OmegaConf.select(config, "actor_rollout_ref.model.path")
    if model_path and not _is_remote(model_path) and not os.path.isdir(model_path):
        reason = hub_unreachable(model_path)
        if reason:
            problems.append(f"actor_rollout_ref.model.path={model_path!r} is not a local folder and {reason}. "
                            "Download the model and set AERO_MODEL_DIR to the folder holding it (the recipes read "
                            "${AERO_MODEL_DIR}/<model name>), or set the key to a local model folder")
    asked = int(OmegaConf.select(config, "trainer.n_gpus_per_node", default=1)) * \
        int(OmegaConf.select(config, "trainer.nnodes", default=1))
    found, where = available_gpus(config)
    if found is not None and found < asked:
        problems.append(f"trainer.n_gpus_per_node x trainer.nnodes asks for {asked} GPUs but {where} has {found}. "
                        "Run on a machine or Ray cluster with that many GPUs (ray_kwargs.ray_init.address=HEAD:PORT "
                        "for an existing cluster), or lower trainer.n_gpus_per_node / trainer.nnodes")
    if problems:
        raise AEROConfigError("; ".join(problems))


def hub_unreachable(model_id: str) -> str | None:
    """Why a Hugging Face hub id cannot be loaded here, or None if the hub answers for it."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return "HF_HUB_OFFLINE is set"
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(model_id, timeout=10)
    except Exception as error:  # no network, no such repository, no access: all mean "cannot load it"
        return f"the Hugging Face hub could not be reached for it ({type(error).__name__})"
    return None


def available_gpus(config: DictConfig) -> tuple[int | None, str]:
    """GPUs the run will find: an existing Ray cluster's, else a private cluster's (ray_init.num_gpus, or
    this machine's CUDA devices). None when it cannot be known without starting Ray's workers."""
    ray_init = OmegaConf.select(config, "ray_kwargs.ray_init", default=None) or {}
    address = ray_init.get("address")
    if address not in (None, "local"):
        # In a child process with a deadline: Ray retries an unreachable address for minutes.
        probe = "import ray; ray.init(address=%r, log_to_driver=False); print(int(ray.cluster_resources().get('GPU', 0)))"
        try:
            out = subprocess.run([sys.executable, "-c", probe % address], capture_output=True, text=True,
                                 timeout=CLUSTER_PROBE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AEROConfigError(f"ray_kwargs.ray_init.address={address}: no Ray cluster answered within "
                                  f"{CLUSTER_PROBE_TIMEOUT_S} s. Check the address (HEAD:PORT of `ray start --head`) "
                                  "and, with token authentication, RAY_AUTH_MODE=token and the cluster's token") from None
        if out.returncode != 0:
            raise AEROConfigError(f"ray_kwargs.ray_init.address={address}: could not join the Ray cluster "
                                  f"({out.stderr.strip().splitlines()[-1] if out.stderr.strip() else 'no error text'})")
        return int(out.stdout.strip().splitlines()[-1]), f"the Ray cluster at {address}"
    if ray_init.get("num_gpus") is not None:
        return int(ray_init["num_gpus"]), "ray_kwargs.ray_init.num_gpus"
    import torch

    return torch.cuda.device_count(), "this machine"
