"""Dataset preparation on offline fixtures shaped like each registered hub dataset: output schema (read back
by verl's RLHFDataset), stable ids, duplicates, invalid rows, error messages and the command line."""

import json
import os
import random
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aero_verl.data import prepare
from aero_verl.data.prepare import DAPO_PROMPT_PREFIX, DAPO_PROMPT_SUFFIX, DEFAULT_INSTRUCTION, REGISTRY, main

QUESTIONS_AND_ANSWERS = [
    ("What is $1+1$?", "2"),
    ("Compute $\\frac{1}{2} + 0$.", "\\frac{1}{2}"),
    ("Find $x$ if $x^2 = 9$ and $x > 0$.", "3"),
    ("How many primes are below 10?", "4"),
]


def hub_shaped_row(name: str, question: str, answer: str, position: int) -> dict:
    """One row with the field layout the registry assumes for dataset `name` on the hub."""
    if name == "dapo_math_17k":
        return {
            "data_source": "math_dapo",
            "prompt": [{"content": DAPO_PROMPT_PREFIX + question + DAPO_PROMPT_SUFFIX, "role": "user"}],
            "ability": "MATH",
            "reward_model": {"ground_truth": answer, "style": "rule-lighteval/MATH_v2"},
            "extra_info": {"index": f"uuid-{position}"},
        }
    if name == "dapo_math_17k_cleaned":
        return {"prompt": question, "target": answer}
    if name == "math_train":
        solution = f"First \\boxed{{0}} is wrong. Hence the answer is $\\boxed{{{answer}}}$."
        return {"problem": question, "level": "Level 1", "type": "Algebra", "solution": solution}
    if name == "deepscaler":
        return {"problem": question, "answer": answer, "solution": "..."}
    if name == "math500":
        return {
            "problem": question,
            "solution": "...",
            "answer": answer,
            "subject": "Algebra",
            "level": 1,
            "unique_id": f"test/algebra/{position}.json",
        }
    if name == "aime24":
        return {"id": position, "problem": question, "solution": "...", "answer": answer, "url": "u", "year": "2024"}
    if name == "amc23":
        return {"id": position, "question": question, "answer": answer, "url": "u"}
    if name == "minerva":
        return {"question": question, "answer": answer, "type": "Physics"}
    if name == "olympiadbench":
        return {"id": position, "question": question, "solution": ["..."], "final_answer": [f"${answer}$"]}
    raise AssertionError(f"no fixture for registered dataset {name!r}: add one here")


def write_rows(path, rows) -> str:
    path = str(path)
    if path.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.endswith(".jsonl"):
        with open(path, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
    else:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(rows, handle)
    return path


def fixture_file(tmp_path, name: str, suffix: str = ".jsonl", pairs=QUESTIONS_AND_ANSWERS) -> str:
    rows = [hub_shaped_row(name, q, a, i) for i, (q, a) in enumerate(pairs)]
    return write_rows(tmp_path / f"{name}_input{suffix}", rows)


def convert(tmp_path, name: str, input_path: str, *extra: str) -> tuple[int, list[dict]]:
    """Run the CLI entry in-process; returns (exit code, output rows or [])."""
    out_dir = tmp_path / "out"
    code = main(["--dataset", name, "--source", "local", "--local-path", input_path, "--out", str(out_dir), *extra])
    outputs = sorted(out_dir.glob("*.parquet")) if out_dir.exists() else []
    return code, pq.read_table(outputs[0]).to_pylist() if outputs else []


def test_every_registered_dataset_has_a_fixture():
    for name in REGISTRY:
        hub_shaped_row(name, "q", "1", 0)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".json"])
@pytest.mark.parametrize("name", list(REGISTRY))
def test_converts_each_registered_dataset_to_verl_rows(tmp_path, name, suffix):
    code, rows = convert(tmp_path, name, fixture_file(tmp_path, name, suffix))
    assert code == 0
    spec = REGISTRY[name]
    assert [(r["extra_info"]["question"], r["reward_model"]["ground_truth"]) for r in rows] == QUESTIONS_AND_ANSWERS
    for row, (question, _) in zip(rows, QUESTIONS_AND_ANSWERS):
        assert set(row) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
        assert row["data_source"] == spec.data_source
        assert row["prompt"] == [{"role": "user", "content": f"{question} {DEFAULT_INSTRUCTION}"}]
        assert row["ability"] == "math"
        assert row["reward_model"]["style"] == "rule"
        index, prompt_id = prepare.stable_ids(question)
        assert row["extra_info"] == {"index": index, "split": spec.split, "question": question, "prompt_id": prompt_id}


def test_output_file_name_and_summary_line(tmp_path, capsys):
    code, _ = convert(tmp_path, "math500", fixture_file(tmp_path, "math500"), "--split", "test[:2%]")
    assert code == 0
    assert (tmp_path / "out" / "math500_test_2.parquet").is_file()
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("wrote 4 rows to ") and "read 4" in out[0]


def test_stable_ids_are_pinned_and_ignore_whitespace():
    # Pinned literal: a change here silently re-keys every per-prompt state on every machine.
    assert prepare.stable_ids("What is $1+1$?") == (0x4CD0EE8962F3E, "4cd0ee8962f3e3c5")
    assert prepare.stable_ids("  What is\n$1+1$?  ") == prepare.stable_ids("What is $1+1$?")
    assert prepare.stable_ids("What is $1+1$?")[0] < 2**52
    assert prepare.stable_ids("What is $X+1$?") != prepare.stable_ids("What is $x+1$?")


def test_ids_are_identical_across_runs_and_row_order(tmp_path):
    pairs = [(f"Question number {i}: compute ${i}+{i}$.", str(2 * i)) for i in range(30)]
    first = convert(tmp_path / "a", "minerva", fixture_file(tmp_path, "minerva", pairs=pairs))[1]
    again = convert(tmp_path / "b", "minerva", fixture_file(tmp_path, "minerva", pairs=pairs))[1]
    shuffled_pairs = pairs[:]
    random.Random(0).shuffle(shuffled_pairs)
    shuffled = convert(tmp_path / "c", "minerva", fixture_file(tmp_path, "minerva", pairs=shuffled_pairs))[1]
    assert first == again

    def ids(rows):
        return {r["extra_info"]["question"]: (r["extra_info"]["index"], r["extra_info"]["prompt_id"]) for r in rows}

    assert ids(shuffled) == ids(first)
    assert [r["extra_info"]["question"] for r in shuffled] == [q for q, _ in shuffled_pairs]  # input order kept
    assert len({index for index, _ in ids(first).values()}) == 30


def test_duplicate_questions_are_dropped_and_counted(tmp_path, capsys):
    pairs = QUESTIONS_AND_ANSWERS + [("What is  $1+1$?", "2"), ("What is $1+1$?", "3"), QUESTIONS_AND_ANSWERS[1]]
    code, rows = convert(tmp_path, "math500", fixture_file(tmp_path, "math500", pairs=pairs))
    assert code == 0
    assert [(r["extra_info"]["question"], r["reward_model"]["ground_truth"]) for r in rows] == QUESTIONS_AND_ANSWERS
    summary = capsys.readouterr().out
    assert "dropped 3 rows repeating a question, 1 of them with a different answer" in summary


def test_keep_duplicates_keeps_them_with_shared_ids(tmp_path, capsys):
    pairs = QUESTIONS_AND_ANSWERS + [QUESTIONS_AND_ANSWERS[0]]
    code, rows = convert(tmp_path, "math500", fixture_file(tmp_path, "math500", pairs=pairs), "--keep-duplicates")
    assert code == 0 and len(rows) == 5
    assert rows[0]["extra_info"] == rows[4]["extra_info"]
    assert "kept 1 rows repeating a question" in capsys.readouterr().out


def test_empty_questions_or_answers_are_an_error_that_counts_them(tmp_path, capsys):
    pairs = QUESTIONS_AND_ANSWERS + [("   ", "1"), ("Another question?", ""), ("Third?", "  ")]
    code, rows = convert(tmp_path, "deepscaler", fixture_file(tmp_path, "deepscaler", pairs=pairs))
    assert code == 2 and rows == []  # nothing written
    error = capsys.readouterr().err
    assert "1 rows with an empty question (first at input row 4)" in error
    assert "2 rows with an empty answer (first at input row 5)" in error
    assert "--skip-invalid" in error


def test_skip_invalid_drops_them_and_reports_the_count(tmp_path, capsys):
    pairs = [("No box here?", "ignored")] + QUESTIONS_AND_ANSWERS
    path = write_rows(
        tmp_path / "math.jsonl",
        [
            {"problem": q, "solution": "no boxed answer" if i == 0 else f"\\boxed{{{a}}}"}
            for i, (q, a) in enumerate(pairs)
        ],
    )
    code, rows = convert(tmp_path, "math_train", path, "--skip-invalid")
    assert code == 0 and len(rows) == 4
    assert "dropped 1 rows with an empty question or answer" in capsys.readouterr().out


def test_missing_field_names_the_field_and_the_columns_found(tmp_path, capsys):
    path = write_rows(tmp_path / "bad.jsonl", [{"problem": "q?", "final": "1"}])
    code, _ = convert(tmp_path, "math500", path)
    assert code == 2
    error = capsys.readouterr().err
    assert "answer field 'answer'" in error and "['problem', 'final']" in error and "--answer-field" in error


def test_field_mapping_can_be_overridden(tmp_path):
    path = write_rows(tmp_path / "custom.jsonl", [{"q": {"text": "What is 2+2?"}, "sol": "so \\boxed{4}"}])
    code, rows = convert(
        tmp_path,
        "math500",
        path,
        "--question-field",
        "q.text",
        "--answer-field",
        "sol",
        "--answer-extractor",
        "last_boxed",
        "--data-source",
        "my_math",
        "--instruction",
        "",
    )
    assert code == 0
    assert rows[0]["prompt"][0]["content"] == "What is 2+2?"
    assert rows[0]["reward_model"]["ground_truth"] == "4" and rows[0]["data_source"] == "my_math"


def test_unknown_dataset_lists_the_valid_names(tmp_path, capsys):
    code, _ = convert(tmp_path, "gsm9k", fixture_file(tmp_path, "math500"))
    assert code == 2
    error = capsys.readouterr().err
    assert "unknown dataset 'gsm9k'" in error and all(name in error for name in REGISTRY)


def test_limit_keeps_the_first_rows(tmp_path):
    code, rows = convert(tmp_path, "aime24", fixture_file(tmp_path, "aime24"), "--limit", "2")
    assert code == 0 and [r["extra_info"]["question"] for r in rows] == [q for q, _ in QUESTIONS_AND_ANSWERS[:2]]


def test_float_answer_column_becomes_integer_text(tmp_path):
    # Some copies of amc23 store answers as floats (27.0); the ground truth must read "27".
    path = write_rows(
        tmp_path / "amc.parquet", [{"question": "Q1?", "answer": 27.0}, {"question": "Q2?", "answer": 0.5}]
    )
    code, rows = convert(tmp_path, "amc23", path)
    assert code == 0 and [r["reward_model"]["ground_truth"] for r in rows] == ["27", "0.5"]


def test_answer_extractors():
    assert prepare.answer_from_last_boxed("\\boxed{1} then \\boxed{\\frac{a}{b}}") == "\\frac{a}{b}"
    assert prepare.answer_from_last_boxed("no box") == ""
    assert prepare.answer_from_first_list_item(["$x^2$", "$y$"]) == "x^2"
    assert prepare.answer_from_first_list_item([]) == ""
    assert (
        prepare.answer_as_is(27.0) == "27" and prepare.answer_as_is(0.5) == "0.5" and prepare.answer_as_is(None) == ""
    )


def test_dapo_template_is_removed_and_other_text_kept():
    assert prepare.question_without_dapo_template(DAPO_PROMPT_PREFIX + "Q?" + DAPO_PROMPT_SUFFIX) == "Q?"
    assert prepare.question_without_dapo_template("Plain question?") == "Plain question?"


def test_hub_source_reads_through_datasets_load_dataset(tmp_path, monkeypatch):
    """The hub path with datasets.load_dataset replaced by an in-memory Dataset of the same shape."""
    import datasets

    rows = [hub_shaped_row("dapo_math_17k", q, a, i) for i, (q, a) in enumerate(QUESTIONS_AND_ANSWERS * 3)]
    requests = []

    def fake_load_dataset(path, name=None, split=None):
        requests.append((path, name, split))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert main(["--dataset", "dapo_math_17k", "--source", "hub", "--out", str(tmp_path)]) == 0
    assert requests == [("BytedTsinghua-SIA/DAPO-Math-17k", None, "train")]
    written = pq.read_table(tmp_path / "dapo_math_17k_train.parquet").to_pylist()
    assert [(r["extra_info"]["question"], r["reward_model"]["ground_truth"]) for r in written] == QUESTIONS_AND_ANSWERS


def test_hub_detection_honours_offline_variables(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert prepare.hub_is_reachable() is False


def test_unreachable_hub_without_local_path_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["--dataset", "math500", "--out", str(tmp_path)]) == 2
    assert "pass --local-path" in capsys.readouterr().err


def test_list_prints_the_registry(capsys):
    assert main(["--list"]) == 0
    listing = capsys.readouterr().out
    assert all(spec.hub_id in listing for spec in REGISTRY.values())


@pytest.fixture(scope="module")
def chatml_tokenizer(tmp_path_factory):
    """Byte-level BPE without merges plus a ChatML template, built offline (docs/cpu_task.md)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {token: i for i, token in enumerate(specials + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="<|im_end|>", pad_token="<pad>"
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    return tokenizer


def test_output_is_readable_by_verl_rlhf_dataset(tmp_path, chatml_tokenizer):
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    code, rows = convert(tmp_path, "math500", fixture_file(tmp_path, "math500", suffix=".parquet"))
    assert code == 0
    config = OmegaConf.create(
        {
            "max_prompt_length": 256,
            "filter_overlong_prompts": True,
            "filter_overlong_prompts_workers": 1,
            "cache_dir": str(tmp_path / "cache"),
        }
    )
    dataset = RLHFDataset(str(tmp_path / "out" / "math500_test.parquet"), chatml_tokenizer, config)
    assert len(dataset) == len(QUESTIONS_AND_ANSWERS)  # no prompt lost by the length filter
    item = dataset[1]
    assert item["raw_prompt"] == rows[1]["prompt"]
    assert item["index"] == rows[1]["extra_info"]["index"]
    assert item["extra_info"]["prompt_id"] == rows[1]["extra_info"]["prompt_id"]
    assert item["reward_model"]["ground_truth"] == "\\frac{1}{2}"
    assert item["data_source"] == "math500"


def test_cli_help_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "aero_verl.data.prepare", "--help"], capture_output=True, text=True, check=True
    )
    assert "--dataset" in result.stdout and "--local-path" in result.stdout and "--skip-invalid" in result.stdout


def test_cli_converts_a_file_and_falls_back_to_local_when_offline(tmp_path):
    input_path = fixture_file(tmp_path, "olympiadbench", suffix=".parquet")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "aero_verl.data.prepare",
            "--dataset",
            "olympiadbench",
            "--local-path",
            input_path,
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("wrote 4 rows to ")
    rows = pq.read_table(tmp_path / "out" / "olympiadbench_test.parquet").to_pylist()
    assert [r["reward_model"]["ground_truth"] for r in rows] == [a for _, a in QUESTIONS_AND_ANSWERS]
    assert not [p for p in os.listdir(tmp_path / "out") if p.endswith(".tmp")]
