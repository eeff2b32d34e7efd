import json

import pytest

from academe.protocols.grading import extract_answer, is_correct, mentions
from academe.protocols.tasks import TaskFileError, generate_word_problems, load_task_file, parse_gsm8k
from tests_paths import GSM8K


@pytest.mark.parametrize("text,answer", [
    ("She makes 9 * 2 = $18 every day.\n#### 18", "18"),
    ("The total is 1,250 dollars.", "1250"),
    ("Answer: 42.", "42"), ("the answer is **7**", "7"), ("So we get 3.50", "3.5"),
    ("It is -4 degrees", "-4"), ("Answer: 5 apples, and 6 pears were left", "5"),
    ("#### 72\nThe answer is 70", "72"), ("12 + 7 = 19", "19"),
])
def test_answers_are_extracted(text, answer):
    assert is_correct(text, answer)


def test_wrong_or_missing_answers():
    assert not is_correct("Answer: 41", "42")
    assert extract_answer("no digits here") is None and not is_correct("no digits", "3")
    assert extract_answer("__import__('os').system('x') 3") == 3  # parsed, never run


def test_mentions_finds_the_number_anywhere_but_not_inside_other_numbers():
    assert mentions("Is it 15? Check 3 + 12", "15")
    assert not mentions("It is 150 or 2.15", "15")


def test_gsm8k_rows_become_tasks_with_substeps():
    tasks = load_task_file(GSM8K)
    assert len(tasks) == 1000
    first = tasks[0]
    assert first.answer == "18" and [s.answer for s in first.steps] == ["9", "18"]
    assert all(t.steps for t in tasks[:50])


def test_bad_task_rows_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = json.dumps({"question": "q", "answer": "x ** 1 + 1 = 2\n#### 2"})
    bad.write_text(good + "\n" + json.dumps({"question": "q"}) + "\n")
    with pytest.raises(TaskFileError, match="bad.jsonl, line 2: task 'bad:2' has no reference answer, which the "
                                            "numeric grader needs"):
        load_task_file(bad)
    bad.write_text(good + "\n" + json.dumps({"prompt": "q"}) + "\n")
    with pytest.raises(TaskFileError, match="line 2: expected a 'question' \\(or an 'instruction'\\), got \\['prompt'\\]"):
        load_task_file(bad)
    bad.write_text(good + "\n{not json\n")
    with pytest.raises(TaskFileError, match="line 2: not valid JSON"):
        load_task_file(bad)
    bad.write_text(json.dumps({"question": "q", "answer": "no final line"}) + "\n")
    with pytest.raises(TaskFileError, match="line 1: task 'bad:1': the numeric grader needs a number as the answer"):
        load_task_file(bad)
    bad.write_text(json.dumps({"question": "q", "answer": "x ** 1 + 1\n#### two"}) + "\n")
    with pytest.raises(TaskFileError, match="line 1: answer has no final '#### <number>' line"):
        load_task_file(bad)
    with pytest.raises(TaskFileError, match="does not exist"):
        load_task_file(tmp_path / "missing.jsonl")


def test_parquet_task_files(tmp_path):
    import pyarrow as pa, pyarrow.parquet as pq
    path = tmp_path / "tasks.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "q", "answer": "a ** 2 + 2 = 4\n#### 4"}]), path)
    (task,) = load_task_file(path)
    assert task.answer == "4" and task.steps[0].answer == "4"


def test_generated_problems_are_consistent_and_seeded():
    tasks = generate_word_problems(200, steps=3, max_value=30, seed=5)
    assert tasks == generate_word_problems(200, steps=3, max_value=30, seed=5)
    assert tasks != generate_word_problems(200, steps=3, max_value=30, seed=6)
    for task in tasks:
        assert len(task.steps) == 3 and task.steps[-1].answer == task.answer
        assert all(int(s.answer) >= 0 for s in task.steps)
    assert parse_gsm8k({"question": tasks[0].question, "answer": "#### " + tasks[0].answer}, "x").answer == tasks[0].answer
