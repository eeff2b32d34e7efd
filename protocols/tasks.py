"""Where problems come from: task files, HF datasets, and a built-in word-problem generator.

A task file row is GSM8K-format (``question``, ``answer`` ending in ``#### <number>``: GSM8K's
Socratic answers hold one ``sub-question ** worked step`` per line, each becoming a reference
sub-step that oracle teachers can walk), or any row with a ``question`` (or an ``instruction``
and optional ``input``) and an optional plain ``answer``: an open instruction has none, and a
judge scores the replies to it.
"""

from __future__ import annotations

import importlib.resources
import json
import random
from pathlib import Path
from typing import Iterable

from pydantic import ValidationError

from academe.agents.records import SubStep, Task
from academe.protocols.grading import CALCULATOR, check_task, number_texts


class TaskFileError(ValueError):
    """A task file that cannot be read; the message names the file and line."""


def parse_gsm8k(row: dict, task_id: str, grader: str = "numeric") -> Task:
    """A GSM8K row (``question``, ``answer`` with ``####``) as a Task with its sub-steps.

    Every number stays as written in the file: a final answer of "6,000" is "6,000".
    """
    if not isinstance(row, dict) or not {"question", "answer"} <= row.keys():
        got = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise ValueError(f"expected fields 'question' and 'answer', got {got}")
    body, sep, final = str(row["answer"]).rpartition("####")
    written = number_texts(final)
    if not sep or not written:
        raise ValueError("answer has no final '#### <number>' line")
    steps, worked = [], []
    for line in body.strip().splitlines():
        question, sep, work = line.partition(" ** ")
        found = number_texts(work)
        if sep and found:
            steps.append(SubStep(question=question.strip(), answer=found[-1]))
        worked.append(CALCULATOR.sub("", work if sep else line).strip())
    solution = "\n".join(w for w in worked if w) + f"\nAnswer: {written[0]}"
    task = Task(id=str(row.get("id", task_id)), question=str(row["question"]).strip(), answer=written[0],
                steps=tuple(steps), solution=solution.strip(), grader=grader)
    check_task(task)
    return task


def parse_row(row: dict, task_id: str, grader: str = "numeric") -> Task:
    """A task from a GSM8K row, or from a question or instruction with an optional plain answer."""
    if isinstance(row, dict) and "####" in str(row.get("answer", "")):
        return parse_gsm8k(row, task_id, grader)
    if not isinstance(row, dict) or not ({"question", "instruction"} & row.keys()):
        got = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise ValueError(f"expected a 'question' (or an 'instruction'), got {got}")
    question = str(row.get("question") or row["instruction"]).strip()
    if row.get("input"):
        question += f"\n\n{str(row['input']).strip()}"
    answer = row.get("answer")
    task = Task(id=str(row.get("id", task_id)), question=question,
                answer=None if answer is None else str(answer).strip(), grader=grader)
    check_task(task)
    return task


SAMPLES = {"gsm8k": "gsm8k-sample.jsonl", "mathdial": "mathdial-sample.jsonl"}


def resolve_task_path(path: str | Path) -> Path:
    """A task file's path; ``sample:NAME`` names a sample shipped inside academe (see data/README.md)."""
    text = str(path)
    if not text.startswith("sample:"):
        return Path(path)
    name = text.removeprefix("sample:")
    if name not in SAMPLES:
        raise TaskFileError(f"{text!r}: no such sample; academe ships {', '.join(f'sample:{n}' for n in SAMPLES)}")
    return Path(str(importlib.resources.files("academe.protocols") / "data" / SAMPLES[name]))


def load_task_file(path: str | Path, grader: str = "numeric") -> list[Task]:
    """Tasks from a JSONL or Parquet task file (or a shipped ``sample:``); a bad row names its line."""
    path = resolve_task_path(path)
    if not path.is_file():
        raise TaskFileError(f"task file {str(path)!r} does not exist")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows: Iterable[tuple[int, object]] = enumerate(pq.read_table(path).to_pylist(), start=1)
    elif path.suffix in (".jsonl", ".json"):
        rows = _jsonl_rows(path)
    else:
        raise TaskFileError(f"task file {str(path)!r}: use .jsonl or .parquet (got {path.suffix!r})")
    tasks = []
    for line, row in rows:
        try:
            tasks.append(parse_row(row, task_id=f"{path.stem}:{line}", grader=grader))
        except (ValueError, ValidationError) as exc:
            raise TaskFileError(f"{path}, line {line}: {exc}") from None
    if not tasks:
        raise TaskFileError(f"task file {str(path)!r} holds no tasks")
    return tasks


def _jsonl_rows(path: Path):
    with open(path, encoding="utf-8", errors="replace") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            if "\ufffd" in text and "\\ufffd" not in text:
                raise TaskFileError(f"{path}, line {line}: not UTF-8 text (a task file is JSON Lines)")
            try:
                yield line, json.loads(text)
            except json.JSONDecodeError as exc:
                raise TaskFileError(f"{path}, line {line}: not valid JSON ({exc.msg})") from None


def load_hf_dataset(name: str, split: str = "test", config: str | None = "socratic",
                    grader: str = "numeric") -> list[Task]:
    """GSM8K-format rows from an HF dataset (needs the ``datasets`` package and a network, or the
    data set in the local HF cache)."""
    try:
        import datasets
    except ImportError:
        raise TaskFileError(f"tasks.source hf ({name!r}) needs the datasets package: pip install datasets") from None
    try:
        rows = datasets.load_dataset(name, config, split=split)
    except (ConnectionError, OSError) as exc:  # no network and nothing cached (datasets raises ConnectionError)
        raise TaskFileError(f"tasks.source hf: cannot load {name!r} ({type(exc).__name__}: {str(exc)[:200]}); "
                            "with no network, use a local copy (tasks.source: file, tasks.path: a GSM8K-format "
                            ".jsonl) or the shipped sample (tasks.path: sample:gsm8k)") from None
    return [parse_gsm8k(row, task_id=f"{name}:{split}:{i}", grader=grader) for i, row in enumerate(rows)]


NAMES = ("Mia", "Leo", "Ava", "Noah", "Zoe", "Omar", "Lina", "Sam", "Ivy", "Ben")
ITEMS = ("marbles", "stickers", "apples", "cards", "shells", "coins", "books", "pencils")


def generate_word_problems(count: int, steps: int = 2, max_value: int = 20, seed: int = 0) -> list[Task]:
    """Multi-step arithmetic word problems with reference sub-steps.

    ``steps`` (operations per problem) and ``max_value`` (size of the numbers) set the difficulty.
    Every intermediate result stays a non-negative whole number.
    """
    if count < 0 or steps < 1 or max_value < 2:
        raise ValueError(f"need count >= 0, steps >= 1, max_value >= 2 (got {count}, {steps}, {max_value})")
    rng = random.Random(seed)
    return [_word_problem(rng, steps, max_value, f"gen-s{steps}-v{max_value}-{seed}-{i}") for i in range(count)]


def _word_problem(rng: random.Random, steps: int, max_value: int, task_id: str) -> Task:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    total = rng.randint(2, max_value)
    story = [f"{name} has {total} {item}."]
    sub_steps, worked = [], []
    for _ in range(steps):
        kind = rng.choice(("gain", "lose", "times") if total <= max_value else ("gain", "lose"))
        before = total
        if kind == "gain" or total < 2:
            n = rng.randint(1, max_value)
            total += n
            story.append(f"Then {name} gets {n} more {item}.")
            ask, work = f"How many {item} does {name} have after getting {n} more?", f"{before} + {n} = {total}"
        elif kind == "lose":
            n = rng.randint(1, total - 1)
            total -= n
            story.append(f"Then {name} gives away {n} {item}.")
            ask, work = f"How many {item} are left after giving away {n}?", f"{before} - {n} = {total}"
        else:
            n = rng.randint(2, 4)
            total *= n
            story.append(f"Then the number of {item} {name} has becomes {n} times as many.")
            ask, work = f"How many {item} does {name} have after it becomes {n} times as many?", f"{before} * {n} = {total}"
        sub_steps.append(SubStep(question=ask, answer=str(total)))
        worked.append(f"{ask} {work}.")
    question = " ".join(story) + f" How many {item} does {name} have now?"
    solution = " ".join(worked) + f"\nAnswer: {total}"
    return Task(id=task_id, question=question, answer=str(total), steps=tuple(sub_steps), solution=solution)
