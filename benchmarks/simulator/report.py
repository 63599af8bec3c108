"""Outputs of a simulator run: simulator.json, simulator.md and three PNG plots (matplotlib, Agg)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from provenance import commit
from simulator.experiment import REFERENCE, SimulationConfig, config_dict

PLOT_FILES = {
    "compute_vs_success": "simulator_compute_vs_success.png",
    "zero_advantage": "simulator_zero_advantage.png",
    "rollouts": "simulator_rollouts.png",
}

# (metric, column title, format, scale) of the per-policy table.
POLICY_COLUMNS = [
    ("rollouts_generated_per_step", "generated / step", "{:.0f}", 1.0),
    ("tokens_generated_per_step", "gen. tokens / step (k)", "{:.0f}", 1e-3),
    ("rollouts_trained_per_step", "trained / step", "{:.0f}", 1.0),
    ("tokens_trained_per_step", "trained tokens / step (k)", "{:.0f}", 1e-3),
    ("generation_rounds_per_step", "gen. rounds / step", "{:.1f}", 1.0),
    ("budget_use_max", "max gen. / budget", "{:.2f}", 1.0),
    ("zero_advantage_share_generated", "zero-adv. share of gen. groups", "{:.3f}", 1.0),
    ("signal_per_generated_rollout", "signal / gen. rollout", "{:.4f}", 1.0),
    ("signal_per_trained_rollout", "signal / trained rollout", "{:.4f}", 1.0),
    ("final_mean_success", "final mean success", "{:.3f}", 1.0),
    ("steps_to_target", "steps to target", "{:.0f}", 1.0),
    ("compute_ratio_vs_grpo16", "compute vs GRPO16", "{:.3f}", 1.0),
    ("wall_ratio_vs_grpo16", "modelled wall vs GRPO16", "{:.3f}", 1.0),
    ("compute_to_target_ratio_vs_grpo16", "compute to target vs GRPO16", "{:.3f}", 1.0),
]

HEADLINE_COLUMNS = [
    ("compute_ratio_vs_grpo16", "compute saving vs GRPO16", "saving"),
    ("wall_ratio_vs_grpo16", "modelled wall saving vs GRPO16", "saving"),
    ("accuracy_diff_vs_grpo16", "final mean success - GRPO16", "signed"),
    ("compute_to_target_ratio_vs_grpo16", "compute to target vs GRPO16", "ratio"),
    ("wall_to_target_ratio_vs_grpo16", "modelled wall to target vs GRPO16", "ratio"),
    ("wall_to_target_ratio_vs_dapo", "modelled wall to target / DAPO's", "ratio"),
    ("gain_ratio_vs_oracle", "success gain / oracle's", "ratio"),
    ("signal_per_generated_ratio_vs_oracle", "signal per gen. rollout / oracle's", "ratio"),
    ("compute_to_target_ratio_vs_oracle", "compute to target / oracle's", "ratio"),
    ("compute_to_target_ratio_vs_dapo", "compute to target / DAPO's", "ratio"),
    ("generated_ratio_vs_dapo", "generated / DAPO's", "ratio"),
]


def write_outputs(out_dir: Path, command: str, cfg: SimulationConfig, definitions: dict[str, str],
                  summary: dict, curves: dict, wall_time_s: float) -> list[Path]:
    """Write JSON, Markdown and plots into out_dir; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"command": command, "commit": commit(), "wall_time_s": wall_time_s, "config": config_dict(cfg),
               "policies": definitions, "summary": summary, "curves": curves}
    json_path = out_dir / "simulator.json"
    json_path.write_text(json.dumps(payload, indent=1) + "\n")
    md_path = out_dir / "simulator.md"
    md_path.write_text(markdown(command, cfg, definitions, summary, wall_time_s))
    return [json_path, md_path, *plot_all(out_dir, cfg, summary, curves)]


def mean_std(entry: dict, fmt: str, scale: float = 1.0) -> str:
    """'mean ± std', and how many seeds are missing (target never reached)."""
    if entry["mean"] is None:
        return "not reached"
    text = f"{fmt.format(entry['mean'] * scale)} ± {fmt.format(entry['std'] * scale)}"
    return text + (f" ({entry['missing']} seed(s) not reached)" if entry["missing"] else "")


def headline_cell(entry: dict, kind: str) -> str:
    if entry["mean"] is None:
        return "not reached"
    if kind == "saving":  # 1 - ratio, in percent
        return f"{100 * (1 - entry['mean']):.1f}% ± {100 * entry['std']:.1f}"
    if kind == "signed":
        return f"{entry['mean']:+.4f} ± {entry['std']:.4f}"
    return mean_std(entry, "{:.3f}")


def markdown(command: str, cfg: SimulationConfig, definitions: dict[str, str], summary: dict,
             wall_time_s: float) -> str:
    budget = cfg.batch_size * cfg.n_total
    cost = cfg.cost
    target = summary[REFERENCE]["target_mean_success"]["mean"]
    lines = [
        f"Command: `{command}`",
        "",
        f"Commit: {commit()}",
        "",
        "# Rollout-allocation simulator: AERO against the alternatives at equal rollout budget",
        "",
        f"{cfg.seeds} seeds x {cfg.steps} steps, {cfg.population.prompts} prompts, batch B = {cfg.batch_size} "
        f"prompts, n_total = {cfg.n_total}; equal budget = B x {cfg.n_total} = {budget} generated rollouts per step. "
        f"Run time {wall_time_s:.1f} s. Values are mean ± standard deviation over seeds.",
        "",
        f"Models (not measurements). Compute = {cost.params:.3g} params x ({cost.generation_flops_per_token:g} x "
        f"generated tokens + {cost.training_flops_per_token:g} x trained tokens), response tokens only. Wall clock: "
        f"benchmarks/phase_model.py ({cfg.phases.describe()}): generation phases one after the other, each "
        "waiting for its slowest response, plus training time per trained token. Signal: Theorem 4.1's f(c, m) "
        "per trained mixed group (plus the expected projection of AERO's non-zero advantages on zero-variance "
        "groups), times the group's weight under the step's loss weighting (token-mean: G x its share of the "
        f"trained tokens; per_group: 1), plus gradient noise of sd {cfg.population.noise_sd:g} x that weight / "
        "sqrt(trained rollouts). Target: initial mean success + "
        f"{cfg.target_gain_share:g} x GRPO n=16's gain over the run (mean target {target:.3f}).",
        "",
        "dapo and greso are run as published: their regeneration is not charged against the budget, and the "
        "'max gen. / budget' column shows by how much they exceed it; grpo_n16_filtered is DAPO with the "
        "regeneration charged (one round spends the budget). All other policies stay within the budget.",
        "",
        "## AERO and its variants against GRPO n=16, the oracle and DAPO",
        "",
        "| policy | " + " | ".join(title for _, title, _ in HEADLINE_COLUMNS) + " |",
        "|---" * (len(HEADLINE_COLUMNS) + 1) + "|",
    ]
    for name in summary:
        if name.startswith("aero"):
            cells = [headline_cell(summary[name][metric], kind) for metric, _, kind in HEADLINE_COLUMNS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Every policy",
        "",
        "| policy | " + " | ".join(column[1] for column in POLICY_COLUMNS) + " |",
        "|---" * (len(POLICY_COLUMNS) + 1) + "|",
    ]
    for name, metrics in summary.items():
        cells = [mean_std(metrics[metric], fmt, scale) for metric, _, fmt, scale in POLICY_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Policies", ""]
    lines += [f"- `{name}`: {text}" for name, text in definitions.items()]
    lines += ["", "Plots: " + ", ".join(f"`{file}`" for file in PLOT_FILES.values()) + ".", ""]
    return "\n".join(lines)


def plot_all(out_dir: Path, cfg: SimulationConfig, summary: dict, curves: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for key, draw in (("compute_vs_success", _compute_vs_success), ("zero_advantage", _zero_advantage),
                      ("rollouts", _rollouts)):
        figure, axes = plt.subplots(figsize=(9, 5.5))
        draw(axes, cfg, summary, curves)
        figure.tight_layout()
        path = out_dir / PLOT_FILES[key]
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)
    return paths


def _style(name: str) -> dict:
    """Baselines dashed, AERO solid, the oracle black."""
    if name == "oracle":
        return {"color": "black", "linestyle": "-", "linewidth": 2}
    return {"linestyle": "-" if name.startswith("aero") else "--", "linewidth": 2 if name == "aero" else 1.3}


def _compute_vs_success(axes, cfg: SimulationConfig, summary: dict, curves: dict) -> None:
    for name, series in curves.items():
        axes.plot(np.asarray(series["cumulative_compute_flops"]) / 1e18, series["mean_success"], label=name,
                  **_style(name))
    axes.axhline(summary[REFERENCE]["target_mean_success"]["mean"], color="grey", linestyle=":", label="target")
    axes.set_xlabel(f"cumulative compute (1e18 FLOPs, {cfg.cost.params:.3g}-parameter model)")
    axes.set_ylabel("population mean success")
    axes.set_title(f"Compute vs mean success (mean of {cfg.seeds} seeds)")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)


def _zero_advantage(axes, cfg: SimulationConfig, summary: dict, curves: dict) -> None:
    for name, series in curves.items():
        axes.plot(np.arange(1, cfg.steps + 1), series["zero_advantage_share_generated"], label=name, **_style(name))
    axes.set_xlabel("step")
    axes.set_ylabel("share of generated groups with zero advantage (plain GRPO)")
    axes.set_title(f"Zero-advantage groups among generated groups (mean of {cfg.seeds} seeds)")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)


def _rollouts(axes, cfg: SimulationConfig, summary: dict, curves: dict) -> None:
    names = list(summary)
    x = np.arange(len(names))
    width = 0.4
    for offset, metric, label in ((-width / 2, "rollouts_generated_per_step", "generated"),
                                  (width / 2, "rollouts_trained_per_step", "trained")):
        axes.bar(x + offset, [summary[n][metric]["mean"] for n in names], width,
                 yerr=[summary[n][metric]["std"] for n in names], label=label, capsize=3)
    axes.axhline(cfg.batch_size * cfg.n_total, color="black", linestyle=":", label="budget B x n_total")
    axes.set_xticks(x, names, rotation=30, ha="right")
    axes.set_ylabel("rollouts per step")
    axes.set_title(f"Generated vs trained rollouts per step (mean ± std over {cfg.seeds} seeds)")
    axes.legend()
    axes.grid(axis="y", alpha=0.3)
