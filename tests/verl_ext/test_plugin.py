"""The verl.plugins entry point registers AERO in a fresh process, lazily."""

import os
import subprocess
import sys


def test_plugin_registers_in_a_fresh_process_without_importing_the_trainer_early():
    code = (
        "import sys, verl\n"
        "early = 'aero_verl.verl_ext.trainer' in sys.modules\n"
        "from verl.trainer.ppo.v1 import get_trainer_cls\n"
        "from verl.trainer.ppo.core_algos import get_adv_estimator_fn\n"
        "print(early, get_trainer_cls('sync_eval').__name__, get_trainer_cls('aero').__name__, get_adv_estimator_fn('aero').__name__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split()[-4:] == ["False", "EvalSyncTrainer", "AEROTrainer", "compute_aero_advantage"]
