"""The `aero` estimator through verl's own advantage path, with the step's published per-row decisions."""

import numpy as np
import pytest
import torch

from verl import DataProto
from verl.trainer.ppo.ray_trainer import compute_advantage

from aero_verl.core import AEROConfig, AEROStep, BetaPosteriorTable
from aero_verl.verl_ext.algos import RowAdvantages, publish_advantages


def step_result(groups, cfg=AEROConfig(advantage_mode="off")):
    """An AEROStep over `groups` [(uid, rewards)] recorded as one Stage I phase."""
    step = AEROStep(cfg, BetaPosteriorTable(), step=0, keys=np.arange(len(groups)))
    group = np.concatenate([np.full(len(r), i) for i, (_, r) in enumerate(groups)])
    step.record(group, np.concatenate([r for _, r in groups]), np.full(group.size, 3), stage1=True)
    return step.finish()


def rows_for(result, uids):
    rows = result.training_order
    return RowAdvantages(uids=[uids[g] for g in result.group[rows]], advantages=result.advantages[rows],
                         weights=result.loss_weights(rows), outcomes=result.success[rows].astype(float),
                         scale=result.advantage_scale[rows], group=result.group[rows])


def verl_advantages(rows: RowAdvantages, kl=None, use_kl_in_reward=False, estimator="aero"):
    n = len(rows.uids)
    mask = torch.zeros(n, 4)
    mask[:, :3] = 1
    scores = torch.zeros(n, 4)
    scores[:, 2] = torch.as_tensor(rows.outcomes, dtype=torch.float32)
    if kl is not None:
        scores[:, 0] += torch.as_tensor(kl, dtype=torch.float32)  # what verl's KL penalty leaves in the rewards
    data = DataProto.from_dict(tensors={"token_level_rewards": scores, "response_mask": mask},
                               non_tensors={"uid": np.array(rows.uids, dtype=object)})
    with publish_advantages(rows):
        out = compute_advantage(data, adv_estimator=estimator,
                                config={"norm_adv_by_std_in_grpo": True, "use_kl_in_reward": use_kl_in_reward})
    return out.batch["advantages"][:, 0].numpy()


def test_the_estimator_returns_the_steps_advantage_times_its_weight_on_every_token():
    cfg = AEROConfig(loss_weighting="per_group")
    result = step_result([("u-a", [1, 0, 0, 0, 0, 0, 0, 0]), ("u-b", [1, 1, 0, 1, 1, 1, 1, 1])], cfg)
    rows = rows_for(result, ["u-a", "u-b"])
    assert verl_advantages(rows) == pytest.approx(rows.advantages * rows.weights, rel=1e-6)


def test_with_plain_weights_and_off_mode_it_is_verls_grpo_on_equal_groups():
    rng = np.random.default_rng(3)
    groups = [(f"u{i}", rng.integers(0, 2, 16).tolist()) for i in range(12)]
    result = step_result(groups, AEROConfig(advantage_mode="off", u_high=1e-9, n_explore=16))
    rows = rows_for(result, [uid for uid, _ in groups])
    mixed = np.array([0 < sum(r) < 16 for _, r in groups])[rows.group]
    theirs = verl_advantages(rows, estimator="grpo")
    assert np.abs(verl_advantages(rows)[mixed] - theirs[mixed]).max() < 1e-5


def test_kl_in_the_reward_keeps_the_outcomes_signs_and_adds_only_the_documented_term():
    """2 right and 2 wrong under use_kl_in_reward: as built before, rewards shaped by -beta KL read as four
    failures; here the step's outcomes decide and the KL enters as (kl - mean kl) / std on top."""
    result = step_result([("u-a", [1, 1, 0, 0])], AEROConfig(advantage_mode="off", u_high=1.0))
    rows = rows_for(result, ["u-a"])
    kl = -0.001 * np.array([3.0, 1.0, 2.0, 6.0])
    plain = verl_advantages(rows)
    shaped = verl_advantages(rows, kl=kl, use_kl_in_reward=True)
    assert np.sign(plain).tolist() == np.where(rows.outcomes == 1, 1, -1).tolist()
    assert np.sign(shaped).tolist() == np.sign(plain).tolist()
    assert np.abs(plain).tolist() == pytest.approx([0.866] * 4, abs=1e-3)  # GRPO's +-0.866 for 2 of 4
    assert shaped - plain == pytest.approx((kl - kl.mean()) / rows.scale, abs=1e-6)


def test_outside_the_aero_trainer_the_estimator_refuses():
    data = DataProto.from_dict(tensors={"token_level_rewards": torch.ones(1, 2), "response_mask": torch.ones(1, 2)},
                               non_tensors={"uid": np.array(["u"], dtype=object)})
    with pytest.raises(RuntimeError, match="trainer.v1.trainer_mode=aero"):
        compute_advantage(data, adv_estimator="aero", config={"norm_adv_by_std_in_grpo": True})


def test_a_batch_other_than_the_published_one_is_refused():
    rows = rows_for(step_result([("u-a", [1, 0])]), ["u-a"])
    swapped = RowAdvantages(["u-z"] * len(rows.uids), rows.advantages, rows.weights, rows.outcomes, rows.scale,
                            rows.group)
    n = len(rows.uids)
    data = DataProto.from_dict(tensors={"token_level_rewards": torch.zeros(n, 2), "response_mask": torch.ones(n, 2)},
                               non_tensors={"uid": np.array(rows.uids, dtype=object)})
    with publish_advantages(swapped), pytest.raises(RuntimeError, match="not the batch the AERO step published"):
        compute_advantage(data, adv_estimator="aero", config={"norm_adv_by_std_in_grpo": True})
