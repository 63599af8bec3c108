"""The CPU demo, as shipped, on an existing two-node Ray cluster with token authentication (minutes; e2e).

A helper process holds a `ray.cluster_utils.Cluster` on 127.0.0.1 alone: a head without GPUs and a worker node
with the one logical GPU, so the training rank runs on the worker node while other actors may sit on the head;
both nodes and every client present one token (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN_PATH), as README's cluster
section asks. `python -m aero_verl.main_ppo +recipe=cpu_demo ray_kwargs.ray_init.address=HEAD` must train on
it although the recipe sizes a private Ray (num_cpus, num_gpus). Ray's address file goes to the test's own
temp dir (RAY_TMPDIR), so no other `ray.init()` on the machine finds this cluster; closing the helper's
stdin shuts the cluster down, and the test checks no process of it is left.
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

import psutil
import pytest

pytestmark = pytest.mark.e2e

STEPS = 2
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
            "worker": {**node, "num_gpus": 1}}
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


def metrics_by_step(path: Path) -> dict[int, dict]:
    steps = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        steps.setdefault(record["step"], {}).update(record["metrics"])
    return steps


def test_the_cpu_demo_trains_on_an_existing_two_node_cluster(cluster, tmp_path):
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "aero_verl.main_ppo", "+recipe=cpu_demo",
            f"ray_kwargs.ray_init.address={cluster['address']}", f"trainer.total_training_steps={STEPS}",
            "trainer.val_before_train=False", "trainer.test_freq=-1", "data.val_max_samples=40",
            f"hydra.run.dir={run_dir}"]
    with open(tmp_path / "run.log", "w") as log:
        run = subprocess.Popen(args, cwd=tmp_path, env=cluster["env"], stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
        try:
            returncode = run.wait(timeout=480)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
    assert returncode == 0, (tmp_path / "run.log").read_text()[-4000:]
    metrics = metrics_by_step(run_dir / "checkpoints" / "metrics.jsonl")
    trained = sorted(step for step, m in metrics.items() if "aero/rollouts_generated" in m)
    assert trained == list(range(1, STEPS + 1))
    assert all(metrics[step]["aero/rollouts_kept"] > 0 for step in trained)
