"""`verl.plugins` entry point: `import verl` imports this module in every verl process.

It registers, each when verl itself first imports the registry it belongs to (so no process pays for
importing verl's trainer early; see aero_verl.after_import):
    algorithm.adv_estimator=aero     in verl.trainer.ppo.core_algos
    trainer.v1.trainer_mode=aero     in verl.trainer.ppo.v1 (and sync_eval, the baselines' trainer)
and the CPU runtime: the `cpu` platform class always (selected only by VERL_PLATFORM=cpu), its patches of verl and
the `hf` rollout only when VERL_PLATFORM=cpu.
verl swallows entry-point import errors at DEBUG level (verl/__init__.py), so a broken plugin would only
show up later as "Unknown trainer 'aero'"; tests/verl_ext/test_plugin.py checks the registrations in a fresh process.
"""

import importlib

from aero_verl import cpu
from aero_verl.cpu.platform import cpu_platform_requested
from aero_verl.after_import import run_after_import


def _import(module_name: str):
    return lambda _registry_module: importlib.import_module(module_name)


run_after_import("verl.trainer.ppo.core_algos", _import("aero_verl.verl_ext.algos"))
run_after_import("verl.trainer.ppo.v1.trainer_base", _import("aero_verl.verl_ext.trainer"))
run_after_import("verl.trainer.ppo.v1.trainer_base", _import("aero_verl.verl_ext.baseline_trainer"))

cpu.register_platform()
if cpu_platform_requested():
    cpu.activate()
