"""Unbiased pass@k, avg@k and the per-benchmark summary, against hand-computed values and a brute-force
enumeration of k-subsets."""

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aero_verl.eval.passk import avg_at_k, summarize_by_benchmark, unbiased_pass_at_k, write_results_json


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of the k-subsets of n samples (the first c correct) that contain a correct sample."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in subset) for subset in subsets) / len(subsets)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (8, 1, 1, 1 / 8),
        (8, 2, 4, 1 - math.comb(6, 4) / math.comb(8, 4)),  # 1 - 15/70
        (16, 3, 4, 1 - 715 / 1820),
        (10, 5, 2, 1 - math.comb(5, 2) / math.comb(10, 2)),  # 1 - 10/45
        (5, 4, 2, 1.0),  # n - c < k: every pair holds a correct sample
    ],
)
def test_hand_computed_values(n, c, k, expected):
    assert unbiased_pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_matches_brute_force_enumeration(n_c_k):
    n, c, k = n_c_k
    assert unbiased_pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))))
def test_monotonic_non_decreasing_in_k(n_c):
    n, c = n_c
    values = unbiased_pass_at_k(n, c, np.arange(1, n + 1))
    assert np.all(np.diff(values) >= -1e-12)
    assert values[0] == pytest.approx(c / n)  # pass@1 is the plain accuracy


@pytest.mark.parametrize("n", [1, 4, 8, 64])
def test_edge_cases_k_equals_n_and_all_or_nothing(n):
    assert unbiased_pass_at_k(n, 0, n) == 0.0
    assert unbiased_pass_at_k(n, 1, n) == 1.0  # k = n: any correct sample is drawn
    assert unbiased_pass_at_k(n, n, 1) == 1.0
    assert unbiased_pass_at_k(n, 0, 1) == 0.0


def test_large_n_is_numerically_stable():
    # C(1000, 500) overflows float64; the product form must not.
    assert unbiased_pass_at_k(1000, 1, 500) == pytest.approx(0.5)
    assert 0.0 <= unbiased_pass_at_k(1000, 3, 8) <= 1.0


def test_vectorised_over_arrays_with_broadcasting():
    n = np.array([8, 8, 16])
    c = np.array([0, 2, 3])
    result = unbiased_pass_at_k(n, c, 4)
    assert isinstance(result, np.ndarray) and result.shape == (3,)
    assert result == pytest.approx([unbiased_pass_at_k(int(a), int(b), 4) for a, b in zip(n, c)])
    grid = unbiased_pass_at_k(8, np.array([[1], [2]]), np.array([1, 2, 4]))
    assert grid.shape == (2, 3)
    assert isinstance(unbiased_pass_at_k(8, 2, 4), float)


def test_accepts_integral_floats_such_as_summed_accuracies():
    assert unbiased_pass_at_k(8.0, np.float64(3.0), 2) == unbiased_pass_at_k(8, 3, 2)


@pytest.mark.parametrize(
    ("n", "c", "k", "message"),
    [
        (4, 1, 8, "n >= k"),
        (8, 9, 1, "c must be <= n"),
        (8, -1, 1, "c must be >= 0"),
        (8, 1, 0, "k must be >= 1"),
        (8.5, 1, 1, "whole numbers"),
        ("8", 1, 1, "integers"),
    ],
)
def test_invalid_inputs_raise_value_error(n, c, k, message):
    with pytest.raises(ValueError, match=message):
        unbiased_pass_at_k(n, c, k)


def test_error_names_the_bad_values_and_position():
    with pytest.raises(ValueError, match=r"n=4, c=1, k=8 at index 1"):
        unbiased_pass_at_k([8, 4], [1, 1], 8)


def test_avg_at_k_is_accuracy_and_validates_k():
    assert avg_at_k(8, 3, 8) == 3 / 8
    assert avg_at_k(np.array([8, 4]), np.array([2, 4]), 4) == pytest.approx([0.25, 1.0])
    with pytest.raises(ValueError, match="n >= k"):
        avg_at_k(4, 1, 8)


def test_summarize_groups_by_benchmark_and_prompt():
    # math500: prompt p1 has 1 of 4 correct, p2 has 0 of 4; aime: prompt p1 (same uid, other benchmark) 4 of 4.
    data_sources = ["math500"] * 8 + ["aime24"] * 4
    uids = ["p1", "p2"] * 4 + ["p1"] * 4
    accs = [1, 0, 0, 0, 0, 0, 0, 0] + [1.0, True, 1, 1]
    summary = summarize_by_benchmark(data_sources, uids, accs, k=2)
    assert list(summary) == ["aime24", "math500"]
    math500 = summary["math500"]
    assert math500["pass@2"] == pytest.approx((unbiased_pass_at_k(4, 1, 2) + 0.0) / 2)
    assert math500["avg@2"] == pytest.approx((1 / 4 + 0) / 2)
    assert math500["n_prompts"] == 2
    assert math500["samples_per_prompt"] == math500["samples_per_prompt_max"] == 4
    assert summary["aime24"] == {
        "pass@2": 1.0,
        "avg@2": 1.0,
        "n_prompts": 1,
        "samples_per_prompt": 4,
        "samples_per_prompt_max": 4,
    }


def test_summarize_rejects_bad_inputs_by_name():
    with pytest.raises(ValueError, match="lengths"):
        summarize_by_benchmark(["a", "a"], ["u"], [1, 0], k=1)
    with pytest.raises(ValueError, match=r"0\.5 at index 1"):
        summarize_by_benchmark(["a", "a"], ["u", "u"], [1, 0.5], k=1)
    with pytest.raises(ValueError, match=r"'amc23': prompt 'u7' has 2 samples, fewer than k=8"):
        summarize_by_benchmark(["amc23"] * 2, ["u7"] * 2, [1, 0], k=8)


def test_write_results_json_is_atomic_and_serialises_numpy(tmp_path):
    path = tmp_path / "eval" / "results.json"
    results = summarize_by_benchmark(["math500"] * 2, ["u"] * 2, np.array([1.0, 0.0]), k=2)
    meta = {"step": np.int64(10), "accs": np.array([1, 0])}
    assert write_results_json(path, results, meta) == str(path)
    written = json.loads(path.read_text())
    assert written == {"meta": {"step": 10, "accs": [1, 0]}, "results": results}
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]  # no temp file left


def test_write_results_json_leaves_old_file_when_serialisation_fails(tmp_path):
    path = tmp_path / "results.json"
    write_results_json(path, {"a": 1}, {})
    with pytest.raises(TypeError):
        write_results_json(path, {"a": object()}, {})
    assert json.loads(path.read_text())["results"] == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
