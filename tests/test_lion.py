"""Lion as pure functions: hard and easy from referee scores with the position swap, new
instructions into the right pool, both pools growing (milliseconds)."""

import pytest

from academe.agents.records import Task
from academe.protocols.lion import (CompareOptions, Exemplar, LionOptions, compare, lion, parse_scores,
                                    write_instruction)
from academe.protocols.oracles import lion_teacher
from academe.protocols.program import RunEpisodes, Stop, Train
from academe.protocols.tasks import generate_word_problems
from pure_play import play_episode, play_program

OPEN = tuple(Task(id=f"o{i}", question=q, grader="none") for i, q in enumerate(
    ["Write a haiku about rivers.", "Explain recursion to a child.", "List three uses of vinegar.",
     "Describe the water cycle in two sentences."]))


def referee_by_position(scores: dict[str, tuple[tuple[int, int], tuple[int, int]]]):
    """Scores (assistant 1, assistant 2) per instruction: the first pair in the teacher-first order,
    the second in the swapped order, so a position bias shows."""
    def referee(prompt):
        text = prompt.messages[-1].content
        task = next(t for t in OPEN if t.question in text)
        teacher_first = "Assistant 1:\nTEACHER" in text
        first, swapped = scores[task.id]
        return "Scores: %d %d" % (first if teacher_first else swapped)
    return referee


NEW = {"o0": "Name the planets in order from the sun.", "o1": "Translate good morning into French.",
       "o2": "Give a recipe for pancakes with oats.", "o3": "Why do cats purr when they are content?"}


def agents(scores, writer=None):
    teacher = writer or (lambda p: "TEACHER says something useful" if "Here is an instruction" not in
                         p.messages[-1].content else f"Instruction: {NEW[p.task.id]}")
    return {"teacher": [("t", teacher)], "student": [("s", lambda p: "STUDENT says something")],
            "referee": [("r", referee_by_position(scores))]}


def test_the_referee_scores_twice_with_positions_swapped_and_the_two_scores_are_averaged():
    scores = {"o0": ((8, 3), (4, 7))}  # teacher first: 8 vs 3; swapped: student 4, teacher 7
    result = play_episode(compare, OPEN[0], CompareOptions(), agents(scores))
    assert result.state.passes == ((8.0, 3.0), (7.0, 4.0))
    assert result.outcome.metrics == {"teacher_score": 7.5, "student_score": 3.5, "gap": 4.0}
    prompts = [t.asked[0].content for t in result.turns if t.role == "referee"]
    assert prompts[0].index("TEACHER") < prompts[0].index("STUDENT") and prompts[1].index("STUDENT") < prompts[1].index(
        "TEACHER")
    assert parse_scores("Scores: 7, 9") == (7.0, 9.0) and parse_scores("good answer") is None


def test_a_position_bias_alone_does_not_make_an_instruction_hard():
    scores = {"o0": ((9, 5), (9, 5))}  # the referee always prefers assistant 1
    result = play_episode(compare, OPEN[0], CompareOptions(), agents(scores))
    assert result.state.gap == 0.0


def test_the_grader_can_stand_in_for_the_referee():
    task = generate_word_problems(1, steps=1, seed=2)[0]
    cast = {"teacher": [("t", lambda p: f"Answer: {p.task.answer}")], "student": [("s", lambda p: "Answer: -3")],
            "referee": [("r", lambda p: pytest.fail("no referee turn with the grader"))]}
    result = play_episode(compare, task, CompareOptions(referee="grader"), cast)
    assert result.state.passes == ((10.0, 1.0),) and result.outcome.metrics["gap"] == 9.0


def test_hard_and_easy_come_from_the_gap_and_new_instructions_land_in_both_pools():
    scores = {"o0": ((9, 2), (2, 9)), "o1": ((7, 6), (6, 7)), "o2": ((6, 6), (6, 6)), "o3": ((7, 7), (7, 8))}
    # gaps: o0 7 (hard), o1 1 (hard: at the threshold), o2 0 (easy), o3 0.5 (easy)
    stop, actions = play_program(lion, OPEN, (), LionOptions(rounds=2, hard_gap=1.0, new_per_round=4), agents(scores))
    assert isinstance(stop, Stop)
    first = stop.state.reports[0]
    assert (first.hard, first.easy, first.unscored, first.new_hard, first.new_easy) == (2, 2, 0, 2, 2)
    writing = next(a for a in actions if isinstance(a, RunEpisodes) and a.protocol == "write-instruction")
    assert [(t.id, t.hardness) for t in writing.tasks] == [("o0", "hard"), ("o1", "hard"), ("o2", "easy"),
                                                           ("o3", "easy")]
    new = [t for t in stop.state.train if t.origin is not None]
    assert [t.id.split("-")[1] for t in new] == ["hard", "hard", "easy", "easy"]
    assert [t.origin.parent for t in new] == ["o0", "o1", "o2", "o3"]
    assert len(stop.state.train) == len(stop.state.cache) == 8  # both pools grew
    trains = [a for a in actions if isinstance(a, Train)]
    assert [len(t.sft) for t in trains] == [4, 8]  # imitation on the teacher's answers to the whole train pool
    assert all(e.target == "TEACHER says something useful" for e in trains[1].sft)
    answering = [a for a in actions if isinstance(a, RunEpisodes) and a.protocol == "answer"]
    assert [len(a.tasks) for a in answering] == [4, 4] and answering[0].cast == {"student": "teacher"}


def test_new_instructions_too_like_a_known_one_are_dropped_by_rouge_l():
    scores = {t.id: ((9, 2), (2, 9)) for t in OPEN}
    copier = lambda p: ("TEACHER says something useful" if "Here is an instruction" not in p.messages[-1].content
                        else f"Instruction: {p.task.question}")  # noqa: E731
    stop, _ = play_program(lion, OPEN, (), LionOptions(rounds=2, new_per_round=8), agents(scores, copier))
    assert stop.state.reports[0].dropped == {"near-duplicate of a known task": 4} and len(stop.state.cache) == 4


def test_lion_runs_on_word_problems_with_the_scripted_teacher_and_the_grader_as_referee():
    tasks = tuple(generate_word_problems(4, steps=1, seed=5))
    cast = {"teacher": [("t", lion_teacher)], "student": [("s", lambda p: "Answer: -1")], "referee": [("r", None)]}
    stop, actions = play_program(lion, tasks, (), LionOptions(rounds=2, referee="grader"), cast)
    first = stop.state.reports[0]
    assert first.hard == 4 and first.new_hard == 4 and first.new_easy == 0
    written = [t for t in stop.state.cache if t.origin is not None]
    assert all(t.answer and t.solution for t in written)
    assert isinstance(write_instruction.begin(Exemplar(**tasks[0].model_dump(), hardness="hard")).state.task,
                      Exemplar)
