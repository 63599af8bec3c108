"""metrics.jsonl and rollouts.jsonl: the same cost accounting for AERO and the baselines."""

import json

import pytest
from omegaconf import OmegaConf

from aero_verl.verl_ext.run_record import RunRecord, trained_token_passes


class Recorder(RunRecord):
    def __init__(self, folder, global_steps=0):
        self.config = OmegaConf.create({"trainer": {"default_local_dir": str(folder)}})
        self.global_steps = global_steps
        self.total_training_steps = 4
        self._params, self._passes = 1000, 8


class FakeTracking:
    def __init__(self):
        self.logged = []

    def log(self, data, step):
        self.logged.append((step, data))


@pytest.mark.parametrize("overrides, passes", [
    ({}, 8),
    ({"actor_rollout_ref": {"actor": {"use_kl_loss": True}}}, 10),
    ({"algorithm": {"use_kl_in_reward": True, "rollout_correction": {"bypass_mode": True}}}, 8),
    ({"actor_rollout_ref": {"model": {"enable_gradient_checkpointing": True}}}, 10),
])
def test_the_trained_token_multiplier_follows_the_runs_config(overrides, passes):
    assert trained_token_passes(OmegaConf.create(overrides)) == passes


def test_steps_are_counted_and_summed_and_a_resumed_run_continues_the_sums(tmp_path, capsys):
    recorder = Recorder(tmp_path)
    recorder.logger = FakeTracking()
    for step in (1, 2):
        recorder._count_generated([{"seq_len": 30}, {"seq_len": 20}, {"seq_len": 9, "is_padding": True}])
        recorder._count_trained([{"seq_len": 30}])
        recorder.logger.log({"timing_s/step": 2.0, "actor/loss": 0.5, "note": "text"}, step)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]
    second = lines[1]["metrics"]
    assert second["run/tokens_generated"] == 50 and second["run/rollouts_generated"] == 2
    assert second["run/flops"] == 2 * 1000 * 50 + 8 * 1000 * 30
    assert second["run/flops_cumulative"] == 2 * second["run/flops"] and second["run/wall_s_cumulative"] == 4.0
    assert "note" not in second  # only numbers reach the file
    assert "[aero] step 2/4" in capsys.readouterr().out

    resumed = Recorder(tmp_path, global_steps=2)
    resumed.logger = FakeTracking()
    resumed._count_trained([{"seq_len": 10}])
    resumed.logger.log({"timing_s/step": 1.0}, 3)
    third = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["metrics"]
    assert third["run/wall_s_cumulative"] == 5.0 and third["run/tokens_trained_cumulative"] == 70
