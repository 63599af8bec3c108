"""CPU runtime for verl 0.9.1: a `cpu` platform and an `hf` rollout, for CPU demos and tests only.

It lets verl's real trainer (`python -m verl.trainer.main_ppo`) train a tiny model end to end on a
machine without a GPU: FSDP2 on gloo for the actor, and a plain-transformers batched sampler as the
rollout server (`actor_rollout_ref.rollout.name=hf`). It is not a fast or scalable inference engine:
use vLLM/SGLang for real training.

Nothing here is active unless `VERL_PLATFORM=cpu`. The `verl.plugins` entry point registers the `cpu`
platform class in every process (auto-detection never picks it) and calls `activate()` only when the
variable is set; aero_verl.main_ppo sets it in its own process from the recipe's Ray worker env.
"""

from aero_verl.after_import import run_after_import

ROLLOUT_NAME = "hf"

_activated = False


def register_platform() -> None:
    """Make `VERL_PLATFORM=cpu` resolvable: importing the module registers the platform class."""
    from aero_verl.cpu import platform  # noqa: F401


def activate() -> None:
    """Register the `cpu` platform, its patches of verl and the `hf` rollout with verl (idempotent)."""
    global _activated
    if _activated:
        return
    from aero_verl.cpu import platform

    platform.patch_verl_for_cpu()
    run_after_import("verl.workers.rollout", _register_hf_rollout)
    _activated = True


def _register_hf_rollout(rollout_package) -> None:
    """Plug `hf` into verl 0.9.1's two rollout registries, naming the classes without importing them.

    Importing aero_verl.cpu.rollout here would be circular: that module imports verl.workers.rollout,
    whose import is what runs this hook.
    """
    # verl/workers/rollout/base.py: the hybrid training worker resolves its rollout class from this
    # fully qualified name (get_rollout_class).
    rollout_package.base._ROLLOUT_REGISTRY[(ROLLOUT_NAME, "async")] = "aero_verl.cpu.rollout.HFServerAdapter"
    # verl/workers/rollout/replica.py: LLMServerManager calls this loader (get_rollout_replica_class).
    rollout_package.replica.RolloutReplicaRegistry.register(ROLLOUT_NAME, _load_hf_replica)


def _load_hf_replica():
    from aero_verl.cpu.rollout import HFReplica

    return HFReplica
