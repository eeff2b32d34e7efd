"""Pure protocol tests: scripted replies, no Ray, no models (milliseconds)."""

import pytest

from academe.agents import Reply, SubStep, Task
from academe.agents.records import Prompt
from academe.protocols import (END, Answer, Done, EpisodeState, Next, Outcome, Phase, Protocol, ProtocolError, TransitionError,
                               ask, get_protocol, socratic, user)
from academe.protocols.oracles import guessing_student, socratic_teacher
from academe.protocols.socratic import Tutoring, TutoringOptions

TASK = Task(id="t", question="Mia has 3 apples and gets 4 more, then gives away 2. How many now?", answer="5",
            steps=(SubStep(question="How many after getting 4 more?", answer="7"),
                   SubStep(question="How many after giving away 2?", answer="5")))


def said(text, role="any", agent="x", seat=0):
    reply = Reply(text=text, prompt_tokens=1, completion_tokens=1, finish_reason="stop", model="m",
                  model_version=0, latency_s=0.0)
    return Answer(role=role, seat=seat, agent=agent, reply=reply)


def play(student_lines, teacher=None, max_turns=4):
    """Drive the Socratic protocol with scripted student lines and the scripted teacher."""
    step = socratic.begin(TASK, TutoringOptions(max_student_turns=max_turns))
    lines = iter(student_lines)
    phases = []
    while isinstance(step, Next):
        phases.append(step.phase)
        if socratic.speakers(step.phase) == ("student",):
            reply = said(next(lines))
        else:
            reply = said(teacher(step) if teacher else socratic_teacher(Prompt(messages=step.asks[0].messages, task=TASK)))
        step = socratic.step(step.phase, step.state, [reply])
    return step, phases


def test_solved_on_the_first_attempt_ends_at_once():
    done, phases = play(["3 + 4 - 2 = 5. Answer: 5"])
    assert phases == ["attempt"] and done.outcome.solved
    assert done.outcome.metrics["success_at"] == 1 and "telling_at" not in done.outcome.metrics


def test_teacher_walks_the_steps_and_the_student_gets_there():
    done, phases = play(["Answer: 9", "It is 7", "5 apples."])
    assert phases == ["attempt", "guide", "answer", "guide", "answer"]
    assert done.outcome.solved and done.outcome.metrics["success_at"] == 3
    assert done.state.moves == ("focus", "probing")


def test_repeated_misses_make_the_teacher_tell_and_telling_is_counted():
    done, _ = play(["Answer: 1", "8", "8", "Answer: 2", "Answer: 3", "Answer: 0"], max_turns=6)
    assert done.state.moves == ("focus", "probing", "telling", "probing", "telling")
    assert not done.outcome.solved and done.outcome.metrics["student_turns"] == 6
    # the scripted teacher told the second step's answer (= the final answer) on its 5th turn
    assert done.state.told_at == 5 and done.outcome.metrics["telling_at"] == 5


def test_turn_budget_ends_the_episode_unsolved():
    done, phases = play(["no idea"] * 2, max_turns=2)
    assert not done.outcome.solved and phases == ["attempt", "guide", "answer"]
    assert done.outcome.metrics["student_turns"] == 2


def test_a_reply_without_a_number_is_noted_and_the_episode_goes_on():
    step = socratic.begin(TASK)
    step = socratic.step("attempt", step.state, [said("I am not sure what to do.")])
    assert isinstance(step, Next) and step.phase == "guide"
    assert step.notes == {"parse": "no number in the student's reply"}


def test_an_llm_teacher_reply_without_a_move_tag_counts_as_generic_and_telling_is_detected():
    step = socratic.begin(TASK)
    step = socratic.step("attempt", step.state, [said("Answer: 4")])
    step = socratic.step("guide", step.state, [said("Well, the answer is 5, isn't it?")])
    assert step.state.moves == ("generic",) and step.state.told_at == 1


def test_episode_state_round_trips_through_json():
    done, _ = play(["Answer: 9", "It is 7", "5 apples."])
    again = Tutoring.model_validate_json(done.state.model_dump_json())
    assert again == done.state
    assert Outcome.model_validate_json(done.outcome.model_dump_json()) == done.outcome


def test_student_sees_teacher_as_user_and_teacher_sees_student_as_user():
    step = socratic.begin(TASK)
    step = socratic.step("attempt", step.state, [said("Answer: 9")])
    teacher_prompt = step.asks[0].messages
    assert [m.role for m in teacher_prompt] == ["user", "user"] and "Correct answer: 5" in teacher_prompt[0].content
    step = socratic.step("guide", step.state, [said("(focus) How many after getting 4?")])
    assert [m.role for m in step.asks[0].messages] == ["user", "assistant", "user"]
    assert "Correct answer" not in step.asks[0].messages[0].content  # the student is not told
    assert step.asks[0].messages[-1].content == "How many after getting 4?"  # the move is the log's annotation
    assert step.notes == {"move": "focus"} and step.state.dialogue[-1][1].startswith("(focus)")


def test_options_are_validated_with_the_field_named():
    with pytest.raises(ValueError, match="max_student_turns"):
        socratic.parse_options({"max_student_turns": 0})
    with pytest.raises(ValueError, match="extra|max_turnz"):
        socratic.parse_options({"max_turnz": 3})


def test_scripted_oracles_are_pure_functions_of_the_prompt():
    prompt = Prompt(messages=(user("brief"), user("Answer: 9")), task=TASK)
    assert socratic_teacher(prompt) == socratic_teacher(prompt)
    assert "How many after getting 4 more?" in socratic_teacher(prompt)
    assert guessing_student(Prompt(messages=(user("How many after getting 4 more?"),), task=TASK, seed=3)).endswith("7.")
    with pytest.raises(ValueError, match="needs the task"):
        socratic_teacher(Prompt(messages=(user("x"), user("y"))))


# ---- the engine's checks ----

class S(EpisodeState):
    n: int = 0


def noop(state, replies):
    return Done(state=state, outcome={"solved": True})


def make(**changes):
    spec = dict(name="toy", roles=("a", "b"), state=S, start=lambda task, o: ask("one", S(task=task), user("hi")),
                first=("one",), phases={"one": Phase("a", noop, then=(END,))})
    spec.update(changes)
    return Protocol(**spec)


def test_engine_refuses_unreachable_phases():
    with pytest.raises(ProtocolError, match="two cannot be reached"):
        make(phases={"one": Phase("a", noop, then=(END,)), "two": Phase("b", noop, then=(END,))})


def test_engine_refuses_phases_that_can_never_end():
    with pytest.raises(ProtocolError, match="from phase\\(s\\) loop the end can never be reached"):
        make(phases={"one": Phase("a", noop, then=("loop", END)), "loop": Phase("b", noop, then=("loop",))})


def test_engine_refuses_unknown_roles_and_phases():
    with pytest.raises(ProtocolError, match="unknown role 'c'"):
        make(phases={"one": Phase("c", noop, then=(END,))})
    with pytest.raises(ProtocolError, match="unknown phase 'nowhere'"):
        make(phases={"one": Phase("a", noop, then=("nowhere",))})


def test_engine_raises_on_a_transition_the_graph_does_not_allow():
    def jumps(state, replies):
        return ask("one", state, user("again"))
    toy = make(phases={"one": Phase("a", jumps, then=(END,))})
    first = toy.begin(TASK)
    with pytest.raises(TransitionError, match="phase 'one' went to 'one'; allowed: <end>"):
        toy.step("one", first.state, [said("x")])


def test_bindings_must_cover_every_role_and_only_those():
    with pytest.raises(ProtocolError, match="role\\(s\\) teacher have no agent"):
        socratic.check_bindings({"student": ["s"]})
    with pytest.raises(ProtocolError, match="no role\\(s\\) judge"):
        socratic.check_bindings({"student": ["s"], "teacher": ["t"], "judge": ["j"]})


def test_unknown_protocol_lists_the_known_ones():
    with pytest.raises(ProtocolError, match="unknown protocol 'debate'; known: answer, compare, make-problem, socratic, solve-and-verify, teach-and-exam, write-instruction"):
        get_protocol("debate")


def test_engine_refuses_a_phase_that_no_role_speaks():
    with pytest.raises(ProtocolError, match="phase 'one' names no role to speak in it"):
        make(phases={"one": Phase((), noop, then=(END,))})
