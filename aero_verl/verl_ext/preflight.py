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

from omegaconf import DictConfig, OmegaConf

from aero_verl.core import AEROConfigError
from aero_verl.verl_ext.prompts import check_training_prompts, read_parquet_prompts
from aero_verl.verl_ext.settings import AEROSettings, estimator_problems, is_aero_run, verified_settings

logger = logging.getLogger(__name__)


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
