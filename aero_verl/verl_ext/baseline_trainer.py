"""`trainer.v1.trainer_mode=sync_eval`: verl's own colocated sync trainer for the baselines (GRPO, DAPO).

Nothing of the training is changed (verl/trainer/ppo/v1/trainer_sync.py); it adds the same unbiased
Pass@k / Avg@k validation and the same run record (metrics.jsonl: tokens, FLOPs, wall clock) as the AERO
trainer, so baselines and AERO are measured alike.
"""

from __future__ import annotations

import transfer_queue as tq
from omegaconf import OmegaConf

from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from aero_verl.verl_ext.evaluation import PassAtKValidation, ReportsSyncMode
from aero_verl.verl_ext.run_record import RunRecord


@register_trainer("sync_eval")
class EvalSyncTrainer(ReportsSyncMode, RunRecord, PassAtKValidation, PPOTrainerSync):
    """verl's colocated sync trainer, unchanged, with unbiased Pass@k / Avg@k validation and the run record
    (metrics.jsonl with the same token and FLOPs accounting as the AERO trainer)."""

    def __init__(self, config):
        super().__init__(config)
        # verl's sync replay buffer polls every 2 s and takes no setting for it; the same period as the AERO
        # trainer's keeps wall-clock comparisons about the algorithms. A custom sampler would lose verl's
        # DAPO filter (verl/trainer/ppo/v1/trainer_base.py `_build_replay_buffer` passes filter_groups to the
        # built-in buffer only), so the period is set on verl's own buffer.
        self.replay_buffer.poll_interval = float(OmegaConf.select(config, "aero.trainer.poll_interval_s", default=0.1))
        self._count_cleared_groups(self.replay_buffer)

    def _count_cleared_groups(self, buffer) -> None:
        """Groups verl's replay buffer evicts or discards (DAPO's filter_groups, its surplus) were generated
        too: count their tokens before they go (verl/trainer/ppo/v1/replay_buffer.py, `_clear_groups`)."""
        clear = buffer._clear_groups

        def count_then_clear(partition_id, uids):
            if partition_id == "train":
                self._count_generated([tag for key, tag in buffer.partitions[partition_id].items()
                                       if key.split("_")[0] in uids])
            return clear(partition_id, uids)

        buffer._clear_groups = count_then_clear

    def _balance_batch(self, batch, metrics, logging_prefix="global_seqlen", keep_minibatch=False):
        self._count_generated(batch.tags)
        self._count_trained(batch.tags)
        metrics["run/zero_variance_share"] = self._zero_variance_share(batch, metrics)
        return super()._balance_batch(batch, metrics, logging_prefix, keep_minibatch)

    def _zero_variance_share(self, batch, metrics: dict) -> float:
        """Share of the step's generated groups whose rollouts all got the same reward (no GRPO signal):
        the trained batch's, plus the groups DAPO's filter evicted (all-same by definition) and its
        discarded surplus (verl/trainer/ppo/v1/replay_buffer.py metric names)."""
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["uid", "rm_scores"])
        scores: dict[str, set] = {}
        rewards = [float(row.sum()) for row in data["rm_scores"]]
        for uid, reward in zip(data["uid"], rewards):
            scores.setdefault(str(uid), set()).add(round(reward, 6))
        position = {uid: i for i, uid in enumerate(scores)}
        self._log_rollouts(self.global_steps, group=[position[str(uid)] for uid in data["uid"]],
                           length=[int(tag.get("response_len", 0)) for tag in batch.tags],
                           success=[reward == 1.0 for reward in rewards])
        evicted = metrics.get("training/filter_groups/evicted_samples", 0)
        surplus = metrics.get("training/filter_groups/discarded_surplus_samples", 0)
        all_same = sum(len(values) == 1 for values in scores.values()) + evicted
        return all_same / max(len(scores) + evicted + surplus, 1)
