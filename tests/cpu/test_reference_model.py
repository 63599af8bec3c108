"""The reference model on the cpu platform: FSDP2's offload policy without pinning, and the CPU demo training
with the KL loss and with KL in the reward (the e2e runs take about 1.5 minutes each).

verl gives every forward-only engine (the reference) `CPUOffloadPolicy(pin_memory=True)`; on CPU torch,
`pin_memory()` raises "Cannot access accelerator device when none is available" inside fully_shard.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

from aero_verl.cpu import activate

STEPS = 2
SHORT_RUN = [f"trainer.total_training_steps={STEPS}", "trainer.val_before_train=False", "trainer.test_freq=-1",
             "data.val_max_samples=40"]
KL_LOSS = ["actor_rollout_ref.actor.use_kl_loss=True", "actor_rollout_ref.actor.kl_loss_coef=0.001",
           "actor_rollout_ref.actor.kl_loss_type=low_var_kl"]


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


def trained_demo(workdir: Path, *overrides: str) -> dict[int, dict]:
    """`python -m aero_verl.main_ppo +recipe=cpu_demo` for STEPS steps; the run's metrics.jsonl by step."""
    run_dir = workdir / "run"
    with open(workdir / "run.log", "w") as log:
        returncode = subprocess.run([sys.executable, "-m", "aero_verl.main_ppo", "+recipe=cpu_demo", *SHORT_RUN,
                                     *overrides, f"hydra.run.dir={run_dir}"], cwd=workdir, stdout=log,
                                    stderr=subprocess.STDOUT, timeout=600).returncode
    assert returncode == 0, (workdir / "run.log").read_text()[-4000:]
    steps = {}
    for line in (run_dir / "checkpoints" / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        steps.setdefault(record["step"], {}).update(record["metrics"])
    assert sorted(step for step, m in steps.items() if "aero/rollouts_generated" in m) == list(range(1, STEPS + 1))
    return steps


@pytest.mark.e2e
def test_the_kl_loss_trains_against_a_reference_equal_to_the_initial_actor(tmp_path):
    # The recipe's actor runs in fp32 and its reference in verl's default bf16, which alone puts a KL of about
    # 1e-4 between two equal models; in fp32 both, the step-1 KL is exactly the policies' difference: none.
    metrics = trained_demo(tmp_path, *KL_LOSS, "++actor_rollout_ref.ref.fsdp_config.mixed_precision.param_dtype=fp32")
    for step in (1, 2):
        assert metrics[step]["actor/kl_coef"] == 0.001 and metrics[step]["timing_s/ref"] > 0
    # One optimizer step per training step (aero.trainer.num_mini_batches=1): step 1's loss is computed before
    # the actor moves, step 2's after.
    assert abs(metrics[1]["actor/kl_loss"]) < 1e-7
    assert metrics[2]["actor/kl_loss"] > 1e-6


@pytest.mark.e2e
def test_kl_in_the_reward_trains_with_finite_aero_advantages(tmp_path):
    metrics = trained_demo(tmp_path, "algorithm.use_kl_in_reward=True")
    for step in (1, 2):
        m = metrics[step]
        assert math.isfinite(m["critic/advantages/mean"]) and m["timing_s/ref"] > 0
        assert m["actor/reward_kl_penalty_coeff"] == 0.001
    # The token rewards the estimator sees are the verified scores minus beta x KL.
    assert metrics[2]["actor/reward_kl_penalty"] != 0
    assert metrics[2]["critic/rewards/mean"] != metrics[2]["critic/score/mean"]
