"""`ray_kwargs.ray_init` made right for the cluster a run will use, before verl calls `ray.init(**ray_init)`.

verl 0.9.1 passes `ray_kwargs.ray_init` to `ray.init` unchanged (verl/trainer/main_ppo.py, run_ppo), and one
recipe serves two cases Ray 2.60 treats differently:

* a private cluster (`address: local`), started by `ray.init` and torn down with the run: the recipe's
  `num_cpus` / `num_gpus` size it (the CPU demo declares one logical GPU per CPU training rank);
* an existing cluster (`address: HEAD:PORT` or `auto`, started with `ray start`): Ray refuses any of
  those sizes ("When connecting to an existing cluster, num_cpus and num_gpus must not be provided"),
  since the nodes declared their resources when they started. They are dropped here, with a log line.

A private cluster listens on the machine's network address, not loopback: Ray 2.60 rewrites
`_node_ip_address="127.0.0.1"` to that address (ray/_private/services.py, resolve_ip_for_localhost), and
with any other node address its GCS, raylets and workers bind every interface (`::`). Only Ray's
local-only mode, `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` in the environment before `import ray`, keeps them
on loopback (an opt-in of the launching shell: verl imports Ray long before this runs, and the mode refuses
worker nodes). What guards the private cluster is Ray's token authentication, which `ray.init` turns on
for every new cluster unless `RAY_AUTH_MODE` says otherwise: each process of the run presents the token in
`~/.ray/auth_token` (generated on first use), anyone else is refused. A run that sets
`RAY_AUTH_MODE=disabled` gets a warning naming the exposure.
"""

from __future__ import annotations

import logging
import os

from omegaconf import DictConfig, open_dict

logger = logging.getLogger(__name__)

# ray.init arguments that size a new node; ray/_private/worker.py (init) refuses each when connecting.
PRIVATE_CLUSTER_ONLY = ("num_cpus", "num_gpus", "resources", "labels", "object_store_memory")
PRIVATE_CLUSTER = "local"
AUTH_MODE = "RAY_AUTH_MODE"


def prepare_ray_init(config: DictConfig) -> None:
    """Edit `config.ray_kwargs.ray_init` in place for the cluster `ray.init` will start or join (module docstring)."""
    ray_init = config.ray_kwargs.ray_init
    address = ray_init.get("address", None)
    if joins_existing_cluster(address, ray_init.get("_temp_dir", None)):
        dropped = {key: ray_init[key] for key in PRIVATE_CLUSTER_ONLY if ray_init.get(key, None) is not None}
        if dropped:
            with open_dict(ray_init):
                for key in dropped:
                    del ray_init[key]
            settings = ", ".join(f"{key}={value}" for key, value in dropped.items())
            logger.info(f"[aero] ray_kwargs.ray_init.address={address} joins an existing Ray cluster: {settings} "
                        "dropped (they size a private cluster); the cluster's own resources are used")
        return
    env_vars = ray_init.get("runtime_env", {}).get("env_vars", {}) or {}
    auth_mode = os.environ.get(AUTH_MODE, env_vars.get(AUTH_MODE, ""))
    if str(auth_mode).lower() == "disabled":
        logger.warning(f"[aero] {AUTH_MODE}=disabled: the private Ray listens on this machine's network address "
                       "without token authentication, so anyone who can reach it can run code in it while the run "
                       f"lasts. Unset {AUTH_MODE} (a new Ray cluster then requires its token)")


def joins_existing_cluster(address: str | None, temp_dir: str | None = None) -> bool:
    """Whether `ray.init(address=address)` connects to a running cluster rather than starting a private one.

    `local` always starts one; an explicit address or `auto` always joins. No address joins the cluster
    named by `RAY_ADDRESS` or the last one `ray start` left on this machine, if any, else starts one.
    """
    if address == PRIVATE_CLUSTER:
        return False
    if address is not None:
        return True
    from ray._private.services import canonicalize_bootstrap_address

    return canonicalize_bootstrap_address(None, temp_dir) is not None
