"""The math_verify reward: answer extraction, equivalent forms, robustness, and grading off the main thread
(where verl calls it and math_verify's signal-based timeout cannot run)."""

import asyncio
import threading
import time

import numpy as np
import pytest
import torch

import aero_verl.rewards.math_verify_reward as reward
from aero_verl.rewards import compute_score, extract_final_answer


def score(solution_str, ground_truth, **kwargs) -> float:
    result = compute_score("math500", solution_str, ground_truth, **kwargs)
    assert set(result) == {"score", "acc", "pred"} and result["score"] == result["acc"]
    return result["score"]


def in_thread(function):
    """Run `function` in a non-main thread, as verl's reward loop does (loop.run_in_executor)."""
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(value=function()))
    worker.start()
    worker.join()
    return outcome["value"]


@pytest.mark.parametrize(
    ("boxed", "ground_truth"),
    [
        ("\\frac{1}{2}", "1/2"),
        ("0.5", "\\frac{1}{2}"),
        ("1/2", "0.5"),
        ("\\dfrac12", "\\frac{1}{2}"),
        ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2"),
        ("27", "27.0"),
        ("x + 1", "1+x"),
        ("\\left(1, 2\\right)", "(1,2)"),
        ("\\text{(B)}", "B"),
        ("2\\pi", "2 \\pi"),
    ],
)
def test_equivalent_forms_score_one(boxed, ground_truth):
    assert score(f"Some reasoning... so the answer is \\boxed{{{boxed}}}.", ground_truth) == 1.0


@pytest.mark.parametrize(
    ("boxed", "ground_truth"),
    [("0.25", "1/2"), ("3", "2"), ("x - 1", "x + 1"), ("\\frac{1}{3}", "0.33"), ("(1, 2)", "(2, 1)")],
)
def test_wrong_answers_score_zero(boxed, ground_truth):
    assert score(f"\\boxed{{{boxed}}}", ground_truth) == 0.0


def test_only_the_last_box_counts():
    assert score("first \\boxed{7}, corrected: \\boxed{8}", "8") == 1.0
    assert score("first \\boxed{8}, corrected: \\boxed{7}", "8") == 0.0


def test_nested_braces_inside_the_box():
    assert score("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}") == 1.0
    assert extract_final_answer("a \\boxed{\\frac{1}{2}} b") == "\\frac{1}{2}"


def test_fbox_and_unbraced_box():
    assert score("\\fbox{12}", "12") == 1.0
    assert score("\\boxed 12", "12") == 1.0


def test_no_box_and_no_final_answer_statement_scores_zero_even_if_the_number_appears():
    result = compute_score("math500", "I computed 42 and I am confident it is 42.", "42")
    assert result == {"score": 0.0, "acc": 0.0, "pred": ""}


def test_final_answer_statements_count_when_there_is_no_box():
    assert score("...\nFinal Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.", "0.5") == 1.0
    assert score("Work.\nAnswer: 34", "34") == 1.0
    assert score("Answer: 12\nmore thinking\nAnswer: 34", "12") == 0.0  # the last statement counts


def test_pred_is_the_extracted_answer():
    assert compute_score("aime24", "so \\boxed{ 204 }", "204")["pred"] == "204"


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        123,
        b"\\boxed{1}",
        "",
        "\\boxed{",
        "\\boxed{}",
        "\\boxed{\\frac{1}{",
        "\\boxed{)(*&^%$#@!}",
        "}}}{{{",
        "\x00\\boxed{\x00}",
    ],
)
def test_malformed_input_scores_zero_without_raising(garbage):
    assert score(garbage, "1") == 0.0


@pytest.mark.parametrize("ground_truth", [None, "", "   ", ["1"], True])
def test_malformed_ground_truth_scores_zero(ground_truth):
    assert score("\\boxed{1}", ground_truth) == 0.0


def test_accepts_verl_keyword_arguments():
    result = compute_score(
        data_source="amc23",
        solution_str="\\boxed{3}",
        ground_truth="3",
        extra_info={"index": 1, "num_turns": None, "rollout_reward_scores": {}},
        reward_router_address=None,
        reward_model_tokenizer=None,
    )
    assert result["score"] == 1.0


def test_pathological_answer_times_out_in_main_thread():
    started = time.monotonic()
    assert score("\\boxed{9^{9^{9^{9}}}}", "1", timeout_s=1) == 0.0
    assert time.monotonic() - started < 10


def test_grades_correctly_off_the_main_thread():
    # math_verify alone raises ValueError here ("signal only works in main thread").
    assert in_thread(lambda: score("\\boxed{0.5}", "\\frac{1}{2}")) == 1.0
    assert in_thread(lambda: score("\\boxed{0.25}", "\\frac{1}{2}")) == 0.0


def test_pathological_answer_off_the_main_thread_is_bounded_by_the_worker_timeout():
    started = time.monotonic()
    assert in_thread(lambda: score("\\boxed{9^{9^{9^{9}}}}", "1", timeout_s=1)) == 0.0
    assert time.monotonic() - started < 10


def test_stuck_worker_is_killed_and_replaced(monkeypatch):
    # An outer wait shorter than the worker's own 1 s timeout stands in for sympy stuck in C code.
    monkeypatch.setattr(reward, "OUTER_WAIT_FACTOR", 0)
    monkeypatch.setattr(reward, "OUTER_WAIT_MARGIN_S", 0.3)
    started = time.monotonic()
    assert in_thread(lambda: score("\\boxed{9^{9^{9^{9}}}}", "1", timeout_s=1)) == 0.0
    assert time.monotonic() - started < 5
    monkeypatch.setattr(reward, "OUTER_WAIT_MARGIN_S", 30.0)
    assert in_thread(lambda: score("\\boxed{2}", "2")) == 1.0


def test_concurrent_calls_from_many_threads():
    from concurrent.futures import ThreadPoolExecutor

    def grade(i):
        return compute_score("math500", f"\\boxed{{{i}/4}}", str(i / 4))["acc"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(grade, range(40))) == [1.0] * 40


class _ByteTokenizer:
    """Just enough of a tokenizer for verl's NaiveRewardManager: token ids are UTF-8 bytes."""

    def decode(self, token_ids, skip_special_tokens=True):
        return bytes(token_ids.tolist()).decode("utf-8")


def test_verl_naive_reward_manager_calls_it_through_the_custom_function_loader():
    """The path verl takes: reward.custom_reward_function (pkg://) -> NaiveRewardManager.run_single, which
    calls the synchronous function in an executor thread and turns the dict into reward_extra_info."""
    from omegaconf import OmegaConf
    from verl import DataProto
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.trainer.ppo.reward import get_custom_reward_fn

    config = OmegaConf.create(
        {
            "reward": {
                "custom_reward_function": {
                    "path": "pkg://aero_verl.rewards.math_verify_reward",
                    "name": "compute_score",
                    "reward_kwargs": {"timeout_s": 2},
                }
            }
        }
    )
    response = list(b"so \\boxed{\\frac{1}{2}}")
    prompt = list(b"Q: ")
    data = DataProto.from_dict(
        tensors={
            "responses": torch.tensor([response]),
            "prompts": torch.tensor([prompt]),
            "attention_mask": torch.ones(1, len(prompt) + len(response), dtype=torch.long),
        },
        non_tensors={
            "data_source": np.array(["math500"], dtype=object),
            "reward_model": np.array([{"style": "rule", "ground_truth": "0.5"}], dtype=object),
            "extra_info": np.array([{"index": 3}], dtype=object),
        },
    )
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        manager = NaiveRewardManager(config, _ByteTokenizer(), get_custom_reward_fn(config))
        output = loop.run_until_complete(manager.run_single(data))
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    assert output["reward_score"] == 1.0
    assert output["reward_extra_info"] == {"score": 1.0, "acc": 1.0, "pred": "\\frac{1}{2}"}


@pytest.mark.parametrize("ground_truth", [204, np.int64(204), 204.0])
def test_numeric_ground_truth_is_accepted(ground_truth):
    assert score("\\boxed{204}", ground_truth) == 1.0


def test_a_worker_that_died_while_idle_is_replaced_without_losing_the_answer():
    assert in_thread(lambda: score("\\boxed{5}", "5")) == 1.0  # leaves an idle worker in the pool
    for worker in reward._grading_pool._idle:
        worker.process.kill()
        worker.process.wait()
    assert in_thread(lambda: score("\\boxed{5}", "5")) == 1.0
