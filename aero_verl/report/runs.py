"""Reading one run folder for the report: its metrics per step and its held-out accuracy per validation.

A run folder is a Hydra output directory; the trainer writes under its checkpoints/ folder
(trainer.default_local_dir):
    metrics.jsonl        a line per logger call, {"step": N, "time": unix s, "metrics": {name: value}}
                         (aero_verl/verl_ext/run_record.py). A training step has `timing_s/step`, a validation
                         has `val-core/...` keys, and a resumed run logs a step again: lines of the same step
                         merge in file order, later values winning.
    eval/step_<N>.json   each validation's Pass@k / Avg@k per benchmark, with its prompt count
                         (aero_verl/verl_ext/evaluation.py)
The checkpoints folder itself, or any folder holding metrics.jsonl, is accepted too. numpy only.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

# The names run_record.py and evaluation.py write; repeated here so that the report imports nothing of the
# trainer (which pulls in omegaconf and verl).
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_FOLDER = "checkpoints"
EVAL_FILE = re.compile(r"^step_(\d+)\.json$")
_EVAL_METRIC = re.compile(r"^(avg|pass)@(\d+)$")
_VAL_CORE = re.compile(r"^val-core/(?P<benchmark>.+)/acc/(?P<kind>mean|pass)@(?P<k>\d+)$")
# How seeds are told apart in experiment and folder names (aero_seed0, grpo-seed=1): stripped to find the method.
_SEED_SUFFIX = re.compile(r"[_\-.]?seed[_\-=]?\d+$", re.IGNORECASE)

Warn = Callable[[str], None]


class RunReadError(ValueError):
    """A run the report cannot draw; the message names the file or folder and what is wrong."""


@dataclass(frozen=True)
class Validation:
    """The held-out accuracy of one validation: Avg@k and Pass@k averaged over benchmarks."""

    step: int
    avg: float
    pass_at: float
    k: int


@dataclass
class Run:
    """One run as read: its metrics per step (last line wins) and its validations in step order."""

    folder: Path                      # the folder holding metrics.jsonl
    name: str                         # the run folder's name (the Hydra directory above checkpoints/)
    experiment: str | None            # trainer.experiment_name, from an eval file
    steps: dict[int, dict[str, float]]
    validations: list[Validation]
    label: str = field(default="")    # unique among the runs drawn together (label_runs)

    @cached_property
    def is_aero(self) -> bool:
        return any(name.startswith("aero/") for metrics in self.steps.values() for name in metrics)

    @property
    def method(self) -> str:
        """The run's name without its seed: runs of one method share a colour family."""
        return _SEED_SUFFIX.sub("", self.experiment or self.name) or self.name

    @cached_property
    def training_steps(self) -> list[int]:
        return [step for step, metrics in self.steps.items() if "timing_s/step" in metrics]

    def has(self, key: str) -> bool:
        return any(key in metrics for metrics in self.steps.values())

    def per_step(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(training steps, the key's value at each), NaN where a step did not log it."""
        steps = self.training_steps
        values = [self.steps[step].get(key, math.nan) for step in steps]
        return np.array(steps, dtype=float), np.array(values, dtype=float)

    def cumulative_at(self, key: str, step: int) -> float:
        """A running sum (run/*_cumulative) as it stood at `step`: its value at the last step up to `step`
        that logged it; 0 before the first training step (nothing spent yet); NaN if steps up to `step`
        trained without logging it."""
        logged = [metrics[key] for s, metrics in self.steps.items() if s <= step and key in metrics]
        if logged:
            return logged[-1]
        return math.nan if any(s <= step for s in self.training_steps) else 0.0

    def validation_cost(self, key: str) -> np.ndarray:
        """The running sum `key` at each validation (the x axis of accuracy against compute or wall clock)."""
        return np.array([self.cumulative_at(key, v.step) for v in self.validations], dtype=float)


def find_metrics_folder(path: Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise RunReadError(f"{path}: no such folder")
    for folder in (path / CHECKPOINTS_FOLDER, path):
        if (folder / METRICS_FILE).is_file():
            return folder
    raise RunReadError(f"{path}: no {METRICS_FILE} in it or in its {CHECKPOINTS_FOLDER}/ folder "
                       f"(a run folder is a Hydra output directory of aero_verl.main_ppo)")


def _numbers(metrics: dict) -> dict[str, float]:
    return {name: float(value) for name, value in metrics.items()
            if isinstance(value, int | float) and not isinstance(value, bool)}


def read_metrics(path: Path, warn: Warn) -> dict[int, dict[str, float]]:
    """{step: metrics} from a metrics.jsonl, in step order; lines of one step merge, later values win.

    A line that is not a record (a run killed mid-write leaves half a line) is skipped with a warning
    naming the file and line; a file with no record at all raises RunReadError.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if not any(line.strip() for line in lines):
        raise RunReadError(f"{path}: empty file (the run has not logged a step yet)")
    steps: dict[int, dict[str, float]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            warn(f"{path} line {number}: not JSON ({error.msg}); line skipped")
            continue
        if not (isinstance(record, dict) and isinstance(record.get("step"), int)
                and isinstance(record.get("metrics"), dict)):
            warn(f"{path} line {number}: not a record {{\"step\": int, \"time\": float, \"metrics\": {{...}}}}; "
                 f"line skipped")
            continue
        steps.setdefault(record["step"], {}).update(_numbers(record["metrics"]))
    if not steps:
        raise RunReadError(f"{path}: none of its {len(lines)} lines is a metrics record")
    return dict(sorted(steps.items()))


def accuracy_from_eval(results: dict) -> tuple[float, float, int]:
    """(Avg@N, Pass@N, N) over an eval file's benchmarks, each weighted by its prompt count; N is the largest
    k for which every benchmark reports both avg@k and pass@k."""
    if not isinstance(results, dict) or not results:
        raise ValueError("no benchmark under \"results\"")
    common = None
    for row in results.values():
        reported = {int(m[2]) for name in row if (m := _EVAL_METRIC.match(name))
                    and f"avg@{m[2]}" in row and f"pass@{m[2]}" in row}
        common = reported if common is None else common & reported
    if not common:
        raise ValueError("no k for which every benchmark reports avg@k and pass@k")
    k = max(common)
    missing = [benchmark for benchmark, row in results.items() if "n_prompts" not in row]
    if missing:
        raise ValueError(f"benchmark {missing[0]!r} has no n_prompts")
    weights = np.array([row["n_prompts"] for row in results.values()], dtype=float)
    avg = np.array([row[f"avg@{k}"] for row in results.values()], dtype=float)
    pass_at = np.array([row[f"pass@{k}"] for row in results.values()], dtype=float)
    return float(weights @ avg / weights.sum()), float(weights @ pass_at / weights.sum()), k


def read_eval_folder(folder: Path, warn: Warn) -> tuple[list[Validation], str | None]:
    """The validations of the eval/step_<N>.json files in `folder`, and the experiment name they record."""
    validations, experiment = [], None
    files = sorted((int(m[1]), path) for path in Path(folder).glob("step_*.json") if (m := EVAL_FILE.match(path.name)))
    for step_in_name, path in files:
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
            avg, pass_at, k = accuracy_from_eval(table.get("results"))
        except (OSError, ValueError, TypeError, AttributeError, KeyError) as error:
            warn(f"{path}: {error}; this validation is not drawn")
            continue
        meta = table.get("meta") or {}
        experiment = experiment or meta.get("experiment")
        validations.append(Validation(int(meta.get("global_step", step_in_name)), avg, pass_at, k))
    return sorted(validations, key=lambda v: v.step), experiment


def accuracy_from_metrics(step: int, metrics: dict[str, float]) -> Validation | None:
    """One step's val-core Avg@N (`acc/mean@N`) and Pass@N (`acc/pass@N`), benchmarks weighted equally
    (metrics.jsonl has no prompt counts); None if the step logged no validation."""
    found: dict[tuple[str, int], list[float]] = {}
    for name, value in metrics.items():
        if match := _VAL_CORE.match(name):
            found.setdefault((match["kind"], int(match["k"])), []).append(value)
    ks = [k for kind, k in found if kind == "mean"]
    if not ks:
        return None
    k = max(ks)
    return Validation(step, float(np.mean(found[("mean", k)])), float(np.mean(found.get(("pass", k), [math.nan]))), k)


def held_out_accuracy(steps: dict[int, dict[str, float]], eval_folder: Path, warn: Warn
                      ) -> tuple[list[Validation], str | None]:
    """The run's validations: from its eval files (prompt-weighted) when it has any, else from the
    val-core keys of metrics.jsonl; and the experiment name the eval files record."""
    validations, experiment = read_eval_folder(eval_folder, warn)
    if validations:
        return validations, experiment
    from_metrics = [accuracy_from_metrics(step, metrics) for step, metrics in steps.items()]
    return [validation for validation in from_metrics if validation is not None], experiment


def load_run(path: Path, warn: Warn) -> Run:
    folder = find_metrics_folder(path)
    steps = read_metrics(folder / METRICS_FILE, warn)
    validations, experiment = held_out_accuracy(steps, folder / "eval", warn)
    run_folder = folder.resolve().parent if folder.name == CHECKPOINTS_FOLDER else folder.resolve()
    return Run(folder=folder, name=run_folder.name, experiment=experiment, steps=steps, validations=validations)


def label_runs(runs: list[Run]) -> None:
    """Each run's label: its experiment name, else its folder's name; runs whose labels collide get their
    folder's name added (and a number if even that collides)."""
    base = [run.experiment or run.name for run in runs]
    for run, label in zip(runs, base):
        run.label = f"{label} ({run.name})" if base.count(label) > 1 and label != run.name else label
    labels = [run.label for run in runs]
    for index, run in enumerate(runs):
        if labels.count(run.label) > 1:
            run.label = f"{run.label} #{labels[:index + 1].count(run.label)}"
