"""What the e2e tests share: launching `python -m aero_verl.main_ppo` as a user does, reading a run's record,
and one AERO reference run that several test files compare against.

Each launch of verl's trainer costs about a minute of Ray and model start-up on 2 cores, so the suite keeps
launches few and makes each cover several settings: the reference run trains with the KL loss, the multirun
with KL in the reward, the DP=2 runs with barrier-free rescue, flaky rewards and an existing cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

REFERENCE_STEPS = 4
FAST = [
    "trainer.save_freq=2",
    "data.val_max_samples=40",  # 40 held-out prompts x 8 samples per validation keep the tests short
]
KL_LOSS = ["actor_rollout_ref.actor.use_kl_loss=True", "actor_rollout_ref.actor.kl_loss_coef=0.001",
           "actor_rollout_ref.actor.kl_loss_type=low_var_kl"]
REFERENCE_COMMAND = ["+recipe=cpu_demo", f"trainer.total_training_steps={REFERENCE_STEPS}",
                     f"trainer.test_freq={REFERENCE_STEPS}", *FAST, *KL_LOSS]


def launch(workdir: Path, *overrides: str, name: str = "run", multirun: bool = False, own_folder: bool = True,
           **popen_kwargs) -> subprocess.Popen:
    """Start `python -m aero_verl.main_ppo` with its console in workdir/<name>.log; not yet waited on.

    own_folder=True puts the job in workdir/<name> and verl's file logger in workdir/<name>.jsonl.
    own_folder=False runs the bare command in workdir/<name>, so its job folder is the one the entry point
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


def finished(process: subprocess.Popen, workdir: Path, name: str, timeout: int = 600) -> str:
    """Wait for a launch; its console, or a failure showing the console's end."""
    try:
        returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the launch's whole session: Ray's processes too
        process.wait()
        raise
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


def trained_steps(metrics: dict[int, dict]) -> list[int]:
    return sorted(step for step, m in metrics.items() if "aero/rollouts_generated" in m)


def posterior(checkpoint: Path) -> dict[str, np.ndarray]:
    """The posterior table a checkpoint holds, rows sorted by prompt key."""
    with np.load(checkpoint / "aero_state.npz") as archive:
        order = np.argsort(archive["keys"])
        return {name: archive[name][order] for name in ("keys", "alpha", "beta", "observations")}


TWO_RANK_STEPS = 2
MINI_BATCHES = 2
PADDING_ROW_TOKENS = 128  # verl/trainer/ppo/padding_utils.py, SYNTHETIC_PADDING_SEQ_LEN


def two_rank_overrides(steps: int = TWO_RANK_STEPS) -> list[str]:
    """What both DP=2 runs share (test_dp2's and test_cluster's); each adds its GPUs and batching."""
    return [f"trainer.total_training_steps={steps}", "trainer.val_before_train=False", "trainer.test_freq=-1",
            "data.val_max_samples=40", f"aero.trainer.num_mini_batches={MINI_BATCHES}",
            "actor_rollout_ref.rollout.agent.num_workers=2", *KL_LOSS, "trainer.n_gpus_per_node=2",
            "trainer.save_freq=1"]


def optimizer_steps(checkpoints, step: int, ranks: int = 2) -> list[int]:
    """Adam's step counter after training step `step`, on each rank (FSDP saves one optimizer shard per rank)."""
    counts = []
    for rank in range(ranks):
        shard = torch.load(checkpoints / f"global_step_{step}" / "actor" / f"optim_world_size_{ranks}_rank_{rank}.pt",
                           map_location="cpu", weights_only=False)
        counts.extend({int(state["step"]) for state in shard["state"].values()})
    return counts


def check_two_rank_training(metrics: dict[int, dict], checkpoints, multiple: int) -> None:
    for step in range(1, TWO_RANK_STEPS + 1):
        m = metrics[step]
        # Each rank's counter is one value over all its parameters, grown by num_mini_batches this step.
        before = [MINI_BATCHES * (step - 1)] * 2
        assert [count - done for count, done in zip(optimizer_steps(checkpoints, step), before)] == \
            [MINI_BATCHES] * 2, step
        kept, padding = m["aero/rollouts_kept"], m["aero/pad_rows"]
        assert m["run/rollouts_trained"] == kept > 0
        assert (kept + padding) % multiple == 0 and 0 <= padding < multiple
        # The rows verl trained, by their tokens: the kept rollouts' and 128 per padding row.
        assert m["perf/total_num_tokens"] == m["run/tokens_trained"] + PADDING_ROW_TOKENS * padding
        assert m["global_seqlen/mean"] * 2 == m["perf/total_num_tokens"]  # split over the two ranks
        assert math.isfinite(m["actor/kl_loss"]) and m["timing_s/ref"] > 0


class Runs:
    """The helpers above, for test files (which do not import each other or conftest)."""

    launch = staticmethod(launch)
    finished = staticmethod(finished)
    metrics_by_step = staticmethod(metrics_by_step)
    trained_steps = staticmethod(trained_steps)
    posterior = staticmethod(posterior)
    two_rank_overrides = staticmethod(two_rank_overrides)
    check_two_rank_training = staticmethod(check_two_rank_training)
    TWO_RANK_STEPS = TWO_RANK_STEPS
    MINI_BATCHES = MINI_BATCHES
    REFERENCE_STEPS = REFERENCE_STEPS
    REFERENCE_COMMAND = REFERENCE_COMMAND
    FAST = FAST
    KL_LOSS = KL_LOSS


@pytest.fixture(scope="session")
def runs() -> type[Runs]:
    return Runs


@pytest.fixture(scope="session")
def e2e_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def reference(e2e_dir) -> dict:
    """The CPU demo with the KL loss: 4 steps, checkpoints at 2 and 4, validation before and after."""
    log = finished(launch(e2e_dir, *REFERENCE_COMMAND, name="reference"), e2e_dir, "reference")
    return {"log": log, "metrics": metrics_by_step(e2e_dir / "reference.jsonl"),
            "checkpoints": e2e_dir / "reference" / "checkpoints"}
