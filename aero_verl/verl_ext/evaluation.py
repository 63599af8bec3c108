"""The paper's evaluation inside verl's validation loop: unbiased Pass@k and Avg@k per benchmark.

verl 0.9.1 logs Avg@N as `val-core/<source>/acc/mean@N`, but its `best@k` is a bootstrap with replacement,
a biased Pass@k. `PassAtKValidation` adds, for k = 1, 2, 4, ... up to `val_kwargs.n`,
`val-core/<source>/acc/pass@k` (the largest k) and `val-aux/<source>/acc/pass@k` (the others) from the
same per-sample `acc`, and writes every validation's table to `<default_local_dir>/eval/step_<N>.json`,
with each prompt's (samples, correct) under "prompts", keyed by a hash of the prompt text (verl's
validation uids are new every time) so that runs pair prompt by prompt.

These are mixins of verl v1 trainers (the AERO trainer and `sync_eval`, baseline_trainer.py); this module
imports nothing of verl, so either trainer module can import it in any order.
"""

from __future__ import annotations

import logging
import os

import hashlib

from aero_verl.eval.passk import prompt_counts, summarize_by_benchmark, write_results_json

logger = logging.getLogger(__name__)


class ReportsSyncMode:
    """A trainer registered under its own name that behaves as verl's "sync" mode.

    verl's PPOTrainer compares `trainer_mode` with "sync" to pick the replay buffer, the checkpoint
    contents and the refill policy, so a sync trainer registered as e.g. "aero" must still report "sync".
    """

    @property
    def trainer_mode(self) -> str:
        return "sync"

    @trainer_mode.setter
    def trainer_mode(self, value: str) -> None:
        self.registered_trainer_mode = value


def prompt_id(text: str) -> str:
    return hashlib.blake2b(str(text).encode(), digest_size=8).hexdigest()


class PassAtKValidation:
    """Adds unbiased Pass@k / Avg@k to a verl v1 trainer's validation metrics, and a JSON per validation."""

    _validation_inputs: dict[str, str] | None = None

    def _maybe_log_val_generations(self, inputs, outputs, scores):
        # verl/trainer/ppo/v1/trainer_base.py `_validate` calls this with the decoded prompts, aligned with
        # the sample uids it then passes to _val_metrics_update (both in sample order).
        self._validation_inputs = list(inputs)
        return super()._maybe_log_val_generations(inputs=inputs, outputs=outputs, scores=scores)

    def _val_metrics_update(self, data_sources, sample_uids, reward_extra_infos_dict, sample_turns,
                            expected_acc_counts=None):
        metrics = super()._val_metrics_update(data_sources, sample_uids, reward_extra_infos_dict, sample_turns,
                                              expected_acc_counts=expected_acc_counts)
        accs = reward_extra_infos_dict.get("acc") or reward_extra_infos_dict.get("reward")
        if not accs or any(acc not in (0, 1) for acc in accs):
            logger.warning("[aero] validation rewards are not 0/1 accuracies; Pass@k is not reported")
            return metrics
        samples_per_prompt = self.config.actor_rollout_ref.rollout.val_kwargs.n
        ks = [k for k in (2**i for i in range(samples_per_prompt.bit_length())) if k <= samples_per_prompt]
        try:
            tables = {k: summarize_by_benchmark(data_sources, sample_uids, accs, k) for k in ks}
        except ValueError as error:  # a prompt lost samples to rollout failures
            logger.warning(f"[aero] Pass@k not reported for this validation: {error}")
            return metrics
        results: dict[str, dict] = {}
        for k, table in tables.items():
            section = "val-core" if k == ks[-1] else "val-aux"
            for benchmark, row in table.items():
                metrics[f"{section}/{benchmark}/acc/pass@{k}"] = row[f"pass@{k}"]
                results.setdefault(benchmark, {"n_prompts": row["n_prompts"],
                                               "samples_per_prompt": row["samples_per_prompt"]})
                results[benchmark][f"pass@{k}"] = row[f"pass@{k}"]
                results[benchmark][f"avg@{k}"] = row[f"avg@{k}"]
        inputs = self._validation_inputs or []
        stable = [prompt_id(inputs[i]) if i < len(inputs) else str(uid) for i, uid in enumerate(sample_uids)]
        per_prompt = prompt_counts(data_sources, stable, accs)
        for benchmark, prompts in per_prompt.items():
            results[benchmark]["prompts"] = {pid: list(counts) for pid, counts in prompts.items()}
        path = os.path.join(self.config.trainer.default_local_dir, "eval", f"step_{self.global_steps}.json")
        write_results_json(path, results, meta={"global_step": self.global_steps,
                                                "experiment": self.config.trainer.experiment_name})
        return metrics
