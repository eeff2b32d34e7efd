"""Training data from the dialogue log, through the protocol's own declaration of what is data.

SFT examples (prompt -> target reply), preference pairs (prompt, chosen, rejected) and distillation
examples (the student's prompt -> the teacher's reply), filtered by model version and outcome,
exportable to HF ``datasets`` and to chat JSONL so they can be trained on elsewhere too.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from academe.agents.records import PreferencePair, Record, SFTExample
from academe.protocols.engine import SFT, Distill, Outcome, Preference, TrainSpec
from academe.simulation.records import StepRecord, TurnRecord


class LogFilter(Record):
    """Which logged turns may become data: by the model version that wrote them."""

    min_version: int | None = None
    max_version: int | None = None

    def keeps(self, turn: TurnRecord) -> bool:
        version = turn.reply.model_version
        return (self.min_version is None or version >= self.min_version) and (
            self.max_version is None or version <= self.max_version)


class LoggedTurn(Record):
    """A turn with the step and phase it was logged in."""

    episode: int
    step: int
    phase: str
    turn: TurnRecord


def episodes(records: Iterable[StepRecord]) -> list[tuple[list[LoggedTurn], Outcome | None]]:
    """(answered turns in order, outcome or None) per episode; failed turns are left out."""
    grouped: dict[tuple, list[StepRecord]] = defaultdict(list)
    for record in records:
        grouped[(record.run, record.episode)].append(record)
    out = []
    for key in sorted(grouped):
        steps = sorted(grouped[key], key=lambda r: r.step)
        turns = [LoggedTurn(episode=r.episode, step=r.step, phase=r.phase, turn=t) for r in steps for t in r.turns
                 if t.reply.finish_reason != "error"]
        out.append((turns, steps[-1].outcome))
    return out


def _outcome_matches(when: str, outcome: Outcome | None) -> bool:
    if outcome is None or outcome.error:
        return False
    return when == "always" or (outcome.solved is not None and outcome.solved == (when == "solved"))


def sft_examples(records: Iterable[StepRecord], spec: SFT, where: LogFilter = LogFilter()) -> list[SFTExample]:
    examples = []
    for turns, outcome in episodes(records):
        if not _outcome_matches(spec.when, outcome):
            continue
        mine = [t for t in turns if t.turn.role == spec.role]
        chosen = [t for t in mine if t.phase in spec.phases and where.keeps(t.turn)]
        if spec.turns == "last":
            chosen = chosen[-1:] if chosen and chosen[-1] is mine[-1] else []
        for logged in chosen:
            source = mine[0] if spec.prompt == "first" else logged
            examples.append(SFTExample(messages=source.turn.prompt.messages, target=logged.turn.reply.text,
                                       episode=logged.episode, step=logged.step,
                                       model_version=logged.turn.reply.model_version))
    return examples


def preference_pairs(records: Iterable[StepRecord], spec: Preference,
                     where: LogFilter = LogFilter()) -> list[PreferencePair]:
    """Replies to the same prompt from solved (chosen) and unsolved (rejected) episodes of one task."""
    by_prompt: dict[str, dict[bool, list[str]]] = defaultdict(lambda: {True: [], False: []})
    prompts, tasks = {}, {}
    for turns, outcome in episodes(records):
        if outcome is None or outcome.error or outcome.solved is None:
            continue
        for logged in turns:
            turn = logged.turn
            if turn.role == spec.role and logged.phase in spec.phases and where.keeps(turn):
                key = json.dumps([m.model_dump() for m in turn.prompt.messages])
                by_prompt[key][outcome.solved].append(turn.reply.text)
                prompts[key] = turn.prompt.messages
                tasks[key] = turn.prompt.task.id if turn.prompt.task else ""
    pairs = []
    for key, replies in by_prompt.items():
        for chosen, rejected in zip(replies[True], replies[False]):
            if chosen != rejected:
                pairs.append(PreferencePair(messages=prompts[key], chosen=chosen, rejected=rejected, task=tasks[key]))
    return pairs


def distill_examples(records: Iterable[StepRecord], spec: Distill,
                     where: LogFilter = LogFilter()) -> list[SFTExample]:
    """The teacher's replies in ``phases``, as targets for the prompt the teacher was given."""
    as_sft = SFT(role=spec.teacher, phases=spec.phases, when="always")
    return sft_examples(records, as_sft, where)


def build(records: Sequence[StepRecord], spec: TrainSpec, where: LogFilter = LogFilter()):
    if isinstance(spec, SFT):
        return sft_examples(records, spec, where)
    if isinstance(spec, Preference):
        return preference_pairs(records, spec, where)
    return distill_examples(records, spec, where)


def chat_row(example: SFTExample | PreferencePair) -> dict:
    """TRL's conversational formats: {"messages"} for SFT; {"prompt", "chosen", "rejected"} for pairs."""
    prompt = [m.model_dump() for m in example.messages]
    if isinstance(example, SFTExample):
        return {"messages": prompt + [{"role": "assistant", "content": example.target}]}
    return {"prompt": prompt, "chosen": [{"role": "assistant", "content": example.chosen}],
            "rejected": [{"role": "assistant", "content": example.rejected}]}


def to_chat_jsonl(examples: Sequence[SFTExample | PreferencePair], path: str | Path) -> Path:
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(chat_row(ex)) + "\n" for ex in examples)
    return path


def to_hf_dataset(examples: Sequence[SFTExample | PreferencePair]):
    import datasets

    return datasets.Dataset.from_list([chat_row(ex) for ex in examples])
