"""A GPU projection of AERO's rescue modes and GRPO-16, from the rollouts the CPU runs logged. A MODEL.

    python benchmarks/gpu_projection.py [--task long] [--runs benchmarks/results/runs] [--prompts 128]
                                        [--max-tokens 3072] [--steps 200]

The CPU runs of benchmarks/trainer_comparison.py log every rollout of every step (rollouts.jsonl: prompt,
Stage I or rescue, generation phase, length, stopped). This replays them in the paper-like setting: each
projected step draws `--prompts` prompt-steps at random from one arm's logged steps (a prompt-step keeps its
whole structure: how many rollouts, which phase each ran in, which were stopped), scales every length to
`--max-tokens` in proportion to the CPU run's response limit, and times the step with
phase_model.PhaseCostModel: generation phases one after the other, each ending with its slowest response, a
barrier-free rescue starting when its own prompt's Stage I has ended, plus training time per trained
token. The assumptions are printed beside the numbers; nothing here was measured on a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from phase_model import PhaseCostModel  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ARMS = ("aero", "aero_barrier_free", "grpo16")


def prompt_steps(run_folder: Path) -> list[dict]:
    """Every (step, prompt) of a run as its rollouts' arrays (group dropped)."""
    path = run_folder / "job" / "checkpoints" / "rollouts.jsonl"
    units = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        group = np.asarray(record["group"])
        columns = {name: np.asarray(record[name]) for name in ("length", "success")}
        columns["stage1"] = np.asarray(record.get("stage1", np.ones(group.size, dtype=int)), dtype=bool)
        columns["phase"] = np.asarray(record.get("phase", np.zeros(group.size, dtype=int)))
        columns["stopped"] = np.asarray(record.get("stopped", np.zeros(group.size, dtype=int)), dtype=bool)
        columns["kept"] = np.asarray(record.get("kept", np.ones(group.size, dtype=int)), dtype=bool)
        for g in np.unique(group):
            rows = group == g
            units.append({name: values[rows] for name, values in columns.items()})
    return units


def trained_tokens(unit: dict) -> float:
    """Tokens the run trained from a prompt-step: its kept rollouts (AERO logs them), else all (GRPO)."""
    return float(unit["length"][unit["kept"]].sum())


def project(units: list[dict], model: PhaseCostModel, prompts: int, scale: float, steps: int,
            rng: np.random.Generator) -> np.ndarray:
    times = np.empty(steps)
    for s in range(steps):
        chosen = [units[i] for i in rng.integers(0, len(units), prompts)]
        group = np.concatenate([np.full(u["length"].size, g) for g, u in enumerate(chosen)])
        stage1 = np.concatenate([u["stage1"] for u in chosen])
        phase = np.concatenate([u["phase"] for u in chosen])
        lengths = np.maximum(np.rint(np.concatenate([u["length"] for u in chosen]) * scale).astype(np.int64), 1)
        times[s] = model.step_time(group, stage1, phase, lengths, scale * sum(trained_tokens(u) for u in chosen))
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="long")
    parser.add_argument("--runs", type=Path, default=REPO / "benchmarks" / "results" / "runs")
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=3072)
    parser.add_argument("--cpu-max-tokens", type=int, default=None,
                        help="the CPU runs' response limit (default: the longest response logged)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    model = PhaseCostModel()
    # Finished runs only (trainer_comparison writes result.json at a run's end): a run still going is skipped.
    finished = {arm: sorted(path.parent for path in (args.runs / args.task / arm).glob("seed*/result.json"))
                for arm in ARMS}
    units = {arm: [u for folder in folders for u in prompt_steps(folder)] for arm, folders in finished.items() if folders}
    if "grpo16" not in units or len(units) < 2:
        raise SystemExit(f"need logged runs of grpo16 and an AERO arm under {args.runs / args.task}")
    cpu_max = args.cpu_max_tokens or max(int(u["length"].max()) for arm_units in units.values() for u in arm_units)
    scale = args.max_tokens / cpu_max
    rng = np.random.default_rng(0)
    times = {arm: project(arm_units, model, args.prompts, scale, args.steps, rng)
             for arm, arm_units in units.items()}
    lines = [f"Command: `python benchmarks/gpu_projection.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
             "", f"# GPU projection of the {args.task} task's CPU rollouts (a model, not a measurement)", "",
             f"Assumptions: {args.prompts} prompts per step drawn from the logged prompt-steps of each arm; "
             f"response lengths scaled by {scale:.1f} (CPU limit {cpu_max} tokens -> {args.max_tokens}); "
             f"engine: {model.describe()} (phase_model.py); each prompt-step trains the rollouts its run kept.", "",
             "| arm | projected step s | / grpo16 |", "|---|---|---|"]
    base = times["grpo16"].mean()
    for arm, values in times.items():
        lines.append(f"| {arm} | {values.mean():.1f} ± {values.std():.1f} | {values.mean() / base:.2f} |")
    text = "\n".join(lines) + "\n"
    (args.out / f"gpu_projection_{args.task}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
