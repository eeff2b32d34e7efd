"""Learning by teaching as pure functions: LbT scores from exams, selection by max and sum beside
majority vote, and the teacher's ranked DPO pairs (milliseconds)."""

from decimal import Decimal

from academe.protocols.grading import extract_answer
from academe.protocols.lbt import (LearningOptions, Lesson, TeachingOptions, lbt, lessons_of, ranked_pairs, select,
                                   teach_and_exam)
from academe.protocols.program import Train
from academe.protocols.tasks import generate_word_problems
from pure_play import play_episode, play_program

TASKS = tuple(generate_word_problems(5, steps=1, seed=11))
D = Decimal


def test_selection_follows_the_lbt_scores_and_differs_from_majority_vote_where_it_should():
    answers = (D(5), D(7), D(7), D(9))
    assert select(answers, (1.0, 0.0, 0.2, 0.3), "max") == D(5)
    assert select(answers, (1.0, 0.0, 0.2, 0.3), "sum") == D(5)
    assert select(answers, (1.0, 0.0, 0.2, 0.3), "majority") == D(7)
    # sum can side with the majority where max does not
    assert select((D(5), D(7), D(7)), (0.6, 0.5, 0.5), "max") == D(5)
    assert select((D(5), D(7), D(7)), (0.6, 0.5, 0.5), "sum") == D(7)
    # ties go to the answer given first; rationales without an answer never win
    assert select((D(3), D(4)), (0.5, 0.5), "max") == D(3) and select((None, D(4)), (1.0, 0.1), "sum") == D(4)
    assert select((None, None), (1.0, 1.0), "majority") is None


def teacher_mostly_wrong(prompt):
    """Three of four rationales end in the same wrong answer; the one with seed % 4 == 1 is right."""
    right = prompt.seed % 10 == 1
    return f"Working it out step by step. Answer: {prompt.task.answer if right else '999'}"


def student_taught_by_the_example(name):
    """Right on an exam problem exactly when the one-shot rationale it was shown is right."""
    def answer(prompt):
        lesson_answer = extract_answer(prompt.messages[-2].content)
        exam = next(t for t in TASKS if t.question in prompt.messages[-1].content)
        lesson = next(t for t in TASKS if t.question in prompt.messages[-3].content)
        return f"{name}: Answer: {exam.answer if lesson_answer == D(lesson.answer) else '-1'}"
    return answer


def test_an_exam_scores_each_rationale_and_lbt_finds_the_right_answer_where_majority_does_not():
    lesson = lessons_of(TASKS, exam_size=2)[0]
    cast = {"teacher": [("t", teacher_mostly_wrong)],
            "student": [("ann", student_taught_by_the_example("ann")), ("bob", student_taught_by_the_example("bob"))]}
    result = play_episode(teach_and_exam, lesson, TeachingOptions(rationales=4), cast)
    state = result.state
    assert [a for a in state.answers] == [D(999), D(lesson.answer), D(999), D(999)]
    assert state.scores == (0.0, 1.0, 0.0, 0.0) and state.by_student == {"ann": state.scores, "bob": state.scores}
    metrics = result.outcome.metrics
    assert metrics["lbt_max"] == metrics["lbt_sum"] == 1.0 and metrics["majority"] == 0.0 and metrics["any_right"] == 1.0
    exam_turns = [t for t in result.turns if t.phase == "exam"]
    assert len(exam_turns) == 4 * 2 * 2  # rationales x exam problems x students
    assert [t.agent for t in exam_turns[:4]] == ["ann", "bob", "ann", "bob"]
    first = exam_turns[0].asked
    assert [m.role for m in first] == ["user", "assistant", "user"] and first[1].content == state.rationales[0]


def test_the_teachers_pairs_put_right_before_wrong_then_higher_lbt_scores_first():
    lesson = lessons_of(TASKS, exam_size=2)[0]
    cast = {"teacher": [("t", teacher_mostly_wrong)], "student": [("ann", student_taught_by_the_example("ann"))]}
    result = play_episode(teach_and_exam, lesson, TeachingOptions(rationales=4), cast)
    pairs = ranked_pairs(result)
    right = result.state.rationales[1]
    assert pairs and all(p.chosen == right for p in pairs)  # the wrong ones all say the same: no pair among them
    assert {p.rejected for p in pairs} == {result.state.rationales[0]}


def test_the_program_runs_m1_then_trains_the_teacher_on_the_ranked_pairs():
    cast = {"teacher": [("t", teacher_mostly_wrong)], "student": [("ann", student_taught_by_the_example("ann"))]}
    stop, actions = play_program(lbt, TASKS, (), LearningOptions(rounds=2, rationales=4, exam_size=2), cast)
    rounds = stop.summary["rounds"]
    assert len(rounds) == 2 and rounds[0]["lessons"] == 5
    assert rounds[0]["lbt_sum"] == 1.0 and rounds[0]["majority"] == 0.0 and rounds[0]["pairs"] > 0
    trains = [a for a in actions if isinstance(a, Train)]
    assert [t.role for t in trains] == ["teacher", "teacher"] and trains[0].pairs
    only_m1 = play_program(lbt, TASKS, (), LearningOptions(rounds=1, exam_size=2, train_teacher=False), cast)[1]
    assert not any(isinstance(a, Train) for a in only_m1)


def test_each_lesson_is_examined_on_the_next_problems_of_the_pool():
    lessons = lessons_of(TASKS, exam_size=2)
    assert [[e.id for e in lesson.exam] for lesson in lessons[-2:]] == [[TASKS[4].id, TASKS[0].id],
                                                                       [TASKS[0].id, TASKS[1].id]]
    assert all(isinstance(lesson, Lesson) and lesson.id not in {e.id for e in lesson.exam} for lesson in lessons)
