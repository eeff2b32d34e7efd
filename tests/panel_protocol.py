"""A user's own protocol, loaded by module path: every student answers, then a judge sees them all."""

from academe.protocols import END, Done, EpisodeState, Outcome, Phase, Protocol, ask, user


class Panel(EpisodeState):
    answers: tuple[tuple[str, str], ...] = ()  # (agent, answer), in seat order


def start(task, options):
    return ask("answer", Panel(task=task), user(task.question))  # no seat named: every student answers


def answered(s: Panel, answers):
    s = s.replace(answers=tuple((a.agent, a.text) for a in answers))
    return ask("judge", s, user("\n".join(f"{agent}: {text}" for agent, text in s.answers)))


def judged(s: Panel, answers):
    return Done(state=s, outcome=Outcome(metrics={"answers": len(s.answers)}))


panel = Protocol(name="panel", roles=("student", "judge"), state=Panel, start=start, first=("answer",),
                 phases={"answer": Phase("student", answered, then=("judge",)),
                         "judge": Phase("judge", judged, then=(END,))})
