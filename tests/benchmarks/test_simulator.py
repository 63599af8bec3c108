"""The rollout-allocation simulator (benchmarks/simulate_allocation.py): every policy is an AEROStep on the
core's protocols; budgets, the analytic zero-advantage share, the oracle bound, the signal measure under
each loss weighting, the phase cost model and the outputs of a short run.

benchmarks/ is not an installed package, so its directory goes on sys.path and `simulator`, `phase_model`
and `simulate_allocation` import exactly as they do when the scripts run.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from aero_verl.core import AEROConfig, AEROStep, BetaPosteriorTable, group_advantages  # noqa: E402
from phase_model import PhaseCostModel  # noqa: E402
from simulator.experiment import POLICY_NAMES, SimulationConfig, baseline, run_all, run_policy, summarise  # noqa: E402
from simulator.measure import group_signals, loss_multipliers  # noqa: E402
from simulator.peers import GRESOFill  # noqa: E402
from simulator.population import Population, PopulationConfig, PromptStream, zero_variance_probability  # noqa: E402

from aero_verl.core.policies import KeepAll, SingleBatch  # noqa: E402

TINY = SimulationConfig(seeds=2, steps=12, batch_size=16, population=PopulationConfig(prompts=384))
OVER_BUDGET_BY_DESIGN = {"dapo", "greso"}  # regeneration reported, not charged


def test_every_policy_respects_the_rollout_budget():
    budget = TINY.batch_size * TINY.n_total
    most_generated = {}
    for index, name in enumerate(POLICY_NAMES):
        series = run_policy(name, TINY, seed=0, policy_index=index).series
        generated, trained = series["rollouts_generated"], series["rollouts_trained"]
        cap = budget * TINY.max_gen_rounds if name in OVER_BUDGET_BY_DESIGN else budget
        assert generated.max() <= cap, name
        assert (trained <= generated).all(), name
        assert series["groups_trained"].max() <= TINY.batch_size, name
        most_generated[name] = generated.max()
    assert most_generated["dapo"] > budget  # its regeneration is counted, not hidden
    assert most_generated["aero_pooled"] == budget  # the pooled budget is spent to the last rollout


@pytest.mark.parametrize("n", [8, 16])
def test_grpo_zero_advantage_share_matches_the_population(n):
    prompts = 4000
    population = Population(PopulationConfig(prompts=prompts, learning_rate=0.0), np.random.default_rng(3))
    stream = PromptStream(prompts, np.random.default_rng(4))
    policy = baseline("grpo", SimulationConfig(batch_size=prompts), n, KeepAll(), SingleBatch(prompts))
    result = AEROStep(policy.cfg, BetaPosteriorTable(), 0, policy.policies).run(
        population.sampler(np.random.default_rng(5)), take=stream.take)
    q = zero_variance_probability(population.success_probability[result.keys.astype(int)], n)
    expected, sampling_sd = q.mean(), np.sqrt((q * (1 - q)).sum()) / prompts
    assert abs(result.counts.zero_variance.mean() - expected) < 4 * sampling_sd
    assert expected > 0.35  # paper Fig. 1: more than 35% of prompts are zero-advantage under GRPO


def test_the_oracle_is_the_most_signal_efficient():
    summary = summarise(run_all(TINY), TINY)
    oracle = summary["oracle"]
    for name, metrics in summary.items():
        for measure in ("signal_per_generated_rollout", "signal_per_trained_rollout"):
            assert all(o >= v for o, v in zip(oracle[measure]["values"], metrics[measure]["values"])), (name, measure)


def test_signal_is_theorem_4_1_for_mixed_groups_and_the_advantage_projection_otherwise():
    success = np.array([1, 0, 0, 0, 1, 1, 1, 1], dtype=bool)
    group = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    keep = np.array([True, True, False, False, True, True, True, True])
    true_p = np.array([0.3, 0.9])
    advantages = np.zeros(8)
    advantages[keep] = group_advantages(success[keep], group[keep], np.array([0.5, 0.8]), "smoothed")
    signal = group_signals(success, group, keep, advantages, true_p)
    smoothed_correct = (1 - 0.8) / np.sqrt(0.8 * 0.2)
    assert signal == pytest.approx([0.5, smoothed_correct * (1 - 0.9)], rel=1e-5)


@pytest.mark.parametrize("weighting, expected", [("token_mean", [2 * 2 / 10, 2 * 8 / 10]), ("per_group", [1, 1])])
def test_the_loss_weighting_the_step_used_scales_each_groups_push(weighting, expected):
    """A 1+1 rescued group next to an 8-rollout group, equal lengths: under token-mean the small group weighs
    G x its token share (0.4), under per-group weighting every group weighs 1."""
    step = AEROStep(AEROConfig(loss_weighting=weighting), BetaPosteriorTable(), 0, keys=[0, 1])
    step.record([0] * 8 + [1] * 8, [0] * 8 + [1, 1, 1, 1, 1, 0, 0, 0], np.full(16, 10), stage1=True)
    assert step.rescue_requests().tolist() == [2, 0]
    step.record([0, 0], [1, 0], [10, 10], stage1=False)
    result = step.finish()
    assert np.bincount(result.group[result.keep]).tolist() == [2, 8]
    assert loss_multipliers(result) == pytest.approx(expected)


def test_phase_model_charges_each_barrier_its_slowest_response():
    model = PhaseCostModel(step_s=1.0, knee=100, train_s_per_token=0.0)
    # prompt 0: Stage I 10 tokens, then a 5-token rescue; prompt 1: Stage I 30 tokens
    group, lengths, stage1 = np.array([0, 1, 0]), np.array([10, 30, 5]), np.array([True, True, False])
    # barrier-free: the rescue starts when prompt 0's own Stage I ends (10) and is done by 15, inside the 30
    assert model.step_time(group, stage1, np.zeros(3, dtype=int), lengths, 0) == 30
    # rounds: the rescue phase waits for all of Stage I (30), then takes 5 more
    assert model.step_time(group, stage1, np.array([0, 0, 1]), lengths, 0) == 35
    # training time is per trained token
    assert PhaseCostModel(step_s=1.0, knee=100, train_s_per_token=0.5).step_time(group, stage1, np.zeros(3, int),
                                                                                  lengths, 4) == 32
    # beyond the knee a decode step costs in proportion to the sequences in flight
    assert PhaseCostModel(step_s=1.0, knee=1).decode_time(np.zeros(2, int), np.array([3, 3])) == 6


def test_greso_skips_with_probability_one_minus_p_to_the_streak():
    stream = PromptStream(4, np.random.default_rng(0))
    greso = GRESOFill(batch_size=4, max_rounds=2, stream=stream, rng=np.random.default_rng(1))
    greso.easy_streak[:] = [0, 1, 3, 0]
    greso.hard_streak[:] = [0, 0, 0, 10]
    assert greso.skip_probability(np.arange(4)) == pytest.approx([0.0, 0.5, 0.875, 0.99])


def test_learning_raises_the_mean_success():
    cfg = SimulationConfig(seeds=1, steps=12, batch_size=16,
                           population=PopulationConfig(prompts=384, noise_sd=0.0))
    run = run_policy("grpo_n16", cfg, seed=1, policy_index=0)
    assert run.mean_success[-1] > run.mean_success[0]
    assert (np.diff(run.mean_success) >= 0).all()


def test_a_short_run_writes_json_markdown_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    import simulate_allocation

    argv = ["--seeds", "2", "--steps", "6", "--prompts", "256", "--batch", "16", "--out", str(tmp_path)]
    simulate_allocation.main(argv)
    payload = json.loads((tmp_path / "simulator.json").read_text())
    assert payload["command"] == "python benchmarks/simulate_allocation.py " + " ".join(argv)
    assert set(payload["summary"]) == set(POLICY_NAMES)
    assert len(payload["summary"]["aero"]["compute_ratio_vs_grpo16"]["values"]) == 2
    markdown = (tmp_path / "simulator.md").read_text().splitlines()
    assert markdown[0] == f"Command: `{payload['command']}`"
    assert any(line.startswith("| aero |") for line in markdown)
    for name in ("compute_vs_success", "zero_advantage", "rollouts"):
        assert (tmp_path / f"simulator_{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
