"""Scripted stand-ins for models, so the debate runs anywhere in seconds."""

from academe.agents.records import Prompt


def debater(prompt: Prompt) -> str:
    side = "for" if "You argue for" in prompt.messages[-1].content else "against"
    turn = prompt.messages[-1].content.count("\nFOR:") + prompt.messages[-1].content.count("\nAGAINST:")
    return f"Point {turn // 2 + 1} {side}: consider case {prompt.seed % 97}."


def judge(prompt: Prompt) -> str:
    """Prefers the side whose last case number is larger (a deterministic, arbitrary rule)."""
    cases = [(line.split(":")[0], int(line.rsplit("case ", 1)[1].rstrip("."))) for line in
             prompt.messages[-1].content.splitlines() if "case " in line]
    last = {side: number for side, number in cases}
    return "Winner: for" if last.get("FOR", 0) >= last.get("AGAINST", 0) else "Winner: against"
