"""Stable prompt keys for the posterior and the dataset checks that make them trustworthy."""

import pytest

from aero_verl.verl_ext.prompts import DatasetCheckError, check_training_prompts, content_key, prompt_keys


def messages(text):
    return [{"role": "user", "content": text}]

def test_content_keys_are_stable_and_ignore_extra_message_fields():
    a = [{"role": "user", "content": "7+5=", "name": None}]
    assert content_key(a) == content_key(messages("7+5="))
    assert content_key(messages("7+5=")) != content_key(messages("7+6="))
    assert prompt_keys("index", [None, None], [3, 9]).tolist() == [3, 9]

def test_dataset_checks():
    report = check_training_prompts("index", [messages("a"), messages("b")], [0, 1], "train")
    assert report.rows == 2 and report.duplicate_prompts == 0
    with pytest.raises(DatasetCheckError, match="no extra_info.index.*prompt_key=content"):
        check_training_prompts("index", [messages("a"), messages("b")], [0, None], "train")
    with pytest.raises(DatasetCheckError, match="not unique"):
        check_training_prompts("index", [messages("a"), messages("b")], [4, 4], "train")
    with pytest.raises(DatasetCheckError, match="empty prompt"):
        check_training_prompts("content", [messages("a"), messages("  ")], [0, 1], "train")
    duplicated = check_training_prompts("content", [messages("a"), messages("a")], [None, None], "train")
    assert duplicated.duplicate_prompts == 1
    assert report.fingerprint != check_training_prompts("index", [messages("a"), messages("b")], [0, 2], "t").fingerprint
