"""What a run leaves behind for benchmarks and reports: `<trainer.default_local_dir>/metrics.jsonl`.

Both of aero_verl's trainers (the AERO trainer and `sync_eval`, verl's sync trainer used for the GRPO and
DAPO baselines) write, for every call of verl's logger (each training step, and each validation), one JSON
line `{"step": N, "time": unix seconds, "metrics": {...}}` with every scalar verl logs plus the run's own
cost accounting, measured the same way for every method:

    run/rollouts_generated  rollouts generated this step (rejected, evicted, surplus and stopped included)
    run/rollouts_trained    rollouts that reached old-log-prob and the actor update (padding excluded)
    run/tokens_generated    prompt + response tokens of every rollout generated this step, from
                            TransferQueue's per-row tags
    run/tokens_trained      prompt + response tokens of the rows that reached old-log-prob and the actor
                            update (verl's padding rows excluded)
    run/flops               2 P tokens_generated + m P tokens_trained: P the actor's parameter count, m the
                            passes each trained token goes through in this run's config (6 for the actor's
                            forward and backward, + 2 old-log-prob unless verl's bypass mode reuses the
                            rollout's log-probs, + 2 reference if a reference model runs, + 2 recomputation
                            with gradient checkpointing); an estimate of the work, not verl's MFU counter
    run/flops_per_trained_token_multiplier   m
    run/wall_s              timing_s/step
    run/*_cumulative        sums since step 1 (restored on resume from the last line of the file)

`<trainer.default_local_dir>/rollouts.jsonl` has one line per training step with every generated rollout's
prompt position `group`, `stage1` (Stage I or rescue), generation `phase`, response `length` in tokens,
`success`, `stopped` and `kept` (AERO; baselines log group, length and success): what the GPU projection
(benchmarks/gpu_projection.py) replays.

The same logger wrap prints one line per step and a compact table per validation (console.py). A
relaunched run appends to the same file; a step logged before a kill and logged again after the resume
appears twice, and readers take its last line.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time

from omegaconf import OmegaConf

from aero_verl.verl_ext.console import say, step_line, validation_table

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
ROLLOUTS_FILE = "rollouts.jsonl"
CUMULATIVE = ("rollouts_generated", "rollouts_trained", "tokens_generated", "tokens_trained", "flops", "wall_s")


def trained_token_passes(config) -> int:
    """m: forward/backward passes over each trained token under this config (module docstring)."""
    passes = 6
    correction = OmegaConf.select(config, "algorithm.rollout_correction", default=None)
    if not (correction and correction.get("bypass_mode", False)):
        passes += 2
    if OmegaConf.select(config, "actor_rollout_ref.actor.use_kl_loss", default=False) or \
            OmegaConf.select(config, "algorithm.use_kl_in_reward", default=False):
        passes += 2
    if OmegaConf.select(config, "actor_rollout_ref.model.enable_gradient_checkpointing", default=False):
        passes += 2
    return passes


def parameter_count(model_path: str, trust_remote_code: bool = False) -> int:
    """The actor's parameters, counted on the meta device from its config (no weights are read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from verl.utils.fs import copy_to_local

    model_config = AutoConfig.from_pretrained(copy_to_local(model_path), trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config, trust_remote_code=trust_remote_code)
    return int(sum(p.numel() for p in model.parameters()))


def scalar_metrics(data: dict) -> dict[str, float]:
    out = {}
    for name, value in data.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[name] = number
    return out


class RecordingLogger:
    """verl's Tracking logger, plus a line per call in metrics.jsonl and the compact console."""

    def __init__(self, tracking, record: RunRecord):
        self._tracking = tracking
        self._record = record

    def log(self, data: dict, step: int, *args, **kwargs):
        self._record.on_log(data, step)
        return self._tracking.log(data, step, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tracking, name)


class RunRecord:
    """Mixin for a verl v1 trainer: counts generated and trained tokens per step and writes metrics.jsonl.

    Subclasses report tokens with `_count_generated(tags)` (rows generated this step, by their
    TransferQueue tags) and `_count_trained(tags)` (rows about to be trained, before verl pads them).
    """

    _step_tokens: dict | None = None

    @property
    def logger(self):
        return self._recording_logger

    @logger.setter
    def logger(self, tracking):
        self._recording_logger = RecordingLogger(tracking, self)

    def _metrics_path(self) -> str:
        return os.path.join(self.config.trainer.default_local_dir, METRICS_FILE)

    def _tokens(self) -> dict:
        if self._step_tokens is None:
            self._step_tokens = dict.fromkeys(("rollouts_generated", "rollouts_trained", "tokens_generated",
                                               "tokens_trained"), 0)
        return self._step_tokens

    def _count(self, kind: str, tags) -> None:
        real = [tag for tag in tags if not tag.get("is_padding")]
        counts = self._tokens()
        counts[f"rollouts_{kind}"] += len(real)
        counts[f"tokens_{kind}"] += sum(int(tag.get("seq_len", 0)) for tag in real)

    def _count_generated(self, tags) -> None:
        self._count("generated", tags)

    def _count_trained(self, tags) -> None:
        self._count("trained", tags)

    def _log_rollouts(self, step: int, **columns) -> None:
        """One line of rollouts.jsonl (module docstring); columns are per-rollout sequences."""
        path = os.path.join(self.config.trainer.default_local_dir, ROLLOUTS_FILE)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        record = {"step": int(step), **{name: [int(v) for v in values] for name, values in columns.items()}}
        with open(path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def _cost_model(self) -> tuple[int, int]:
        if not hasattr(self, "_params"):
            model = self.config.actor_rollout_ref.model
            self._params = parameter_count(model.path, bool(model.get("trust_remote_code", False)))
            self._passes = trained_token_passes(self.config)
        return self._params, self._passes

    def _cumulative_run(self) -> dict:
        if not hasattr(self, "_run_totals"):
            self._run_totals = dict.fromkeys(CUMULATIVE, 0.0)
            path = self._metrics_path()
            if self.global_steps > 0 and os.path.exists(path):
                # Resumed: continue the sums from the last training step this run recorded before its checkpoint.
                for line in open(path):
                    record = json.loads(line)
                    if record["step"] <= self.global_steps and "run/tokens_generated" in record["metrics"]:
                        self._run_totals = {name: record["metrics"].get(f"run/{name}_cumulative", 0.0)
                                            for name in CUMULATIVE}
        return self._run_totals

    def on_log(self, data: dict, step: int) -> None:
        metrics = scalar_metrics(data)
        training = "timing_s/step" in metrics
        if training:
            metrics.update(self._step_cost(metrics))
        os.makedirs(os.path.dirname(self._metrics_path()), exist_ok=True)
        with open(self._metrics_path(), "a") as handle:
            handle.write(json.dumps({"step": int(step), "time": time.time(), "metrics": metrics}) + "\n")
        self._step_tokens = None
        if training:
            say(step_line(int(step), int(self.total_training_steps), metrics))
        for line in validation_table(int(step), metrics):
            say(line)

    def _step_cost(self, metrics: dict) -> dict:
        params, passes = self._cost_model()
        step = {name: float(value) for name, value in self._tokens().items()}
        step["wall_s"] = metrics["timing_s/step"]
        step["flops"] = 2.0 * params * step["tokens_generated"] + passes * params * step["tokens_trained"]
        totals = self._cumulative_run()
        for name in CUMULATIVE:
            totals[name] += step[name]
        out = {f"run/{name}": value for name, value in step.items()}
        out.update({f"run/{name}_cumulative": totals[name] for name in CUMULATIVE})
        out["run/params"] = float(params)
        out["run/flops_per_trained_token_multiplier"] = float(passes)
        return out
