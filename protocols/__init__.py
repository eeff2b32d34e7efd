"""Interaction protocols: explicit episode state, phase graphs, pure step functions. No Ray, no torch."""

from academe.protocols.engine import (
    END, START, SFT, Distill, Done, EpisodeState, Next, Options, Outcome, Phase, Preference, Protocol,
    ProtocolError, TransitionError, ask, assistant, system, user,
)
from academe.protocols.socratic import socratic

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (socratic,)}


def get_protocol(name: str) -> Protocol:
    """The name-to-protocol lookup behind the CLI and configs."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ProtocolError(f"unknown protocol {name!r}; known: {', '.join(sorted(PROTOCOLS))}") from None


__all__ = [
    "END", "PROTOCOLS", "START", "SFT", "Distill", "Done", "EpisodeState", "Next", "Options", "Outcome",
    "Phase", "Preference", "Protocol", "ProtocolError", "TransitionError", "ask", "assistant",
    "get_protocol", "socratic", "system", "user",
]
