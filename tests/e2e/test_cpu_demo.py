"""verl's real trainer on the CPU demo, through `python -m aero_verl.main_ppo` (minutes; marked e2e).

One AERO reference run (4 steps, checkpoints at 2 and 4, validation before and after) is shared by the
tests; the others are a run killed hard after its step-2 checkpoint and relaunched with the identical
command, a Hydra multirun of AERO and the GRPO baseline, an evaluation of a saved checkpoint, and bad
input refused before Ray.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

STEPS = 4
FAST = [
    f"trainer.total_training_steps={STEPS}",
    "trainer.save_freq=2",
    f"trainer.test_freq={STEPS}",
    "data.val_max_samples=40",  # 40 held-out prompts x 8 samples per validation keep the test short
]
STEP_KEYS = ["aero/rollouts_stage1", "aero/rollouts_stage2", "aero/rescue_rounds", "aero/rollouts_kept",
             "aero/prompts_rescued", "aero/tokens_generated", "aero/success_rate_generated"]


def main_ppo(workdir: Path, *overrides: str, name: str = "run", multirun: bool = False, own_folder=True,
             **popen_kwargs):
    """Start `python -m aero_verl.main_ppo` with a file logger; returns the process (not yet waited on).

    own_folder=False runs the bare command in workdir/name, so its job folder is the one the entry point
    derives from the command (outputs/<experiment>/<overrides>), as a user's relaunch would find it."""
    args = [sys.executable, "-m", "aero_verl.main_ppo", *(["-m"] if multirun else []), *overrides]
    cwd = workdir
    if not own_folder:
        cwd = workdir / name
        cwd.mkdir(exist_ok=True)
    elif not multirun:
        args += [f"hydra.run.dir={workdir / name}",
                 f"+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={workdir / name}.jsonl",
                 "trainer.logger=[console,file]"]
    log = open(workdir / f"{name}.log", "a")
    return subprocess.Popen(args, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            **popen_kwargs)


def finished(process, workdir: Path, name: str, timeout: int = 600) -> str:
    returncode = process.wait(timeout=timeout)
    log = (workdir / f"{name}.log").read_text()
    assert returncode == 0, log[-4000:]
    return log


def metrics_by_step(path: Path) -> dict[int, dict]:
    """verl's file logger ({"step", "data"}) or the trainer's metrics.jsonl ({"step", "metrics"}); a step
    logged twice (before a kill and after the relaunch) keeps its last values."""
    steps = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        steps.setdefault(record["step"], {}).update(record.get("data", record.get("metrics")))
    return steps


def posterior_arrays(checkpoint: Path) -> dict[str, np.ndarray]:
    with np.load(checkpoint / "aero_state.npz") as archive:
        return {name: archive[name] for name in ("keys", "alpha", "beta", "observations")}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def reference(workdir):
    log = finished(main_ppo(workdir, "+recipe=cpu_demo", *FAST, name="reference"), workdir, "reference")
    return {"log": log, "metrics": metrics_by_step(workdir / "reference.jsonl"),
            "checkpoints": workdir / "reference" / "checkpoints"}


def test_aero_trains_through_verls_trainer_with_consistent_accounting(reference):
    metrics = reference["metrics"]
    training = {step: m for step, m in metrics.items() if "aero/rollouts_generated" in m}
    assert sorted(training) == list(range(1, STEPS + 1))
    for step, m in training.items():
        prompts = m["aero/prompts"]
        assert m["aero/rollouts_stage1"] == prompts * 8  # n_explore per prompt (fixed explore mode)
        assert m["aero/rollouts_generated"] == m["aero/rollouts_stage1"] + m["aero/rollouts_stage2"]
        assert 0 < m["aero/rollouts_kept"] <= m["aero/rollouts_generated"] <= m["aero/budget"] == prompts * 16
        assert m["aero/rollouts_per_prompt_max"] <= 16  # the per-query budget
        assert m["aero/rollouts_stage2"] <= m["aero/rescue_rounds"] * 2 * m["aero/prompts_rescue"]
        assert m["aero/prompts_rescued"] + m["aero/prompts_failed_rescue"] == m["aero/prompts_rescue"]
        assert m["aero/posterior_prompts"] >= prompts
        assert "timing_s/aero_rescue" in m and "actor/pg_loss" in m
    assert training[STEPS]["aero/posterior_prompts"] > training[1]["aero/posterior_prompts"]
    assert training[STEPS]["aero/cumulative/rollouts_generated"] == sum(
        m["aero/rollouts_generated"] for m in training.values())
    # Avg@8 and the unbiased Pass@8 per level, before training (step 0) and after the last step
    for step in (0, STEPS):
        assert any(k.startswith("val-core/arith/") and k.endswith("/acc/pass@8") for k in metrics[step])
        assert any(k.startswith("val-core/arith/") and k.endswith("/acc/mean@8") for k in metrics[step])
    results = json.loads((reference["checkpoints"] / "eval" / f"step_{STEPS}.json").read_text())["results"]
    assert set(results) == {f"arith/L{i}" for i in range(1, 6)} & set(results) and results
    assert all(0 <= row["pass@8"] <= 1 and row["avg@8"] <= row["pass@8"] for row in results.values())
    assert "AERO run summary" in reference["log"]
    summary = json.loads((reference["checkpoints"] / "aero_summary.json").read_text())
    assert summary["cumulative"]["steps"] == STEPS
    for step in (2, STEPS):
        assert (reference["checkpoints"] / f"global_step_{step}" / "aero_state.npz").exists()
    # the run's own record: cost accounting per step, every rollout's length, the report
    record = metrics_by_step(reference["checkpoints"] / "metrics.jsonl")
    assert all(record[step]["run/tokens_generated"] > record[step]["run/tokens_trained"] > 0
               for step in range(1, STEPS + 1))
    assert record[STEPS]["run/flops_cumulative"] == pytest.approx(sum(record[s]["run/flops"] for s in range(1, STEPS + 1)))
    rollouts = [json.loads(line) for line in (reference["checkpoints"] / "rollouts.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rollouts] == list(range(1, STEPS + 1))
    assert len(rollouts[0]["length"]) == metrics[1]["aero/rollouts_generated"]
    assert (reference["checkpoints"].parent / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the compact console: step lines and tables, verl's own output in the run's log file
    console = reference["log"]
    assert f"[aero] step {STEPS}/{STEPS}" in console and "validation, step 0" in console
    assert "Training Progress" not in console and (reference["checkpoints"].parent / "run.log").exists()


def test_relaunching_the_identical_command_after_a_hard_kill_continues_exactly(reference, workdir):
    """Killed with SIGKILL after its step-2 checkpoint, the identical command relaunched in the same
    directory finds its own checkpoints and continues with its AERO state, as the uninterrupted run did."""
    command = ["+recipe=cpu_demo", *FAST]
    killed = main_ppo(workdir, *command, name="relaunch", own_folder=False)
    run_root = workdir / "relaunch" / "outputs" / "aero"
    deadline = time.time() + 600
    while not any(t.read_text().strip() == "2" for t in run_root.glob("*/checkpoints/latest_checkpointed_iteration.txt")):
        assert killed.poll() is None and time.time() < deadline, "the run ended before its step-2 checkpoint"
        time.sleep(0.5)
    os.killpg(killed.pid, signal.SIGKILL)  # no clean-up of any kind: the step-3 work in flight is lost
    killed.wait()

    log = finished(main_ppo(workdir, *command, name="relaunch", own_folder=False), workdir, "relaunch")
    folders = list(run_root.iterdir())
    assert len(folders) == 1, folders  # the relaunch found the same folder
    assert "restored the posterior" in (folders[0] / "run.log").read_text()
    relaunched = metrics_by_step(folders[0] / "checkpoints" / "metrics.jsonl")
    for step in (3, 4):
        for key in STEP_KEYS:
            assert relaunched[step][key] == reference["metrics"][step][key], (step, key)
    ours = posterior_arrays(folders[0] / "checkpoints" / f"global_step_{STEPS}")
    theirs = posterior_arrays(reference["checkpoints"] / f"global_step_{STEPS}")
    order_ours, order_theirs = np.argsort(ours["keys"]), np.argsort(theirs["keys"])
    for name in ours:
        assert np.array_equal(ours[name][order_ours], theirs[name][order_theirs]), name
    assert "AERO run summary" in log


def test_multirun_sweeps_aero_and_the_grpo_baseline(workdir):
    sweep_dir = workdir / "sweep"
    process = main_ppo(workdir, "+recipe=cpu_demo,grpo_cpu_demo", "trainer.total_training_steps=2",
                       "trainer.val_before_train=False", "trainer.test_freq=-1", f"hydra.sweep.dir={sweep_dir}",
                       name="sweep", multirun=True)
    log = finished(process, workdir, "sweep", timeout=900)
    assert "Launching 2 jobs locally" in log
    # one folder per job, named by the job's own overrides: a relaunched sweep finds each job's folder
    aero_jobs, grpo_jobs = list((sweep_dir / "aero").iterdir()), list((sweep_dir / "grpo").iterdir())
    assert len(aero_jobs) == len(grpo_jobs) == 1
    assert (aero_jobs[0] / "checkpoints" / "aero_summary.json").exists()  # AERO's per-run result
    assert not (grpo_jobs[0] / "checkpoints" / "aero_summary.json").exists()  # plain GRPO: no AERO
    for job in aero_jobs + grpo_jobs:
        steps = metrics_by_step(job / "checkpoints" / "metrics.jsonl")
        assert steps[2]["run/tokens_trained"] > 0  # the same accounting for the baseline
    assert log.count("[aero] step 2/2") == 2


def test_a_saved_checkpoint_is_evaluated_alone(reference, workdir):
    out = workdir / "evaluation"
    process = main_ppo(workdir, "+recipe=cpu_demo", "+eval=checkpoint", "data.val_max_samples=40",
                       f"trainer.resume_from_path={reference['checkpoints'] / f'global_step_{STEPS}'}",
                       f"trainer.default_local_dir={out}", name="evaluation")
    finished(process, workdir, "evaluation")
    results = json.loads((out / "eval" / f"step_{STEPS}.json").read_text())["results"]
    assert results and all("pass@8" in row and "avg@8" in row for row in results.values())
    assert all(sum(n for n, _ in row["prompts"].values()) == row["n_prompts"] * 8 for row in results.values())
    verl_log = (workdir / "evaluation" / "run.log").read_text()
    assert "Initial validation metrics" in verl_log and "Training Progress" not in verl_log


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


def test_nan_and_raising_rewards_are_counted_under_the_failure_policy(workdir):
    reward = workdir / "flaky_reward.py"
    reward.write_text(FLAKY_REWARD)
    process = main_ppo(workdir, "+recipe=cpu_demo", "aero.invalid_reward=failure", "trainer.total_training_steps=2",
                       "trainer.val_before_train=False", "trainer.test_freq=-1",
                       f"reward.custom_reward_function.path={reward}", name="flaky")
    finished(process, workdir, "flaky")
    metrics = metrics_by_step(workdir / "flaky.jsonl")
    assert sum(metrics[step]["aero/invalid_rewards"] for step in (1, 2)) > 0
    assert sum(metrics[step]["aero/rollouts_missing"] for step in (1, 2)) > 0
    assert all(np.isfinite(metrics[step]["critic/score/mean"]) for step in (1, 2))


def unindexed_parquet(workdir: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = workdir / "unindexed.parquet"
    rows = [{"data_source": "arith/L1", "prompt": [{"role": "user", "content": f"{i}+1="}],
             "reward_model": {"style": "rule", "ground_truth": str(i + 1)}} for i in range(8)]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("override, message", [
    ("aero.n_explore=20", "aero.n_explore=20 is invalid; allowed: an integer <= aero.n_total (16)"),
    ("algorithm.filter_groups.enable=True", "algorithm.filter_groups.enable=True"),
    ("data.train_files=UNINDEXED", "8 row(s) have no extra_info.index"),
])
def test_bad_settings_and_data_fail_in_seconds_before_ray(workdir, override, message):
    override = override.replace("UNINDEXED", str(unindexed_parquet(workdir)))
    started = time.time()
    process = main_ppo(workdir, "+recipe=cpu_demo", override, name="bad")
    assert process.wait(timeout=120) != 0
    log = (workdir / "bad.log").read_text()
    assert message in log and "ray init kwargs" not in log
    assert time.time() - started < 60
