"""A debate: two debaters argue a question for a few rounds, each seeing what was said; a judge
names the winner. The debaters are two seats of one role, so any two agents can debate."""

import re

from pydantic import Field

from academe.protocols import END, SFT, Ask, Done, EpisodeState, Next, Options, Outcome, Phase, Protocol, user

SIDES = ("for", "against")  # seat 0 argues for, seat 1 against
WINNER = re.compile(r"winner\s*:\s*(for|against)", re.IGNORECASE)


class DebateOptions(Options):
    rounds: int = Field(2, ge=1, le=10, description="arguments each debater makes")


class Debate(EpisodeState):
    rounds: int
    said: tuple[tuple[str, str], ...] = ()  # (side, argument), in the order they were made
    winner: str | None = None


def transcript(s: Debate) -> str:
    return "\n".join(f"{side.upper()}: {text}" for side, text in s.said) or "(nothing yet)"


def argue(s: Debate) -> Next:
    asks = tuple(Ask(seat=seat, messages=(user(f"Debate: {s.task.question}\nYou argue {side}.\nSo far:\n"
                                               f"{transcript(s)}\nGive your next argument in two sentences."),))
                 for seat, side in enumerate(SIDES))
    return Next(state=s, phase="argue", asks=asks)


def start(task, options: DebateOptions):
    return argue(Debate(task=task, rounds=options.rounds))


def argued(s: Debate, answers):
    s = s.replace(said=s.said + tuple((SIDES[a.seat], a.text) for a in answers))
    if len(s.said) < 2 * s.rounds:
        return argue(s)
    verdict = f"Debate: {s.task.question}\n{transcript(s)}\nWho argued better? Reply 'Winner: for' or 'Winner: against'."
    return Next(state=s, phase="judge", asks=(Ask(messages=(user(verdict),)),))


def judged(s: Debate, answers):
    (answer,) = answers
    found = WINNER.findall(answer.text)
    if not found:
        return Done(state=s, outcome=Outcome(), notes={"parse": "the judge named no winner"})
    s = s.replace(winner=found[-1].lower())
    return Done(state=s, outcome=Outcome(rewards={side: float(side == s.winner) for side in SIDES},
                                         metrics={"for_won": float(s.winner == "for")}))


debate = Protocol(
    name="debate", description="two debaters argue a question; a judge names the winner",
    roles=("debater", "judge"), state=Debate, options=DebateOptions, start=start, first=("argue",),
    phases={"argue": Phase("debater", argued, then=("argue", "judge"), doc="both sides, in parallel"),
            "judge": Phase("judge", judged, then=(END,), doc="names the winner")},
    train=(SFT(role="debater", phases=("argue",), when="always"),),
)
