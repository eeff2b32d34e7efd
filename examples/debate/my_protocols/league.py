"""A league: each round every question is debated, and the debaters' model is fine-tuned on the
arguments of the side the judge named the winner."""

from pydantic import Field

from academe.agents.records import SFTExample
from academe.protocols import END, Options, ProgramState, Program, RunEpisodes, Stage, Stop, Train
from my_protocols.debate import SIDES, debate


class LeagueOptions(Options):
    rounds: int = Field(2, ge=1, le=100)


class League(ProgramState):
    rounds: int
    questions: tuple
    for_won: tuple[float, ...] = ()  # share of debates the "for" side won, per round


def start(tasks, held_out, options: LeagueOptions):
    return debates(League(rounds=options.rounds, questions=tasks))


def debates(s: League) -> RunEpisodes:
    return RunEpisodes(state=s, stage="debated", protocol="debate", tasks=s.questions, options={"rounds": 2})


def debated(s: League, result):
    judged = [e for e in result.episodes if e.state.winner is not None]
    winning = tuple(SFTExample(messages=t.asked, target=t.text) for e in judged for t in e.turns
                    if t.phase == "argue" and SIDES[t.seat] == e.state.winner)
    s = s.replace(for_won=s.for_won + (sum(e.state.winner == "for" for e in judged) / max(1, len(judged)),))
    return Train(state=s, stage="trained", role="debater", sft=winning)


def trained(s: League, result):
    s = s.replace(round=s.round + 1)
    if s.round >= s.rounds:
        return Stop(state=s, summary={"for_won": list(s.for_won)})
    return debates(s)


league = Program(
    name="league", description="debates every round; the debaters learn from the winning side",
    roles=("debater", "judge"), state=League, options=LeagueOptions, start=start, first=("debated",),
    protocols={"debate": debate}, trains={"debater": "sft"},
    stages={"debated": Stage(debated, then=("trained",), doc="the winners' arguments"),
            "trained": Stage(trained, then=("debated", END), doc="SFT of the debaters' model")},
)
