"""Playing protocols and programs in this process with scripted functions: no Ray, no models, no log.

The runner does this for real; these helpers exist so that the algorithms can be checked in
milliseconds, with replies chosen by the test.
"""

from typing import Callable

from academe.agents.records import Prompt, Reply
from academe.protocols.engine import Answer, Next
from academe.protocols.program import EpisodeResult, Episodes, Evaluated, RunEpisodes, Stop, Train, Trained, Turn

Speaker = Callable[[Prompt], str]


def reply(text: str, model: str = "m", version: int = 0) -> Reply:
    return Reply(text=text, prompt_tokens=1, completion_tokens=1, finish_reason="stop", model=model,
                 model_version=version, latency_s=0.0)


def play_episode(protocol, task, options, agents: dict[str, list[tuple[str, Speaker]]], episode: int = 0):
    """Run one episode; ``agents``: role -> [(agent name, function of the prompt)] in seat order."""
    cast = {role: [name for name, _ in seats] for role, seats in agents.items()}
    step, n, turns = protocol.begin(task, options), 0, []
    while isinstance(step, Next):
        n += 1
        answers = []
        for i, (ask, seat) in enumerate(protocol.seats(step, cast)):
            speak = dict(agents[seat.role])[seat.agent]
            text = speak(Prompt(messages=ask.messages, task=step.state.task.base(), seed=1000 * episode + 10 * n + i))
            answer = Answer(role=seat.role, seat=seat.seat, agent=seat.agent, reply=reply(text))
            answers.append(answer)
            turns.append(Turn(step=n, phase=step.phase, role=seat.role, seat=seat.seat, agent=seat.agent,
                              asked=ask.messages, sent=ask.messages, reply=answer.reply))
        step = protocol.step(step.phase, step.state, answers)
    return EpisodeResult(episode=episode, task=step.state.task, outcome=step.outcome, state=step.state,
                         turns=tuple(turns))


def play_program(program, tasks, held_out, options, agents, accuracy: Callable[[int], float] = lambda r: 0.5):
    """Drive a program to its end: episodes played with ``agents``, training that always makes a new
    version, evaluations that report ``accuracy(round)``. Returns (Stop, every action in order)."""
    action, actions, episode, versions = program.begin(tasks, held_out, options), [], 0, {}
    while not isinstance(action, Stop):
        actions.append(action)
        if isinstance(action, RunEpisodes):
            protocol = program.protocol(action.protocol)
            cast = {role: agents[action.cast.get(role, role)] for role in protocol.roles}
            results = []
            for task in action.tasks:
                results.append(play_episode(protocol, task, protocol.parse_options(action.options), cast, episode))
                episode += 1
            result = Episodes(episodes=tuple(results))
        elif isinstance(action, Train):
            data = action.pairs or action.sft
            versions[action.role] = versions.get(action.role, 0) + (1 if data else 0)
            result = Trained(role=action.role, model=action.role, version=versions[action.role], examples=len(data),
                             skipped=None if data else "no examples")
        else:
            result = Evaluated(role=action.role, model=action.role, version=versions.get(action.role, 0),
                               accuracy=accuracy(action.state.round), tasks=len(held_out))
        action = program.step(action.stage, action.state, result)
    return action, actions
