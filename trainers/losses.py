"""Tokenising chat examples for training, and the SFT and DPO losses.

Written by hand rather than through TRL's trainers: a trainer actor lives for the whole simulation,
keeps one optimizer across many short phases, reports every step to the driver and swaps weights
in place between phases; TRL's trainers are built around one long offline ``train()`` call with
their own loop, data pipeline and output folders. The losses themselves are a few lines each.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from academe.agents.records import ChatMessage

IGNORE = -100


def encode(tokenizer, messages: Sequence[ChatMessage], target: str, max_len: int) -> tuple[list[int], list[int]]:
    """Token ids of prompt + target (+ end of turn), and labels that score only the target.

    A too-long example loses the start of its prompt, never its target.
    """
    prompt = tokenizer.apply_chat_template([m.model_dump() for m in messages], tokenize=False,
                                           add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    target_ids = tokenizer(target + tokenizer.eos_token, add_special_tokens=False)["input_ids"][:max_len]
    prompt_ids = prompt_ids[-(max_len - len(target_ids)):] if max_len > len(target_ids) else []
    return prompt_ids + target_ids, [IGNORE] * len(prompt_ids) + target_ids


def collate(pairs: Sequence[tuple[list[int], list[int]]], pad_id: int, device,
            weights: Sequence[float] | None = None) -> dict[str, torch.Tensor]:
    """Right-padded batch of (input ids, labels), with each row's loss weight if given."""
    width = max(len(ids) for ids, _ in pairs)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(pairs), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for row, (i, l) in enumerate(pairs):
        ids[row, : len(i)] = torch.tensor(i)
        labels[row, : len(l)] = torch.tensor(l)
        mask[row, : len(i)] = 1
    batch = {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}
    if weights is not None:
        batch["weights"] = torch.tensor(weights, dtype=torch.float32, device=device)
    return batch


def target_logprobs(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of log-probabilities of each row's target tokens, and the number of target tokens.

    Only the positions that predict a target token go through the softmax: the prompt's positions
    would cost a vocabulary-sized row each for nothing.
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    scored = labels != IGNORE
    rows = torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(labels)[scored]
    token_logps = -F.cross_entropy(logits[scored].float(), labels[scored], reduction="none")
    sums = torch.zeros(labels.shape[0], device=labels.device, dtype=token_logps.dtype).index_add(0, rows, token_logps)
    return sums, scored.sum(-1)


def sft_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Negative log-likelihood per target token (the prompt is not trained on); each row's tokens
    count by the row's weight, if the batch has weights (value-weighted SFT)."""
    logps, counts = target_logprobs(model, batch)
    if "weights" in batch:
        logps = logps * batch["weights"]
    return -logps.sum() / counts.sum().clamp(min=1)


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DPO's sigmoid loss, and the reward margin (chosen minus rejected, in units of beta)."""
    margin = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    return -F.logsigmoid(margin).mean(), margin.detach()
