"""verl's real trainer on the CPU demo, through `python -m aero_verl.main_ppo` (minutes; marked e2e).

The reference run (conftest: 4 steps with the KL loss, checkpoints at 2 and 4, validation before and after)
is checked here; the other launches are a run killed hard after its step-2 checkpoint and relaunched with
the identical command, a Hydra multirun of AERO and the GRPO baseline with KL in the reward, an evaluation
of a saved checkpoint, and bad input refused before Ray.
"""

import json
import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

STEP_KEYS = ["aero/rollouts_stage1", "aero/rollouts_stage2", "aero/rescue_rounds", "aero/rollouts_kept",
             "aero/prompts_rescued", "aero/tokens_generated", "aero/success_rate_generated"]


def test_aero_trains_through_verls_trainer_with_consistent_accounting(reference, runs):
    steps = runs.REFERENCE_STEPS
    metrics = reference["metrics"]
    training = {step: m for step, m in metrics.items() if "aero/rollouts_generated" in m}
    assert sorted(training) == list(range(1, steps + 1))
    for step, m in training.items():
        prompts = m["aero/prompts"]
        assert m["aero/rollouts_stage1"] == prompts * 8  # n_explore per prompt (fixed explore mode)
        assert m["aero/rollouts_generated"] == m["aero/rollouts_stage1"] + m["aero/rollouts_stage2"]
        assert 0 < m["aero/rollouts_kept"] <= m["aero/rollouts_generated"] <= m["aero/budget"] == prompts * 16
        assert m["aero/rollouts_per_prompt_max"] <= 16  # the per-query budget
        assert m["aero/rollouts_stage2"] <= m["aero/rescue_rounds"] * 2 * m["aero/prompts_rescue"]
        assert m["aero/prompts_rescued"] + m["aero/prompts_failed_rescue"] == m["aero/prompts_rescue"]
        assert m["aero/generation_phases"] == 1 + m["aero/rescue_rounds"]  # rounds mode: one barrier a round
        assert m["aero/posterior_prompts"] >= prompts
        assert "timing_s/aero_rescue" in m and "actor/pg_loss" in m
    assert training[steps]["aero/posterior_prompts"] > training[1]["aero/posterior_prompts"]
    assert training[steps]["aero/cumulative/rollouts_generated"] == sum(
        m["aero/rollouts_generated"] for m in training.values())
    # Avg@8 and the unbiased Pass@8 per level, before training (step 0) and after the last step
    for step in (0, steps):
        assert any(k.startswith("val-core/arith/") and k.endswith("/acc/pass@8") for k in metrics[step])
        assert any(k.startswith("val-core/arith/") and k.endswith("/acc/mean@8") for k in metrics[step])
    results = json.loads((reference["checkpoints"] / "eval" / f"step_{steps}.json").read_text())["results"]
    assert results and set(results) <= {f"arith/L{i}" for i in range(1, 6)}
    assert all(0 <= row["avg@8"] <= row["pass@8"] <= 1 for row in results.values())
    assert "AERO run summary" in reference["log"]
    summary = json.loads((reference["checkpoints"] / "aero_summary.json").read_text())
    assert summary["cumulative"]["steps"] == steps
    for step in (2, steps):
        assert (reference["checkpoints"] / f"global_step_{step}" / "aero_state.npz").exists()
    # the run's own record: cost accounting per step, every rollout's length, the report
    record = runs.metrics_by_step(reference["checkpoints"] / "metrics.jsonl")
    assert all(record[step]["run/tokens_generated"] > record[step]["run/tokens_trained"] > 0
               for step in range(1, steps + 1))
    assert record[steps]["run/flops_cumulative"] == pytest.approx(sum(record[s]["run/flops"] for s in range(1, steps + 1)))
    rollouts = [json.loads(line) for line in (reference["checkpoints"] / "rollouts.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rollouts] == list(range(1, steps + 1))
    assert len(rollouts[0]["length"]) == metrics[1]["aero/rollouts_generated"]
    assert (reference["checkpoints"].parent / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the compact console: step lines and tables, verl's own output in the run's log file
    console = reference["log"]
    assert f"[aero] step {steps}/{steps}" in console and "validation, step 0" in console
    assert "Training Progress" not in console and (reference["checkpoints"].parent / "run.log").exists()


def test_the_kl_loss_trains_against_a_reference_equal_to_the_initial_actor(reference):
    """The recipe runs actor and reference in fp32, so before any update the KL is exactly the policies'
    difference: none. One optimizer step per training step (aero.trainer.num_mini_batches=1): step 1's loss is
    computed before the actor moves, step 2's after."""
    metrics = reference["metrics"]
    for step in (1, 2):
        assert metrics[step]["actor/kl_coef"] == 0.001 and metrics[step]["timing_s/ref"] > 0
    assert abs(metrics[1]["actor/kl_loss"]) < 1e-7
    assert metrics[2]["actor/kl_loss"] > 1e-6


def test_relaunching_the_identical_command_after_a_hard_kill_continues_exactly(reference, runs, e2e_dir):
    """Killed with SIGKILL after its step-2 checkpoint, the identical command relaunched in the same
    directory finds its own checkpoints and continues with its AERO state, as the uninterrupted run did."""
    steps = runs.REFERENCE_STEPS
    killed = runs.launch(e2e_dir, *runs.REFERENCE_COMMAND, name="relaunch", own_folder=False)
    run_root = e2e_dir / "relaunch" / "outputs" / "aero"
    deadline = time.time() + 600
    while not any(t.read_text().strip() == "2" for t in run_root.glob("*/checkpoints/latest_checkpointed_iteration.txt")):
        assert killed.poll() is None and time.time() < deadline, "the run ended before its step-2 checkpoint"
        time.sleep(0.5)
    os.killpg(killed.pid, signal.SIGKILL)  # no clean-up of any kind: the step-3 work in flight is lost
    killed.wait()

    relaunch = runs.launch(e2e_dir, *runs.REFERENCE_COMMAND, name="relaunch", own_folder=False)
    log = runs.finished(relaunch, e2e_dir, "relaunch")
    folders = list(run_root.iterdir())
    assert len(folders) == 1, folders  # the relaunch found the same folder
    assert "restored the posterior" in (folders[0] / "run.log").read_text()
    relaunched = runs.metrics_by_step(folders[0] / "checkpoints" / "metrics.jsonl")
    for step in (3, 4):
        for key in STEP_KEYS:
            assert relaunched[step][key] == reference["metrics"][step][key], (step, key)
    ours = runs.posterior(folders[0] / "checkpoints" / f"global_step_{steps}")
    theirs = runs.posterior(reference["checkpoints"] / f"global_step_{steps}")
    for name in ours:
        assert np.array_equal(ours[name], theirs[name]), name
    assert "AERO run summary" in log


def test_multirun_sweeps_aero_and_the_grpo_baseline_with_kl_in_the_reward(runs, e2e_dir):
    sweep_dir = e2e_dir / "sweep"
    process = runs.launch(e2e_dir, "+recipe=cpu_demo,grpo_cpu_demo", "algorithm.use_kl_in_reward=True",
                          "trainer.total_training_steps=2", "trainer.val_before_train=False", "trainer.test_freq=-1",
                          f"hydra.sweep.dir={sweep_dir}", name="sweep", multirun=True)
    log = runs.finished(process, e2e_dir, "sweep", timeout=900)
    assert "Launching 2 jobs locally" in log
    # one folder per job, named by the job's own overrides: a relaunched sweep finds each job's folder
    aero_jobs, grpo_jobs = list((sweep_dir / "aero").iterdir()), list((sweep_dir / "grpo").iterdir())
    assert len(aero_jobs) == len(grpo_jobs) == 1
    assert (aero_jobs[0] / "checkpoints" / "aero_summary.json").exists()  # AERO's per-run result
    assert not (grpo_jobs[0] / "checkpoints" / "aero_summary.json").exists()  # plain GRPO: no AERO
    for job in aero_jobs + grpo_jobs:
        steps = runs.metrics_by_step(job / "checkpoints" / "metrics.jsonl")
        assert steps[2]["run/tokens_trained"] > 0  # the same accounting for the baseline
        for step in (1, 2):
            m = steps[step]
            assert math.isfinite(m["critic/advantages/mean"]) and m["timing_s/ref"] > 0
            assert m["actor/reward_kl_penalty_coeff"] == 0.001
        # The token rewards the estimator sees are the verified scores minus beta x KL, and the actor has
        # moved from the reference by step 2.
        assert steps[2]["actor/reward_kl_penalty"] != 0, job
        assert steps[2]["critic/rewards/mean"] != steps[2]["critic/score/mean"], job
    assert log.count("[aero] step 2/2") == 2


def test_a_saved_checkpoint_is_evaluated_alone(reference, runs, e2e_dir):
    out = e2e_dir / "evaluation"
    steps = runs.REFERENCE_STEPS
    process = runs.launch(e2e_dir, "+recipe=cpu_demo", "+eval=checkpoint", "data.val_max_samples=40",
                          f"trainer.resume_from_path={reference['checkpoints'] / f'global_step_{steps}'}",
                          f"trainer.default_local_dir={out}", name="evaluation")
    runs.finished(process, e2e_dir, "evaluation")
    results = json.loads((out / "eval" / f"step_{steps}.json").read_text())["results"]
    assert results and all("pass@8" in row and "avg@8" in row for row in results.values())
    assert all(sum(n for n, _ in row["prompts"].values()) == row["n_prompts"] * 8 for row in results.values())
    verl_log = (e2e_dir / "evaluation" / "run.log").read_text()
    assert "Initial validation metrics" in verl_log and "Training Progress" not in verl_log


def unindexed_parquet(folder: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / "unindexed.parquet"
    rows = [{"data_source": "arith/L1", "prompt": [{"role": "user", "content": f"{i}+1="}],
             "reward_model": {"style": "rule", "ground_truth": str(i + 1)}} for i in range(8)]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("override, message", [
    ("aero.n_explore=20", "aero.n_explore=20 is invalid; allowed: an integer <= aero.n_total (16)"),
    ("algorithm.filter_groups.enable=True", "algorithm.filter_groups.enable=True"),
    ("data.train_files=UNINDEXED", "8 row(s) have no extra_info.index"),
])
def test_bad_settings_and_data_fail_in_seconds_before_ray(runs, tmp_path, override, message):
    override = override.replace("UNINDEXED", str(unindexed_parquet(tmp_path)))
    started = time.time()
    process = runs.launch(tmp_path, "+recipe=cpu_demo", override, name="bad")
    assert process.wait(timeout=120) != 0
    log = (tmp_path / "bad.log").read_text()
    assert message in log and "ray init kwargs" not in log
    assert time.time() - started < 60
