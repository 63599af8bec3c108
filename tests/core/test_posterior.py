import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aero_verl.core import BetaPosteriorTable


def test_unseen_prompts_get_the_prior():
    table = BetaPosteriorTable(prior_alpha=2.0, prior_beta=3.0)
    alpha, beta = table.alpha_beta([7, 8])
    assert alpha.tolist() == [2.0, 2.0] and beta.tolist() == [3.0, 3.0]
    assert table.mean([7]).tolist() == [0.4]
    assert len(table) == 0


def test_update_is_beta_bernoulli_conjugacy():
    table = BetaPosteriorTable()
    table.update([5], [3], [5])
    table.update([5], [1], [0])
    alpha, beta = table.alpha_beta([5])
    assert (alpha[0], beta[0]) == (1 + 3 + 1, 1 + 5)
    assert table.mean([5])[0] == pytest.approx(5 / 11)
    assert table.variance([5])[0] == pytest.approx(5 * 6 / (11**2 * 12))
    assert table.observations([5, 6]).tolist() == [9, 0]


def test_repeated_key_in_one_batch_sums_its_counts():
    table = BetaPosteriorTable()
    table.update([1, 1, 2], [1, 2, 0], [0, 1, 4])
    alpha, beta = table.alpha_beta([1, 2])
    assert alpha.tolist() == [4.0, 1.0] and beta.tolist() == [2.0, 5.0]


def test_forgetting_shrinks_old_evidence_towards_the_prior():
    table = BetaPosteriorTable(forgetting=0.5)
    table.update([0], [8], [0])
    table.update([0], [0], [2])
    alpha, beta = table.alpha_beta([0])
    # a = a0 + rho (a - a0) + S: 1 + 0.5 * 8 + 0 and 1 + 0.5 * 0 + 2
    assert (alpha[0], beta[0]) == (5.0, 3.0)


def test_grows_past_many_resizes_and_keeps_every_key():
    table = BetaPosteriorTable(initial_capacity=16)
    keys = np.unique(np.random.default_rng(0).integers(0, 2**63 - 1, size=20_000, dtype=np.int64)).astype(np.uint64)
    for chunk in np.array_split(keys, 37):
        table.update(chunk, np.ones(chunk.size), np.zeros(chunk.size))
    assert len(table) == keys.size
    assert (table.alpha_beta(keys)[0] == 2.0).all()
    assert set(table.keys().tolist()) == set(keys.tolist())
    assert table.observations(np.array([0], dtype=np.uint64))[0] == 0


def test_sequential_keys_do_not_collide_into_long_probes():
    table = BetaPosteriorTable()
    keys = np.arange(100_000)
    table.update(keys, keys % 3, np.ones(keys.size))
    assert (table.alpha_beta(keys)[0] == 1 + keys % 3).all()


def test_state_dict_round_trips_exactly():
    table = BetaPosteriorTable(prior_alpha=0.5, prior_beta=2.0, forgetting=0.9)
    rng = np.random.default_rng(1)
    for _ in range(5):
        keys = rng.integers(0, 500, size=64)
        table.update(keys, rng.integers(0, 5, 64), rng.integers(0, 5, 64))
    restored = BetaPosteriorTable()
    restored.load_state_dict(table.state_dict())
    probe = np.arange(600)
    for a, b in zip(table.alpha_beta(probe), restored.alpha_beta(probe)):
        assert np.array_equal(a, b)
    assert np.array_equal(table.observations(probe), restored.observations(probe))
    assert (restored.prior_alpha, restored.prior_beta, restored.forgetting) == (0.5, 2.0, 0.9)
    # and it keeps working after the restore
    restored.update([599], [1], [0])
    assert restored.alpha_beta([599])[0][0] == table.alpha_beta([599])[0][0] + 1


def test_incompatible_state_is_refused():
    state = BetaPosteriorTable().state_dict()
    state["schema_version"] = 99
    with pytest.raises(ValueError, match="schema_version=99"):
        BetaPosteriorTable().load_state_dict(state)


@pytest.mark.parametrize("bad", [[-1], [1.5]])
def test_bad_keys_are_refused(bad):
    with pytest.raises((ValueError, TypeError)):
        BetaPosteriorTable().update(bad, [1], [0])


def test_negative_counts_are_refused():
    with pytest.raises(ValueError, match=">= 0"):
        BetaPosteriorTable().update([1], [-1], [0])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=80),
       st.integers(2, 6))
def test_matches_a_dict_reference_and_round_trips(events, n_batches):
    table = BetaPosteriorTable(initial_capacity=16)
    reference = {}
    for batch in np.array_split(np.array(events), n_batches):
        if batch.size == 0:
            continue
        table.update(batch[:, 0], batch[:, 1], batch[:, 2])
        for key, s, f in batch:
            a, b = reference.get(key, (1.0, 1.0))
            reference[key] = (a + s, b + f)
    keys = np.array(sorted(reference))
    alpha, beta = table.alpha_beta(keys)
    assert alpha.tolist() == [reference[k][0] for k in keys]
    assert beta.tolist() == [reference[k][1] for k in keys]
    restored = BetaPosteriorTable()
    restored.load_state_dict(table.state_dict())
    assert np.array_equal(restored.alpha_beta(keys)[0], alpha)
