"""The transformers backend: batched chat generation with left padding, CPU or CUDA.

Greedy rows are deterministic. Sampled rows draw from their own ``torch.Generator`` seeded by the
prompt's seed, so a sampled reply depends on its prompt and seed, not on which batch it rode in.
Greedy and sampled rows, and rows with different token budgets, share one ``generate`` call.
"""

from __future__ import annotations

import os
import time
from typing import Sequence

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from academe.agents.backends.base import ModelSpec
from academe.agents.models import DEFAULT_MODEL, SMOLLM2_NAME, local_folder
from academe.agents.records import Prompt, Reply, Sampling

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_transformers(spec: ModelSpec) -> "TransformersBackend":
    """The transformers kind's loader: torch gets the threads the model was given (Ray sets one in
    actors), then the model loads."""
    from transformers.utils import logging as hf_logging

    threads = spec.threads or max(1, int(spec.num_cpus))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    return TransformersBackend.from_spec(spec)


class PerRowSampler(LogitsProcessor):
    """Replaces a sampled row's scores by a one-hot of a token drawn with that row's generator.

    ``generate`` then runs greedily, so greedy rows are untouched and sampled rows follow their
    own seeds.
    """

    def __init__(self, samplings: Sequence[Sampling], seeds: Sequence[int]):
        self.rows = [
            (i, s.temperature, s.top_p, torch.Generator().manual_seed(seed))
            for i, (s, seed) in enumerate(zip(samplings, seeds))
            if not s.greedy
        ]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row, temperature, top_p, generator in self.rows:
            probs = torch.softmax(scores[row].float().cpu() / temperature, dim=-1)
            if top_p < 1.0:
                sorted_probs, order = probs.sort(descending=True)
                outside = sorted_probs.cumsum(0) - sorted_probs > top_p
                probs[order[outside]] = 0.0
            token = torch.multinomial(probs, 1, generator=generator).item()
            scores[row] = float("-inf")
            scores[row, token] = 0.0
        return scores


class PerRowBudget(StoppingCriteria):
    """Stops each row at its own ``max_new_tokens``."""

    def __init__(self, prompt_length: int, budgets: Sequence[int], device):
        self.prompt_length = prompt_length
        self.budgets = torch.tensor(budgets, device=device)

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        return (input_ids.shape[1] - self.prompt_length) >= self.budgets


class TransformersBackend:
    """An HF causal LM with its tokenizer's chat template; weights can be swapped while serving."""

    def __init__(self, model, tokenizer, model_name: str, device: torch.device):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.device = device
        self.version = 0
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError(f"model {model_name!r}: its tokenizer has no chat template")

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> "TransformersBackend":
        folder = local_folder(spec.path)
        if spec.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but torch sees no CUDA device; use 'auto'")
        use_cuda = spec.device == "cuda" or (spec.device == "auto" and torch.cuda.is_available())
        device = torch.device("cuda" if use_cuda else "cpu")
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPES[spec.dtype]).to(device)
        name = spec.name or (SMOLLM2_NAME if spec.path == DEFAULT_MODEL else spec.display_name)
        return cls(model, tokenizer, name, device)

    def generate(self, prompts: Sequence[Prompt]) -> list[Reply]:
        if not prompts:
            return []
        start = time.perf_counter()
        texts = [
            self.tokenizer.apply_chat_template(
                [m.model_dump() for m in p.messages], tokenize=False, add_generation_prompt=True
            )
            for p in prompts
        ]
        batch = self.tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.device)
        prompt_length = batch["input_ids"].shape[1]
        budgets = [p.sampling.max_new_tokens for p in prompts]
        config = GenerationConfig(
            do_sample=False,
            max_new_tokens=max(budgets),
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
        )
        processors = LogitsProcessorList()
        if any(not p.sampling.greedy for p in prompts):
            processors.append(PerRowSampler([p.sampling for p in prompts], [p.seed for p in prompts]))
        with torch.inference_mode():
            output = self.model.generate(
                **batch,
                generation_config=config,
                logits_processor=processors,
                stopping_criteria=StoppingCriteriaList(
                    [PerRowBudget(prompt_length, budgets, self.device)]
                ),
            )
        latency = time.perf_counter() - start
        prompt_lengths = batch["attention_mask"].sum(dim=1).tolist()
        return [
            self._reply(output[i, prompt_length:].tolist(), prompt_lengths[i], budgets[i], latency)
            for i in range(len(prompts))
        ]

    def _reply(self, tokens: list[int], prompt_tokens: int, budget: int, latency: float) -> Reply:
        eos = self.tokenizer.eos_token_id
        tokens = tokens[:budget]
        stopped = eos in tokens
        if stopped:
            tokens = tokens[: tokens.index(eos) + 1]
        return Reply(
            text=self.tokenizer.decode(tokens, skip_special_tokens=True).strip(),
            prompt_tokens=prompt_tokens,
            completion_tokens=len(tokens),
            finish_reason="stop" if stopped else "length",
            model=self.model_name,
            model_version=self.version,
            latency_s=latency,
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        """A snapshot (a copy, so later swaps do not change it)."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], version: int) -> None:
        """Swap in new weights (all or a subset, e.g. merged LoRA layers) and stamp the version."""
        missing = set(state) - set(self.model.state_dict())
        if missing:
            raise ValueError(
                f"model {self.model_name!r} has no parameters named {sorted(missing)[:5]}"
            )
        self.model.load_state_dict(state, strict=False)
        self.version = version

    def load_adapter(self, adapter: dict[str, torch.Tensor], lora: dict, version: int, name: str | None = None) -> None:
        """Serve base weights + a LoRA adapter (wrapping the model with peft on first use)."""
        if name is not None:
            raise TypeError(f"model {self.model_name!r} (transformers) hosts no adapter models (asked for {name!r})")
        from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

        if not hasattr(self.model, "peft_config"):
            self.model = get_peft_model(self.model, LoraConfig(task_type="CAUSAL_LM", **lora)).eval()
        result = set_peft_model_state_dict(self.model, adapter)
        if result.unexpected_keys:
            raise ValueError(f"adapter has tensors this model lacks: {result.unexpected_keys[:3]}")
        self.version = version
