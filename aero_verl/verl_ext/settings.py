"""The `aero:` config block (the algorithm, core AEROConfig, plus how it runs inside verl under `aero.trainer`)
and the verl settings AERO relies on.

    aero:
      n_total: 16            # ... every AEROConfig field (aero_verl/core/config.py)
      trainer:
        prompt_key: index    # ... every AEROTrainerSettings field below

`verified_settings(config)` is the one check: aero_verl.main_ppo runs it before Ray or any worker starts,
and the trainer's constructor runs it again for runs launched through verl's own
`python -m verl.trainer.main_ppo`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from aero_verl.core import AEROConfig, AEROConfigError
from aero_verl.core.config import BOOLEAN, choice, field_problems, integer, number, setting

PROMPT_KEYS = ("index", "content")
SUPPORTED_LOSS_AGG_MODES = ("token-mean",)
# The agent-loop manager that runs barrier-free rescue inside verl's agent-loop workers.
RESCUE_AGENT_LOOP_MANAGER = "aero_verl.verl_ext.rescue_worker.RescueAgentLoopManager"


@dataclass(frozen=True)
class AEROTrainerSettings:
    """How AERO runs inside verl's v1 trainer (`aero.trainer.*`); each field described once, as in AEROConfig."""

    prompt_key: str = setting("index", group="trainer", provenance="I", check=choice(PROMPT_KEYS),
                              meaning="what keys a prompt's posterior across steps: `index` (the dataset's "
                                      "extra_info.index, checked unique before Ray starts) or `content` (a hash "
                                      "of the prompt messages: duplicates share a posterior)")
    num_mini_batches: int = setting(1, group="trainer", provenance="I", check=integer(1),
                                    meaning="optimizer steps per training step: the kept batch is split into this "
                                            "many equal mini-batches (replaces ppo_mini_batch_size x rollout.n)")
    poll_interval_s: float = setting(0.1, group="trainer", provenance="I", check=number(0.0, low_open=True),
                                     meaning="how often verl's replay buffer polls for finished rollouts (verl's "
                                             "fixed 2 s would add up to 2 s to every generation phase)")
    max_lost_rollout_share: float = setting(
        0.05, group="trainer", provenance="I", check=number(0.0, 1.0),
        meaning="share of a step's requested rollouts that may be lost (generation or reward function raised) "
                "before the run stops; lost rollouts still spend their budget and are reported")
    console: str = setting("compact", group="trainer", provenance="I", check=choice(("compact", "full")),
                           meaning="`compact`: the terminal shows one line per step, validation tables and "
                                   "aero_verl's warnings, verl's and Ray's output goes to <run folder>/run.log; "
                                   "`full`: verl's console as it is")
    resume_without_state: bool = setting(False, group="trainer", provenance="I", check=BOOLEAN,
                                         meaning="resume from a checkpoint without AERO state (e.g. a GRPO run's), "
                                                 "the posterior starting from the prior")

    def __post_init__(self) -> None:
        problems = list(field_problems(self, "aero.trainer"))
        if problems:
            raise AEROConfigError("; ".join(problems))


@dataclass(frozen=True)
class AEROSettings:
    algorithm: AEROConfig
    trainer: AEROTrainerSettings

    @classmethod
    def from_mapping(cls, block: Mapping[str, Any] | None) -> AEROSettings:
        values = dict(block or {})
        trainer_values = dict(values.pop("trainer", None) or {})
        known = {f.name for f in dataclasses.fields(AEROTrainerSettings)}
        unknown = sorted(set(trainer_values) - known)
        if unknown:
            raise AEROConfigError(f"unknown key(s) {', '.join('aero.trainer.' + k for k in unknown)}; "
                                  f"valid keys: {', '.join(sorted(known))}")
        return cls(AEROConfig.from_mapping(values), AEROTrainerSettings(**trainer_values))

    @classmethod
    def from_verl_config(cls, config: DictConfig) -> AEROSettings:
        block = config.get("aero", None)
        plain = OmegaConf.to_container(block, resolve=True) if isinstance(block, DictConfig) else block
        return cls.from_mapping(plain)


def is_aero_run(config: DictConfig) -> bool:
    return OmegaConf.select(config, "trainer.v1.trainer_mode", default=None) == "aero"


def verified_settings(config: DictConfig) -> AEROSettings:
    """The AERO settings of an AERO run, after every check of them and of the verl settings they need; also
    selects verl's agent-loop manager for barrier-free rescue. Raises AEROConfigError naming key, value, fix."""
    settings = AEROSettings.from_verl_config(config)
    problems = verl_config_problems(config, settings)
    if problems:
        raise AEROConfigError("; ".join(problems))
    if settings.algorithm.rescue_mode == "barrier_free":
        with_struct_off(config, "actor_rollout_ref.rollout.agent.agent_loop_manager_class", RESCUE_AGENT_LOOP_MANAGER)
    return settings


def with_struct_off(config: DictConfig, key: str, value) -> None:
    from omegaconf import open_dict

    with open_dict(config):
        OmegaConf.update(config, key, value, force_add=True)


def estimator_problems(config: DictConfig) -> list[str]:
    """Settings verl would not honour, checked for every run, AERO or not: the `aero` estimator outside the
    AERO trainer, and DAPO's filter with a custom replay buffer (verl then silently drops the filter:
    verl/trainer/ppo/v1/trainer_base.py `_build_replay_buffer`)."""
    problems = []
    if OmegaConf.select(config, "algorithm.adv_estimator") == "aero" and not is_aero_run(config):
        mode = OmegaConf.select(config, "trainer.v1.trainer_mode")
        problems.append(f"algorithm.adv_estimator=aero with trainer.v1.trainer_mode={mode!r}: AERO's advantages are "
                        "decided by the AERO trainer's step (posterior, kept groups, loss weights); set "
                        "trainer.v1.trainer_mode=aero, or use algorithm.adv_estimator=grpo with this trainer")
    sampler = OmegaConf.select(config, "trainer.v1.sampler.custom_sampler", default=None)
    if OmegaConf.select(config, "algorithm.filter_groups.enable", default=False) and sampler \
            and sampler.get("path") and sampler.get("name"):
        problems.append(f"algorithm.filter_groups.enable=True with trainer.v1.sampler.custom_sampler="
                        f"{sampler.get('name')!r}: verl passes DAPO's filter to its built-in replay buffer only, so "
                        "it would silently not filter; unset the custom sampler or implement the filter in it")
    return problems


def verl_config_problems(config: DictConfig, settings: AEROSettings) -> list[str]:
    """verl settings AERO cannot run with, each naming the key, its value and the fix."""
    problems = []

    def get(key: str, default=None):
        return OmegaConf.select(config, key, default=default)

    if not get("trainer.use_v1", True):
        problems.append("trainer.use_v1=False: AERO runs on verl's v1 trainer only; set trainer.use_v1=True")
    if get("algorithm.adv_estimator") != "aero":
        problems.append(f"algorithm.adv_estimator={get('algorithm.adv_estimator')!r}: the AERO trainer needs "
                        "algorithm.adv_estimator=aero (variable-size groups, posterior advantages)")
    if get("algorithm.filter_groups.enable", False):
        problems.append("algorithm.filter_groups.enable=True: DAPO filtering would evict AERO's rescue groups; "
                        "set it to False")
    if get("trainer.v1.sync.parameter_sync_step", 1) != 1:
        problems.append(f"trainer.v1.sync.parameter_sync_step={get('trainer.v1.sync.parameter_sync_step')}: "
                        "AERO plans one batch per weight version; set it to 1")
    if get("reward.reward_model.enable", False) and not get("reward.reward_model.enable_resource_pool", False):
        problems.append("reward.reward_model.enable=True without enable_resource_pool: a colocated reward model "
                        "scores rollouts only after sampling, but AERO needs rewards to plan rescue; set "
                        "reward.reward_model.enable_resource_pool=True")
    if get("critic.enable", False):
        problems.append("critic.enable=True: AERO is critic-free (group-relative advantages); set critic.enable=False")
    n = get("actor_rollout_ref.rollout.n")
    if n != settings.algorithm.n_explore:
        problems.append(f"actor_rollout_ref.rollout.n={n} differs from aero.n_explore="
                        f"{settings.algorithm.n_explore}: verl sizes Stage I batches by rollout.n; set them equal")
    loss_agg_mode = get("actor_rollout_ref.actor.loss_agg_mode", "token-mean")
    if loss_agg_mode not in SUPPORTED_LOSS_AGG_MODES:
        problems.append(f"actor_rollout_ref.actor.loss_agg_mode={loss_agg_mode!r}: sequence-mean modes divide by "
                        "a batch size that counts padding rows, so AERO's variable batches would be mis-weighted; "
                        "use token-mean (aero.loss_weighting=per_group gives the per-group mean under it)")
    if get("actor_rollout_ref.rollout.full_determinism", False):
        problems.append("actor_rollout_ref.rollout.full_determinism=True: every copy of a prompt then samples the "
                        "same response on vLLM, so each Stage I group is all-same and rescue replays the same "
                        "failure (GRPO's groups collapse too); set it to False (aero_verl's CPU rollout is "
                        "reproducible per request without it)")
    if settings.algorithm.loss_weighting == "per_group" and settings.trainer.num_mini_batches > 1 \
            and get("actor_rollout_ref.actor.shuffle", False):
        problems.append("actor_rollout_ref.actor.shuffle=True with aero.loss_weighting=per_group and "
                        "aero.trainer.num_mini_batches>1: the per-group weights are normalised per optimizer step, "
                        "which a shuffled split hides; set actor_rollout_ref.actor.shuffle=False")
    manager = get("actor_rollout_ref.rollout.agent.agent_loop_manager_class")
    if settings.algorithm.rescue_mode == "barrier_free" and manager not in (None, "", RESCUE_AGENT_LOOP_MANAGER):
        problems.append(f"actor_rollout_ref.rollout.agent.agent_loop_manager_class={manager!r} with "
                        "aero.rescue_mode=barrier_free: barrier-free rescue runs in AERO's own agent-loop manager "
                        f"({RESCUE_AGENT_LOOP_MANAGER}); unset the key, or use aero.rescue_mode=rounds")
    return problems


def settings_markdown() -> str:
    """The README's configuration tables, generated from the settings' own descriptions."""
    from aero_verl.core.config import settings_table

    return "\n\n".join([settings_table(AEROConfig, "aero."), settings_table(AEROTrainerSettings, "aero.trainer.")])


if __name__ == "__main__":
    print(settings_markdown())
