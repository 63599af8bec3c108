"""Checks before Ray starts: settings verl would not honour, missing data, an unreachable model, too few GPUs."""

import pytest
from omegaconf import OmegaConf

from aero_verl.core import AEROConfigError
from aero_verl.verl_ext.preflight import check_resources, check_settings


def config(**overrides):
    base = {"trainer": {"n_gpus_per_node": 1, "nnodes": 1, "v1": {"trainer_mode": "sync_eval"}},
            "algorithm": {"adv_estimator": "grpo", "filter_groups": {"enable": False}},
            "data": {"train_files": [], "val_files": []},
            "actor_rollout_ref": {"model": {"path": None}},
            "ray_kwargs": {"ray_init": {"num_gpus": 1}}}
    cfg = OmegaConf.create(base)
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


def test_missing_data_names_the_file_and_what_makes_it(tmp_path):
    present = tmp_path / "train.parquet"
    present.write_bytes(b"")
    cfg = config(**{"data.train_files": [str(present), str(tmp_path / "math500_test.parquet")]})
    with pytest.raises(AEROConfigError, match=r"math500_test.parquet does not exist.*prepare_math_data.sh.*AERO_DATA_DIR"):
        check_resources(cfg)
    check_resources(config(**{"data.train_files": [str(present), "hdfs://cluster/remote.parquet"]}))


def test_a_model_neither_local_nor_reachable_names_aero_model_dir(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AEROConfigError, match=r"Qwen/Qwen2.5-Math-1.5B'? is not a local folder.*HF_HUB_OFFLINE.*AERO_MODEL_DIR"):
        check_resources(config(**{"actor_rollout_ref.model.path": "Qwen/Qwen2.5-Math-1.5B"}))


def test_too_few_gpus_fail_fast_saying_how_many_were_found():
    cfg = config(**{"trainer.n_gpus_per_node": 8, "ray_kwargs.ray_init.num_gpus": None})
    with pytest.raises(AEROConfigError, match=r"asks for 8 GPUs but this machine has 0"):
        check_resources(cfg)
    with pytest.raises(AEROConfigError, match=r"asks for 16 GPUs but ray_kwargs.ray_init.num_gpus has 1"):
        check_resources(config(**{"trainer.nnodes": 2, "trainer.n_gpus_per_node": 8}))


@pytest.mark.parametrize("overrides, fragment", [
    ({"algorithm.adv_estimator": "aero"}, "algorithm.adv_estimator=aero with trainer.v1.trainer_mode='sync_eval'"),
    ({"algorithm.filter_groups.enable": True,
      "trainer.v1.sampler": {"custom_sampler": {"path": "pkg://x", "name": "MyBuffer"}}},
     "custom_sampler='MyBuffer': verl passes DAPO's filter to its built-in replay buffer only"),
])
def test_settings_verl_would_silently_not_honour_are_refused_for_every_run(overrides, fragment):
    with pytest.raises(AEROConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        check_settings(config(**overrides))
