"""The long-response variant of the CPU demo: scratchpad writer, its grading, its cache key and a tiny build.

The writer is checked against an independent reading of its lines (every column's digits, sum and carry),
not against itself; the default demo's cache key is pinned, because its measured results are tied to it.
"""

import re

import numpy as np
import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from aero_verl.demo import assets as assets_module
from aero_verl.demo.assets import DemoConfig, prepare_cpu_demo
from aero_verl.demo.model import build_tokenizer
from aero_verl.demo.reward import compute_score, final_answer
from aero_verl.demo.task import (
    LEVELS,
    Problem,
    SuccessSpread,
    TaskConfig,
    heldout_problems,
    train_pool,
    verl_row,
    write_parquet,
)
from aero_verl.demo.warm_start import encode_targets

# The answer-format demo's key since its results were measured (README, benchmarks/results): a change here
# means every cached demo rebuilds and those results describe another model.
DEFAULT_DEMO_KEY = "24cf1913e117efcd"
# A scratchpad build small enough for a test: 2 SFT steps, 15 held-out prompts, 2 samples each.
TINY_SCRATCHPAD_KNOBS = dict(response_format="scratchpad", max_new_tokens=64, max_position_embeddings=96,
                             max_sft_steps=2, train_size=10, val_per_level=3, samples_per_prompt=2)
QUIET = dict(progress=False, threads=1)

COLUMN = re.compile(r"(\d)\+(\d)\+([01])=(\d+) (\d+)")
PRODUCT = re.compile(r"(\d+)\*(\d)=(\d+)")


def read_column_addition(lines):
    """The two operands and the sum a column-addition scratchpad describes, checking every line on the way:
    column sum = digit + digit + carry, carry in = previous column's carry out, digits so far grow by the
    column's last digit, and the top column leaves no carry."""
    a = b = 0
    carry, digits = 0, ""
    for place, line in enumerate(lines):
        da, db, carry_in, column, so_far = COLUMN.fullmatch(line).groups()
        assert int(carry_in) == carry and int(column) == int(da) + int(db) + carry, line
        digits = str(int(column) % 10) + digits
        assert so_far == digits, line
        a, b, carry = a + int(da) * 10**place, b + int(db) * 10**place, int(column) // 10
    assert carry == 0
    return a, b, int(digits)


def read_scratchpad(problem):
    *steps, last = problem.response("scratchpad").split("\n")
    assert last == f"#### {problem.answer}"
    if problem.level.op == "+":
        assert read_column_addition(steps) == (problem.a, problem.b, problem.answer)
        return steps
    ones, tens = (PRODUCT.fullmatch(line).groups() for line in steps[:2])
    assert ones == (str(problem.a % 10), str(problem.b), str(problem.a % 10 * problem.b))
    assert tens == (str(problem.a // 10 * 10), str(problem.b), str(problem.a // 10 * 10 * problem.b))
    assert read_column_addition(steps[2:]) == (int(ones[2]), int(tens[2]), problem.answer)
    return steps


def every_problem(level):
    return [Problem(level, a, b) for a in range(level.a_range[0], level.a_range[1] + 1)
            for b in range(level.b_range[0], level.b_range[1] + 1)]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    out = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(out)
    return AutoTokenizer.from_pretrained(out)


# --- the scratchpad writer -------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", LEVELS, ids=lambda level: level.name)
def test_scratchpad_is_right_for_every_problem_of_a_level(level):
    # L3/L4 have 8k/81k problems: the corners and a uniform sample stand in for all of them
    problems = every_problem(level) if level.space <= 1000 else (
        [Problem(level, a, b) for a in level.a_range for b in level.b_range]
        + [level.sample(np.random.default_rng(level.number)) for _ in range(2000)]
    )
    for problem in problems:
        steps = read_scratchpad(problem)
        if problem.level.op == "+":  # one column per digit of the longer operand, plus one for a final carry
            assert len(steps) == len(str(max(problem.a, problem.b))) + (len(str(problem.answer)) >
                                                                       len(str(max(problem.a, problem.b))))


def test_scratchpad_examples():
    l1, l4, l5 = LEVELS[0], LEVELS[3], LEVELS[4]
    assert Problem(l4, 345, 67).response("scratchpad") == "5+7+0=12 2\n4+6+1=11 12\n3+0+1=4 412\n#### 412"
    assert Problem(l5, 23, 7).response("scratchpad") == (
        "3*7=21\n20*7=140\n1+0+0=1 1\n2+4+0=6 61\n0+1+0=1 161\n#### 161")
    assert Problem(l1, 0, 0).response("scratchpad") == "0+0+0=0 0\n#### 0"
    assert Problem(l1, 7, 5).response("answer") == "12"
    with pytest.raises(ValueError, match="response_format"):
        Problem(l1, 7, 5).response("essay")


def test_scratchpad_lengths_grow_with_the_level(tokenizer):
    """Byte tokens: 17-59 per correct response with eos (the answer format's are 2-5), longer at harder
    levels, so the levels AERO rescues are also the ones that take longest to sample."""
    problems = heldout_problems() + train_pool(TaskConfig(), 0, set())
    lengths = np.array([len(ids) for ids in encode_targets(tokenizer, problems, "scratchpad")])
    levels = np.array([problem.level.name for problem in problems])
    assert (lengths.min(), lengths.max()) == (17, 59)
    mean = {level.name: lengths[levels == level.name].mean() for level in LEVELS}
    assert mean["L1"] < mean["L2"] < mean["L3"] < mean["L4"] and mean["L5"] > mean["L3"]


# --- grading --------------------------------------------------------------------------------------------------


SCRATCHPAD = {"response_format": "scratchpad"}


@pytest.mark.parametrize(
    "response, expected",
    [
        ("5+7+0=12 2\n4+6+1=11 12\n3+0+1=4 412\n#### 412", 1.0),
        ("5+7+0=12 2\n4+6+1=11 12\n3+0+1=4 412\n#### 412<|im_end|>", 1.0),
        ("#### 412", 1.0),  # the steps are not graded, only the answer after the marker
        ("wrong steps 1+1=3\n####412\n", 1.0),
        ("5+7+0=12 2\n#### 413", 0.0),
        ("5+7+0=12 2\n#### 0412", 0.0),  # the canonical form, as in the answer format
        ("5+7+0=12 2\n3+0+1=4 412", 0.0),  # no marker, no answer
        ("412", 0.0),  # the answer format's response is not a scratchpad
        ("#### 412\n#### 412", 0.0),  # after the first marker comes all the rest
        ("#### 41", 0.0),  # cut at the budget inside the answer
        ("", 0.0),
    ],
)
def test_scratchpad_grading(response, expected):
    assert compute_score("arith/L4", response, "412", extra_info=SCRATCHPAD) == {"score": expected, "acc": expected}


def test_reward_copies_the_task_constants():
    from aero_verl.demo import reward, task

    assert (reward.ANSWER_MARKER, reward.RESPONSE_FORMATS) == (task.ANSWER_MARKER, task.RESPONSE_FORMATS)


def test_answer_rows_keep_the_exact_match_rule():
    for extra_info in (None, {}, {"index": 1}, {"response_format": "answer"}):
        assert compute_score("arith/L4", "412", "412", extra_info=extra_info)["score"] == 1.0
        assert compute_score("arith/L4", "#### 412", "412", extra_info=extra_info)["score"] == 0.0
    with pytest.raises(ValueError, match="response_format"):
        final_answer("412", "essay")


def test_every_scratchpad_target_is_graded_correct_under_both_verl_decodings(tokenizer):
    problems = heldout_problems()
    for problem, ids in zip(problems, encode_targets(tokenizer, problems, "scratchpad")):
        for skip_special_tokens in (True, False):
            text = tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
            assert compute_score(problem.level.data_source, text, str(problem.answer), SCRATCHPAD)["score"] == 1.0


# --- rows, keys and the built assets ----------------------------------------------------------------------------


def test_rows_name_the_format_only_for_scratchpads():
    problem = heldout_problems()[0]
    assert verl_row(problem) == verl_row(problem, "answer")
    assert set(verl_row(problem)["extra_info"]) == {"index", "level", "question"}  # the demo's files, unchanged
    assert verl_row(problem, "scratchpad")["extra_info"]["response_format"] == "scratchpad"
    assert verl_row(problem, "scratchpad")["reward_model"] == verl_row(problem)["reward_model"]


def test_default_demo_key_is_unchanged_and_scratchpads_key_apart(monkeypatch):
    assert DemoConfig().cache_key() == DEFAULT_DEMO_KEY
    assert DemoConfig.from_knobs(response_format="answer").cache_key() == DEFAULT_DEMO_KEY
    assert "scratchpad" not in DemoConfig().versions()
    scratchpad_key = DemoConfig.from_knobs(response_format="scratchpad").cache_key()
    assert scratchpad_key != DEFAULT_DEMO_KEY
    monkeypatch.setattr(assets_module, "SCRATCHPAD_VERSION", assets_module.SCRATCHPAD_VERSION + 1)
    assert DemoConfig.from_knobs(response_format="scratchpad").cache_key() != scratchpad_key
    assert DemoConfig().cache_key() == DEFAULT_DEMO_KEY  # a scratchpad change never rebuilds the demo


def test_spread_keeps_lengths_and_reads_manifests_without_them():
    correct = np.array([[True, False], [False, False]])
    lengths = np.array([[20, 64], [40, 50]])
    truncated = np.array([[False, True], [False, False]])
    spread = SuccessSpread.from_samples(["L1", "L5"], correct, lengths, truncated)
    assert spread.histogram == [1, 1, 0] and spread.per_level == {"L1": [0, 1, 0], "L5": [1, 0, 0]}
    assert (spread.lengths["all"].correct_mean, spread.lengths["all"].incorrect_mean) == (20.0, pytest.approx(154 / 3))
    assert spread.lengths["all"].truncated_share == 0.25 and spread.lengths["all"].longest == 64
    assert spread.lengths["L5"].correct_mean is None and spread.lengths["L5"].longest == 50
    assert SuccessSpread.from_dict(spread.to_dict()) == spread
    assert "tok bad" in spread.table()
    old = {key: value for key, value in spread.to_dict().items() if key != "lengths"}  # an older manifest
    assert SuccessSpread.from_dict(old).lengths == {} and "tok bad" not in SuccessSpread.from_dict(old).table()


def test_tiny_scratchpad_build(tmp_path):
    assets = prepare_cpu_demo(cache_dir=tmp_path, **QUIET, **TINY_SCRATCHPAD_KNOBS)
    assert assets.manifest["versions"]["scratchpad"] == assets_module.SCRATCHPAD_VERSION
    assert assets.max_prompt_tokens <= 26 and assets.max_response_tokens <= 59
    assert assets.spread.num_prompts == 3 + 4 * 3 and set(assets.spread.lengths) == {"all", *assets.spread.per_level}
    incorrect = assets.spread.lengths["all"].incorrect_mean  # two SFT steps: every sample is wrong
    assert assets.spread.zero_share == 1.0 and 1 <= incorrect <= 64
    rows = pq.read_table(assets.val_parquet).to_pylist()
    assert all(row["extra_info"]["response_format"] == "scratchpad" for row in rows)


def test_scratchpad_rows_reach_the_reward_through_verl(tmp_path, tokenizer):
    """verl's dataset hands the row's extra_info on unchanged, so the reward grades it as a scratchpad."""
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    problems = heldout_problems()[::20]
    path = str(tmp_path / "val.parquet")
    write_parquet(problems, path, "scratchpad")
    dataset = RLHFDataset([path], tokenizer, OmegaConf.create({"max_prompt_length": 26}))
    for problem, row in zip(problems, dataset):
        right, answer_only = problem.response("scratchpad"), problem.response("answer")
        ground_truth = row["reward_model"]["ground_truth"]
        assert compute_score(row["data_source"], right, ground_truth, row["extra_info"])["score"] == 1.0
        assert compute_score(row["data_source"], answer_only, ground_truth, row["extra_info"])["score"] == 0.0


@pytest.mark.parametrize(
    "knobs, complaint",
    [
        (dict(max_new_tokens=40), "shorter than the longest correct response"),
        (dict(max_new_tokens=128, max_position_embeddings=128), "cannot hold the longest prompt"),
    ],
)
def test_build_refuses_lengths_that_cannot_hold_a_scratchpad(tmp_path, knobs, complaint):
    with pytest.raises(ValueError, match=complaint):
        prepare_cpu_demo(cache_dir=tmp_path, **QUIET, **{**TINY_SCRATCHPAD_KNOBS, **knobs})
