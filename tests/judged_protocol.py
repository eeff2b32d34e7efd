"""A user's protocol for open instructions: a student answers, a judge scores the answer 1-10."""

import re

from academe.protocols import END, Done, EpisodeState, Outcome, Phase, Protocol, ask, user

SCORE = re.compile(r"score\s*:\s*(\d+)", re.IGNORECASE)


class Judged(EpisodeState):
    answer: str = ""


def start(task, options):
    return ask("answer", Judged(task=task), user(task.question))


def answered(s: Judged, answers):
    (a,) = answers
    s = s.replace(answer=a.text)
    return ask("judge", s, user(f"Instruction: {s.task.question}\nAnswer: {s.answer}\nRate the answer 1-10 as 'Score: N'."))


def judged(s: Judged, answers):
    (a,) = answers
    found = SCORE.findall(a.text)
    if not found:
        return Done(state=s, outcome=Outcome(), notes={"parse": "the judge gave no score"})
    return Done(state=s, outcome=Outcome(score=int(found[-1]) / 10, rewards={"student": int(found[-1]) / 10}))


critique = Protocol(name="critique", roles=("student", "judge"), state=Judged, start=start, first=("answer",),
                    phases={"answer": Phase("student", answered, then=("judge",)),
                            "judge": Phase("judge", judged, then=(END,))})
