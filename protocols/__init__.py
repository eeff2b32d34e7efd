"""Interaction protocols and round-level programs: explicit state, checked graphs, pure step
functions. No Ray, no torch."""

from __future__ import annotations

import importlib

from academe.protocols.engine import (
    END, START, SFT, Answer, Ask, Distill, Done, EpisodeState, Next, Options, Outcome, Phase, Preference,
    Protocol, ProtocolError, TransitionError, ask, assistant, system, user,
)
from academe.protocols.answer import answer
from academe.protocols.fine_tuning import fine_tuning
from academe.protocols.lbt import lbt, teach_and_exam
from academe.protocols.lion import compare, lion, write_instruction
from academe.protocols.llm2llm import llm2llm
from academe.protocols.making import make_problem
from academe.protocols.program import (
    Episodes, Evaluate, Evaluated, Program, ProgramState, RunEpisodes, Stage, Stop, Train, Trained,
)
from academe.protocols.socratic import socratic
from academe.protocols.socratic_zero import attempts, socratic_zero

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (socratic, attempts, make_problem, answer, compare,
                                                      write_instruction, teach_and_exam)}
PROGRAMS: dict[str, Program] = {p.name: p for p in (socratic_zero, fine_tuning, llm2llm, lion, lbt)}


def _lookup(name: str, kind: type, known: dict, other: dict, other_key: str):
    """A built-in definition by name, or a user's named ``package.module:attribute``."""
    what = kind.__name__.lower()
    if ":" not in name:
        if name in known:
            return known[name]
        hint = f"; {name!r} is a {other_key}: use '{other_key}:' in the config" if name in other else ""
        raise ProtocolError(f"unknown {what} {name!r}; known: {', '.join(sorted(known))}, or "
                            f"'package.module:name' for one of your own{hint}")
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise ProtocolError(f"{what} {name!r}: a {what} of your own is named 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProtocolError(f"{what} {name!r}: cannot import {module_name!r} ({exc}); is its folder on "
                            "PYTHONPATH or installed?") from None
    found = getattr(module, attr, None)
    if not isinstance(found, kind):
        got = "nothing" if found is None else f"a {type(found).__name__}"
        raise ProtocolError(f"{what} {name!r}: {module_name}.{attr} is {got}, not a {kind.__name__}")
    return found


def get_protocol(name: str) -> Protocol:
    """A built-in protocol by name, or a user's by module path (the lookup behind configs and the CLI)."""
    return _lookup(name, Protocol, PROTOCOLS, PROGRAMS, "program")


def get_program(name: str) -> Program:
    """A built-in round-level program by name, or a user's by module path."""
    return _lookup(name, Program, PROGRAMS, PROTOCOLS, "protocol")


__all__ = [
    "END", "PROGRAMS", "PROTOCOLS", "START", "SFT", "Answer", "Ask", "Distill", "Done", "EpisodeState", "Episodes",
    "Evaluate", "Evaluated", "Next", "Options", "Outcome", "Phase", "Preference", "Program", "ProgramState",
    "Protocol", "ProtocolError", "RunEpisodes", "Stage", "Stop", "Train", "Trained", "TransitionError", "ask",
    "assistant", "get_program", "get_protocol", "socratic", "socratic_zero", "system", "user",
]
