"""Two training ranks (DP=2 over gloo) on the CPU demo, with the reference model and KL loss, two optimizer
steps per training step and two agent-loop workers; token-based and count-based micro-batches (minutes; e2e).

Per step: every rank takes aero.trainer.num_mini_batches optimizer steps (the Adam step counter of each rank's
optimizer shard, saved at every step), and verl trains exactly AERO's kept rollouts plus its padding rows,
which make the batch a multiple of dp x the per-rank multiple (trainer._get_required_batch_multiple). A
padding row is verl's synthetic 127-token prompt and 1-token response with response_mask 0
(verl/trainer/ppo/padding_utils.py), so it adds 128 tokens to what verl trains and nothing to the loss.

Against a DP=1 run of the same seed: the prompts, each step's Stage I and every prompt's posterior bookkeeping
agree, but the samples do not, so neither do the outcomes or the posterior. Two ranks mean two rollout
replicas; the hf server seeds each request from its replica's rank as well as the prompt and its occurrence
(aero_verl/cpu/rollout.py, RequestSeeder), and verl's load balancer sends each request to the less busy
replica, so which seed a rollout gets depends on timing. (From step 2 on the weights also differ in the last
bits: a two-rank gradient is all-reduced in another summation order.)
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.e2e

STEPS = 2
MINI_BATCHES = 2
N_EXPLORE, N_TOTAL = 8, 16  # the cpu_demo recipe's aero block
PADDING_ROW_TOKENS = 128  # verl/trainer/ppo/padding_utils.py, SYNTHETIC_PADDING_SEQ_LEN
COMMON = [f"trainer.total_training_steps={STEPS}", "trainer.val_before_train=False", "trainer.test_freq=-1",
          "data.val_max_samples=40", f"aero.trainer.num_mini_batches={MINI_BATCHES}",
          "actor_rollout_ref.rollout.agent.num_workers=2", "actor_rollout_ref.actor.use_kl_loss=True",
          "actor_rollout_ref.actor.kl_loss_coef=0.001", "actor_rollout_ref.actor.kl_loss_type=low_var_kl"]
TWO_RANKS = ["trainer.n_gpus_per_node=2", "ray_kwargs.ray_init.num_gpus=2", "trainer.save_freq=1"]
MICRO = 2
BATCHING = {
    # Rows per rank: a multiple of num_mini_batches.
    "token_based": ([], 2 * MINI_BATCHES),
    # Rows per rank: a multiple of lcm(num_mini_batches x actor micro, log-prob micro, ref micro) = 4. verl
    # requires the rollout's log-prob batching to follow the actor's (verl/workers/engine_workers.py, init_model).
    "count_based": (["actor_rollout_ref.actor.use_dynamic_bsz=False",
                     "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=False",
                     f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={MICRO}",
                     f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={MICRO}",
                     f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={MICRO}"], 2 * 4),
}


def trained_demo(workdir: Path, name: str, *overrides: str) -> dict:
    """`python -m aero_verl.main_ppo +recipe=cpu_demo` for STEPS steps: metrics by step and the checkpoints."""
    run_dir = workdir / name
    with open(workdir / f"{name}.log", "w") as log:
        returncode = subprocess.run([sys.executable, "-m", "aero_verl.main_ppo", "+recipe=cpu_demo", *COMMON,
                                     *overrides, f"hydra.run.dir={run_dir}"], cwd=workdir, stdout=log,
                                    stderr=subprocess.STDOUT, timeout=900).returncode
    assert returncode == 0, (workdir / f"{name}.log").read_text()[-4000:]
    metrics = {}
    for line in (run_dir / "checkpoints" / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        metrics.setdefault(record["step"], {}).update(record["metrics"])
    assert sorted(step for step, m in metrics.items() if "aero/rollouts_generated" in m) == list(range(1, STEPS + 1))
    return {"metrics": metrics, "checkpoints": run_dir / "checkpoints"}


def posterior(checkpoints: Path) -> dict[str, np.ndarray]:
    """The posterior table after the last step, rows sorted by prompt key."""
    with np.load(checkpoints / f"global_step_{STEPS}" / "aero_state.npz") as archive:
        order = np.argsort(archive["keys"])
        return {name: archive[name][order] for name in ("keys", "alpha", "beta", "observations")}


def optimizer_steps(checkpoints: Path, step: int, ranks: int = 2) -> list[int]:
    """Adam's step counter after training step `step`, on each rank (FSDP saves one optimizer shard per rank)."""
    counts = []
    for rank in range(ranks):
        shard = torch.load(checkpoints / f"global_step_{step}" / "actor" / f"optim_world_size_{ranks}_rank_{rank}.pt",
                           map_location="cpu", weights_only=False)
        counts.extend({int(state["step"]) for state in shard["state"].values()})
    return counts


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("dp2")


@pytest.fixture(scope="module", params=sorted(BATCHING))
def two_ranks(request, workdir):
    overrides, multiple = BATCHING[request.param]
    return {"multiple": multiple, **trained_demo(workdir, request.param, *TWO_RANKS, *overrides)}


@pytest.fixture(scope="module")
def one_rank(workdir):
    return trained_demo(workdir, "one_rank", f"trainer.save_freq={STEPS}")


def test_each_rank_takes_the_same_optimizer_steps_on_the_kept_rollouts_plus_padding(two_ranks):
    for step in range(1, STEPS + 1):
        m = two_ranks["metrics"][step]
        # Each rank's counter is one value over all its parameters, grown by num_mini_batches this step.
        before = [MINI_BATCHES * (step - 1)] * 2
        assert [count - done for count, done in zip(optimizer_steps(two_ranks["checkpoints"], step), before)] == \
            [MINI_BATCHES] * 2, step
        kept, padding = m["aero/rollouts_kept"], m["aero/pad_rows"]
        assert m["run/rollouts_trained"] == kept > 0
        assert (kept + padding) % two_ranks["multiple"] == 0 and 0 <= padding < two_ranks["multiple"]
        # The rows verl trained, by their tokens: the kept rollouts' and 128 per padding row.
        assert m["perf/total_num_tokens"] == m["run/tokens_trained"] + PADDING_ROW_TOKENS * padding
        assert m["global_seqlen/mean"] * 2 == m["perf/total_num_tokens"]  # split over the two ranks
        assert math.isfinite(m["actor/kl_loss"]) and m["timing_s/ref"] > 0


def test_the_posterior_agrees_with_one_rank_in_prompts_and_bookkeeping(two_ranks, one_rank):
    for step in range(1, STEPS + 1):
        ours, theirs = two_ranks["metrics"][step], one_rank["metrics"][step]
        for key in ("aero/prompts", "aero/rollouts_stage1"):
            assert ours[key] == theirs[key], (step, key)
    ours, theirs = posterior(two_ranks["checkpoints"]), posterior(one_rank["checkpoints"])
    # The same prompts, 16 new ones a step (the demo's training set holds more than STEPS x 16).
    assert np.array_equal(ours["keys"], theirs["keys"]) and len(ours["keys"]) == 16 * STEPS
    for table in (ours, theirs):
        # Beta(1, 1) updated by every observed rollout (forgetting 1): alpha + beta - 2 counts them, from Stage I's
        # n_explore up to the per-prompt budget n_total.
        assert np.array_equal(table["alpha"] + table["beta"] - 2, table["observations"])
        assert np.all((table["observations"] >= N_EXPLORE) & (table["observations"] <= N_TOTAL))
