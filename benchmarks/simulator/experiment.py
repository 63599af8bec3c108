"""Runs every policy on the same population over seeds and steps, and summarises the runs.

Every policy is one AEROStep (aero_verl.core) with its own StepPolicies, driven by `AEROStep.run` with the
population's sampler and the prompt stream: the very object the verl trainer drives. For a seed, every
policy starts from the same population and reads prompts in the same shuffled order; only the rollout
draws differ. Ratios against GRPO n=16, DAPO and the oracle pair runs of the same seed.

Cost model: compute = params x (2 x generated tokens + 8 x trained tokens) (generation is a forward pass;
training is forward, backward and the old log-prob pass; response tokens only); wall clock from
phase_model.PhaseCostModel (generation phases, each waiting for its slowest response, plus training time
per trained token). Both are models; their parameters are printed with the results.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from aero_verl.core import AEROConfig, AEROStep, BetaPosteriorTable
from aero_verl.core.policies import registry
from aero_verl.core.policies import (
    DynamicSampling,
    FixedExploration,
    GroupAdvantages,
    KeepAll,
    KeepInformative,
    NoRescue,
    SingleBatch,
    StepPolicies,
    TokenMeanWeighting,
    aero_policies,
)
from phase_model import PhaseCostModel
from simulator.measure import measure_step
from simulator.peers import GRESOFill, Oracle
from simulator.population import Population, PopulationConfig, PromptStream

REFERENCE = "grpo_n16"


@dataclass(frozen=True)
class CostModel:
    """The compute model.

    Attributes:
        params: Model parameters (Qwen2.5-Math-1.5B); ratios do not depend on it.
        generation_flops_per_token: FLOPs per parameter per generated token (a forward pass).
        training_flops_per_token: FLOPs per parameter per trained token (forward, backward, old log-prob).
    """

    params: float = 1.5e9
    generation_flops_per_token: float = 2.0
    training_flops_per_token: float = 8.0


@dataclass(frozen=True)
class SimulationConfig:
    """One simulator run.

    Attributes:
        seeds: Independent populations and rollout draws; results are mean and spread over them.
        steps: Training steps per policy and seed.
        batch_size: Prompts per step (B); the rollout budget per step is B * n_total.
        n_total: Rollouts per prompt (GRPO's group size, AERO's per-query cap).
        max_gen_rounds: Generation rounds a dynamic-sampling step may run (the oracle reads at most this
            many chunks of B prompts).
        oracle_min_mixed_probability: The oracle skips prompts less likely than this to give a mixed
            group within n_total draws.
        target_gain_share: Cost to target is measured at initial + this share of the mean-success gain
            GRPO n=16 makes over the run (same seed).
        population: The prompt population and its learning rule.
        cost: The compute model.
        phases: The wall-clock model of generation phases and training.
    """

    seeds: int = 10
    steps: int = 200
    batch_size: int = 128
    n_total: int = 16
    max_gen_rounds: int = 10
    oracle_min_mixed_probability: float = 0.05
    target_gain_share: float = 0.8
    population: PopulationConfig = field(default_factory=PopulationConfig)
    cost: CostModel = field(default_factory=CostModel)
    phases: PhaseCostModel = field(default_factory=PhaseCostModel)


POLICY_DEFINITIONS = {
    "grpo_n8": "uniform GRPO, B prompts x 8 rollouts, every rollout trained (half the budget).",
    "grpo_n16": "uniform GRPO, B prompts x 16 rollouts, every rollout trained (zero-variance groups cost "
                "training compute and carry no signal, as in verl). The reference.",
    "grpo_n16_filtered": "DAPO with its regeneration charged against the budget: B x 16 spends it in one round, "
                         "so this is GRPO n=16 that skips training zero-variance groups.",
    "dapo": "DAPO dynamic sampling: rounds of B fresh prompts x 16, zero-variance groups dropped, until B "
            "informative groups (surplus discarded) or max_gen_rounds rounds; generation beyond the budget "
            "is reported, not charged.",
    "greso": "GRESO: probabilistic pre-rollout skip of prompts all-correct/all-wrong in their recent visits "
             "(1 - max(p^count, 0.01), adaptive p_easy/p_hard, target zero-variance share 0.25), then the "
             "same dynamic sampling at n=16 with adaptive refill sizes; generation beyond the budget reported.",
    "aero": "AERO with the package defaults, AEROConfig() (per-query cap 16, n_explore 8, n_extra 2, k 1, "
            "rounds rescue, smoothed advantage, token_mean loss weighting, fixed exploration).",
    "aero_no_rejection": "AERO with k = 16 (every incorrect rollout kept: selective rejection off).",
    "aero_pooled": "AERO with budget_mode='pooled' (the batch shares B x 16).",
    "oracle": "knows every prompt's p: skips prompts with P(mixed within 16) < oracle_min_mixed_probability, "
              "samples the rest in order of mixed groups per expected rollout, one rollout at a time until "
              "both outcomes appear, trains only the balanced pair; within the budget, at most B groups.",
}

def aero_variants() -> dict[str, dict]:
    """The defaults, one variant per registered policy other than the default of its kind (so a new policy
    module appears here with no edit), and the variants that change a number rather than a policy."""
    variants = {"aero": {}}
    defaults = AEROConfig()
    for kind, setting in registry.KINDS.items():
        for name in registry.names(kind):
            if name != getattr(defaults, setting):
                variants[f"aero_{name}"] = {setting: name}
    variants["aero_no_rejection"] = {"k": 16.0}
    variants["aero_pooled"] = {"budget_mode": "pooled"}
    return variants


AERO_VARIANTS = aero_variants()


@dataclass
class SimulatedPolicy:
    """A named step: its settings (AEROConfig: the budget, seeds, invalid-reward rule, prior) and policies."""

    name: str
    cfg: AEROConfig
    policies: StepPolicies


def baseline(name: str, cfg: SimulationConfig, n: int, selection, fill) -> SimulatedPolicy:
    return SimulatedPolicy(name, AEROConfig(n_total=cfg.n_total, n_explore=min(n, cfg.n_total), n_explore_min=1), StepPolicies(
        exploration=FixedExploration(n), rescue=NoRescue(), selection=selection,
        advantage=GroupAdvantages("off"), weighting=TokenMeanWeighting(), fill=fill))


def build_policies(cfg: SimulationConfig, seed: int, population: Population, stream: PromptStream,
                   rng: np.random.Generator) -> list[SimulatedPolicy]:
    """Fresh policies (their state starts empty) in the report's order, for one seed's population."""
    batch, n = cfg.batch_size, cfg.n_total
    policies = [
        baseline("grpo_n8", cfg, 8, KeepAll(), SingleBatch(batch)),
        baseline("grpo_n16", cfg, n, KeepAll(), SingleBatch(batch)),
        baseline("grpo_n16_filtered", cfg, n, KeepInformative(), SingleBatch(batch)),
        baseline("dapo", cfg, n, KeepInformative(limit=batch), DynamicSampling(batch, cfg.max_gen_rounds)),
        baseline("greso", cfg, n, KeepInformative(limit=batch), GRESOFill(batch, cfg.max_gen_rounds, stream, rng)),
    ]
    for name, changes in AERO_VARIANTS.items():
        aero_cfg = AEROConfig(n_total=n, seed=seed, **changes)
        policies.append(SimulatedPolicy(name, aero_cfg, aero_policies(aero_cfg, fill=SingleBatch(batch))))
    oracle = Oracle(lambda: population.success_probability, batch, n, cfg.max_gen_rounds,
                    cfg.oracle_min_mixed_probability)
    policies.append(SimulatedPolicy("oracle", AEROConfig(n_total=n, n_explore=1, n_explore_min=1), StepPolicies(
        exploration=oracle, rescue=oracle, selection=oracle, advantage=GroupAdvantages("off"),
        weighting=TokenMeanWeighting(), fill=oracle)))
    return policies


POLICY_NAMES = ["grpo_n8", "grpo_n16", "grpo_n16_filtered", "dapo", "greso", *AERO_VARIANTS, "oracle"]
for _name, _changes in AERO_VARIANTS.items():
    POLICY_DEFINITIONS.setdefault(_name, "AERO with " + ", ".join(f"{k}={v!r}" for k, v in _changes.items()) + ".")


STEP_FIELDS = ("rollouts_generated", "tokens_generated", "rollouts_trained", "tokens_trained", "groups_generated",
               "zero_variance_groups", "groups_trained", "zero_advantage_groups_trained", "generation_rounds",
               "wall_s")


@dataclass
class PolicyRun:
    """Per-step series of one policy on one seed; mean_success has steps + 1 entries (index 0: start)."""

    mean_success: np.ndarray
    signal: np.ndarray
    series: dict[str, np.ndarray]

    def compute(self, cost: CostModel) -> np.ndarray:
        """FLOPs per step."""
        return cost.params * (cost.generation_flops_per_token * self.series["tokens_generated"]
                              + cost.training_flops_per_token * self.series["tokens_trained"])

    def wall(self) -> np.ndarray:
        """Modelled wall clock per step, in seconds (phase_model.PhaseCostModel)."""
        return self.series["wall_s"]


def run_policy(name: str, cfg: SimulationConfig, seed: int, policy_index: int) -> PolicyRun:
    """`cfg.steps` steps of one policy on the seed's population."""
    population = Population(cfg.population, np.random.default_rng([seed, 0]))
    stream = PromptStream(cfg.population.prompts, np.random.default_rng([seed, 1]))
    rng = np.random.default_rng([seed, 2, policy_index])
    policy = next(p for p in build_policies(cfg, seed, population, stream, rng) if p.name == name)
    table = BetaPosteriorTable(policy.cfg.prior_alpha, policy.cfg.prior_beta, policy.cfg.forgetting)
    mean_success = [population.mean_success()]
    signal = []
    series = {field_name: [] for field_name in STEP_FIELDS}
    for step in range(cfg.steps):
        result = AEROStep(policy.cfg, table, step, policy.policies).run(population.sampler(rng), take=stream.take)
        record = measure_step(result, population.success_probability, cfg.phases)
        population.learn(record.prompt_ids, record.signal, record.noise_scale, cfg.batch_size, rng)
        mean_success.append(population.mean_success())
        signal.append(record.signal.sum())
        for field_name in STEP_FIELDS:
            series[field_name].append(getattr(record, field_name))
    arrays = {field_name: np.array(values, dtype=np.float64) for field_name, values in series.items()}
    return PolicyRun(np.array(mean_success), np.array(signal), arrays)


def run_all(cfg: SimulationConfig) -> dict[str, list[PolicyRun]]:
    """Every policy on every seed: {policy name: [run per seed]}."""
    runs: dict[str, list[PolicyRun]] = {}
    for seed in range(cfg.seeds):
        for index, name in enumerate(POLICY_NAMES):
            runs.setdefault(name, []).append(run_policy(name, cfg, seed, index))
    return runs


def first_reach(mean_success: np.ndarray, target: float) -> int | None:
    """Steps taken until mean success first reaches target (None if never)."""
    reached = np.flatnonzero(mean_success[1:] >= target)
    return int(reached[0]) + 1 if reached.size else None


def seed_metrics(run: PolicyRun, cfg: SimulationConfig, target: float) -> dict[str, float]:
    """One policy on one seed, in absolute terms."""
    s = run.series
    compute, wall = run.compute(cfg.cost), run.wall()
    reach = first_reach(run.mean_success, target)
    return {
        "rollouts_generated_per_step": s["rollouts_generated"].mean(),
        "tokens_generated_per_step": s["tokens_generated"].mean(),
        "rollouts_trained_per_step": s["rollouts_trained"].mean(),
        "tokens_trained_per_step": s["tokens_trained"].mean(),
        "budget_use_mean": s["rollouts_generated"].mean() / (cfg.batch_size * cfg.n_total),
        "budget_use_max": s["rollouts_generated"].max() / (cfg.batch_size * cfg.n_total),
        "generation_rounds_per_step": s["generation_rounds"].mean(),
        "zero_advantage_share_generated": s["zero_variance_groups"].sum() / max(s["groups_generated"].sum(), 1),
        "zero_advantage_share_trained": s["zero_advantage_groups_trained"].sum() / max(s["groups_trained"].sum(), 1),
        "signal_per_step": run.signal.mean(),
        "signal_per_generated_rollout": run.signal.sum() / max(s["rollouts_generated"].sum(), 1),
        "signal_per_trained_rollout": run.signal.sum() / max(s["rollouts_trained"].sum(), 1),
        "initial_mean_success": run.mean_success[0],
        "final_mean_success": run.mean_success[-1],
        "compute_flops": compute.sum(),
        "wall_proxy": wall.sum(),
        "steps_to_target": np.nan if reach is None else reach,
        "compute_to_target_flops": np.nan if reach is None else compute[:reach].sum(),
        "wall_to_target": np.nan if reach is None else wall[:reach].sum(),
    }


def relative_metrics(own: dict, grpo: dict, dapo: dict, oracle: dict) -> dict[str, float]:
    """Ratios against GRPO n=16, DAPO and the oracle of the same seed."""
    gain = own["final_mean_success"] - own["initial_mean_success"]
    return {
        "compute_ratio_vs_grpo16": own["compute_flops"] / grpo["compute_flops"],
        "wall_ratio_vs_grpo16": own["wall_proxy"] / grpo["wall_proxy"],
        "accuracy_diff_vs_grpo16": own["final_mean_success"] - grpo["final_mean_success"],
        "compute_to_target_ratio_vs_grpo16": own["compute_to_target_flops"] / grpo["compute_to_target_flops"],
        "wall_to_target_ratio_vs_grpo16": own["wall_to_target"] / grpo["wall_to_target"],
        "wall_to_target_ratio_vs_dapo": own["wall_to_target"] / dapo["wall_to_target"],
        "compute_to_target_ratio_vs_dapo": own["compute_to_target_flops"] / dapo["compute_to_target_flops"],
        "generated_ratio_vs_dapo": own["rollouts_generated_per_step"] / dapo["rollouts_generated_per_step"],
        "gain_ratio_vs_oracle": gain / (oracle["final_mean_success"] - oracle["initial_mean_success"]),
        "signal_per_generated_ratio_vs_oracle":
            own["signal_per_generated_rollout"] / oracle["signal_per_generated_rollout"],
        "signal_per_trained_ratio_vs_oracle": own["signal_per_trained_rollout"] / oracle["signal_per_trained_rollout"],
        "compute_to_target_ratio_vs_oracle": own["compute_to_target_flops"] / oracle["compute_to_target_flops"],
    }


def target_success(grpo_run: PolicyRun, share: float) -> float:
    """Initial mean success plus `share` of the gain GRPO n=16 makes over the run."""
    start, end = grpo_run.mean_success[0], grpo_run.mean_success[-1]
    return float(start + share * (end - start))


def summarise(runs: dict[str, list[PolicyRun]], cfg: SimulationConfig) -> dict[str, dict]:
    """{policy: {metric: {"mean", "std", "values"}}} over seeds; NaN values (target not reached) are left
    out of mean and std and counted in "missing"."""
    per_seed: dict[str, list[dict]] = {name: [] for name in runs}
    for seed in range(cfg.seeds):
        target = target_success(runs[REFERENCE][seed], cfg.target_gain_share)
        absolute = {name: seed_metrics(policy_runs[seed], cfg, target) for name, policy_runs in runs.items()}
        for name in runs:
            metrics = dict(absolute[name], target_mean_success=target)
            metrics.update(relative_metrics(absolute[name], absolute[REFERENCE], absolute["dapo"], absolute["oracle"]))
            per_seed[name].append(metrics)
    return {name: {metric: spread([values[metric] for values in seeds]) for metric in seeds[0]}
            for name, seeds in per_seed.items()}


def spread(values: list[float]) -> dict:
    array = np.asarray(values, dtype=np.float64)
    finite = array[np.isfinite(array)]
    return {
        "mean": float(finite.mean()) if finite.size else None,
        "std": float(finite.std(ddof=1)) if finite.size > 1 else (0.0 if finite.size else None),
        "missing": int(array.size - finite.size),
        "values": [float(v) if np.isfinite(v) else None for v in array],
    }


def curves(runs: dict[str, list[PolicyRun]], cost: CostModel) -> dict[str, dict[str, list[float]]]:
    """Seed-averaged per-step series for the plots."""
    result = {}
    for name, policy_runs in runs.items():
        def mean_of(series_of):
            return np.mean([series_of(run) for run in policy_runs], axis=0).tolist()

        result[name] = {
            "mean_success": mean_of(lambda run: run.mean_success),
            "cumulative_compute_flops": mean_of(lambda run: np.r_[0.0, np.cumsum(run.compute(cost))]),
            "zero_advantage_share_generated": mean_of(
                lambda run: run.series["zero_variance_groups"] / np.maximum(run.series["groups_generated"], 1)),
            "rollouts_generated": mean_of(lambda run: run.series["rollouts_generated"]),
            "rollouts_trained": mean_of(lambda run: run.series["rollouts_trained"]),
        }
    return result


def config_dict(cfg: SimulationConfig) -> dict:
    return dataclasses.asdict(cfg)
