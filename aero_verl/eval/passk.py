"""Pass@k and Avg@k from per-sample correctness (numpy only; no verl).

The paper reports Pass@8 and Avg@8 with 8 samples per problem. verl logs Avg@N as `mean@N`, but its
`best@k/mean` is a bootstrap with replacement, which under-estimates pass@k; use `unbiased_pass_at_k`.

Definitions for one prompt with n samples of which c are correct (Chen et al. 2021, "Evaluating Large
Language Models Trained on Code"):
    pass@k = 1 - C(n-c, k) / C(n, k)   the chance that k of the n samples, drawn without replacement,
                                        contain at least one correct one (unbiased for k <= n)
    avg@k  = c / n                      the expected accuracy of a single sample, so also of k of them
A benchmark's score is the mean over its prompts.
"""

import json
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass

import numpy as np


def _as_integer_array(name: str, values) -> np.ndarray:
    """Accept ints and integral floats (accuracy sums arrive as 3.0); reject anything else by name."""
    array = np.asarray(values)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be integers, got {values!r}")
    if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
        raise ValueError(f"{name} must be whole numbers, got {values!r}")
    return array.astype(np.int64)


def _first_violation(condition: np.ndarray, **arrays: np.ndarray) -> str:
    """Values of the first element where `condition` holds, as `n=4, c=0, k=8` (plus ` at index i`)."""
    position = tuple(int(i) for i in np.argwhere(condition)[0])
    values = ", ".join(f"{name}={int(array[position])}" for name, array in arrays.items())
    if not position:
        return values
    return f"{values} at index {position[0] if len(position) == 1 else position}"


def _validated_counts(n, c, k) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, c, k = np.broadcast_arrays(_as_integer_array("n", n), _as_integer_array("c", c), _as_integer_array("k", k))
    checks = (
        (k < 1, "k must be >= 1"),
        (c < 0, "c must be >= 0"),
        (c > n, "c must be <= n"),
        (n < k, "pass@k/avg@k need n >= k samples"),
    )
    for violated, message in checks:
        if np.any(violated):
            raise ValueError(f"{message}, got {_first_violation(violated, n=n, c=c, k=k)}")
    return n, c, k


def _scalar_or_array(values: np.ndarray, *inputs) -> float | np.ndarray:
    return float(values) if all(np.ndim(x) == 0 for x in inputs) else values


def unbiased_pass_at_k(n, c, k) -> float | np.ndarray:
    """1 - C(n-c, k) / C(n, k), element-wise over broadcast n, c, k; requires 0 <= c <= n and 1 <= k <= n.

    Uses the product form C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k/i), which never forms the huge
    binomials. When n - c < k every k-subset holds a correct sample, so the result is exactly 1.
    Returns a float for scalar inputs, else an array of the broadcast shape.
    """
    n_arr, c_arr, k_arr = _validated_counts(n, c, k)
    flat_n, flat_c, flat_k = (a.ravel().astype(np.float64) for a in (n_arr, c_arr, k_arr))
    # One row per element: the factors (1 - k/i) for i = n-c+1 .. n, padded with 1 up to the largest c.
    offsets = np.arange(int(flat_c.max(initial=0)), dtype=np.float64)
    denominators = (flat_n - flat_c + 1)[:, None] + offsets[None, :]
    factors = np.where(offsets[None, :] < flat_c[:, None], 1.0 - flat_k[:, None] / denominators, 1.0)
    all_wrong_probability = np.prod(factors, axis=1)
    result = np.where(flat_n - flat_c < flat_k, 1.0, 1.0 - all_wrong_probability).reshape(n_arr.shape)
    return _scalar_or_array(result, n, c, k)


def avg_at_k(n, c, k) -> float | np.ndarray:
    """c / n, element-wise: the unbiased expected accuracy of k samples (the value does not depend on k;
    k is validated like pass@k so that Avg@8 is never reported from fewer than 8 samples)."""
    n_arr, c_arr, _ = _validated_counts(n, c, k)
    return _scalar_or_array(c_arr / n_arr, n, c, k)


@dataclass
class _PromptCounts:
    """Samples and correct samples seen for one (benchmark, prompt uid)."""

    samples: int = 0
    correct: int = 0


def _binary_accuracy(value, position: int) -> int:
    if value not in (0, 1):  # True/False and 0.0/1.0 compare equal to 0/1
        raise ValueError(f"accs must be 0/1 per sample, got {value!r} at index {position}")
    return int(value)


def _count_per_prompt(data_sources, prompt_uids, accs) -> dict[str, dict[str, _PromptCounts]]:
    lengths = {"data_sources": len(data_sources), "prompt_uids": len(prompt_uids), "accs": len(accs)}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"inputs must have one entry per sample, got lengths {lengths}")
    counts: dict[str, dict[str, _PromptCounts]] = defaultdict(lambda: defaultdict(_PromptCounts))
    for position, (benchmark, uid, acc) in enumerate(zip(data_sources, prompt_uids, accs)):
        prompt = counts[str(benchmark)][str(uid)]
        prompt.samples += 1
        prompt.correct += _binary_accuracy(acc, position)
    return counts


def _summarize_benchmark(benchmark: str, prompts: dict[str, _PromptCounts], k: int) -> dict:
    samples = np.array([p.samples for p in prompts.values()])
    correct = np.array([p.correct for p in prompts.values()])
    too_few = samples < k
    if np.any(too_few):
        uid = list(prompts)[int(np.argmax(too_few))]
        raise ValueError(
            f"benchmark {benchmark!r}: prompt {uid!r} has {prompts[uid].samples} samples, fewer than k={k}"
        )
    return {
        f"pass@{k}": float(np.mean(unbiased_pass_at_k(samples, correct, k))),
        f"avg@{k}": float(np.mean(avg_at_k(samples, correct, k))),
        "n_prompts": len(prompts),
        "samples_per_prompt": int(samples.min()),
        "samples_per_prompt_max": int(samples.max()),
    }


def summarize_by_benchmark(data_sources, prompt_uids, accs, k: int = 8) -> dict[str, dict]:
    """Per-benchmark pass@k and avg@k from flat per-sample lists (as collected in verl's validation).

    Samples are grouped by (data_source, prompt uid); each prompt contributes its own n and c, and the
    benchmark value is the mean over prompts. Returns
    {benchmark: {"pass@k", "avg@k", "n_prompts", "samples_per_prompt", "samples_per_prompt_max"}},
    with the literal k in the metric names (e.g. "pass@8") and benchmarks in sorted order;
    `samples_per_prompt` is the smallest per-prompt count (normally all are equal).
    Raises ValueError when lengths differ, an acc is not 0/1, or a prompt has fewer than k samples.
    """
    counts = _count_per_prompt(data_sources, prompt_uids, accs)
    return {benchmark: _summarize_benchmark(benchmark, counts[benchmark], k) for benchmark in sorted(counts)}


def prompt_counts(data_sources, prompt_uids, accs) -> dict[str, dict[str, tuple[int, int]]]:
    """{benchmark: {prompt uid: (samples, correct)}}: the per-prompt results a benchmark's score averages,
    kept so that runs can be compared prompt by prompt (paired bootstrap)."""
    counts = _count_per_prompt(data_sources, prompt_uids, accs)
    return {benchmark: {uid: (p.samples, p.correct) for uid, p in sorted(prompts.items())}
            for benchmark, prompts in sorted(counts.items())}


def _json_default(value):
    """numpy scalars and arrays, which json cannot serialise, as Python numbers and lists."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_results_json(path, results: dict, meta: dict) -> str:
    """Write {"meta": meta, "results": results} to `path` atomically (temp file in the same folder, then
    os.replace), so a reader never sees a half-written file. Creates the folder. Returns the path."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    descriptor, temporary_path = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=".json")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump({"meta": meta, "results": results}, handle, indent=2, sort_keys=True, default=_json_default)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary_path, path)
    except BaseException:
        os.unlink(temporary_path)
        raise
    return path
