"""AERO inside verl 0.9.1's v1 trainer: `trainer.v1.trainer_mode=aero`, `algorithm.adv_estimator=aero`.

A thin subclass of verl's colocated sync trainer (hybrid engine: the FSDP actor and the rollout share the
GPUs; verl/trainer/ppo/v1/trainer_sync.py). Each step runs verl's own pipeline and drives one
`aero_verl.core.AEROStep` through it:

    _next_train_batch    the step's prompts; Stage I counts as verl's per-prompt `__rollout_n__`
                         (barrier-free rescue: each prompt's rescue allowance too, for the agent-loop worker)
    replay-buffer sample Stage I's outcomes recorded; `rounds` rescue: each rescue phase submitted and
                         recorded, before the rollout replicas go to sleep (barrier-free: the worker already
                         rescued inside the same generation phase, its rows are recorded)
    _balance_batch       `finish()`: posterior update, selective rejection, advantages; rejected rollouts
                         never reach old-log-prob, reference or actor update
    _compute_advantage   the step's per-row advantages and loss weights, in the trained batch's order, are
                         what the `aero` estimator returns

and keeps the posterior in verl's checkpoint folder. This module only moves verl's data: every decision is
the step's.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import transfer_queue as tq
from omegaconf import OmegaConf, open_dict
from tensordict import TensorDict
from transfer_queue import KVBatchMeta

from verl import DataProto
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils import tensordict_utils as tu
from verl.utils.checkpoint.checkpoint_manager import find_latest_ckpt_path
from verl.utils.debug import marked_timer

from aero_verl.core import AEROStep, BetaPosteriorTable, StepResult, aero_policies
from aero_verl.verl_ext.algos import RowAdvantages, publish_advantages
from aero_verl.verl_ext.console import say
from aero_verl.verl_ext.batches import OUTCOME_FIELDS, RolloutRows, check_rollout_counts, rollout_rows
from aero_verl.verl_ext.evaluation import PassAtKValidation, ReportsSyncMode
from aero_verl.verl_ext.prompts import check_training_prompts, prompt_keys
from aero_verl.verl_ext.run_record import RunRecord
from aero_verl.verl_ext.settings import verified_settings
from aero_verl.verl_ext.state import AEROState, StateCompatibilityError, load_state, save_state
from aero_verl.verl_ext.summary import RunSummary

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))

CUMULATIVE_FIELDS = ("prompts", "rollouts_generated", "rollouts_kept", "tokens_generated", "tokens_kept", "budget",
                     "prompts_rescue", "prompts_rescued")
# Columns of a submitted prompt row that carry its barrier-free rescue to the agent-loop worker.
RESCUE_ALLOWANCE_COLUMN = "__aero_rescue_n__"


@dataclass
class StepPrompts:
    """The prompts submitted in the step in flight, in submission order (their rows, to submit again)."""

    batches: list[TensorDict] = field(default_factory=list)
    uids: list[str] = field(default_factory=list)

    def add(self, batch: TensorDict) -> None:
        self.batches.append(batch)
        self.uids.extend(batch["uid"])

    @property
    def position_of_uid(self) -> dict[str, int]:
        return {uid: i for i, uid in enumerate(self.uids)}

    def rows(self, positions: np.ndarray) -> TensorDict:
        batch = self.batches[0] if len(self.batches) == 1 else tu.concat_tensordict(self.batches)
        return tu.index_select_tensor_dict(batch, positions.tolist())


# verl/trainer/ppo/v1/replay_buffer.py raises this when every group it selects lost all its rollouts
# (their generation or reward function raised).
_NO_TRAJECTORIES = "no materializable trajectories"


def sample_groups(buffer, global_steps: int, batch_size: int) -> KVBatchMeta | None:
    """verl's sync sample of `batch_size` training groups; None if every one of them lost all its rollouts."""
    try:
        batch, _ = buffer.sample(global_steps=global_steps, partition_id="train", batch_size=batch_size)
    except RuntimeError as error:
        if _NO_TRAJECTORIES not in str(error):
            raise
        return None
    return batch


class RescueOnSample:
    """verl's replay buffer, with AERO's Stage II run on every training sample before it is returned.

    The trainer samples Stage I through this wrapper inside verl's `gen` timer, right before
    `on_sample_end` puts the rollout replicas to sleep, which is the last moment more rollouts can be
    generated in the step (verl/trainer/ppo/v1/trainer_base.py, `_step_once`). Validation samples pass
    through untouched. (A `trainer.v1.sampler.custom_sampler` subclass would sit in the same place but
    receives only verl's refill function, not the step's prompts; the wrapper keeps verl's own buffer.)
    """

    def __init__(self, buffer, after_train_sample):
        self.buffer = buffer
        self._after_train_sample = after_train_sample

    def sample(self, global_steps: int, partition_id: str, batch_size: int):
        if partition_id != "train":
            return self.buffer.sample(global_steps=global_steps, partition_id=partition_id, batch_size=batch_size)
        try:
            batch, metrics = self.buffer.sample(global_steps=global_steps, partition_id=partition_id,
                                                batch_size=batch_size)
        except RuntimeError as error:
            if _NO_TRAJECTORIES not in str(error):
                raise
            raise RuntimeError(f"step {global_steps}: no rollout of any prompt came back (every generation or "
                               "reward call failed; the rollout workers' log has the error)") from error
        return self._after_train_sample(batch, metrics), metrics

    def __getattr__(self, name):
        return getattr(self.buffer, name)


@register_trainer("aero")
class AEROTrainer(ReportsSyncMode, RunRecord, PassAtKValidation, PPOTrainerSync):
    """verl's colocated sync PPO trainer with AERO's adaptive rollouts, rejection and posterior."""

    def __init__(self, config):
        self.aero = verified_settings(config)
        super().__init__(config)
        algorithm = self.aero.algorithm
        self.policies = aero_policies(algorithm, normalize_by_std=config.algorithm.get("norm_adv_by_std_in_grpo", True))
        self.posterior = BetaPosteriorTable(algorithm.prior_alpha, algorithm.prior_beta, algorithm.forgetting)
        self.replay_buffer = RescueOnSample(self.replay_buffer, self._run_stage_two)
        self.replay_buffer.buffer.poll_interval = self.aero.trainer.poll_interval_s
        self._prompts = StepPrompts()
        self._step: AEROStep | None = None
        self._keys: list[str] = []  # TransferQueue key of each recorded rollout, in recording order
        self._result: StepResult | None = None
        self._row_of_key: dict[str, int] = {}
        self._update_skipped = False
        self._rescue_generation_s = 0.0
        self._cumulative: Counter = Counter()
        self.summary = RunSummary()

    # ------------------------------------------------------------------ set-up

    def _init_dataloader(self):
        super()._init_dataloader()
        dataset = self.train_dataset.dataframe
        prompt_column = self.config.data.get("prompt_key", "prompt")
        indices = [(info or {}).get("index") for info in dataset["extra_info"]] if "extra_info" in \
            dataset.column_names else [None] * len(dataset)
        self.dataset_report = check_training_prompts(self.aero.trainer.prompt_key, list(dataset[prompt_column]),
                                                     indices, source="data.train_files")
        logger.info(f"[aero] {self.dataset_report.rows} training prompts, {self.dataset_report.duplicate_prompts} "
                    f"duplicated, keyed by {self.aero.trainer.prompt_key}")

    # ------------------------------------------------------------------ Stage I

    def on_step_begin(self):
        super().on_step_begin()
        self._prompts = StepPrompts()
        self._step = AEROStep(self.aero.algorithm, self.posterior, self.global_steps, self.policies)
        self._keys, self._result, self._row_of_key = [], None, {}
        self._update_skipped = False

    def _next_train_batch(self, num_prompts: int | None = None) -> TensorDict:
        batch = super()._next_train_batch(num_prompts)
        keys = prompt_keys(self.aero.trainer.prompt_key, batch["raw_prompt"], batch["index"])
        first = self._step.n_prompts
        batch["__rollout_n__"] = torch.as_tensor(self._step.add_prompts(keys))
        if self.policies.rescue.barrier_free:
            batch[RESCUE_ALLOWANCE_COLUMN] = torch.as_tensor(self._step.rescue_allowance()[first:])
        self._prompts.add(batch)
        return batch

    # ------------------------------------------------------------------ Stage II

    def _run_stage_two(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        """Record Stage I (and a barrier-free rescue), then run and record the rescue phases."""
        self._rescue_generation_s = 0.0
        with marked_timer("aero_rescue", self.timing_raw, color="purple"):
            step = self._step
            rows = self._read_rows(batch.keys)
            stage1 = rows.session < step.explore[rows.group]
            self._record(rows, stage1, batch.tags, stage1=True)
            if self.policies.rescue.barrier_free:
                self._record_worker_rescue(rows, ~stage1, batch.tags, metrics)
            keys, tags = list(batch.keys), list(batch.tags)
            while (extra := step.rescue_requests()).any():
                round_batch = self._generate_rescue_round(extra, step.rescue_phases)
                round_rows = self._read_rows(round_batch.keys)
                self._record(round_rows, np.ones(len(round_rows.keys), dtype=bool), round_batch.tags, stage1=False)
                keys += round_batch.keys
                tags += round_batch.tags
            self._check_lost_rollouts(metrics)
            self._count_generated(tags)
        return KVBatchMeta(keys=keys, tags=tags, partition_id=batch.partition_id, fields=batch.fields,
                           extra_info=batch.extra_info)

    def _read_rows(self, keys: list[str]) -> RolloutRows:
        if not keys:
            empty = np.zeros(0, dtype=np.int64)
            return RolloutRows([], empty, empty, np.zeros(0), empty, np.zeros(0, dtype=np.uint64))
        return rollout_rows(keys, self._read_rollouts(keys, fields=OUTCOME_FIELDS), self._prompts.position_of_uid)

    def _record(self, rows: RolloutRows, selected: np.ndarray, tags: list[dict], stage1: bool,
                new_phase: bool = True) -> None:
        """Record the selected rows in the step (a phase with no rows that came back is still a phase)."""
        picked = np.flatnonzero(selected)
        stopped = np.array([bool(tags[i].get("aero_stopped", False)) for i in picked], dtype=bool)
        self._step.record(rows.group[picked], rows.rewards[picked], rows.lengths[picked], stage1=stage1,
                          stopped=stopped, digest=rows.digest[picked],
                          row_labels=[int(self._step.keys[g]) for g in rows.group[picked]], new_phase=new_phase)
        self._keys.extend(rows.keys[i] for i in picked)

    def _record_worker_rescue(self, rows: RolloutRows, rescue: np.ndarray, tags: list[dict], metrics: dict) -> None:
        """The agent-loop worker rescued prompts inside the Stage I generation phase: count what it asked for
        (its rule is the step's: the prompts Stage I left in the rescue stratum) and record what came back."""
        step = self._step
        step.note_requests(step.rescue_allowance() * step.counts().in_rescue)
        self._record(rows, rescue, tags, stage1=False, new_phase=False)
        done = [(tag.get("aero_stage1_done_s"), tag.get("aero_rescue_done_s")) for tag in tags]
        stage1_end = max((s for s, _ in done if s is not None), default=None)
        rescue_end = max((r for _, r in done if r is not None), default=None)
        metrics["aero/rescue_tail_s"] = max(rescue_end - stage1_end, 0.0) if stage1_end and rescue_end else 0.0

    def _check_lost_rollouts(self, metrics: dict) -> None:
        """A rollout whose generation or reward function raised never comes back; verl drops it. A few are
        tolerated (they still spent their budget); more than aero.trainer.max_lost_rollout_share of the
        step's requests stop the run."""
        step = self._step
        returned = step.rollouts_recorded()
        check_rollout_counts(step.requested, returned, step.keys)
        lost = step.requested - returned
        metrics["aero/rollouts_missing"] = float(lost.sum())
        if not lost.any():
            return
        share = lost.sum() / max(step.requested.sum(), 1)
        prompts = [int(step.keys[i]) for i in np.flatnonzero(lost)]
        message = (f"step {self.global_steps}: {int(lost.sum())} of {int(step.requested.sum())} requested rollouts "
                   f"({share:.1%}) of {len(prompts)} prompts never came back (their generation or reward function "
                   f"raised; the rollout workers' log has the error), prompt keys {prompts[:5]}")
        limit = self.aero.trainer.max_lost_rollout_share
        if share > limit:
            raise RuntimeError(f"{message}. That is more than aero.trainer.max_lost_rollout_share={limit:g}: fix the "
                               "reward function or the rollout servers, or raise the limit to train on what "
                               "came back")
        logger.warning(f"[aero] {message}; training on the rest (within aero.trainer.max_lost_rollout_share="
                       f"{limit:g})")

    def _generate_rescue_round(self, extra: np.ndarray, round_number: int) -> KVBatchMeta:
        started = time.perf_counter()
        try:
            return self._submit_and_sample_round(extra, round_number)
        finally:
            self._rescue_generation_s += time.perf_counter() - started

    def _submit_and_sample_round(self, extra: np.ndarray, round_number: int) -> KVBatchMeta:
        positions = np.flatnonzero(extra)
        parents = [self._prompts.uids[i] for i in positions]
        # A fresh uid per round keeps verl's session keys {uid}_{session}_{index} distinct from Stage I's;
        # verl splits keys on "_", so the suffix must not contain one.
        round_uids = [f"{uid}-r{round_number}" for uid in parents]
        rows = self._prompts.rows(positions)
        tu.assign_non_tensor_stack(rows, "uid", round_uids)
        rows["__rollout_n__"] = torch.as_tensor(extra[positions])
        self._submit_batch_to_rollout(rows)
        round_batch = sample_groups(self.replay_buffer.buffer, self.global_steps, len(round_uids))
        if round_batch is None:  # every rollout of the round was lost; counted as lost by the caller
            tq.kv_clear(keys=round_uids, partition_id="train")
            return KVBatchMeta(keys=[], tags=[], partition_id="train")
        # verl groups advantages by the `uid` field, so writing the parent uid merges the round into its group.
        parent_of = dict(zip(round_uids, parents))
        tq.kv_batch_put(keys=round_batch.keys, partition_id=round_batch.partition_id,
                        fields=tu.get_tensordict({"uid": [parent_of[key.split("_")[0]] for key in round_batch.keys]}))
        return round_batch

    def _read_rollouts(self, keys: list[str], partition_id: str = "train", fields: list[str] = OUTCOME_FIELDS) -> DataProto:
        """Rows of TransferQueue as verl's own advantage step reads them."""
        data = tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=fields)
        proto = DataProto(batch=data.to_padded_tensor())
        proto.non_tensor_batch["uid"] = np.array(proto.batch.pop("uid").tolist(), dtype=object)
        return proto

    # ------------------------------------------------------------------ posterior + rejection

    def _balance_batch(self, batch: KVBatchMeta, metrics, logging_prefix="global_seqlen", keep_minibatch=False):
        if self._step is not None and self._result is None:
            batch = self._select_for_training(batch, metrics)
        unpadded = len(batch)
        batch = super()._balance_batch(batch, metrics, logging_prefix, keep_minibatch)
        metrics["aero/pad_rows"] = len(batch) - unpadded
        return batch

    def _select_for_training(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        with marked_timer("aero_select", self.timing_raw, color="purple"):
            result = self._result = self._step.finish()
            self._log_rollouts(self.global_steps, group=result.group, stage1=result.stage1, phase=result.phase,
                               length=result.lengths, success=result.success, stopped=result.stopped,
                               kept=result.keep)
            self._row_of_key = {key: row for row, key in enumerate(self._keys)}
            invalid = [self._keys[row] for row in np.flatnonzero(result.invalid & result.keep)]
            if invalid:
                self._zero_rewards(invalid, batch.partition_id)
            metrics.update(result.accounting.metrics())
            # Comparable with the baselines' (baseline_trainer.py): groups still all-alike after both stages.
            metrics["run/zero_variance_share"] = result.accounting.zero_variance_groups / max(result.accounting.prompts, 1)
            self._accumulate(result, metrics)

            kept = [self._keys[row] for row in result.training_order]
            if not kept:
                # Nothing carries a gradient this step (e.g. every prompt failed its rescue): keep one row
                # so verl's pipeline and metrics run, and skip the log-prob and update work on it.
                kept = batch.keys[:1]
                self._update_skipped = True
                logger.warning(f"[aero] step {self.global_steps}: every rollout was rejected "
                               f"({result.accounting.prompts_failed_rescue} failed rescues, "
                               f"{result.accounting.zero_variance_groups_stage1} zero-variance groups); update skipped")
            metrics["aero/update_skipped"] = int(self._update_skipped)
            if not self._update_skipped:
                tag_of = dict(zip(batch.keys, batch.tags))
                self._count_trained([tag_of[key] for key in kept])
            kept_set = set(kept)
            dropped = [key for key in batch.keys if key not in kept_set]
            if dropped:
                tq.kv_clear(keys=dropped, partition_id=batch.partition_id)
            return batch.select_keys(kept)

    def _zero_rewards(self, keys: list[str], partition_id: str) -> None:
        """Under aero.invalid_reward=failure, store 0 for the invalid rewards so no NaN reaches verl's metrics."""
        data = tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=["response_mask"])
        lengths = [int(mask.sum()) for mask in data["response_mask"]]
        # TransferQueue holds token-level fields as jagged tensors of each response's length.
        zeros = torch.nested.as_nested_tensor([torch.zeros(n, dtype=torch.float32) for n in lengths],
                                              layout=torch.jagged)
        tq.kv_batch_put(keys=keys, partition_id=partition_id,
                        fields=TensorDict({"rm_scores": zeros}, batch_size=len(keys)))

    def _accumulate(self, result: StepResult, metrics: dict) -> None:
        self._cumulative["steps"] += 1
        for name in CUMULATIVE_FIELDS:
            self._cumulative[name] += getattr(result.accounting, name)
        metrics.update({f"aero/cumulative/{name}": float(value) for name, value in self._cumulative.items()})
        metrics["aero/posterior_prompts"] = float(len(self.posterior))

    # ------------------------------------------------------------------ batch shape + update

    def _get_required_batch_multiple(self, dp_size: int) -> int:
        """dp_size * num_mini_batches, so every step has the same optimizer steps whatever was kept.

        verl's default (lcm with ppo_mini_batch_size * rollout.n) would pad AERO's smaller kept batches with
        many no-op rows and make the number of optimizer steps depend on how many rollouts were kept. With
        count-based micro-batches (use_dynamic_bsz=False) verl's workers also need each rank's share to
        divide into micro-batches (verl/workers/engine/utils.py), so the multiple grows to
        dp * lcm(num_mini_batches * actor micro, log-prob micro, ref micro): use_dynamic_bsz=True avoids it.
        """
        self._train_dp_size = dp_size
        mini_batches = self.aero.trainer.num_mini_batches
        return dp_size * count_based_multiple(self.config, mini_batches)

    def _compute_old_log_prob(self, batch, metrics):
        return batch if self._update_skipped else super()._compute_old_log_prob(batch, metrics)

    def _compute_ref_log_prob(self, batch, metrics):
        return batch if self._update_skipped else super()._compute_ref_log_prob(batch, metrics)

    def _compute_advantage(self, batch, metrics):
        started = time.perf_counter()
        rows = self._row_advantages(batch)
        # AERO's own work in the step, apart from waiting for generation: reading and recording rows, the
        # step's decisions, clearing rejected rows and laying out the advantages (issue: <= 1% of a step).
        metrics["timing_s/aero_bookkeeping"] = (
            self.timing_raw.get("aero_select", 0.0) + self.timing_raw.get("aero_rescue", 0.0)
            - self._rescue_generation_s + time.perf_counter() - started)
        with publish_advantages(rows):
            return super()._compute_advantage(batch, metrics)

    def _row_advantages(self, batch: KVBatchMeta) -> RowAdvantages:
        """The step's advantage, loss weight and outcome of every row of the batch verl trains, in its order.

        verl's actor (verl/workers/engine_workers.py, train_mini_batch) hands each DP rank a contiguous
        share of the balanced batch and splits it into num_mini_batches contiguous optimizer steps (actor
        shuffle off), so row p is in optimizer step (p mod per_rank) // (per_rank / num_mini_batches).
        """
        result = self._result
        rows = np.array([self._row_of_key.get(key, -1) for key in batch.keys], dtype=np.int64)
        real = rows >= 0  # verl's padding rows (uid pad...) have no row of the step
        per_rank = max(len(batch) // self._dp_size(), 1)
        per_step = max(per_rank // self.aero.trainer.num_mini_batches, 1)
        minibatch = (np.arange(len(batch)) % per_rank) // per_step
        weights = np.zeros(len(batch))
        advantages = np.zeros(len(batch))
        success = np.zeros(len(batch))
        scale = np.ones(len(batch))
        if real.any() and not self._update_skipped:
            weights[real] = result.loss_weights(rows[real], minibatch[real])
            advantages[real] = result.advantages[rows[real]]
            success[real] = result.success[rows[real]]
            scale[real] = result.advantage_scale[rows[real]]
        return RowAdvantages(uids=[self._uid_of(key) for key in batch.keys], advantages=advantages, weights=weights,
                             outcomes=success, scale=scale, group=np.where(real, result.group[np.maximum(rows, 0)], -1))

    def _uid_of(self, key: str) -> str:
        row = self._row_of_key.get(key)
        return key.split("_")[0] if row is None else self._prompts.uids[self._result.group[row]]

    def _dp_size(self) -> int:
        return int(getattr(self, "_train_dp_size", None) or 1)

    def _update_actor(self, batch, metrics):
        if self._update_skipped:
            return batch
        # The kept batch is split into num_mini_batches equal optimizer steps; verl reads the mini-batch
        # size as ppo_mini_batch_size * rollout.n from the config, so both are set for this call only.
        mini_batch = len(batch) // self.aero.trainer.num_mini_batches
        with _config_overrides(self.config, {"actor_rollout_ref.actor.ppo_mini_batch_size": mini_batch,
                                             "actor_rollout_ref.rollout.n": 1}):
            return super()._update_actor(batch, metrics)

    # ------------------------------------------------------------------ validation + summary

    def _validate(self):
        metrics = super()._validate()
        self.summary.record_validation(self.global_steps, metrics)
        return metrics

    def fit(self, agent_loop_manager):
        super().fit(agent_loop_manager)
        self.summary.record_cumulative(dict(self._cumulative))
        for line in self.summary.render().splitlines():
            say(line)
        self.summary.write(os.path.join(self.config.trainer.default_local_dir, "aero_summary.json"))

    # ------------------------------------------------------------------ checkpoint

    def _save_checkpoint(self):
        # Before verl's save, which writes latest_checkpointed_iteration.txt last: no tracker ever points
        # at a step folder without AERO's state.
        folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
        save_state(folder, AEROState(
            posterior=self.posterior.state_dict(),
            dataset_fingerprint=self.dataset_report.fingerprint,
            prompt_key=self.aero.trainer.prompt_key,
            global_step=self.global_steps,
            cumulative=dict(self._cumulative),
            algorithm=self.aero.algorithm.as_dict(),
        ))
        super()._save_checkpoint()

    def _load_checkpoint(self):
        super()._load_checkpoint()
        if self.global_steps == 0:
            return
        folder = self._resumed_folder()
        state = load_state(folder, self.dataset_report.fingerprint, self.aero.trainer.prompt_key)
        if state is None:
            if not self.aero.trainer.resume_without_state:
                raise StateCompatibilityError(
                    f"{folder} has no AERO state (aero_state.npz); it was not written by an AERO run, or the file "
                    "was lost. Set aero.trainer.resume_without_state=true to start the posterior from the prior")
            logger.warning(f"[aero] {folder} has no AERO state; the posterior starts from the prior")
            return
        self.posterior.load_state_dict(state.posterior)
        self._cumulative = Counter(state.cumulative)
        current = self.aero.algorithm.as_dict()
        changed = {k: (v, current.get(k)) for k, v in state.algorithm.items() if current.get(k) != v}
        if changed:
            logger.warning(f"[aero] resuming with changed settings (checkpoint, now): {changed}")
        logger.info(f"[aero] restored the posterior of {len(self.posterior)} prompts from {folder}")

    def _resumed_folder(self) -> str:
        """The global_step folder verl's _load_checkpoint resumed from (it does not return it)."""
        trainer = self.config.trainer
        if trainer.resume_mode == "resume_path":
            return os.path.abspath(trainer.resume_from_path)
        return find_latest_ckpt_path(os.path.abspath(trainer.default_local_dir))


def count_based_multiple(config, mini_batches: int) -> int:
    """Rows per DP rank must be a multiple of this: num_mini_batches, times the micro-batch sizes of every
    pass that batches by count (verl/workers/engine/utils.py asserts each rank's share divides into them):
    the actor update (its mini-batch into micro-batches), and the rollout's and the reference's log-prob
    passes, each of which has its own use_dynamic_bsz."""
    actor_rollout_ref = config.actor_rollout_ref
    sizes = [mini_batches]
    if not actor_rollout_ref.actor.use_dynamic_bsz:
        sizes.append(mini_batches * (actor_rollout_ref.actor.get("ppo_micro_batch_size_per_gpu") or 1))
    for section in ("rollout", "ref"):
        part = actor_rollout_ref.get(section, {})
        if not part.get("log_prob_use_dynamic_bsz", actor_rollout_ref.actor.use_dynamic_bsz):
            sizes.append(part.get("log_prob_micro_batch_size_per_gpu") or 1)
    return math.lcm(*sizes)


@contextmanager
def _config_overrides(config, overrides: Mapping[str, object]) -> Iterator[None]:
    previous = {key: OmegaConf.select(config, key) for key in overrides}
    with open_dict(config):
        for key, value in overrides.items():
            OmegaConf.update(config, key, value)
    try:
        yield
    finally:
        with open_dict(config):
            for key, value in previous.items():
                OmegaConf.update(config, key, value)
