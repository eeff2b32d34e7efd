"""LLM2LLM as pure functions: new items only from wrong seed items, every fine-tuning from the base."""

from academe.protocols.llm2llm import AugmentationOptions, llm2llm
from academe.protocols.oracles import problem_maker
from academe.protocols.program import RunEpisodes, Stop, Train
from academe.protocols.tasks import generate_word_problems
from pure_play import play_program

SEEDS = tuple(generate_word_problems(6, steps=1, seed=3))
HELD_OUT = tuple(generate_word_problems(2, steps=1, seed=4))


def student_right_on(ids):
    """Right on the seed items named, wrong on every other item (synthetic ones included)."""
    return lambda p: f"Answer: {p.task.answer}" if p.task.id in ids else "Answer: -1"


def test_items_are_written_only_from_wrong_seed_items_and_every_fine_tuning_starts_from_the_base():
    right = {SEEDS[0].id, SEEDS[1].id, SEEDS[2].id}
    agents = {"student": [("s", student_right_on(right))], "teacher": [("t", problem_maker)]}
    stop, actions = play_program(llm2llm, SEEDS, HELD_OUT, AugmentationOptions(iterations=3), agents)
    assert isinstance(stop, Stop)
    trains = [a for a in actions if isinstance(a, Train)]
    assert len(trains) == 3 and all(t.from_base for t in trains)
    assert [len(t.sft) for t in trains] == [6, 9, 12]  # 3 wrong seed items, one new item each, twice
    answering = [a for a in actions if isinstance(a, RunEpisodes) and a.protocol == "answer"]
    assert all(a.tasks == SEEDS for a in answering)  # only seed items are checked, never synthetic ones
    writing = [a for a in actions if isinstance(a, RunEpisodes) and a.protocol == "make-problem"]
    wrong_ids = {s.id for s in SEEDS} - right
    assert all({f.id for f in a.tasks} == wrong_ids and all(f.attempt == "Answer: -1" for f in a.tasks)
               for a in writing)
    synthetic = stop.state.synthetic
    assert len(synthetic) == 6 and all(t.origin.parent in wrong_ids for t in synthetic)
    assert all(t.solution and t.solution.endswith(f"Answer: {t.answer}") for t in synthetic)
    assert [e.target for e in trains[1].sft[6:]] == [t.solution for t in synthetic[:3]]
    reports = stop.summary["iterations"]
    assert [r["data"] for r in reports] == [6, 9, 12] and [r["wrong"] for r in reports] == [3, 3, None]
    assert reports[0]["seed_accuracy"] == 0.5 and stop.summary["synthetic"] == 6


def test_a_student_that_gets_every_seed_item_right_ends_the_augmentation():
    agents = {"student": [("s", student_right_on({s.id for s in SEEDS}))], "teacher": [("t", problem_maker)]}
    stop, actions = play_program(llm2llm, SEEDS, HELD_OUT, AugmentationOptions(iterations=5), agents)
    assert len([a for a in actions if isinstance(a, Train)]) == 1
    assert stop.summary["iterations"][0]["seed_accuracy"] == 1.0 and stop.state.synthetic == ()


def test_the_random_control_writes_as_many_items_from_seed_items_drawn_blind():
    right = {SEEDS[0].id, SEEDS[1].id, SEEDS[2].id, SEEDS[3].id}  # 2 wrong: SEEDS[4], SEEDS[5]
    agents = {"student": [("s", student_right_on(right))], "teacher": [("t", problem_maker)]}
    stop, actions = play_program(llm2llm, SEEDS, HELD_OUT, AugmentationOptions(iterations=3, targets="random"), agents)
    writing = [a for a in actions if isinstance(a, RunEpisodes) and a.protocol == "make-problem"]
    assert [len(a.tasks) for a in writing] == [2, 2]  # as many as it got wrong
    drawn = [{f.id for f in a.tasks} for a in writing]
    assert drawn != [{SEEDS[4].id, SEEDS[5].id}] * 2  # not (always) the wrong ones: drawn from all seed items
    assert all(ids <= {s.id for s in SEEDS} for ids in drawn)
    again, _ = play_program(llm2llm, SEEDS, HELD_OUT, AugmentationOptions(iterations=3, targets="random"), agents)
    assert again.state.synthetic == stop.state.synthetic  # the draw is seeded: a run replays
