"""Exact-match reward for the CPU demo's arithmetic task, in the shape verl's custom reward hook expects.

Two response formats (aero_verl/demo/task.py): "answer" rows are graded on the whole response, "scratchpad"
rows on the text after the `####` marker that ends the worked solution (the steps themselves are not
graded, as with GSM8K). verl passes each row's `extra_info`, which names the format of scratchpad rows.

verl loads this file by path (`reward.custom_reward_function.path=<this file>`, `name=compute_score`) with
`importlib.util.spec_from_file_location`, outside any package, so it must import nothing but the standard
library and nothing relative.

How verl 0.9.1 hands over the response: its reward managers (`experimental/reward_loop/reward_manager/naive.py`
and the others) cut the response at its valid length and decode it with `skip_special_tokens=True`, so the
closing `<|im_end|>` has already been removed and `solution_str` is just the generated text. Other callers
(the demo's own sampler, a future reward manager) may decode with special tokens kept, so the text is also
cut at the first end-of-turn marker. Either way the answer is the text before the end of the turn.

Known blind spot of the skip_special_tokens path: a response truncated at `max_response_length` without
`<|im_end|>` looks like a finished one. With answers of at most 4 digits and a response budget of >= 8 tokens a
truncated response is >= 8 characters, so it can only match if it is the answer padded with whitespace,
which the SFT data never contains. A scratchpad cut short matches only if the cut falls right after the
answer's last digit, and then it is the right answer.
"""

from __future__ import annotations

# Ends of a turn in the demo tokenizer's vocabulary; text after the first one is not part of the answer.
END_OF_TURN_MARKERS = ("<|im_end|>", "<|endoftext|>")
# Copies of task.py's constants: this file may import nothing from the package (see above).
ANSWER_MARKER = "####"
RESPONSE_FORMATS = ("answer", "scratchpad")


def answer_text(response_text: str) -> str:
    """The stripped text before the first end-of-turn marker (the whole text if there is none)."""
    for marker in END_OF_TURN_MARKERS:
        response_text = response_text.split(marker, 1)[0]
    return response_text.strip()


def final_answer(response_text: str, response_format: str = "answer") -> str | None:
    """The text that is graded: the whole turn for "answer", the text after the first `####` for
    "scratchpad" (None without a marker). After the first marker, not the last: a scratchpad that writes a
    second `#### ...` has not settled on an answer, and the exact match below then fails it."""
    text = answer_text(response_text)
    if response_format == "answer":
        return text
    if response_format == "scratchpad":
        _, marker, after = text.partition(ANSWER_MARKER)
        return after.strip() if marker else None
    raise ValueError(f"response_format must be one of {RESPONSE_FORMATS}, got {response_format!r}")


def is_correct(response_text: str, answer: int | str, response_format: str = "answer") -> bool:
    """Exact integer match: the graded text must be the canonical decimal form of `answer` ("7", not "07"
    or "7.0"), because the demo teaches exactly that form and partial credit would blur the 0/1 groups."""
    try:
        expected = str(int(str(answer).strip()))
    except ValueError:
        return False  # a malformed ground truth can never be matched
    return final_answer(response_text, response_format) == expected


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict[str, float]:
    """verl custom reward: `score` is the reward, `acc` feeds verl's per-data_source validation metrics.
    Rows without a `response_format` in `extra_info` are answer rows (the demo's files never name it)."""
    response_format = (extra_info or {}).get("response_format", "answer")
    score = 1.0 if is_correct(solution_str, ground_truth, response_format) else 0.0
    return {"score": score, "acc": score}
