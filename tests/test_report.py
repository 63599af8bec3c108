"""The run report: what it reads from fake run folders (last line per step, prompt-weighted accuracy, the
FLOPs axis), the PNG it writes, its CLI, and the messages for folders it cannot read."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aero_verl.report import ReportError, load_runs, write_report
from aero_verl.report.figure import DPI, FIGURE_INCHES
from aero_verl.report.runs import RunReadError, accuracy_from_eval, load_run, read_metrics

REPO = Path(__file__).resolve().parent.parent
STEPS = 6
FLOPS_PER_STEP = 2.5e12
WALL_S_PER_STEP = 40.0
# Two benchmarks of different sizes, so that the prompt-weighted mean differs from the plain mean.
BENCHMARKS = {"arith/L1": 30, "arith/L2": 10}


def _write_lines(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def _training_metrics(step: int, aero: bool, shift: float) -> dict:
    metrics = {
        "timing_s/step": WALL_S_PER_STEP,
        "run/rollouts_generated": 48.0 + step, "run/rollouts_trained": 40.0 + step,
        "run/tokens_generated": 4000.0, "run/tokens_trained": 3000.0,
        "run/flops": FLOPS_PER_STEP, "run/wall_s": WALL_S_PER_STEP,
        "run/flops_cumulative": FLOPS_PER_STEP * step, "run/wall_s_cumulative": WALL_S_PER_STEP * step,
        "run/rollouts_generated_cumulative": 50.0 * step, "run/rollouts_trained_cumulative": 40.0 * step,
        "run/tokens_generated_cumulative": 4000.0 * step, "run/tokens_trained_cumulative": 3000.0 * step,
        "run/zero_variance_share": 0.5 - 0.05 * step + shift,
    }
    if aero:
        metrics.update({
            "aero/budget": 64.0, "aero/rollouts_generated": 44.0 + step, "aero/rollouts_kept": 30.0 + step,
            "aero/rollouts_stopped": 2.0, "aero/prompts_rescue": 3.0 + step % 3, "aero/prompts_rescued": 2.0 + step % 3,
            "aero/prompts_failed_rescue": 1.0, "aero/zero_variance_share_stage1": 0.6 - 0.05 * step + shift,
            "aero/zero_advantage_share_kept": 0.1, "aero/posterior_brier": 0.2 - 0.01 * step + shift,
            "aero/prior_brier": 0.25, "aero/generation_phases": 2.0,
        })
    return metrics


def _val_core(step: int, shift: float = 0.0) -> dict:
    return {"val-core/arith/L1/acc/mean@8": 0.2 + 0.02 * step + shift, "val-core/arith/L1/acc/pass@8": 0.5 + 0.02 * step,
            "val-core/arith/L2/acc/mean@8": 0.1 + 0.02 * step + shift, "val-core/arith/L2/acc/pass@8": 0.3 + 0.02 * step}


def _eval_table(step: int, experiment: str, shift: float = 0.0) -> dict:
    results = {}
    for index, (benchmark, n_prompts) in enumerate(BENCHMARKS.items()):
        results[benchmark] = {"n_prompts": n_prompts, "samples_per_prompt": 8,
                              "avg@1": 0.0, "pass@1": 0.0,  # a smaller k, which the report must not pick
                              "avg@8": 0.2 + 0.1 * index + 0.01 * step + shift, "pass@8": 0.6 + 0.1 * index + 0.01 * step,
                              "prompts": {f"p{i}": [8, 2] for i in range(n_prompts)}}
    return {"meta": {"global_step": step, "experiment": experiment}, "results": results}


def _expected_eval_accuracy(step: int) -> tuple[float, float]:
    weights = list(BENCHMARKS.values())
    avg = [0.2 + 0.1 * i + 0.01 * step for i in range(len(weights))]
    pass_at = [0.6 + 0.1 * i + 0.01 * step for i in range(len(weights))]
    total = sum(weights)
    return (sum(w * a for w, a in zip(weights, avg)) / total, sum(w * p for w, p in zip(weights, pass_at)) / total)


def make_aero_run(root: Path, name: str = "aero_seed0", experiment: str = "aero_seed0", shift: float = 0.0) -> Path:
    """An AERO run: steps 1..6, validations at 0, 3, 6 (eval files), step 4 logged twice (a resume),
    step 2 without aero/posterior_brier; `shift` moves its accuracies and shares (another seed)."""
    run = root / name
    checkpoints = run / "checkpoints"
    records = [{"step": 0, "time": 1000.0, "metrics": _val_core(0, shift)}]
    for step in range(1, STEPS + 1):
        metrics = _training_metrics(step, aero=True, shift=shift)
        if step == 2:
            del metrics["aero/posterior_brier"]
        if step == 4:
            # Logged before a kill; the resumed run logs step 4 again with its own values.
            records.append({"step": 4, "time": 1000.0 + step, "metrics": {**metrics, "aero/rollouts_kept": 999.0}})
        records.append({"step": step, "time": 1100.0 + step, "metrics": metrics})
        if step in (3, 6):
            records.append({"step": step, "time": 1100.5 + step, "metrics": _val_core(step, shift)})
    _write_lines(checkpoints / "metrics.jsonl", records)
    for step in (0, 3, 6):
        table = _eval_table(step, experiment, shift)
        (checkpoints / "eval").mkdir(parents=True, exist_ok=True)
        (checkpoints / "eval" / f"step_{step}.json").write_text(json.dumps(table))
    return run


def make_grpo_run(root: Path, name: str = "grpo_seed0", shift: float = 0.0) -> Path:
    """A GRPO baseline: no aero/ keys, no eval files, validations at 0 and 6 merged into the step lines,
    step 5 without run/zero_variance_share."""
    checkpoints = root / name / "checkpoints"
    records = [{"step": 0, "time": 1000.0, "metrics": _val_core(0, shift)}]
    for step in range(1, STEPS + 1):
        metrics = _training_metrics(step, aero=False, shift=shift)
        if step == 5:
            del metrics["run/zero_variance_share"]
        if step == STEPS:
            metrics.update(_val_core(step, shift))
        records.append({"step": step, "time": 1100.0 + step, "metrics": metrics})
    _write_lines(checkpoints / "metrics.jsonl", records)
    return root / name


def _no_warnings(message: str) -> None:
    raise AssertionError(f"unexpected warning: {message}")


def test_last_line_wins_per_step_and_lines_of_a_step_merge(tmp_path):
    steps = read_metrics(make_aero_run(tmp_path) / "checkpoints" / "metrics.jsonl", _no_warnings)
    assert list(steps) == list(range(STEPS + 1))
    assert steps[4]["aero/rollouts_kept"] == 34.0  # the resumed run's line, not the 999 logged before the kill
    assert steps[3]["run/flops_cumulative"] == 3 * FLOPS_PER_STEP  # the training line of step 3 ...
    assert steps[3]["val-core/arith/L1/acc/mean@8"] == pytest.approx(0.26)  # ... merged with its validation


def test_per_step_series_tolerate_a_missing_key(tmp_path):
    run = load_run(make_aero_run(tmp_path), _no_warnings)
    steps, brier = run.per_step("aero/posterior_brier")
    assert steps.tolist() == [1, 2, 3, 4, 5, 6]  # step 0 is a validation only, not a training step
    assert math.isnan(brier[1]) and brier[0] == pytest.approx(0.19)
    assert run.is_aero
    baseline = load_run(make_grpo_run(tmp_path), _no_warnings)
    assert not baseline.is_aero
    assert math.isnan(baseline.per_step("run/zero_variance_share")[1][4])
    assert np.isnan(baseline.per_step("aero/budget")[1]).all()


def test_prompt_weighted_accuracy_from_eval_files(tmp_path):
    avg, pass_at, k = accuracy_from_eval(_eval_table(3, "x")["results"])
    assert k == 8
    assert (avg, pass_at) == pytest.approx(_expected_eval_accuracy(3))
    assert avg == pytest.approx((30 * 0.23 + 10 * 0.33) / 40)  # not the plain mean 0.28

    run = load_run(make_aero_run(tmp_path), _no_warnings)
    assert [v.step for v in run.validations] == [0, 3, 6]
    for validation in run.validations:
        assert (validation.avg, validation.pass_at) == pytest.approx(_expected_eval_accuracy(validation.step))
    assert run.experiment == "aero_seed0"


def test_accuracy_from_val_core_keys_without_eval_files(tmp_path):
    run = load_run(make_grpo_run(tmp_path), _no_warnings)
    assert [v.step for v in run.validations] == [0, STEPS]
    last = run.validations[-1]
    assert last.k == 8
    assert last.avg == pytest.approx((0.32 + 0.22) / 2)  # benchmarks weighted equally
    assert last.pass_at == pytest.approx((0.62 + 0.42) / 2)


def test_compute_and_wall_clock_axes_at_each_validation(tmp_path):
    run = load_run(make_aero_run(tmp_path), _no_warnings)
    assert run.validation_cost("run/flops_cumulative").tolist() == [0.0, 3 * FLOPS_PER_STEP, 6 * FLOPS_PER_STEP]
    assert run.validation_cost("run/wall_s_cumulative").tolist() == [0.0, 3 * WALL_S_PER_STEP, 6 * WALL_S_PER_STEP]
    # Before the first training step nothing is spent, logged or not; after it, a sum never logged is unknown.
    assert run.cumulative_at("run/never_logged_cumulative", 0) == 0.0
    assert math.isnan(run.cumulative_at("run/never_logged_cumulative", 3))


def test_labels_and_folders(tmp_path):
    aero = make_aero_run(tmp_path / "a", name="seed0", experiment="aero")
    other_seed = make_aero_run(tmp_path / "b", name="seed1", experiment="aero")
    grpo = make_grpo_run(tmp_path, name="grpo_seed0")
    # The checkpoints folder itself is a run folder too.
    runs, problems = load_runs([aero, other_seed / "checkpoints", grpo], warn=_no_warnings)
    assert problems == []
    assert [run.label for run in runs] == ["aero (seed0)", "aero (seed1)", "grpo_seed0"]
    assert [run.method for run in runs] == ["aero", "aero", "grpo"]


def test_write_report_png_of_the_intended_size(tmp_path):
    from matplotlib.image import imread

    runs = [make_aero_run(tmp_path), make_aero_run(tmp_path, "aero_seed1", "aero_seed1", shift=0.03),
            make_grpo_run(tmp_path), make_grpo_run(tmp_path, "grpo_seed1", shift=0.03)]
    path = write_report(runs, tmp_path / "out" / "report.png")
    assert Path(path) == tmp_path / "out" / "report.png"
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = imread(path).shape
    assert (width, height) == (FIGURE_INCHES[0] * DPI, FIGURE_INCHES[1] * DPI)


def test_default_out_path_is_in_the_run_folder(tmp_path):
    run = make_grpo_run(tmp_path)  # a baseline alone: the AERO panels say why they are empty
    assert write_report([run]) == str(run / "report.png")


def test_cli_prints_the_written_path(tmp_path):
    out = tmp_path / "cli.png"
    result = subprocess.run([sys.executable, "-m", "aero_verl.report", str(make_aero_run(tmp_path)),
                             str(make_grpo_run(tmp_path)), "--out", str(out)],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert out.is_file()


def test_import_stays_light():
    code = ("import sys, aero_verl.report, aero_verl.report.figure; "
            "heavy = [m for m in ('matplotlib', 'torch', 'verl', 'ray') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_unreadable_runs_are_named_and_the_others_drawn(tmp_path):
    no_metrics = tmp_path / "not_a_run"
    no_metrics.mkdir()
    empty = tmp_path / "empty_run"
    (empty / "checkpoints").mkdir(parents=True)
    (empty / "checkpoints" / "metrics.jsonl").write_text("\n")
    messages = []
    runs, problems = load_runs([no_metrics, empty, make_grpo_run(tmp_path)], warn=messages.append)
    assert [run.label for run in runs] == ["grpo_seed0"]
    assert "not_a_run: no metrics.jsonl" in problems[0]
    assert "metrics.jsonl: empty file" in problems[1]
    assert messages == []  # unreadable runs are problems, not warnings about a drawn run
    path = write_report([no_metrics, empty, make_grpo_run(tmp_path)], tmp_path / "partial.png")
    assert Path(path).is_file()


def test_a_corrupt_line_is_skipped_with_its_file_and_line_named(tmp_path):
    metrics = make_grpo_run(tmp_path) / "checkpoints" / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    lines[2] = lines[2][:25]  # half a line, as a killed run leaves it
    lines.insert(4, json.dumps({"step": "four", "data": {}}))
    metrics.write_text("\n".join(lines) + "\n")
    messages = []
    steps = read_metrics(metrics, messages.append)
    assert 2 not in steps and 3 in steps
    assert messages[0].startswith(f"{metrics} line 3: not JSON")
    assert messages[1].startswith(f"{metrics} line 5: not a record")

    metrics.write_text("garbage\n")
    with pytest.raises(RunReadError, match="none of its 1 lines is a metrics record"):
        read_metrics(metrics, messages.append)


def test_no_readable_run_is_an_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ReportError, match="nowhere: no such folder"):
        write_report([missing], tmp_path / "x.png")
    result = subprocess.run([sys.executable, "-m", "aero_verl.report", str(missing)],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 1
    assert "nowhere: no such folder" in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_a_broken_eval_file_falls_out_with_its_name(tmp_path):
    run = make_aero_run(tmp_path)
    broken = run / "checkpoints" / "eval" / "step_3.json"
    broken.write_text(json.dumps({"meta": {"global_step": 3}, "results": {"arith/L1": {"avg@8": 0.1}}}))
    messages = []
    loaded = load_run(run, messages.append)
    assert [v.step for v in loaded.validations] == [0, 6]
    assert messages == [f"{broken}: no k for which every benchmark reports avg@k and pass@k; "
                        f"this validation is not drawn"]


def test_moving_average_skips_steps_that_did_not_log():
    from aero_verl.report.figure import moving_average

    smoothed = moving_average(np.array([1.0, np.nan, 3.0, np.nan, np.nan, np.nan]), 3)
    assert smoothed[:3].tolist() == [1.0, 2.0, 3.0]
    assert smoothed[3] == 3.0 and np.isnan(smoothed[5])
