"""Rule-based agents for the protocols (use them as ``kind: scripted`` models).

Each is a pure function of the prompt: what it says next is recomputed from the dialogue so far,
so it needs no hidden state and replays exactly.
"""

from __future__ import annotations

import re

from academe.agents.records import Prompt, SubStep
from academe.protocols.grading import grade, is_correct, numbers, to_number
from academe.protocols.making import ASKED_DIFFICULTY
from academe.protocols.tasks import generate_word_problems

MISSES_BEFORE_TELLING = 2


def socratic_teacher(prompt: Prompt) -> str:
    """Walks the task's reference sub-steps: asks each sub-question, checks the student's number,
    probes after a miss and tells the step after repeated misses (MathDial's moves).

    Expects the Socratic protocol's teacher view: a brief, then the student's turns as user
    messages and the teacher's own as assistant messages.
    """
    if prompt.task is None:
        raise ValueError("socratic_teacher needs the task on the prompt (its reference steps)")
    steps = prompt.task.steps or (SubStep(question="What is the final answer?", answer=prompt.task.answer),)
    student_turns = [m.content for m in prompt.messages if m.role == "user"][1:]
    if not student_turns:
        raise ValueError("socratic_teacher was asked to speak before the student said anything")
    current, misses, said = 0, 0, ""
    for number, student in enumerate(student_turns):
        if number == 0:  # the unaided attempt was wrong: start walking the steps
            said = f"(focus) Let's go one step at a time. {steps[0].question}"
            continue
        if is_correct(student, steps[current].answer):
            current, misses, lead = current + 1, 0, "(probing) Right."
        else:
            misses += 1
            if misses < MISSES_BEFORE_TELLING:
                said = f"(probing) Not quite. Check your calculation: {steps[current].question}"
                continue
            lead = f"(telling) {steps[current].question} It is {steps[current].answer}."
            current, misses = current + 1, 0
        if current >= len(steps):
            said = f"{lead} So, what is the final answer to the problem?"
        else:
            said = f"{lead} Next: {steps[current].question}"
    return said


def guessing_student(prompt: Prompt) -> str:
    """A student who knows the answers but says the right one only one time in three (by seed):
    cheap, deterministic dialogues for tests and overhead benchmarks."""
    if prompt.task is None:
        raise ValueError("guessing_student needs the task on the prompt")
    last = prompt.messages[-1].content
    target = next((s.answer for s in prompt.task.steps if s.question in last), prompt.task.answer)
    right = prompt.seed % 3 == 0
    return f"I think the answer is {target if right else int(to_number(target)) + 1 + prompt.seed % 7}."


_ATTEMPT = re.compile(r"<attempt>\n(.*)\n</attempt>", re.DOTALL)


def quoted_attempt(prompt: Prompt) -> str:
    """The attempt a Socratic-Zero teacher prompt quotes between <attempt> tags."""
    found = _ATTEMPT.search(prompt.messages[-1].content)
    if found is None:
        raise ValueError("expected a prompt quoting an attempt between <attempt> tags")
    return found.group(1)


def verifier(prompt: Prompt) -> str:
    """Grades the quoted attempt against the task's reference with the task's own grader."""
    if prompt.task is None:
        raise ValueError("verifier needs the task on the prompt")
    right = grade(prompt.task, quoted_attempt(prompt))
    return f"Verdict: {'correct' if right else 'incorrect'}"


def problem_maker(prompt: Prompt) -> str:
    """A new word problem at the difficulty the prompt asks for, from the failed one's: as many
    steps and numbers of about the same size; "a little harder": one step more; "a little easier":
    one step fewer, or numbers half the size at one step (the built-in generator, seeded by the prompt)."""
    if prompt.task is None:
        raise ValueError("problem_maker needs the failed task on the prompt")
    steps = max(1, len(prompt.task.steps))
    largest = max(2, min(int(max((abs(n) for n in numbers(prompt.task.question)), default=20)), 10**6))
    asked = prompt.messages[-1].content
    difficulty = next((d for d, words in ASKED_DIFFICULTY.items() if words in asked), "same")
    if difficulty == "harder":
        steps += 1
    elif difficulty == "easier":
        steps, largest = (steps - 1, largest) if steps > 1 else (1, max(2, largest // 2))
    (made,) = generate_word_problems(1, steps=steps, max_value=largest, seed=prompt.seed)
    worked = made.solution.rsplit("\nAnswer:", 1)[0]
    return f"Problem: {made.question}\nSolution: {worked}\nAnswer: {made.answer}"


def socratic_zero_teacher(prompt: Prompt) -> str:
    """The Socratic-Zero teacher as one scripted agent: verifies attempts, and makes new problems."""
    return verifier(prompt) if "Verdict:" in prompt.messages[-1].content else problem_maker(prompt)


def reference_answerer(prompt: Prompt) -> str:
    """A teacher who knows: answers with the task's reference solution (or its answer)."""
    if prompt.task is None or prompt.task.answer is None:
        raise ValueError("reference_answerer needs a task with a reference answer on the prompt")
    return prompt.task.solution or f"Answer: {prompt.task.answer}"


def lion_teacher(prompt: Prompt) -> str:
    """Lion's teacher as one scripted agent: answers from the reference, and writes new problems
    after the ones it is shown (the built-in generator, as ``problem_maker``)."""
    return problem_maker(prompt) if "Write one new instruction" in prompt.messages[-1].content \
        else reference_answerer(prompt)
