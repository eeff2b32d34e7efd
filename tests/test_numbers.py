"""Numbers read back as the number that was written: in task files, replies and a teacher's telling."""

import json
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from academe.agents.records import Prompt, SubStep, Task
from academe.protocols.engine import user
from academe.protocols.grading import extract_answer, is_correct, mentions, to_number
from academe.protocols.oracles import socratic_teacher
from academe.protocols.tasks import load_task_file


@st.composite
def written_numbers(draw) -> tuple[str, Decimal]:
    """A number as people write it (sign, thousands separators or not, decimals or not), and its value."""
    whole = draw(st.integers(min_value=0, max_value=10**12))
    places = draw(st.sampled_from([0, 0, 1, 2, 3]))
    fraction = draw(st.integers(min_value=0, max_value=10**places - 1)) if places else None
    grouped = draw(st.booleans()) and whole >= 1000
    text = f"{whole:,}" if grouped else str(whole)
    if fraction is not None:
        text += f".{fraction:0{places}d}"
    negative = draw(st.booleans()) and (whole or fraction)
    text = ("-" if negative else "") + text
    return text, Decimal(text.replace(",", ""))


@settings(max_examples=200, deadline=None)
@given(written_numbers(), written_numbers())
def test_a_number_in_a_task_file_keeps_its_written_form_and_value(tmp_path_factory, final, step):
    path = tmp_path_factory.mktemp("tasks") / "t.jsonl"
    row = {"question": "How many?", "answer": f"How many at first? ** She had {step[0]} then.\n#### {final[0]}"}
    path.write_text(json.dumps(row) + "\n")
    (task,) = load_task_file(path)
    assert task.answer == final[0] and to_number(task.answer) == final[1]
    assert task.steps[0].answer == step[0] and to_number(task.steps[0].answer) == step[1]
    assert "E+" not in task.answer and "E-" not in task.steps[0].answer


@settings(max_examples=300, deadline=None)
@given(written_numbers(), st.sampled_from(["Answer: {}", "So the answer is {}.", "#### {}", "I get {} apples.",
                                           "Answer: ${}", "The answer is **{}**"]))
def test_a_number_in_a_reply_reads_back_as_the_same_number(number, template):
    text, value = number
    reply = f"First 2 + 3 = 5. {template.format(text)}"
    assert extract_answer(reply) == value
    assert is_correct(reply, text) and is_correct(reply, str(value))


@settings(max_examples=200, deadline=None)
@given(written_numbers())
def test_a_teachers_telling_is_detected_and_says_the_number_as_written(number):
    text, value = number
    task = Task(id="t", question="How many?", answer=text, steps=(SubStep(question="How many at first?", answer=text),))
    # two misses on the step: the scripted teacher tells it
    prompt = Prompt(messages=(user("brief"), user("no idea"), user("Answer: x"), user("still no idea")), task=task)
    telling = socratic_teacher(prompt)
    assert telling.startswith("(telling)") and f"It is {text}." in telling
    assert mentions(telling, text) and mentions(telling, str(value))


def test_large_round_numbers_from_the_real_data_stay_as_written():
    from tests_paths import GSM8K
    tasks = load_task_file(GSM8K)
    round_ones = [t for t in tasks if t.answer.endswith("00")]
    assert round_ones and all("E" not in t.answer for t in round_ones)
    assert all("E" not in s.answer for t in tasks for s in t.steps)
