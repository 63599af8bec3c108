"""The CPU demo with two training ranks and count-based micro-batches on an existing two-node Ray cluster
with token authentication (minutes; e2e).

A helper process holds a `ray.cluster_utils.Cluster` on 127.0.0.1 alone: a head without GPUs and a worker node
with the two logical GPUs, so the training ranks run on the worker node while other actors may sit on the head;
both nodes and every client present one token (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN_PATH), as README's cluster
section asks. `python -m aero_verl.main_ppo +recipe=cpu_demo ray_kwargs.ray_init.address=HEAD` must train on
it although the recipe sizes a private Ray (num_cpus, num_gpus). Ray's address file goes to the test's own
temp dir (RAY_TMPDIR), so no other `ray.init()` on the machine finds this cluster; closing the helper's
stdin shuts the cluster down, and the test checks no process of it is left.

Against the DP=1 reference run of the same seed: the prompts, each step's Stage I and every prompt's posterior
bookkeeping agree, but the samples do not, so neither do the outcomes or the posterior. Two ranks mean two
rollout replicas; the hf server seeds each request from its replica's rank as well as the prompt and its
occurrence (aero_verl/cpu/rollout.py, RequestSeeder), and verl's load balancer sends each request to the less
busy replica, so which seed a rollout gets depends on timing. (From step 2 on the weights also differ in the
last bits: a two-rank gradient is all-reduced in another summation order.)
"""

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

pytestmark = pytest.mark.e2e

N_EXPLORE, N_TOTAL = 8, 16  # the cpu_demo recipe's aero block
MICRO = 2
# Rows per rank: a multiple of lcm(num_mini_batches x actor micro, log-prob micro, ref micro) = 4, so 8 over the
# two ranks. verl requires
# the rollout's log-prob batching to follow the actor's (verl/workers/engine_workers.py, init_model).
COUNT_BASED = ["actor_rollout_ref.actor.use_dynamic_bsz=False", f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={MICRO}",
               "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=False", "actor_rollout_ref.ref.log_prob_use_dynamic_bsz=False",
               f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={MICRO}",
               f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={MICRO}"]
HOLD_CLUSTER = textwrap.dedent("""
    import json, sys
    from ray.cluster_utils import Cluster

    spec = json.loads(sys.argv[1])
    cluster = Cluster(initialize_head=True, connect=False, head_node_args=spec["head"])
    try:
        cluster.add_node(**spec["worker"])
        cluster.wait_for_nodes()
        print(json.dumps({"address": cluster.address}), flush=True)
        sys.stdin.read()  # until the test closes it
    finally:
        cluster.shutdown()
""")


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def processes_under(folder: str) -> list[psutil.Process]:
    """Ray's processes name their session folder on the command line."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if folder in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found


@pytest.fixture(scope="module")
def cluster():
    # A short folder: Ray's unix sockets live under it and their paths must stay under 108 characters.
    folder = tempfile.mkdtemp(prefix="aero-ray-", dir="/tmp")
    (Path(folder) / "ray").mkdir()  # RAY_TMPDIR/ray/ray_current_cluster, Ray's address file
    token = Path(folder) / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 keeps every Ray address of the nodes and the driver on 127.0.0.1: without
    # it Ray rewrites a loopback address to the machine's own (ray/_private/services.py, resolve_ip_for_localhost).
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_TMPDIR": folder,
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    node = {"node_ip_address": "127.0.0.1", "num_cpus": 8, "object_store_memory": 200 * 1024 ** 2,
            "temp_dir": folder}
    spec = {"head": {**node, "num_gpus": 0, "include_dashboard": False,
                     "dashboard_agent_listen_port": free_loopback_port()},
            "worker": {**node, "num_cpus": 12, "num_gpus": 2}}
    holder_log = Path(folder) / "holder.log"
    with open(holder_log, "w") as log:
        holder = subprocess.Popen([sys.executable, "-c", HOLD_CLUSTER, json.dumps(spec)], env=env, text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
    try:
        line = holder.stdout.readline()  # the address, or nothing if the cluster did not start
        assert line, holder_log.read_text()[-4000:]
        yield {"address": json.loads(line)["address"], "env": env}
    finally:
        holder.stdin.close()
        try:
            holder.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()
        deadline = time.time() + 30
        while (left := processes_under(folder)) and time.time() < deadline:
            time.sleep(1)
        for process in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        shutil.rmtree(folder, ignore_errors=True)
        assert not left, f"cluster processes left after shutdown: {[p.pid for p in left]}"


@pytest.fixture(scope="module")
def count_based_on_the_cluster(cluster, runs, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cluster_run")
    process = runs.launch(workdir, "+recipe=cpu_demo", f"ray_kwargs.ray_init.address={cluster['address']}",
                          *runs.two_rank_overrides(), *COUNT_BASED, name="run", env=cluster["env"])
    try:
        runs.finished(process, workdir, "run", timeout=600)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    checkpoints = workdir / "run" / "checkpoints"
    metrics = runs.metrics_by_step(checkpoints / "metrics.jsonl")
    assert runs.trained_steps(metrics) == list(range(1, runs.TWO_RANK_STEPS + 1))
    return {"metrics": metrics, "checkpoints": checkpoints}


def test_two_ranks_train_count_based_micro_batches_on_an_existing_cluster(count_based_on_the_cluster, runs):
    runs.check_two_rank_training(count_based_on_the_cluster["metrics"], count_based_on_the_cluster["checkpoints"],
                                 2 * runs.MINI_BATCHES * MICRO)


def test_the_posterior_agrees_with_one_rank_in_prompts_and_bookkeeping(count_based_on_the_cluster, reference, runs):
    steps = runs.TWO_RANK_STEPS
    for step in range(1, steps + 1):
        ours, theirs = count_based_on_the_cluster["metrics"][step], reference["metrics"][step]
        for key in ("aero/prompts", "aero/rollouts_stage1"):
            assert ours[key] == theirs[key], (step, key)
    ours = runs.posterior(count_based_on_the_cluster["checkpoints"] / f"global_step_{steps}")
    theirs = runs.posterior(reference["checkpoints"] / f"global_step_{steps}")
    # The same prompts, 16 new ones a step (the demo's training set holds more than 2 x 16).
    assert np.array_equal(ours["keys"], theirs["keys"]) and len(ours["keys"]) == 16 * steps
    for table in (ours, theirs):
        # Beta(1, 1) updated by every observed rollout (forgetting 1): alpha + beta - 2 counts them, from Stage I's
        # n_explore up to the per-prompt budget n_total.
        assert np.array_equal(table["alpha"] + table["beta"] - 2, table["observations"])
        assert np.all((table["observations"] >= N_EXPLORE) & (table["observations"] <= N_TOTAL))
