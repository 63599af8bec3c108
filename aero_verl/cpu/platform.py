"""A `cpu` platform for verl 0.9.1, selected only by `VERL_PLATFORM=cpu`.

verl reaches the accelerator through `verl.plugin.platform.get_platform()`. It ships nvidia, huawei and
amd platforms, and on a host without any of them it falls back to `nvidia` (device `cuda`, backend
`nccl`). This module adds a `cpu` platform and makes the four places where verl 0.9.1 assumes an
accelerator work on CPU:

* the device module: verl calls CUDA's memory API (`max_memory_allocated`, `mem_get_info`,
  `empty_cache`, ...) on `get_torch_device()`, which `torch.cpu` lacks;
* process groups: verl builds the backend string `cpu:gloo,{device}:{backend}`, which on CPU becomes
  `cpu:gloo,cpu:gloo` and torch rejects as a duplicate device;
* engines: verl registers its FSDP engines for devices `cuda` and `npu` only;
* the reference model (KL loss, KL in the reward): verl gives it FSDP2's CPU offload with pinned
  memory, and pinning needs an accelerator.

Ray resources: each CPU training rank takes one logical Ray `GPU`, so verl's resource-pool checks and
placement groups work unchanged; declare as many as training ranks, e.g.
`+ray_kwargs.ray_init.num_gpus=1`. Nothing is ever placed on a real GPU.
"""

import contextlib
import os
import resource
from typing import Any

import psutil
import torch
from verl.plugin.platform import PlatformBase, PlatformRegistry

from aero_verl.after_import import run_after_import

PLATFORM_NAME = "cpu"


def cpu_platform_requested() -> bool:
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == PLATFORM_NAME


class CPUDeviceModule:
    """`torch.cpu` plus the CUDA memory/cache API that verl calls on `get_torch_device()`.

    Memory figures are the process's resident memory, so verl's `perf/max_memory_allocated_gb`
    and its memory logs report something true on CPU instead of zeros.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(torch.cpu, name)

    @staticmethod
    def memory_allocated(device=None) -> int:
        return psutil.Process().memory_info().rss

    memory_reserved = memory_allocated

    @staticmethod
    def max_memory_allocated(device=None) -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB

    max_memory_reserved = max_memory_allocated

    @staticmethod
    def mem_get_info(device=None) -> tuple[int, int]:
        memory = psutil.virtual_memory()
        return memory.available, memory.total

    @staticmethod
    def memory_stats(device=None) -> dict:
        return {}

    @staticmethod
    def get_device_name(device=None) -> str:
        return "CPU"

    @staticmethod
    def get_rng_state(device=None) -> torch.Tensor:
        return torch.get_rng_state()

    @staticmethod
    def set_rng_state(state: torch.Tensor, device=None) -> None:
        torch.set_rng_state(state)

    @staticmethod
    def empty_cache() -> None:
        """CPU memory goes back to the allocator on free; there is no cache to empty."""

    @staticmethod
    def ipc_collect() -> None:
        """No CUDA IPC handles exist on CPU."""

    @staticmethod
    def reset_peak_memory_stats(device=None) -> None:
        """The peak is the process's peak RSS, which cannot be reset."""

    @staticmethod
    def set_per_process_memory_fraction(fraction: float, device=None) -> None:
        """No device memory pool to cap on CPU."""


_CPU_DEVICE_MODULE = CPUDeviceModule()


@PlatformRegistry.register(platform=PLATFORM_NAME)
class PlatformCPU(PlatformBase):
    """verl platform running everything on CPU, with gloo for collectives."""

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> CPUDeviceModule:
        return _CPU_DEVICE_MODULE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # Auto-detection must never pick CPU: a GPU host whose probe fails should fail loudly,
        # not train silently on CPU. Only an explicit VERL_PLATFORM=cpu selects this platform.
        return cpu_platform_requested()

    def current_device(self) -> str:
        # verl uses this value only as `.to(x)` / `device=x`; an integer there would mean cuda:N.
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        """A CPU process has one device."""

    def synchronize(self, device_index=None) -> None:
        """CPU kernels run synchronously."""

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        """The CPU allocator has no expandable-segments setting."""

    def empty_cache(self) -> None:
        """Nothing is cached on CPU."""

    def get_device_capability(self, device_index: int = 0) -> tuple[None, None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        # Ray sets it for the logical GPUs that stand for CPU ranks; CPU torch ignores it.
        return "CUDA_VISIBLE_DEVICES"

    @contextlib.contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        """No device profiler on CPU."""

    def profiler_stop(self) -> None:
        """No device profiler on CPU."""

    def ray_resource_name(self) -> str:
        return "GPU"  # one logical Ray GPU per CPU training rank, see the module docstring

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> None:
        return None


# ---------------------------------------------------------------------------------------------------
# Every touch of verl 0.9.1 internals made by the CPU platform lives below.
# ---------------------------------------------------------------------------------------------------

# verl/workers/engine/fsdp/transformer_impl.py registers these for devices ["cuda", "npu"] only.
# FSDP1 (`fsdp`) cannot run on CPU (sync_module_states needs GPU tensors), so only fsdp2 is added.
_FSDP_MODULE = "verl.workers.engine.fsdp.transformer_impl"
_CPU_ENGINES = {"language_model": "FSDPEngineWithLMHead", "value_model": "FSDPEngineWithValueHead"}
_CPU_ENGINE_BACKEND = "fsdp2"

# verl/workers/engine/fsdp/transformer_impl.py, FSDPEngine._build_fsdp_module, gives FSDP2 a
# `CPUOffloadPolicy(pin_memory=True)` for every forward-only engine (the reference model, always) and for
# `fsdp_config.offload_policy=True`. Pinning is page-locking host memory for copies to an accelerator;
# CPU torch has none and `pin_memory()` raises "Cannot access accelerator device when none is
# available" inside fully_shard. The module imports the class by name, so the name is rebound there.
_OFFLOAD_POLICY = "CPUOffloadPolicy"

# verl/utils/distributed.py builds `cpu:gloo,{device}:{backend}` when no backend is passed, and
# verl/workers/engine_workers.py imports the function by name and calls it that way.
_DISTRIBUTED_MODULE = "verl.utils.distributed"
_ENGINE_WORKERS_MODULE = "verl.workers.engine_workers"
_PROCESS_GROUP_INIT = "initialize_global_process_group_ray"


def patch_verl_for_cpu() -> None:
    """Make verl's process groups, engine lookup and reference model work on the `cpu` platform (idempotent)."""
    run_after_import(_DISTRIBUTED_MODULE, _default_process_groups_to_gloo)
    run_after_import(_FSDP_MODULE, _register_fsdp_engines_for_cpu)
    run_after_import(_FSDP_MODULE, _offload_without_pinning)


def _register_fsdp_engines_for_cpu(fsdp_module) -> None:
    from verl.workers.engine.base import EngineRegistry

    for model_type, class_name in _CPU_ENGINES.items():
        engines_by_device = EngineRegistry._engines[model_type][_CPU_ENGINE_BACKEND]
        if PLATFORM_NAME not in engines_by_device:
            EngineRegistry.register(model_type, _CPU_ENGINE_BACKEND, device=PLATFORM_NAME)(
                getattr(fsdp_module, class_name)
            )


def _offload_without_pinning(fsdp_module) -> None:
    """verl's offload policy stays (its bookkeeping keyed on it stays right), unpinned.

    On the cpu platform the host is the device: offloaded parameters are where they would be anyway, so
    only the pinning has to go.
    """
    setattr(fsdp_module, _OFFLOAD_POLICY, unpinned_cpu_offload_policy)


def unpinned_cpu_offload_policy(pin_memory: bool = True):
    """FSDP2's CPUOffloadPolicy with pin_memory off, whatever verl asks for (see _OFFLOAD_POLICY)."""
    from torch.distributed.fsdp import CPUOffloadPolicy

    return CPUOffloadPolicy(pin_memory=False)


def _default_process_groups_to_gloo(distributed_module) -> None:
    original = getattr(distributed_module, _PROCESS_GROUP_INIT)
    if getattr(original, "defaults_to_gloo", False):
        return

    def init_process_group_defaulting_to_gloo(timeout_second=None, backend=None):
        return original(timeout_second=timeout_second, backend=backend or "gloo")

    init_process_group_defaulting_to_gloo.defaults_to_gloo = True
    setattr(distributed_module, _PROCESS_GROUP_INIT, init_process_group_defaulting_to_gloo)
    # engine_workers binds the name at import; rebind it there in case it was imported first.
    run_after_import(
        _ENGINE_WORKERS_MODULE,
        lambda module: setattr(module, _PROCESS_GROUP_INIT, init_process_group_defaulting_to_gloo),
    )
