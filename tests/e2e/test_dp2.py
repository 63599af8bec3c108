"""Two training ranks (DP=2 over gloo) on the CPU demo with token-based micro-batches, barrier-free rescue in
two agent-loop workers, the reference model and KL loss, two optimizer steps per training step, and a reward
function that returns NaN for some rollouts and raises for others (minutes; e2e). The count-based DP=2 run is
test_cluster's, on an existing two-node cluster.

Per step: every rank takes aero.trainer.num_mini_batches optimizer steps (the Adam step counter of each rank's
optimizer shard, saved at every step), and verl trains exactly AERO's kept rollouts plus its padding rows,
which make the batch a multiple of dp x the per-rank multiple (trainer._get_required_batch_multiple). A
padding row is verl's synthetic 127-token prompt and 1-token response with response_mask 0
(verl/trainer/ppo/padding_utils.py), so it adds 128 tokens to what verl trains and nothing to the loss.
"""

import math

import pytest

pytestmark = pytest.mark.e2e

FLAKY_REWARD = """
import math
def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    if data_source == "arith/L5":
        return {"score": math.nan, "acc": 0.0}      # a NaN reward: counted as a failure
    if data_source == "arith/L4" and len(solution_str) % 2:
        raise RuntimeError("flaky reward")           # verl drops the rollout: counted as missing
    correct = float(solution_str.strip() == str(ground_truth))
    return {"score": correct, "acc": correct}
"""


@pytest.fixture(scope="module")
def barrier_free_flaky(runs, e2e_dir):
    reward = e2e_dir / "flaky_reward.py"
    reward.write_text(FLAKY_REWARD)
    process = runs.launch(e2e_dir, "+recipe=cpu_demo", *runs.two_rank_overrides(), "ray_kwargs.ray_init.num_gpus=2",
                          "aero.rescue_mode=barrier_free", "aero.invalid_reward=failure",
                          "aero.trainer.max_lost_rollout_share=0.5", f"reward.custom_reward_function.path={reward}",
                          name="dp2_barrier_free")
    log = runs.finished(process, e2e_dir, "dp2_barrier_free", timeout=900)
    checkpoints = e2e_dir / "dp2_barrier_free" / "checkpoints"
    metrics = runs.metrics_by_step(checkpoints / "metrics.jsonl")
    assert runs.trained_steps(metrics) == list(range(1, runs.TWO_RANK_STEPS + 1))
    return {"log": log, "metrics": metrics, "checkpoints": checkpoints}


def test_each_rank_takes_the_same_optimizer_steps_on_the_kept_rollouts_plus_padding(barrier_free_flaky, runs):
    # Token-based micro-batches: rows per rank a multiple of num_mini_batches.
    runs.check_two_rank_training(barrier_free_flaky["metrics"], barrier_free_flaky["checkpoints"],
                                 2 * runs.MINI_BATCHES)


def test_barrier_free_rescue_adds_at_most_one_generation_phase(barrier_free_flaky, runs):
    for step in range(1, runs.TWO_RANK_STEPS + 1):
        m = barrier_free_flaky["metrics"][step]
        assert m["aero/generation_phases"] == 1  # rescue runs inside the Stage I phase, in the agent-loop workers
        assert m["aero/rescue_rounds"] == 0
        assert m["aero/rollouts_stopped"] >= 0 and m["aero/tokens_stopped"] >= 0
        assert m["aero/prompts_rescued"] + m["aero/prompts_failed_rescue"] == m["aero/prompts_rescue"]
        assert m["aero/rollouts_per_prompt_max"] <= 16


def test_nan_and_raising_rewards_are_counted_under_the_failure_policy(barrier_free_flaky):
    metrics = barrier_free_flaky["metrics"]
    assert sum(metrics[step]["aero/invalid_rewards"] for step in (1, 2)) > 0
    assert sum(metrics[step]["aero/rollouts_missing"] for step in (1, 2)) > 0
    assert all(math.isfinite(metrics[step]["critic/score/mean"]) for step in (1, 2))
    assert "never came back" in barrier_free_flaky["log"] + (barrier_free_flaky["checkpoints"].parent / "run.log").read_text()
