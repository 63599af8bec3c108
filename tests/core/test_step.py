"""AEROStep: the step's order, its invariants over random populations and settings (hypothesis), and the
ways it is driven (a sampler callback, rows recorded as they come back, a per-prompt rescue executor)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aero_verl.core import AEROConfig, AEROStep, BetaPosteriorTable, Stratum, aero_policies, run_aero_step
from aero_verl.core.policies import DynamicSampling, FixedExploration, GroupAdvantages, KeepInformative, NoRescue, \
    StepPolicies, TokenMeanWeighting


@st.composite
def configs(draw):
    n_total = draw(st.integers(2, 20))
    rescue_mode = draw(st.sampled_from(["rounds", "barrier_free"]))
    return AEROConfig(
        n_total=n_total,
        n_explore=draw(st.integers(1, min(8, n_total))),
        n_extra=draw(st.integers(1, 4)),
        k=draw(st.sampled_from([0.5, 1.0, 2.0])),
        rescue_mode=rescue_mode,
        budget_mode="per_query" if rescue_mode == "barrier_free" else draw(st.sampled_from(["per_query", "pooled"])),
        advantage_mode=draw(st.sampled_from(["smoothed", "constant", "off"])),
        loss_weighting=draw(st.sampled_from(["token_mean", "per_group"])),
        degenerate_keep=min(4, n_total),
        drop_failed_rescues=draw(st.booleans()),
        max_rescue_rounds=draw(st.sampled_from([None, 0, 2])),
        explore_mode=draw(st.sampled_from(["fixed", "posterior"])),
        u_res=draw(st.sampled_from([0.0, 0.2])),
        n_explore_min=1,
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(configs(), st.lists(st.sampled_from([0.0, 0.02, 0.3, 0.7, 1.0]), min_size=1, max_size=24), st.integers(0, 99))
def test_step_invariants(bernoulli_sampler, cfg, success_probabilities, seed):
    p = np.array(success_probabilities)
    keys = np.arange(p.size)
    table = BetaPosteriorTable(cfg.prior_alpha, cfg.prior_beta)
    for step in range(2):
        before = table.observations(keys).sum()
        result = run_aero_step(cfg, table, keys, bernoulli_sampler(p, seed + step), step)
        per_prompt = np.bincount(result.group, minlength=p.size)
        # the budget is never exceeded
        if cfg.budget_mode == "per_query":
            assert (per_prompt <= cfg.n_total).all()
        assert per_prompt.sum() <= p.size * cfg.n_total
        # rejection never drops a correct rollout of a kept non-high-accuracy group with variance
        counts = result.counts
        mixed = (counts.correct > 0) & (counts.correct < counts.rollouts) & (counts.strata != Stratum.HIGH_ACCURACY)
        assert result.keep[result.success & mixed[result.group]].all()
        # stopped rollouts have no outcome: never kept, never evidence for the posterior
        assert not (result.keep & result.stopped).any() and not (result.success & result.stopped).any()
        assert table.observations(keys).sum() - before == (~result.stopped).sum()
        # advantages finite, zero for every dropped rollout; loss weights positive on kept rows
        assert np.isfinite(result.advantages).all() and (result.advantages[~result.keep] == 0).all()
        weights = result.loss_weights(result.training_order)
        assert (weights > 0).all() and np.isfinite(weights).all()
        accounting = result.accounting
        assert accounting.rollouts_generated + accounting.rollouts_stopped == result.group.size
        assert accounting.rollouts_kept == result.keep.sum() <= accounting.rollouts_generated
        assert accounting.prompts_rescued + accounting.prompts_failed_rescue == accounting.prompts_rescue
        if cfg.rescue_mode == "barrier_free":
            assert accounting.generation_phases == 1 and accounting.rescue_rounds == 0
        else:
            assert accounting.generation_phases == 1 + accounting.rescue_rounds


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(configs(), st.integers(0, 99))
def test_step_is_deterministic_given_seeds(bernoulli_sampler, cfg, seed):
    p = np.linspace(0, 1, 10)
    results = []
    for _ in range(2):
        table = BetaPosteriorTable(cfg.prior_alpha, cfg.prior_beta)
        results.append(run_aero_step(cfg, table, np.arange(10), bernoulli_sampler(p, seed), step=3))
        results.append(table.state_dict())
    first, first_table, second, second_table = results
    for name in ("group", "success", "keep", "advantages", "stopped"):
        assert np.array_equal(getattr(first, name), getattr(second, name))
    assert all(np.array_equal(first_table[k], second_table[k]) for k in ("keys", "alpha", "beta"))


def test_rows_recorded_as_they_come_back_give_what_the_sampler_driver_gives():
    """The trainer records rows itself (phase by phase, in completion order); `run` with a sampler does the
    same calls: both must decide the same."""
    cfg = AEROConfig()
    outcomes = {0: [0] * 8 + [0, 1], 1: [1, 0, 0, 1, 0, 0, 0, 0], 2: [1] * 8}
    step = AEROStep(cfg, BetaPosteriorTable(), step=5, keys=[10, 11, 12])
    assert step.explore.tolist() == [8, 8, 8]
    group = np.repeat([0, 1, 2], 8)
    step.record(group, np.concatenate([outcomes[i][:8] for i in range(3)]), np.full(24, 7), stage1=True)
    assert step.rescue_requests().tolist() == [2, 0, 0]
    step.record([0, 0], [0, 1], [7, 7], stage1=False)
    assert not step.rescue_requests().any()
    recorded = step.finish()

    def sample(keys, counts):
        drawn = {}
        rewards = []
        for i in np.repeat(keys.astype(int) - 10, counts):
            start = 0 if counts[0] == 8 else 8
            rewards.append(outcomes[i][start + drawn.setdefault(i, 0)])
            drawn[i] += 1
        return np.array(rewards, dtype=float), np.full(len(rewards), 7)

    driven = run_aero_step(cfg, BetaPosteriorTable(), [10, 11, 12], sample, step=5)
    for name in ("group", "success", "keep", "advantages"):
        assert np.array_equal(getattr(recorded, name), getattr(driven, name)), name
    assert recorded.accounting == driven.accounting
    with pytest.raises(RuntimeError, match="already"):
        step.finish()


def test_selection_depends_on_what_was_sampled_not_on_the_order_it_came_back_in():
    cfg = AEROConfig()
    rng = np.random.default_rng(0)
    group = np.repeat(np.arange(6), 8)
    rewards = (rng.random(48) < 0.3).astype(float)
    digest = rng.integers(0, 2**63, 48).astype(np.uint64)
    kept = []
    for order in (np.arange(48), rng.permutation(48)):
        step = AEROStep(cfg, BetaPosteriorTable(), step=2, keys=np.arange(6))
        step.record(group[order], rewards[order], np.full(48, 3), stage1=True, digest=digest[order])
        while (extra := step.rescue_requests()).any():
            asked = np.flatnonzero(extra)
            step.record(np.repeat(asked, extra[asked]), np.zeros(extra.sum()), np.full(extra.sum(), 3), stage1=False,
                        digest=np.arange(extra.sum(), dtype=np.uint64) + 7 * step.rescue_phases)
        result = step.finish()
        kept.append(sorted(result.lengths[result.keep].tolist() + digest[order][result.keep[:48]].tolist()))
    assert kept[0] == kept[1]


def test_lost_rollouts_spend_their_budget_and_are_no_evidence():
    step = AEROStep(AEROConfig(), BetaPosteriorTable(), step=0, keys=[1, 2])
    step.record([0] * 8 + [1] * 5, [1, 0] * 4 + [0] * 5, np.full(13, 4), stage1=True)  # 3 of prompt 2's lost
    assert (step.requested - step.rollouts_recorded()).tolist() == [0, 3]
    extra = step.rescue_requests()
    assert extra.tolist() == [0, 2]  # per-query headroom counts what was requested, not what came back
    step.record([1, 1], [0, 0], [4, 4], stage1=False)
    result = step.finish()
    assert result.accounting.rollouts_requested == 18 and result.accounting.rollouts_generated == 15
    assert step.table.alpha_beta([2])[1].tolist() == [1.0 + 7]


def test_a_per_prompt_executor_reports_its_rescue_in_the_same_phase():
    """Barrier-free rescue run by verl's agent-loop worker: the trainer records Stage I, notes the allowance
    of the prompts left in the rescue stratum, and records the rescue rollouts with their stop flags."""
    cfg = AEROConfig(rescue_mode="barrier_free")
    step = AEROStep(cfg, BetaPosteriorTable(), step=0, keys=[1, 2])
    allowance = step.rescue_allowance()
    assert allowance.tolist() == [8, 8]
    step.record(np.repeat([0, 1], 8), [0] * 8 + [1, 0] * 4, np.full(16, 30), stage1=True)
    step.note_requests(allowance * step.counts().in_rescue)
    step.record(np.zeros(8, int), [0, 0, 1, 0, 0, 0, 0, 0], [40, 60, 20, 25, 25, 25, 25, 25], stage1=False,
                stopped=[False, False, False, True, True, True, True, True], new_phase=False)
    result = step.finish()
    a = result.accounting
    assert (a.generation_phases, a.rescue_rounds, a.rollouts_stopped, a.tokens_stopped) == (1, 0, 5, 125)
    assert a.rollouts_requested == 24 and a.prompts_rescued == 1
    # spared: each stopped rollout against the mean length of the prompt's finished wrong ones (35)
    assert a.tokens_spared_estimate == 5 * (np.mean([30] * 8 + [40, 60]) - 25)
    assert result.keep[result.stopped].sum() == 0 and result.keep[10]  # the first success is kept
    with pytest.raises(TypeError, match="allowance"):
        AEROStep(AEROConfig(), BetaPosteriorTable(), step=0, keys=[1]).rescue_allowance()


def test_a_fill_policy_lets_the_step_draw_prompts_round_by_round(bernoulli_sampler):
    """DAPO's dynamic sampling through the same step: rounds of fresh prompts until enough informative groups."""
    p = np.r_[np.zeros(30), np.full(10, 0.5)]
    stream = iter(np.random.default_rng(0).permutation(40))
    policies = StepPolicies(exploration=FixedExploration(16), rescue=NoRescue(), selection=KeepInformative(limit=4),
                            advantage=GroupAdvantages("off"), weighting=TokenMeanWeighting(),
                            fill=DynamicSampling(batch_size=4, max_rounds=10))
    step = AEROStep(AEROConfig(n_total=16, n_explore=16), BetaPosteriorTable(), step=0, policies=policies)
    result = step.run(bernoulli_sampler(p, 1), take=lambda n: np.array([next(stream) for _ in range(n)]))
    assert step.n_prompts % 4 == 0 and step.n_prompts > 4
    kept_groups = np.unique(result.group[result.keep])
    assert kept_groups.size == 4 and (p[step.keys[kept_groups].astype(int)] == 0.5).all()


def test_default_policies_follow_the_config():
    policies = aero_policies(AEROConfig(rescue_mode="barrier_free", loss_weighting="per_group"),
                             normalize_by_std=False)
    assert policies.rescue.barrier_free and type(policies.weighting).__name__ == "PerGroupWeighting"
    assert policies.advantage.normalize_by_std is False
