"""AERO against GRPO and DAPO through verl's real trainer: learning curves at equal compute, one command.

    python benchmarks/trainer_comparison.py [--task demo|long|qwen1.5b|...] [--arms ...] [--seeds 0 1 2] [--steps 100]
                                            [--val-every 20] [--report-only] [-- extra hydra overrides]

Arms (each a recipe plus overrides, every choice spelled out so an arm means the same whatever the
package's defaults; `--arms` picks some):
    aero            AERO with the paper's rescue rounds, verl's token-mean loss, smoothed advantages
    aero_per_group  ... with aero.loss_weighting=per_group (Theorem 4.1's normalisation)
    aero_constant   ... with aero.advantage_mode=constant (reading D of the posterior advantage)
    aero_barrier_free  ... with aero.rescue_mode=barrier_free
    aero_bf_per_group  barrier-free rescue and per-group weighting together
    grpo16          verl's GRPO at the same rollout budget, n = 16 per prompt
    grpo_equal_gen  verl's GRPO with n = AERO's mean generated rollouts per prompt (from the `aero` runs done,
                    rounded; 10 until one is)
    dapo            verl's DAPO dynamic sampling (algorithm.filter_groups) at the same train batch, n = 16

Every (arm, seed) run has its own folder `benchmarks/results/runs/<task>/<arm>/seed<k>/` and writes a
`result.json` there when it has finished (commit, overrides, per-step cost, per-validation accuracy with
per-prompt counts); the report aggregates whatever result files exist, so the benchmark runs in parts and
resumes: a run killed half-way is relaunched with its identical command and resumes from its checkpoint
(aero_verl's job folders are a function of the command). Runs are interleaved, seed by seed, so machine
noise falls on every arm alike. The seeds are the RL seeds (prompt order, rollout sampling, rejection); the
warm-started model is the same for all.

Report (`trainer_<task>.md/.json/.png` in --out): per arm, final held-out Avg@8 and Pass@8 and their
difference to grpo16 with paired bootstrap confidence intervals over prompts and seeds, cumulative FLOPs
(run/flops: the multiplier per trained token from the run's own config) and wall clock, compute-to-target
and wall-to-target for a target of 90% of grpo16's gain (the first validation reaching it, interpolated),
and AERO's bookkeeping cost (timing_s/aero_bookkeeping) as a share of the step. Every file records the
commit it was made at.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import commit  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / "results"
TASKS = {"demo": ("cpu_demo", "grpo_cpu_demo"), "long": ("cpu_long", "grpo_cpu_long"),
         # The paper's configurations, for a GPU cluster (not run in this project: no GPU here).
         "qwen1.5b": ("aero_qwen1.5b", "grpo_qwen1.5b"), "qwen7b": ("aero_qwen7b", "grpo_qwen7b"),
         "qwen7b_instruct": ("aero_qwen7b_instruct", "grpo_qwen7b_instruct")}
AERO_PAPER = {"aero.rescue_mode": "rounds", "aero.loss_weighting": "token_mean", "aero.advantage_mode": "smoothed"}
ARMS = {
    "aero": (0, AERO_PAPER),
    "aero_per_group": (0, {**AERO_PAPER, "aero.loss_weighting": "per_group"}),
    "aero_constant": (0, {**AERO_PAPER, "aero.advantage_mode": "constant"}),
    "aero_barrier_free": (0, {**AERO_PAPER, "aero.rescue_mode": "barrier_free"}),
    "aero_bf_per_group": (0, {**AERO_PAPER, "aero.rescue_mode": "barrier_free", "aero.loss_weighting": "per_group"}),
    "grpo16": (1, {}),
    "grpo_equal_gen": (1, {"actor_rollout_ref.rollout.n": "{equal_gen_n}"}),
    "dapo": (1, {"algorithm.filter_groups.enable": "True", "algorithm.filter_groups.metric": "reward"}),
}
DEFAULT_ARMS = ["aero", "aero_per_group", "aero_constant", "aero_barrier_free", "grpo16", "grpo_equal_gen", "dapo"]
BOOTSTRAP_SAMPLES = 2000
TARGET_SHARE = 0.9


def run_folder(out: Path, task: str, arm: str, seed: int) -> Path:
    return out / "runs" / task / arm / f"seed{seed}"


# ---------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------


def arm_command(task: str, arm: str, seed: int, steps: int, val_every: int, equal_gen_n: int,
                extra: list[str]) -> list[str]:
    recipe = TASKS[task][ARMS[arm][0]]
    overrides = [f"{key}={value.format(equal_gen_n=equal_gen_n)}" for key, value in ARMS[arm][1].items()]
    return [sys.executable, "-m", "aero_verl.main_ppo", f"+recipe={recipe}", *overrides,
            f"trainer.total_training_steps={steps}", f"trainer.test_freq={val_every}", "trainer.save_freq=25",
            "trainer.val_before_train=True", f"data.seed={seed}", f"actor_rollout_ref.rollout.seed={seed}",
            f"aero.seed={seed}", f"trainer.experiment_name={arm}_seed{seed}", *extra]


def train(folder: Path, command: list[str]) -> None:
    """One run in its own folder; relaunching the identical command resumes it (job folder = command)."""
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with open(folder / "console.log", "a") as log:
        code = subprocess.run(command + [f"hydra.run.dir={folder / 'job'}"], cwd=folder, stdout=log,
                              stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise RuntimeError(f"{folder} failed (exit {code}); see {folder / 'console.log'} and {folder / 'job' / 'run.log'}")
    print(f"  {folder}: {time.time() - started:.0f} s", flush=True)


def read_metrics(path: Path) -> dict[int, dict]:
    steps: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        steps.setdefault(record["step"], {}).update(record["metrics"])
    return steps


def run_result(folder: Path, task: str, arm: str, seed: int, command: list[str]) -> dict:
    """The finished run's result.json: everything the report needs, nothing else."""
    checkpoints = folder / "job" / "checkpoints"
    metrics = read_metrics(checkpoints / "metrics.jsonl")
    steps = sorted(step for step, m in metrics.items() if "timing_s/step" in m)
    cost_keys = ("run/flops", "run/wall_s", "run/tokens_generated", "run/tokens_trained", "run/rollouts_generated",
                 "run/rollouts_trained", "run/zero_variance_share", "timing_s/gen", "timing_s/step",
                 "timing_s/old_log_prob", "timing_s/update_actor", "timing_s/aero_bookkeeping", "aero/rescue_tail_s",
                 "aero/generation_phases", "aero/rollouts_stopped", "aero/tokens_stopped", "aero/prompts")
    per_step = [{"step": step, **{key: metrics[step][key] for key in cost_keys if key in metrics[step]}}
                for step in steps]
    validations = []
    for path in sorted((checkpoints / "eval").glob("step_*.json"), key=lambda p: int(p.stem.split("_")[1])):
        results = json.loads(path.read_text())["results"]
        step = int(path.stem.split("_")[1])
        prompts = {f"{benchmark}/{pid}": counts for benchmark, row in results.items()
                   for pid, counts in row.get("prompts", {}).items()}
        cumulative = {key: float(sum(row.get(key, 0.0) for row in per_step if row["step"] <= step))
                      for key in ("run/flops", "run/wall_s")}
        validations.append({"step": step, "flops": cumulative["run/flops"], "wall_s": cumulative["run/wall_s"],
                            "prompts": prompts})
    return {"task": task, "arm": arm, "seed": seed, "commit": commit(), "command": shlex.join(command[1:]),
            "per_step": per_step, "validations": validations}


def equal_generation_n(out: Path, task: str) -> int:
    """AERO's mean generated rollouts per prompt over the finished `aero` runs, rounded (10 if none)."""
    means = []
    for path in (out / "runs" / task / "aero").glob("seed*/result.json"):
        rows = json.loads(path.read_text())["per_step"]
        means += [row["run/rollouts_generated"] / row["aero/prompts"] for row in rows if "aero/prompts" in row]
    return int(round(float(np.mean(means)))) if means else 10


def run_all(args) -> None:
    for seed in args.seeds:  # seed-major: every arm of a seed before the next seed (interleaved arms)
        for arm in args.arms:
            folder = run_folder(args.out, args.task, arm, seed)
            if (folder / "result.json").exists():
                continue
            command = arm_command(args.task, arm, seed, args.steps, args.val_every,
                                  equal_generation_n(args.out, args.task), args.overrides)
            train(folder, command)
            (folder / "result.json").write_text(json.dumps(run_result(folder, args.task, arm, seed, command), indent=1))


# ---------------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------------


def accuracy(validation: dict, metric: str, k: int = 8) -> float:
    """Prompt-weighted Avg@k or Pass@k of one validation (every held-out prompt counts once)."""
    counts = np.array(list(validation["prompts"].values()), dtype=np.float64)
    if metric == "avg":
        return float(np.mean(counts[:, 1] / counts[:, 0]))
    return float(np.mean(per_prompt_pass(counts, k)))


def per_prompt_pass(counts: np.ndarray, k: int) -> np.ndarray:
    """Unbiased pass@k per prompt from (n, c) rows (aero_verl.eval.passk)."""
    from aero_verl.eval.passk import unbiased_pass_at_k

    return np.asarray(unbiased_pass_at_k(counts[:, 0].astype(int), counts[:, 1].astype(int), k), dtype=np.float64)


def prompt_scores(validation: dict, metric: str) -> dict[str, float]:
    counts = {pid: np.array(c, dtype=np.float64) for pid, c in validation["prompts"].items()}
    if metric == "avg":
        return {pid: c[1] / c[0] for pid, c in counts.items()}
    table = np.array(list(counts.values()))
    return dict(zip(counts, per_prompt_pass(table, 8)))


def paired_bootstrap(arm_runs: dict[int, dict], base_runs: dict[int, dict], metric: str,
                     rng: np.random.Generator) -> dict:
    """Final-validation difference arm - base, paired by seed and prompt; 95% CI resampling seeds, then
    prompts within each seed (two-level bootstrap)."""
    seeds = sorted(set(arm_runs) & set(base_runs))
    if not seeds:
        return {}
    differences = []
    for seed in seeds:
        ours, theirs = prompt_scores(arm_runs[seed]["validations"][-1], metric), \
            prompt_scores(base_runs[seed]["validations"][-1], metric)
        shared = sorted(set(ours) & set(theirs))
        differences.append(np.array([ours[p] - theirs[p] for p in shared]))
    point = float(np.mean([d.mean() for d in differences]))
    draws = np.empty(BOOTSTRAP_SAMPLES)
    for b in range(BOOTSTRAP_SAMPLES):
        chosen = rng.integers(0, len(differences), len(differences))
        draws[b] = np.mean([differences[s][rng.integers(0, differences[s].size, differences[s].size)].mean()
                            for s in chosen])
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"mean": point, "ci95": [float(low), float(high)], "seeds": len(seeds)}


def cost_to_target(run: dict, target: float, cost: str) -> float | None:
    """Cumulative cost at the first validation reaching the target, interpolated from the one before."""
    curve = [(v[cost], accuracy(v, "avg")) for v in run["validations"]]
    for (c0, a0), (c1, a1) in zip(curve, curve[1:]):
        if a1 >= target:
            return c0 + (c1 - c0) * (target - a0) / (a1 - a0) if a1 > a0 else c1
    return None


def summarise(runs: dict[str, dict[int, dict]], rng: np.random.Generator) -> dict:
    base = runs.get("grpo16", {})
    targets = {seed: (accuracy(r["validations"][0], "avg")
                      + TARGET_SHARE * (accuracy(r["validations"][-1], "avg") - accuracy(r["validations"][0], "avg")))
               for seed, r in base.items()}
    summary = {}
    for arm, by_seed in runs.items():
        entry = {"seeds": sorted(by_seed)}
        for metric in ("avg", "pass"):
            finals = [accuracy(r["validations"][-1], metric) for r in by_seed.values()]
            starts = [accuracy(r["validations"][0], metric) for r in by_seed.values()]
            entry[f"final_{metric}@8"] = spread(finals)
            entry[f"gain_{metric}@8"] = spread(np.subtract(finals, starts))
            if arm != "grpo16":
                entry[f"diff_{metric}@8_vs_grpo16"] = paired_bootstrap(by_seed, base, metric, rng)
        for cost in ("flops", "wall_s"):
            entry[f"total_{cost}"] = spread([r["validations"][-1][cost] for r in by_seed.values()])
            ratios = []
            for seed, r in by_seed.items():
                if seed in base and seed in targets:
                    ours, theirs = cost_to_target(r, targets[seed], cost), cost_to_target(base[seed], targets[seed], cost)
                    ratios.append(np.nan if ours is None or not theirs else ours / theirs)
            entry[f"{cost}_to_target_vs_grpo16"] = spread(ratios)
            if base:
                entry[f"{cost}_vs_grpo16"] = spread([r["validations"][-1][cost] / base[s]["validations"][-1][cost]
                                                     for s, r in by_seed.items() if s in base])
        steps = [row for r in by_seed.values() for row in r["per_step"] if row["step"] > 1]
        for key in ("timing_s/step", "timing_s/gen", "run/rollouts_generated", "run/tokens_generated",
                    "run/tokens_trained", "aero/generation_phases", "aero/rescue_tail_s", "aero/rollouts_stopped"):
            values = [row[key] for row in steps if key in row]
            if values:
                entry[f"mean_{key}"] = float(np.mean(values))
        bookkeeping = [row["timing_s/aero_bookkeeping"] / row["timing_s/step"] for row in steps
                       if "timing_s/aero_bookkeeping" in row]
        if bookkeeping:
            entry["bookkeeping_share_of_step"] = float(np.mean(bookkeeping))
        summary[arm] = entry
    return summary


def spread(values) -> dict:
    array = np.asarray(values, dtype=np.float64)
    finite = array[np.isfinite(array)]
    return {"mean": float(finite.mean()) if finite.size else None,
            "std": float(finite.std(ddof=1)) if finite.size > 1 else None,
            "missing": int(array.size - finite.size), "values": [None if not np.isfinite(v) else float(v) for v in array]}


# ---------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------


def load_runs(out: Path, task: str) -> dict[str, dict[int, dict]]:
    runs: dict[str, dict[int, dict]] = {}
    for path in sorted((out / "runs" / task).glob("*/seed*/result.json")):
        result = json.loads(path.read_text())
        runs.setdefault(result["arm"], {})[result["seed"]] = result
    return {arm: runs[arm] for arm in ARMS if arm in runs}


def fmt(entry: dict, digits: int = 3) -> str:
    if not entry or entry.get("mean") is None:
        return "-"
    text = f"{entry['mean']:.{digits}f}"
    if entry.get("std") is not None:
        text += f" ± {entry['std']:.{digits}f}"
    return text + (f" ({entry['missing']} not reached)" if entry.get("missing") else "")


def fmt_ci(entry: dict) -> str:
    if not entry:
        return "-"
    return f"{entry['mean']:+.3f} [{entry['ci95'][0]:+.3f}, {entry['ci95'][1]:+.3f}]"


def write_report(out: Path, task: str, runs: dict, summary: dict, command: str) -> list[Path]:
    name = f"trainer_{task}"
    any_run = next(iter(next(iter(runs.values())).values()))
    steps = any_run["per_step"][-1]["step"] if any_run["per_step"] else 0
    lines = [f"Command: `{command}`", "", f"Commit: {commit()}", "",
             f"# AERO vs GRPO and DAPO through verl's real trainer ({task} task)", "",
             f"{steps} steps per run; seeds per arm in the table. Accuracy: held-out Avg@8 and Pass@8 over all "
             "held-out prompts. Differences to grpo16: mean over seeds of the per-prompt differences at the last "
             "validation, 95% paired bootstrap CI over seeds and prompts. Cost: run/flops (2 x params x "
             "generated tokens + m x params x trained tokens, m from the run's config) and the wall clock of the "
             "training steps (timing_s/step). To target: the cost at which held-out Avg@8 first reaches the "
             f"start + {TARGET_SHARE:g} x grpo16's gain (same seed), over grpo16's; mean ± std over seeds.", "",
             "| arm | seeds | final Avg@8 | Avg@8 - grpo16 [95% CI] | final Pass@8 | Pass@8 - grpo16 [95% CI] | "
             "FLOPs / grpo16 | wall / grpo16 | FLOPs to target / grpo16 | wall to target / grpo16 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for arm, entry in summary.items():
        lines.append(f"| {arm} | {len(entry['seeds'])} | {fmt(entry['final_avg@8'])} | "
                     f"{fmt_ci(entry.get('diff_avg@8_vs_grpo16', {}))} | {fmt(entry['final_pass@8'])} | "
                     f"{fmt_ci(entry.get('diff_pass@8_vs_grpo16', {}))} | {fmt(entry.get('flops_vs_grpo16', {}))} | "
                     f"{fmt(entry.get('wall_s_vs_grpo16', {}))} | {fmt(entry.get('flops_to_target_vs_grpo16', {}))} | "
                     f"{fmt(entry.get('wall_s_to_target_vs_grpo16', {}))} |")
    lines += ["", "## Per step (means over steps 2..N and seeds)", "",
              "| arm | step s | gen s | generated rollouts | generated tokens | trained tokens | generation phases "
              "| rescue tail s | stopped rollouts | AERO bookkeeping / step |", "|---|---|---|---|---|---|---|---|---|---|"]
    for arm, entry in summary.items():
        def cell(key, digits=2):
            value = entry.get(f"mean_{key}")
            return "-" if value is None else f"{value:.{digits}f}"
        share = entry.get("bookkeeping_share_of_step")
        lines.append(f"| {arm} | {cell('timing_s/step')} | {cell('timing_s/gen')} | {cell('run/rollouts_generated', 0)} | "
                     f"{cell('run/tokens_generated', 0)} | {cell('run/tokens_trained', 0)} | "
                     f"{cell('aero/generation_phases', 1)} | {cell('aero/rescue_tail_s')} | "
                     f"{cell('aero/rollouts_stopped', 1)} | {'-' if share is None else f'{share:.2%}'} |")
    lines += ["", "Runs: " + ", ".join(f"{arm} {sorted(by_seed)}" for arm, by_seed in runs.items()), ""]
    md = out / f"{name}.md"
    md.write_text("\n".join(lines))
    js = out / f"{name}.json"
    js.write_text(json.dumps({"command": command, "commit": commit(), "task": task, "summary": summary}, indent=1))
    png = out / f"{name}.png"
    plot(png, runs)
    return [md, js, png]


def plot(path: Path, runs: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(18, 5.2))
    colors = plt.get_cmap("tab10")
    for index, (arm, by_seed) in enumerate(runs.items()):
        for seed, run in sorted(by_seed.items()):
            v = run["validations"]
            label = arm if seed == min(by_seed) else None
            avg = [accuracy(x, "avg") for x in v]
            axes[0].plot([x["flops"] / 1e12 for x in v], avg, color=colors(index), alpha=0.8, marker=".", label=label)
            axes[1].plot([x["wall_s"] / 60 for x in v], avg, color=colors(index), alpha=0.8, marker=".", label=label)
            axes[2].plot([x["step"] for x in v], [accuracy(x, "pass") for x in v], color=colors(index), alpha=0.8,
                         marker=".", label=label)
    axes[0].set(xlabel="cumulative compute (TFLOPs, estimated)", ylabel="held-out Avg@8", title="Avg@8 vs compute")
    axes[1].set(xlabel="cumulative training wall clock (min)", ylabel="held-out Avg@8", title="Avg@8 vs wall clock")
    axes[2].set(xlabel="training step", ylabel="held-out Pass@8", title="Pass@8 vs step")
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("AERO vs GRPO and DAPO through verl's trainer (one line per seed)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(TASKS), default="demo")
    parser.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=DEFAULT_ARMS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--val-every", type=int, default=20)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--report-only", action="store_true", help="aggregate the result files there are")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run (after --)")
    args = parser.parse_args(argv)
    args.arms = [arm for arm in ARMS if arm in args.arms]  # the table's order; grpo_equal_gen after aero
    command = "python benchmarks/trainer_comparison.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    if not args.report_only:
        run_all(args)
    runs = load_runs(args.out, args.task)
    if not runs:
        raise SystemExit(f"no result files under {args.out / 'runs' / args.task}")
    paths = write_report(args.out, args.task, runs, summarise(runs, np.random.default_rng(0)), command.strip())
    print(paths[0].read_text())


if __name__ == "__main__":
    main()
