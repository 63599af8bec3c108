"""aero_verl.ray_setup: the recipe's ray.init arguments for a private Ray and for an existing cluster, and the
CPU recipe's private Ray refusing whoever lacks its token."""

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
from omegaconf import OmegaConf

from aero_verl.ray_setup import prepare_ray_init

RECIPE_RAY_INIT = {"num_cpus": 16, "num_gpus": 1, "address": "local", "include_dashboard": False,
                   "runtime_env": {"env_vars": {"VERL_PLATFORM": "cpu"}}}


def config_with(**ray_init):
    return OmegaConf.create({"ray_kwargs": {"ray_init": {**RECIPE_RAY_INIT, **ray_init}}})


@pytest.mark.parametrize("address", ["127.0.0.1:6379", "auto"])
def test_joining_a_cluster_drops_the_private_sizes_and_says_so(address, caplog):
    config = config_with(address=address)
    OmegaConf.set_struct(config, True)  # as Hydra hands it over
    with caplog.at_level(logging.INFO, logger="aero_verl.ray_setup"):
        prepare_ray_init(config)
    assert OmegaConf.to_container(config.ray_kwargs.ray_init) == {
        "address": address, "include_dashboard": False, "runtime_env": {"env_vars": {"VERL_PLATFORM": "cpu"}}}
    [record] = caplog.records
    assert "num_cpus=16, num_gpus=1 dropped" in record.message and "cluster's own resources" in record.message


def test_no_address_joins_the_cluster_named_by_ray_address(monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    config = config_with(address=None, _temp_dir=str(tmp_path))
    prepare_ray_init(config)
    assert "num_cpus" not in config.ray_kwargs.ray_init and "num_gpus" not in config.ray_kwargs.ray_init


@pytest.mark.parametrize("address", ["local", None])
def test_a_private_cluster_keeps_its_sizes(address, monkeypatch, tmp_path, caplog):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    config = config_with(address=address, _temp_dir=str(tmp_path))  # no `ray start` cluster recorded there
    before = OmegaConf.to_container(config)
    with caplog.at_level(logging.INFO, logger="aero_verl.ray_setup"):
        prepare_ray_init(config)
    assert OmegaConf.to_container(config) == before and not caplog.records


def test_a_private_cluster_without_token_authentication_is_warned_about(monkeypatch, caplog):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    config = config_with(runtime_env={"env_vars": {"RAY_AUTH_MODE": "disabled"}})
    with caplog.at_level(logging.WARNING, logger="aero_verl.ray_setup"):
        prepare_ray_init(config)
    [record] = caplog.records
    assert "RAY_AUTH_MODE=disabled" in record.message and "anyone who can reach it" in record.message


# The CPU recipe's ray_kwargs, through main_ppo's environment sharing and prepare_ray_init, into ray.init as
# verl's run_ppo calls it; then three clients of the private Ray's GCS (which must answer only the right token),
# and the addresses the Ray processes listen on.
PRIVATE_RAY = textwrap.dedent("""
    import json, os, subprocess, sys
    import psutil, ray
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from ray._raylet import AuthenticationMode, get_authentication_mode
    from aero_verl.main_ppo import CONFIG_DIR, share_worker_env
    from aero_verl.ray_setup import prepare_ray_init

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        config = compose(config_name="aero_trainer", overrides=["+recipe=cpu_demo"])
    share_worker_env(config)
    prepare_ray_init(config)
    context = ray.init(**OmegaConf.to_container(config.ray_kwargs.ray_init))
    gcs = context.address_info["gcs_address"]
    client = ("import sys\\nfrom ray._raylet import GcsClient\\ntry:\\n"
              "    GcsClient(address=sys.argv[1]).internal_kv_keys(b'', None, timeout=20)\\n    print('answered')\\n"
              "except Exception as error:\\n    print(type(error).__name__)")
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    clients = {"no token": {"RAY_AUTH_MODE": "disabled"},
               "wrong token": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 32},
               "the run's token": {"RAY_AUTH_MODE": "token"}}
    answers = {name: subprocess.run([sys.executable, "-c", client, gcs], env={**base, **env}, capture_output=True,
                                    text=True, timeout=60).stdout.strip() for name, env in clients.items()}
    ray_processes = {p.pid for p in psutil.Process().children(recursive=True)} | {os.getpid()}
    listening = sorted({c.laddr.ip for c in psutil.net_connections("inet")
                        if c.status == psutil.CONN_LISTEN and c.pid in ray_processes})
    resources = ray.cluster_resources()
    print(json.dumps({"token_auth": get_authentication_mode() == AuthenticationMode.TOKEN, "answers": answers,
                      "listening": listening, "cpus": resources.get("CPU"), "gpus": resources.get("GPU")}))
    ray.shutdown()
""")
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def private_ray_of_the_cpu_recipe(home, **env) -> dict:
    """PRIVATE_RAY's report, run with a fresh home: Ray generates the token into ~/.ray/auth_token on first use,
    and the user's own stays untouched."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, "HOME": str(home), **env}
    result = subprocess.run([sys.executable, "-c", PRIVATE_RAY], env=env, capture_output=True, text=True,
                            timeout=240, cwd=home)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_cpu_recipes_private_ray_answers_only_its_token(tmp_path):
    report = private_ray_of_the_cpu_recipe(tmp_path)
    assert report["token_auth"]
    assert report["answers"] == {"no token": "AuthenticationError", "wrong token": "AuthenticationError",
                                 "the run's token": "answered"}
    assert (report["cpus"], report["gpus"]) == (16, 1)  # the recipe's sizes reach the private Ray
    assert (tmp_path / ".ray" / "auth_token").is_file()


def test_a_single_machine_run_can_keep_its_private_ray_on_loopback(tmp_path):
    """The opt-in README names: set before Python starts, Ray's local-only mode gives every Ray process the
    node address 127.0.0.1, and each of them then listens there alone (token authentication stays on)."""
    report = private_ray_of_the_cpu_recipe(tmp_path, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    assert report["listening"] and set(report["listening"]) <= LOOPBACK, report["listening"]
    assert report["token_auth"] and report["answers"]["wrong token"] == "AuthenticationError"
