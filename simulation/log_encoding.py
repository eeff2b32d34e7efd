"""How a step record is written compactly: each line says only what is new since the episode's
previous step, so a dialogue of n turns costs O(n) bytes in the log, not O(n^2).

A record read back is whole again. Three things repeat from step to step and are written once:
- the state: a ``patch`` on the previous step's state (fields set anew, lists grown at the end);
- a turn's ask (who was asked, with which prompt): the previous step logged it, so the turn keeps
  only its index (``from_ask``);
- a prompt that extends the same agent's previous prompt in the episode (a dialogue so far, one
  turn longer): the messages added (``{"extends": n, "more": [...]}``).
Encoder and decoder keep the same memory per episode, and a line that depends on a step the log
does not hold is reported, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ASK_FIELDS = ("role", "seat", "agent", "asked", "prompt")


class MissingBase(ValueError):
    """A compact line refers to an earlier step of its episode that the log does not hold."""


@dataclass
class Memory:
    """What one episode's previous step said: its number, state and asks, and each agent's last prompt."""

    step: int
    state: object
    asks: list
    prompts: dict[str, tuple[list, list, int]] = field(default_factory=dict)  # agent -> (asked, sent, step)


def state_patch(before: dict, after: dict) -> dict:
    changes = {}
    for key, value in after.items():
        old = before.get(key)
        if key in before and old == value:
            continue
        changes[key] = {"append": value[len(old):]} if extends(old, value) else {"set": value}
    changes.update({key: {"delete": True} for key in before if key not in after})
    return changes


def apply_patch(before: dict, changes: dict) -> dict:
    state = dict(before)
    for key, change in changes.items():
        if "append" in change:
            state[key] = list(state[key]) + change["append"]
        elif "set" in change:
            state[key] = change["set"]
        else:
            state.pop(key, None)
    return state


def extends(old, new) -> bool:
    return isinstance(old, list) and isinstance(new, list) and len(new) > len(old) and new[:len(old)] == old


def shorter(messages: list, before: list | None, step: int | None):
    if not extends(before, messages):
        return messages
    return {"extends": len(before), "of_step": step, "more": messages[len(before):]}


def longer(messages, before: list | None, step: int | None) -> list:
    if isinstance(messages, list):
        return messages
    if before is None or len(before) != messages["extends"] or step != messages["of_step"]:
        raise MissingBase(f"a prompt extends one of step {messages['of_step']} that the log does not hold")
    return before + messages["more"]


def encode(data: dict, memories: dict[int, Memory]) -> dict:
    """A record (as JSON data) made compact against its episode's memory; updates the memory."""
    episode, step = data["episode"], data["step"]
    memory = memories.get(episode)
    whole_asks = data["asks"]
    out = dict(data)
    if memory is not None and memory.step == step - 1:
        if isinstance(data["state"], dict) and isinstance(memory.state, dict):
            out["state"], out["patch"] = None, {"base": memory.step, "changes": state_patch(memory.state, data["state"])}
        out["turns"] = [{k: v for k, v in t.items() if k not in ASK_FIELDS} | {"from_ask": True}
                        if t["index"] < len(memory.asks) and all(t[k] == memory.asks[t["index"]][k] for k in ASK_FIELDS)
                        else t for t in data["turns"]]
    prompts = memory.prompts if memory is not None else {}
    out["asks"] = []
    for ask in whole_asks:
        asked, sent, at = prompts.get(ask["agent"], (None, None, None))
        out["asks"].append(ask | {"asked": shorter(ask["asked"], asked, at),
                                  "prompt": ask["prompt"] | {"messages": shorter(ask["prompt"]["messages"], sent, at)}})
        prompts[ask["agent"]] = (ask["asked"], ask["prompt"]["messages"], step)
    remember(memories, data, whole_asks, prompts)
    return out


def decode(data: dict, memories: dict[int, Memory]) -> dict:
    """A compact record made whole again from its episode's memory; updates the memory."""
    episode, step = data["episode"], data["step"]
    memory = memories.get(episode)
    refers = data.get("patch") is not None or any(t.get("from_ask") for t in data["turns"])
    if refers and (memory is None or memory.step != step - 1):
        raise MissingBase(f"episode {episode} step {step} is written as changes to step {step - 1}, "
                          "which is missing from the log")
    out = dict(data)
    if data.get("patch") is not None:
        out["state"], out["patch"] = apply_patch(memory.state, data["patch"]["changes"]), None
    out["turns"] = [{k: v for k, v in t.items() if k != "from_ask"} | {k: memory.asks[t["index"]][k] for k in ASK_FIELDS}
                    if t.get("from_ask") else t for t in data["turns"]]
    prompts = memory.prompts if memory is not None else {}
    out["asks"] = []
    for ask in data["asks"]:
        asked, sent, at = prompts.get(ask["agent"], (None, None, None))
        whole = ask | {"asked": longer(ask["asked"], asked, at),
                       "prompt": ask["prompt"] | {"messages": longer(ask["prompt"]["messages"], sent, at)}}
        out["asks"].append(whole)
        prompts[ask["agent"]] = (whole["asked"], whole["prompt"]["messages"], step)
    remember(memories, out, out["asks"], prompts)
    return out


def remember(memories: dict[int, Memory], data: dict, asks: list, prompts: dict) -> None:
    if data["outcome"] is None:
        memories[data["episode"]] = Memory(data["step"], data["state"], asks, prompts)
    else:
        memories.pop(data["episode"], None)
