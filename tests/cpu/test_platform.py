"""CPU platform (aero_verl.cpu.platform): platform selection and the wiring into verl's registries."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from verl.plugin.platform import PlatformRegistry
from verl.plugin.platform.platform_manager import _detect_platform_name

from aero_verl.cpu import activate
from aero_verl.cpu.platform import PlatformCPU


def test_cpu_platform_is_selected_only_by_verl_platform_env(monkeypatch):
    activate()
    assert PlatformRegistry.get("cpu") is PlatformCPU
    monkeypatch.delenv("VERL_PLATFORM", raising=False)
    assert not PlatformCPU().is_platform_available(use_smi_check=True)
    assert _detect_platform_name() != "cpu"
    monkeypatch.setenv("VERL_PLATFORM", "cpu")
    assert PlatformCPU().is_platform_available(use_smi_check=True)
    assert _detect_platform_name() == "cpu"


def test_device_module_answers_the_cuda_memory_calls_verl_makes():
    device = PlatformCPU().device_module
    assert device.max_memory_allocated() > 0 and device.memory_allocated() > 0
    available, total = device.mem_get_info()
    assert 0 < available <= total
    assert device.get_device_name() == "CPU"
    device.empty_cache()
    device.synchronize()  # falls through to torch.cpu
    assert torch.equal(device.get_rng_state(), torch.get_rng_state())


_WIRING_PROBE = textwrap.dedent(
    """
    import os, sys
    if sys.argv[1] == "activate-then-import-rollout-first":
        # The Ray rollout-server process imports aero_verl.cpu.rollout before anything else of verl's
        # rollout package, so activate()'s lazy registration must not recurse into it.
        from aero_verl.cpu import activate
        activate()
        import aero_verl.cpu.rollout
    import verl  # with VERL_USE_EXTERNAL_PLUGINS unset, this loads the verl.plugins entry point
    from verl.plugin.platform import get_platform
    from verl.workers.rollout.base import _ROLLOUT_REGISTRY, get_rollout_class
    from verl.workers.rollout.replica import RolloutReplicaRegistry, get_rollout_replica_class
    from verl.workers.engine import EngineRegistry

    cpu = os.environ.get("VERL_PLATFORM") == "cpu"
    assert (get_platform().device_name == "cpu") == cpu
    assert (("hf", "async") in _ROLLOUT_REGISTRY) == cpu
    assert ("hf" in RolloutReplicaRegistry._registry) == cpu
    assert ("cpu" in EngineRegistry._engines["language_model"]["fsdp2"]) == cpu
    if cpu:
        assert get_rollout_class("hf").__name__ == "HFServerAdapter"
        assert get_rollout_replica_class("hf").__name__ == "HFReplica"
        assert EngineRegistry.get_engine_cls("language_model", "fsdp2").__name__ == "FSDPEngineWithLMHead"
        import torch.distributed
        from verl.workers import engine_workers
        engine_workers.initialize_global_process_group_ray()  # verl's default backend string
        assert torch.distributed.get_backend() == "gloo"
        torch.distributed.destroy_process_group()
    print("WIRING_OK")
    """
)


@pytest.mark.parametrize(
    "verl_platform, plugins, order",
    [
        ("cpu", "auto", "entry-point"),
        ("", "auto", "entry-point"),
        ("cpu", "none", "activate-then-import-rollout-first"),
    ],
)
def test_cpu_runtime_is_wired_into_verl_only_when_asked(verl_platform, plugins, order):
    env = dict(os.environ, VERL_PLATFORM=verl_platform, VERL_USE_EXTERNAL_PLUGINS=plugins)
    env.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(29500 + os.getpid() % 1000))
    result = subprocess.run([sys.executable, "-c", _WIRING_PROBE, order], env=env, capture_output=True, text=True)
    assert "WIRING_OK" in result.stdout, result.stderr[-3000:]
