"""The AERO trainer's moves of verl's data, without Ray: TransferQueue is replaced by an in-memory fake.

Covers the failure paths of a step: everything rejected (update skipped, never an exception), rollouts
that never came back (within the tolerated share or not), invalid rewards under both policies, the rows
handed to verl's advantage estimator, and the batch shapes handed to verl's workers.
"""

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from transfer_queue import KVBatchMeta

from aero_verl.core import AEROStep, BetaPosteriorTable, InvalidRewardError, aero_policies
from aero_verl.verl_ext import trainer as trainer_module
from aero_verl.verl_ext.batches import rollout_rows
from aero_verl.verl_ext.settings import AEROSettings
from aero_verl.verl_ext.trainer import AEROTrainer, StepPrompts, count_based_multiple


@pytest.fixture
def trainer_after_sampling(make_batch, fake_transfer_queue, monkeypatch, tmp_path):
    """An AEROTrainer whose step recorded `groups` [(uid, rewards)] as its Stage I, with `requested` per prompt."""

    def build(groups, aero_block=None, requested=None):
        trainer = AEROTrainer.__new__(AEROTrainer)
        trainer.aero = AEROSettings.from_mapping(aero_block or {})
        trainer.policies = aero_policies(trainer.aero.algorithm)
        trainer.posterior = BetaPosteriorTable()
        trainer.global_steps = 3
        trainer.config = OmegaConf.create({"trainer": {"default_local_dir": str(tmp_path)}})
        trainer.timing_raw = {}
        trainer._cumulative = trainer_module.Counter()
        trainer._update_skipped = False
        trainer._result, trainer._row_of_key = None, {}
        uids = [uid for uid, _ in groups]
        trainer._prompts = StepPrompts(uids=uids)
        trainer._step = AEROStep(trainer.aero.algorithm, trainer.posterior, 3, trainer.policies,
                                 keys=np.arange(100, 100 + len(uids)))
        if requested is not None:
            trainer._step.requested = np.asarray(requested)
        data = make_batch(groups)
        keys = [f"{uid}_{i}_0" for uid, rewards in groups for i in range(len(rewards))]
        trainer._keys = []
        rows = rollout_rows(keys, data, trainer._prompts.position_of_uid)
        trainer._record(rows, np.ones(len(keys), dtype=bool), [{} for _ in keys], stage1=True)
        monkeypatch.setattr(trainer_module, "tq", fake_transfer_queue)
        return trainer, KVBatchMeta(keys=keys, tags=[{} for _ in keys], partition_id="train")

    return build


def test_everything_rejected_skips_the_update_instead_of_failing(trainer_after_sampling, fake_transfer_queue):
    trainer, batch = trainer_after_sampling([("u-a", [0] * 16), ("u-b", [0] * 16)])
    metrics = {}
    kept = trainer._select_for_training(batch, metrics)
    assert len(kept) == 1 and trainer._update_skipped
    assert metrics["aero/update_skipped"] == 1 and metrics["aero/prompts_failed_rescue"] == 2
    assert sorted(fake_transfer_queue.cleared) == sorted(set(batch.keys) - set(kept.keys))
    # the later stages of verl's pipeline do no work on the placeholder row
    assert trainer._compute_old_log_prob(kept, metrics) is kept
    assert trainer._update_actor(kept, metrics) is kept
    # and the posterior still learned that both prompts failed 16 times
    assert trainer.posterior.alpha_beta([100, 101])[1].tolist() == [17.0, 17.0]


def test_a_normal_step_keeps_the_rule_and_publishes_rows_in_the_trained_order(trainer_after_sampling, tmp_path):
    trainer, batch = trainer_after_sampling([("u-a", [1, 0, 0, 0, 0, 0, 0, 0]), ("u-b", [1] * 8)])
    metrics = {}
    kept = trainer._select_for_training(batch, metrics)
    assert len(kept) == 2 + 8 and not trainer._update_skipped
    assert metrics["aero/rollouts_kept"] == 10 and metrics["aero/rollouts_rejected"] == 6
    assert metrics["aero/cumulative/rollouts_kept"] == 10
    # verl pads and reorders the batch; the published rows follow that order, padding rows get nothing
    trainer._train_dp_size = 1
    reordered = KVBatchMeta(keys=list(reversed(kept.keys)) + ["padabc_0_0"], tags=[{}] * 11, partition_id="train")
    rows = trainer._row_advantages(reordered)
    assert sorted(rows.uids[:10]) == ["u-a"] * 2 + ["u-b"] * 8
    assert rows.uids[-1] == "padabc" and rows.weights[-1] == 0 and rows.group[-1] == -1
    result = trainer._result
    row_of = trainer._row_of_key
    assert rows.advantages[:10].tolist() == [result.advantages[row_of[k]] for k in reordered.keys[:10]]
    assert trainer.posterior.mean([101])[0] == pytest.approx(9 / 10)
    logged = json.loads((tmp_path / "rollouts.jsonl").read_text())
    assert logged["step"] == 3 and sum(logged["kept"]) == 10 and len(logged["length"]) == 16


def test_invalid_rewards_fail_fast_naming_the_prompt_or_count_as_failures(trainer_after_sampling, fake_transfer_queue):
    groups = [("u-a", [1, float("nan"), 0, 0.5])]
    with pytest.raises(InvalidRewardError, match=r"prompts \[100, 100\]"):
        trainer_after_sampling(groups)
    trainer, batch = trainer_after_sampling(groups, {"invalid_reward": "failure"})
    metrics = {}
    trainer._select_for_training(batch, metrics)
    assert metrics["aero/invalid_rewards"] == 2
    written_keys, fields = fake_transfer_queue.written[0]
    assert set(written_keys) <= {batch.keys[1], batch.keys[3]} and written_keys
    assert torch.all(fields["rm_scores"].values() == 0)


def test_lost_rollouts_are_tolerated_up_to_the_share_and_then_stop_the_run(trainer_after_sampling):
    trainer, _ = trainer_after_sampling([("u-a", [1, 0] * 4), ("u-b", [1] * 7), ("u-c", [0, 1] * 4)],
                                        requested=[8, 8, 8])
    metrics = {}
    trainer._check_lost_rollouts(metrics)  # 1 of 24 lost: 4% <= 5%
    assert metrics["aero/rollouts_missing"] == 1
    trainer, _ = trainer_after_sampling([("u-a", [1, 0] * 4), ("u-b", [1] * 6)], requested=[8, 8])
    with pytest.raises(RuntimeError, match=r"2 of 16 requested rollouts \(12.5%\).*max_lost_rollout_share=0.05"):
        trainer._check_lost_rollouts({})
    trainer, _ = trainer_after_sampling([("u-a", [1, 0] * 4), ("u-b", [1] * 6)], requested=[8, 8],
                                        aero_block={"trainer": {"max_lost_rollout_share": 0.2}})
    metrics = {}
    trainer._check_lost_rollouts(metrics)
    assert metrics["aero/rollouts_missing"] == 2


def test_more_rollouts_than_requested_is_a_precise_error(trainer_after_sampling):
    trainer, _ = trainer_after_sampling([("u-a", [1, 0] * 5)], requested=[8])
    with pytest.raises(RuntimeError, match=r"prompt key 100: 10 came back, 8 were requested"):
        trainer._check_lost_rollouts({})


@pytest.mark.parametrize("actor, rollout, ref, expected", [
    (True, True, True, 3),        # token-based everywhere: num_mini_batches only
    (False, False, True, 12),     # lcm(3 x actor micro 4, log-prob micro 2)
    (True, True, False, 15),      # the reference batches by count on its own: lcm(3, its micro 5)
])
def test_batch_multiple_counts_the_micro_batches_of_every_count_based_pass(actor, rollout, ref, expected):
    config = OmegaConf.create({"actor_rollout_ref": {
        "actor": {"use_dynamic_bsz": actor, "ppo_micro_batch_size_per_gpu": 4},
        "rollout": {"log_prob_use_dynamic_bsz": rollout, "log_prob_micro_batch_size_per_gpu": 2},
        "ref": {"log_prob_use_dynamic_bsz": ref, "log_prob_micro_batch_size_per_gpu": 5}}})
    assert count_based_multiple(config, 3) == expected


def test_actor_update_sees_equal_mini_batches_and_the_config_is_restored(monkeypatch):
    trainer = AEROTrainer.__new__(AEROTrainer)
    trainer.aero = AEROSettings.from_mapping({"trainer": {"num_mini_batches": 2}})
    trainer._update_skipped = False
    trainer.config = OmegaConf.create({"actor_rollout_ref": {"actor": {"ppo_mini_batch_size": 32},
                                                             "rollout": {"n": 8}}})
    seen = {}

    def verl_update_actor(self, batch, metrics):
        seen["mini_batch"] = self.config.actor_rollout_ref.actor.ppo_mini_batch_size
        seen["n"] = self.config.actor_rollout_ref.rollout.n
        return batch

    monkeypatch.setattr(trainer_module.PPOTrainerSync, "_update_actor", verl_update_actor)
    trainer._update_actor([0] * 22, {})
    assert seen == {"mini_batch": 11, "n": 1}
    assert trainer.config.actor_rollout_ref.actor.ppo_mini_batch_size == 32
    assert trainer.config.actor_rollout_ref.rollout.n == 8


def test_a_rescue_round_whose_rollouts_were_all_lost_is_an_empty_round():
    class LostEverything:
        def sample(self, **kwargs):
            raise RuntimeError("Sync replay buffer selected terminal groups with no materializable trajectories.")

    class Broken:
        def sample(self, **kwargs):
            raise RuntimeError("something else")

    assert trainer_module.sample_groups(LostEverything(), global_steps=1, batch_size=2) is None
    with pytest.raises(RuntimeError, match="something else"):
        trainer_module.sample_groups(Broken(), global_steps=1, batch_size=2)
