"""The reference model on the cpu platform: FSDP2's offload policy without pinning. (The CPU demo training with the
KL loss is checked on tests/e2e's reference run, with KL in the reward on its multirun.)

verl gives every forward-only engine (the reference) `CPUOffloadPolicy(pin_memory=True)`; on CPU torch,
`pin_memory()` raises "Cannot access accelerator device when none is available" inside fully_shard.
"""

import pytest
import torch
import torch.distributed as dist
from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

from aero_verl.cpu import activate


@pytest.fixture
def single_rank_gloo_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_the_reference_models_offload_policy_is_unpinned_on_the_cpu_platform():
    activate()
    from verl.workers.engine.fsdp import transformer_impl

    policy = transformer_impl.CPUOffloadPolicy(pin_memory=True)  # what verl builds for the reference
    assert isinstance(policy, CPUOffloadPolicy) and not policy.pin_memory


@pytest.mark.skipif(torch.accelerator.is_available(), reason="pinning works where an accelerator exists")
def test_fully_shard_with_verls_policy_fails_on_cpu_and_works_unpinned(single_rank_gloo_group):
    activate()
    from verl.workers.engine.fsdp import transformer_impl

    with pytest.raises(RuntimeError, match="Cannot access accelerator device"):
        fully_shard(torch.nn.Linear(4, 4), offload_policy=CPUOffloadPolicy(pin_memory=True))
    module = fully_shard(torch.nn.Linear(4, 4), offload_policy=transformer_impl.CPUOffloadPolicy(pin_memory=True))
    assert module(torch.ones(2, 4)).shape == (2, 4)
