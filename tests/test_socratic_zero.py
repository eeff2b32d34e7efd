"""Socratic-Zero as pure functions: pairs, zones, weights, new problems, rounds (milliseconds)."""

import json
import math

import pytest

from academe.agents.records import Task
from academe.protocols import ProtocolError, TransitionError, get_program
from academe.protocols.oracles import problem_maker, verifier
from academe.protocols.program import Episodes, Evaluate, Program, RunEpisodes, Stage, Stop, Train
from academe.protocols.socratic_zero import (AttemptOptions, CoEvolution, CoEvolutionOptions, Failure, Made, Problem,
                                             attempts, correct_vs_incorrect, make_problem, parse_verdict, socratic_zero,
                                             tried, weight, zone)
from academe.protocols.tasks import generate_word_problems
from pure_play import play_episode, play_program, reply

TASKS = tuple(generate_word_problems(4, steps=1, seed=7))


def solver_right_on(pattern):
    """A solver whose i-th attempt is right where ``pattern[i]`` is 'R', wrong (each wrong differently) else."""
    def solve(prompt):
        i = prompt.seed % 10
        return f"Answer: {prompt.task.answer}" if pattern[i] == "R" else f"Answer: {1000 + i}"
    return solve


def teacher():
    return [("oracle", lambda p: verifier(p) if "Verdict" in p.messages[-1].content else problem_maker(p))]


def test_pairs_are_exactly_every_correct_attempt_against_every_incorrect_one():
    result = play_episode(attempts, TASKS[0], AttemptOptions(k=5),
                          {"solver": [("s", solver_right_on("RWRWW"))], "teacher": teacher()})
    assert result.state.verdicts == (True, False, True, False, False)
    assert result.outcome.score == pytest.approx(0.4) and result.outcome.solved
    pairs = correct_vs_incorrect(result)
    right, wrong = {result.state.attempts[i] for i in (0, 2)}, {result.state.attempts[i] for i in (1, 3, 4)}
    assert len(pairs) == 2 * 3
    assert {(p.chosen, p.rejected) for p in pairs} == {(c, w) for c in right for w in wrong}
    assert all(p.messages == result.turns[0].asked and p.task == TASKS[0].id for p in pairs)
    # all right, or all wrong: nothing to prefer
    for pattern in ("RRRRR", "WWWWW"):
        alone = play_episode(attempts, TASKS[0], AttemptOptions(k=5),
                             {"solver": [("s", solver_right_on(pattern))], "teacher": teacher()})
        assert correct_vs_incorrect(alone) == []


def test_a_verdict_that_does_not_parse_counts_as_neither():
    assert parse_verdict("Verdict: correct") is True and parse_verdict("verdict: **Incorrect**") is False
    assert parse_verdict("It looks fine to me") is None
    result = play_episode(attempts, TASKS[0], AttemptOptions(k=2), {
        "solver": [("s", solver_right_on("RW"))], "teacher": [("t", lambda p: "hmm, maybe")]})
    assert result.state.verdicts == (None, None) and result.outcome.metrics["unverified"] == 2
    assert correct_vs_incorrect(result) == [] and result.state.success_rate == 0.0


def test_zones_and_weights_of_new_problems_from_their_success_rates():
    options = CoEvolutionOptions(k=8, sigma=0.2)
    new = [Task(id=f"n{i}", question=f"new problem number {i} with some words", answer="1") for i in range(4)]
    state = CoEvolution(options=options, pool=(), made=tuple(
        Made(task=t.replace(origin={"round": 0, "parent": "p", "episode": 10 + i, "agent": "t", "model": "m",
                                    "model_version": 0}),
             asked=(), written=f"Problem: {t.question}\nAnswer: 1") for i, t in enumerate(new)))
    rates = [0 / 8, 4 / 8, 8 / 8, 2 / 8]
    episodes = []
    for t, s in zip(state.made, rates):
        verdicts = tuple(i < s * 8 for i in range(8))
        result = play_episode(attempts, t.task, AttemptOptions(k=8), {
            "solver": [("s", lambda p: "x")], "teacher": [("t", lambda p, v=iter(verdicts): f"Verdict: "
                                                           f"{'correct' if next(v) else 'incorrect'}")]})
        episodes.append(result)
    action = tried(state, Episodes(episodes=tuple(episodes)))
    after = action.state
    assert [p.zone for p in after.pool] == ["too hard", "learning", "mastered", "learning"]
    assert [p.success for p in after.pool] == rates
    expected = [math.exp(-((s - 0.5) ** 2) / (2 * 0.2**2)) for s in rates]
    assert [e.weight for e in after.examples] == pytest.approx(expected)
    assert after.examples[1].weight == pytest.approx(1.0) and after.examples[0].weight == pytest.approx(0.0439, abs=1e-4)
    assert [e.target for e in after.examples] == [m.written for m in state.made]
    assert after.report.weights == tuple(e.weight for e in after.examples)
    assert zone(1.0, options) == "mastered" and zone(0.0, options) == "too hard" and weight(0.5, 1) == 1.0


def test_making_a_problem_parses_the_reply_or_says_why_not():
    failure = Failure(**TASKS[0].model_dump(), attempt="Answer: 3")
    made = play_episode(make_problem, failure, make_problem.options(), {"teacher": teacher()})
    assert made.state.made is not None and made.state.made.answer.isdigit() and made.outcome.metrics["made"] == 1
    for text, reason in [("Here is a problem about apples.", "no 'Answer"), ("Problem: Mia has 3.\nAnswer: 4", "too short"),
                         ("Problem: Mia has 3 apples and eats one. How many?\nAnswer: three", "not a number")]:
        bad = play_episode(make_problem, failure, make_problem.options(), {"teacher": [("t", lambda p, t=text: t)]})
        assert bad.state.made is None and reason in bad.state.reason and bad.outcome.metrics["made"] == 0
    with pytest.raises(TransitionError, match="runs on Failure tasks"):
        make_problem.begin(TASKS[0])


def test_two_rounds_grow_the_pool_from_failures_and_train_both_models():
    agents = {"solver": [("s", solver_right_on("RWWRWWRWWR"))], "teacher": teacher(), "generator": [("g", None)]}
    held_out = (generate_word_problems(1, steps=1, seed=99)[0],)
    stop, actions = play_program(socratic_zero, TASKS, held_out, CoEvolutionOptions(rounds=2, k=4, new_per_round=3),
                                 agents, accuracy=lambda r: 0.1 * r)
    assert isinstance(stop, Stop) and stop.state.round == 2
    kinds = [(a.kind, a.stage) for a in actions]
    one_round = [("run-episodes", "attempted"), ("run-episodes", "made"), ("run-episodes", "tried"), ("train", "solver_trained"),
                 ("train", "generator_trained"), ("evaluate", "evaluated")]
    assert kinds == [("evaluate", "measured")] + one_round * 2
    first, second = stop.state.reports
    assert first.failures == 3 and first.made == 3 and len(first.weights) == 3
    assert len(stop.state.pool) == 4 + first.made + second.made
    made = [p.task for p in stop.state.pool[4:]]
    assert all(t.origin is not None and t.origin.parent in {x.id for x in TASKS} | {m.id for m in made} for t in made)
    assert [t.origin.round for t in made] == [0] * first.made + [1] * second.made
    assert first.solver.version == 1 and second.generator.version == 2
    assert stop.summary["baseline"] == 0.0 and stop.summary["accuracy"] == [0.0, 0.1]  # measured in rounds 0, 0, 1
    trains = [a for a in actions if isinstance(a, Train)]
    assert trains[0].role == "solver" and trains[0].pairs and trains[1].role == "generator" and trains[1].sft
    # 4 seed problems and 3 new ones, k=4 attempts each, attempts 0 and 3 right: 2 x 2 pairs per problem
    assert first.attempted == 4 and len(trains[0].pairs) == first.pairs == (4 + 3) * 2 * 2


def test_new_problems_that_copy_the_pool_or_the_held_out_set_are_dropped():
    copier = [("t", lambda p: verifier(p) if "Verdict" in p.messages[-1].content
               else f"Problem: {TASKS[1].question}\nAnswer: {TASKS[1].answer}")]
    held_out = (TASKS[3],)
    agents = {"solver": [("s", solver_right_on("RWWRWWRWWR"))], "teacher": copier, "generator": [("g", None)]}
    stop, _ = play_program(socratic_zero, TASKS[:3], held_out, CoEvolutionOptions(rounds=1, k=4), agents)
    (report,) = stop.state.reports
    assert report.made == 0 and report.dropped == {"near-duplicate of a known task": 3}
    copier = [("t", lambda p: verifier(p) if "Verdict" in p.messages[-1].content
               else f"Problem: {TASKS[3].question}\nAnswer: {TASKS[3].answer}")]
    stop, _ = play_program(socratic_zero, TASKS[:3], held_out, CoEvolutionOptions(rounds=1, k=4),
                           dict(agents, teacher=copier))
    assert stop.state.reports[0].made == 0 and stop.state.reports[0].dropped == {"near-duplicate of a held-out task": 3}


def test_training_waits_for_the_first_training_round():
    agents = {"solver": [("s", solver_right_on("RWWRWWRWWR"))], "teacher": teacher(), "generator": [("g", None)]}
    _, actions = play_program(socratic_zero, TASKS, (), CoEvolutionOptions(rounds=2, k=4, train_from_round=1), agents)
    assert [a.state.round for a in actions if isinstance(a, Train)] == [1, 1]


def test_program_state_round_trips_through_its_log_record():
    agents = {"solver": [("s", solver_right_on("RWWRWWRWWR"))], "teacher": teacher(), "generator": [("g", None)]}
    stop, actions = play_program(socratic_zero, TASKS, TASKS[:1], CoEvolutionOptions(rounds=1, k=4), agents)
    from academe.simulation.program_runner import PROGRAM_RECORD, DecisionRecord
    for n, action in enumerate(actions + [stop]):
        line = DecisionRecord(n=n, round=action.state.round, kind=action.kind, stage=getattr(action, "stage", None),
                              action=action, time=0.0).model_dump_json()
        back = PROGRAM_RECORD.validate_json(line)
        assert CoEvolution.model_validate(back.action["state"]) == action.state
        assert json.loads(action.model_dump_json()) == back.action
    failure_state = next(a for a in actions if isinstance(a, RunEpisodes) and a.protocol == "make-problem")
    assert isinstance(failure_state.tasks[0], Failure) and "attempt" in json.loads(failure_state.model_dump_json())["tasks"][0]


def test_program_graph_is_checked_like_a_protocol():
    def anywhere(s, r):
        return Stop(state=s)
    base = dict(name="p", roles=("solver",), state=CoEvolution, start=lambda t, h, o: None, protocols={})
    with pytest.raises(ProtocolError, match="stage\\(s\\) lost cannot be reached"):
        Program(**base, first=("a",), stages={"a": Stage(anywhere, then=("<end>",)), "lost": Stage(anywhere, then=("<end>",))})
    with pytest.raises(ProtocolError, match="from stage\\(s\\) a the end can never be reached"):
        Program(**base, first=("a",), stages={"a": Stage(anywhere, then=("a",))})
    with pytest.raises(ProtocolError, match="trains unknown role 'judge'"):
        Program(**base, first=("a",), stages={"a": Stage(anywhere, then=("<end>",))}, trains={"judge": "sft"})
    wrong_turn = Program(**dict(base, start=lambda t, h, o: Evaluate(state=CoEvolution(options=CoEvolutionOptions(),
                                                                                        pool=()), stage="b",
                                                                       role="solver", protocol="x")),
                         first=("a",), stages={"a": Stage(anywhere, then=("b", "<end>")), "b": Stage(anywhere, then=("<end>",))})
    with pytest.raises(TransitionError, match="stage '<start>' went to 'b'; allowed: a"):
        wrong_turn.begin((), ())


def test_programs_are_found_by_name_or_module_path():
    assert get_program("socratic-zero") is socratic_zero
    assert get_program("academe.protocols.socratic_zero:socratic_zero") is socratic_zero
    with pytest.raises(ProtocolError, match="unknown program 'nope'"):
        get_program("nope")
    with pytest.raises(ProtocolError, match="socratic-zero' is a program: use 'program:'"):
        from academe.protocols import get_protocol
        get_protocol("socratic-zero")
    with pytest.raises(ProtocolError, match="is a Protocol, not a Program"):
        get_program("academe.protocols.socratic:socratic")
    with pytest.raises(ProtocolError, match="cannot import 'no_such_pkg.mod' \\(No module named 'no_such_pkg'\\)"):
        get_program("no_such_pkg.mod:thing")


def test_the_scripted_teacher_makes_problems_near_the_failed_ones_difficulty():
    from academe.agents.records import Prompt
    from academe.protocols.engine import user
    from academe.protocols.making import make_prompt
    hard = generate_word_problems(1, steps=3, max_value=500, seed=3)[0]
    failure = Failure(**hard.model_dump(), attempt="Answer: 1")
    text = problem_maker(Prompt(messages=(user(make_prompt(failure)),), task=failure.base(), seed=5))
    assert text == problem_maker(Prompt(messages=(user(make_prompt(failure)),), task=failure.base(), seed=5))
    question = text.split("Problem: ")[1].split("\nSolution:")[0]
    assert question.count("Then") == 3  # three steps, like the failed problem
    from academe.protocols.making import made_task
    made = made_task(text, "x")
    assert made.question == question and made.solution.endswith(f"Answer: {made.answer}") and " = " in made.solution
    assert reply(text).text == text


def test_near_duplicates_are_judged_by_text_and_for_word_problems_by_their_numbers():
    from academe.protocols.making import NearDuplicates
    pool = ["Lina has 3 books. Then Lina gives away 2 books. How many books does Lina have now?"]
    strict = NearDuplicates(pool, threshold=0.9, same_numbers=True)
    assert strict.match("Lina has 15 books. Then Lina gives away 12 books. How many books does Lina have now?") is None
    assert strict.match("Lina has 3 books. Then Lina gives away 2 books. How many books has Lina now?") == pool[0]
    assert strict.match("Write a poem about the sea.") is None
    loose = NearDuplicates(pool, threshold=0.9)
    assert loose.match("Lina has 15 books. Then Lina gives away 12 books. How many books does Lina have now?") == pool[0]
    assert NearDuplicates(pool, threshold=0.99, same_numbers=True).match(
        "Lina has 3 books. Then Lina gives away 2 books. How many books has Lina now?") is None


def test_a_program_may_train_only_what_it_declares_and_give_a_protocol_only_its_kind_of_task():
    from academe.agents.records import PreferencePair, SFTExample
    from academe.protocols.engine import user
    state = CoEvolution(options=CoEvolutionOptions(), pool=())
    step = socratic_zero.stages["generator_trained"]
    pair = PreferencePair(messages=(user("q"),), chosen="a", rejected="b")
    with pytest.raises(TransitionError, match="trains role 'teacher', which the program does not declare"):
        socratic_zero._check("attempted", Train(state=state, stage="solver_trained", role="teacher", pairs=(pair,)))
    with pytest.raises(TransitionError, match="gives role 'solver' sft data; the program declares dpo"):
        socratic_zero._check("attempted", Train(state=state, stage="solver_trained", role="solver",
                                                sft=(SFTExample(messages=(user("q"),), target="a"),)))
    with pytest.raises(TransitionError, match="gave protocol 'make-problem' a Task .* runs on Failure tasks"):
        socratic_zero._check("attempted", RunEpisodes(state=state, stage="made", protocol="make-problem",
                                                      tasks=(TASKS[0],)))
    assert step.then == ("evaluated",)


def test_episodes_that_broke_say_nothing_about_the_solver_and_reasons_are_counted_by_kind():
    from academe.protocols.engine import Outcome
    from academe.protocols.socratic_zero import attempted, made
    good = play_episode(attempts, TASKS[0], AttemptOptions(k=2),
                        {"solver": [("s", solver_right_on("RW"))], "teacher": teacher()})
    broken = good.replace(episode=1, task=TASKS[1], state=good.state.replace(task=TASKS[1], verdicts=()),
                          outcome=Outcome(error="RuntimeError: the teacher's model failed"), turns=())
    state = CoEvolution(options=CoEvolutionOptions(k=2), pool=tuple(Problem(task=t) for t in TASKS[:2]))
    action = attempted(state, Episodes(episodes=(good, broken)))
    assert [p.zone for p in action.state.pool] == ["learning", "new"]  # the broken one keeps its zone
    assert action.state.report.errors == 1 and action.state.report.attempted == 1 and action.state.report.pairs == 1
    failure = action.tasks[0]
    replies = ["Problem: one two three four five six?\nAnswer: many", "Problem: seven eight nine ten eleven?\nAnswer: lots",
               "nothing useful"]
    results = tuple(play_episode(make_problem, failure, make_problem.options(), {"teacher": [("t", lambda p, r=r: r)]}, i)
                    for i, r in enumerate(replies))
    after = made(action.state, Episodes(episodes=results))
    assert after.state.report.dropped == {"the answer is not a number": 2, "no 'Answer: ...' line": 1}



def test_the_fine_tuning_baseline_trains_on_reference_solutions_every_round():
    from academe.protocols.fine_tuning import FineTuningOptions, fine_tuning
    stop, actions = play_program(fine_tuning, TASKS, (), FineTuningOptions(rounds=3), {"solver": [("s", None)]},
                                 accuracy=lambda r: 0.1 * r)
    assert [(a.kind, a.state.round) for a in actions] == [("evaluate", 0), ("train", 0), ("evaluate", 0),
                                                          ("train", 1), ("evaluate", 1), ("train", 2), ("evaluate", 2)]
    trains = [a for a in actions if isinstance(a, Train)]
    assert all(a.sft == trains[0].sft for a in trains) and len(trains[0].sft) == len(TASKS)
    assert [e.target for e in trains[0].sft] == [t.solution for t in TASKS] and "Answer: " in trains[0].sft[0].target
    assert stop.summary == {"baseline": 0.0, "accuracy": [0.0, 0.1, 0.2]} and stop.state.round == 3


def test_the_scripted_teacher_makes_problems_as_much_harder_or_easier_as_asked():
    from academe.agents.records import Prompt
    from academe.protocols.engine import user
    from academe.protocols.making import made_task, make_prompt

    def made(steps, max_value, difficulty):
        task = generate_word_problems(1, steps=steps, max_value=max_value, seed=3)[0]
        failure = Failure(**task.model_dump(), attempt="Answer: 1", difficulty=difficulty)
        text = problem_maker(Prompt(messages=(user(make_prompt(failure)),), task=failure.base(), seed=5))
        question = made_task(text, "x").question
        return question.count("Then"), max(int(n) for n in __import__("re").findall(r"\d+", question))

    assert made(2, 20, "harder")[0] == 3 and made(2, 20, "same")[0] == 2 and made(2, 20, "easier")[0] == 1
    assert made(1, 400, "easier")[0] == 1 and made(1, 400, "easier")[1] <= 200  # one step: smaller numbers


def test_curricula_ask_for_difficulties_and_the_learning_zone_keeps_the_candidate_nearest_one_half():
    # the solver solves one-step problems, half its attempts at two-step ones, no three-step one: of
    # the teacher's easier (1 step), same (2) and harder (3) problems it masters, half solves, fails
    def solver(prompt):
        steps = prompt.task.question.count("Then")
        right = steps == 1 or (steps == 2 and prompt.seed % 2 == 0)
        return f"Answer: {prompt.task.answer}" if right else f"Answer: {1000 + prompt.seed}"

    agents = {"solver": [("s", solver)], "teacher": teacher(), "generator": [("g", None)]}
    tasks = tuple(generate_word_problems(3, steps=2, max_value=20, seed=11))
    held_out = (generate_word_problems(1, steps=1, seed=99)[0],)
    difficulties = {}
    for curriculum in ("fixed", "random", "learning-zone"):
        stop, actions = play_program(socratic_zero, tasks, held_out,
                                     CoEvolutionOptions(rounds=1, k=4, curriculum=curriculum), agents)
        making = [a for a in actions if isinstance(a, RunEpisodes) and a.stage == "made"][0]
        difficulties[curriculum] = [t.difficulty for t in making.tasks]
        report = stop.state.reports[0]
        if curriculum == "learning-zone":
            assert report.dropped["outside the learning zone"] == 2 * report.failures
            new = stop.state.pool[len(tasks):]
            assert len(new) == report.failures and all(p.success == 0.5 for p in new)
            assert report.pairs == (len(tasks) + len(new)) * 2 * 2  # only the kept candidates' pairs train
    assert set(difficulties["fixed"]) == {"same"}
    assert difficulties["learning-zone"] == ["easier", "same", "harder"] * len(difficulties["fixed"])
    assert len(difficulties["random"]) == len(difficulties["fixed"]) and set(difficulties["random"]) <= {"easier", "same", "harder"}
