import subprocess
import sys

import pytest

from aero_verl.core import AEROConfig, AEROConfigError, settings_table


def test_defaults_are_the_papers():
    cfg = AEROConfig()
    assert (cfg.n_total, cfg.n_explore, cfg.n_extra, cfg.u_res, cfg.u_high, cfg.k) == (16, 8, 2, 0.0, 0.5, 1.0)
    assert (cfg.prior_alpha, cfg.prior_beta, cfg.forgetting) == (1.0, 1.0, 1.0)
    assert cfg.budget_mode == "per_query"
    assert cfg.advantage_mode == "smoothed"
    assert cfg.rescue_mode == "rounds" and cfg.loss_weighting == "token_mean"
    assert cfg.drop_failed_rescues is True


@pytest.mark.parametrize(
    "override, key, value_text, range_text",
    [
        ({"n_explore": 20}, "n_explore", "20", "<= aero.n_total (16)"),
        ({"prior_alpha": -1.0}, "prior_alpha", "-1.0", "> 0"),
        ({"k": 0}, "k", "0", "> 0"),
        ({"k": -2.0}, "k", "-2.0", "> 0"),
        ({"n_total": 0}, "n_total", "0", ">= 1"),
        ({"u_res": 0.6}, "u_res", "0.6", "below aero.u_high"),
        ({"forgetting": 1.5}, "forgetting", "1.5", "(0, 1]"),
        ({"budget_mode": "global"}, "budget_mode", "'global'", "per_query | pooled"),
        ({"advantage_mode": "bayes"}, "advantage_mode", "'bayes'", "smoothed | constant | off"),
        ({"max_rescue_rounds": -1}, "max_rescue_rounds", "-1", "null or an integer >= 0"),
        ({"rescue_mode": "async"}, "rescue_mode", "'async'", "rounds | barrier_free"),
        ({"loss_weighting": "seq"}, "loss_weighting", "'seq'", "token_mean | per_group"),
        ({"rescue_mode": "barrier_free", "budget_mode": "pooled"}, "budget_mode", "'pooled'",
         "per_query with aero.rescue_mode=barrier_free"),
        ({"n_extra": 1.5}, "n_extra", "1.5", "integer"),
        ({"invalid_reward": "ignore"}, "invalid_reward", "'ignore'", "raise | failure"),
    ],
)
def test_invalid_settings_name_key_value_and_range(override, key, value_text, range_text):
    with pytest.raises(AEROConfigError) as error:
        AEROConfig(**override)
    message = str(error.value)
    assert f"aero.{key}={value_text}" in message
    assert range_text in message


def test_all_problems_are_reported_at_once():
    with pytest.raises(AEROConfigError) as error:
        AEROConfig(k=0, prior_beta=0)
    assert "aero.k=0" in str(error.value) and "aero.prior_beta=0" in str(error.value)


def test_every_setting_is_described_once_with_group_provenance_range_and_meaning():
    import dataclasses

    for f in dataclasses.fields(AEROConfig):
        meta = f.metadata
        assert meta["provenance"] in ("P", "I") and meta["group"] and meta["meaning"], f.name
        assert meta["check"].test(f.default), f"{f.name}: its default fails its own check"
    table = settings_table()
    assert all(f"`{f.name}`" in table for f in dataclasses.fields(AEROConfig))


def test_from_mapping_names_unknown_keys():
    with pytest.raises(AEROConfigError, match=r"aero\.n_explor\b.*valid keys"):
        AEROConfig.from_mapping({"n_explor": 4})
    assert AEROConfig.from_mapping({"n_explore": 4}).n_explore == 4


def test_importing_the_core_leaves_verl_and_ray_out():
    code = "import sys, aero_verl.core; print(any(m == 'verl' or m.startswith(('verl.', 'ray')) for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
