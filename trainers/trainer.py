"""A trainer: one trainable model, fine-tuned in short phases (SFT or DPO, LoRA or full), versioned.

It runs in a Ray actor (one per trainable model; a GPU each where the cluster has them, CPU here)
or in this process. fp32 master weights on CPU: bf16 full fine-tuning barely learns at this scale.
Each phase that completes produces a new version; a phase that fails (out of memory, say) restores
the last good weights and raises, so the run keeps serving the last good version.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Literal, Sequence

import torch
from academe.agents.backends.base import ModelSpec
from academe.agents.models import local_folder
from academe.agents.records import PreferencePair, Record, SFTExample
from academe.simulation.config import TrainSettings
from academe.trainers.losses import collate, dpo_loss, encode, sft_loss, target_logprobs

REPORT_FILE = "report.json"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class PhaseReport(Record):
    version: int
    kind: Literal["sft", "dpo"]
    examples: int
    steps: int
    losses: tuple[float, ...]
    margins: tuple[float, ...] = ()
    tokens: int
    seconds: float
    tokens_per_s: float
    samples_per_s: float


class TrainingFailed(RuntimeError):
    """A phase failed; the trainer is back at its last good version (named in the message)."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into this trainer; the message says why."""


class Trainer:
    def __init__(self, model: ModelSpec, settings: TrainSettings, threads: int | None = None):
        if not model.backend.trainable:
            raise ValueError(f"model {model.display_name!r} is {model.kind!r}, which a trainer cannot train")
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        threads = threads or model.threads or max(1, int(model.num_cpus))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)  # Ray sets one thread in actors
        torch.manual_seed(settings.seed)
        self.settings, self.spec = settings, model
        self.device = torch.device("cuda" if model.device != "cpu" and torch.cuda.is_available() else "cpu")
        folder = local_folder(model.path)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(self.device)
        self.base_config = base.config.to_dict()
        if settings.gradient_checkpointing:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            base.config.use_cache = False
        if settings.mode == "lora":
            from peft import LoraConfig, get_peft_model

            self.lora_config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha,
                                          lora_dropout=settings.lora_dropout, target_modules=list(LORA_TARGETS),
                                          task_type="CAUSAL_LM")
            self.model = get_peft_model(base, self.lora_config)
        else:
            self.lora_config = None
            self.model = base
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=settings.lr, weight_decay=settings.weight_decay)
        # What "from the base model" goes back to: the fresh adapter (LoRA) or the loaded weights (full).
        self.initial = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}
        self.version = 0
        self.live = {"phase": None, "step": 0, "steps": 0, "loss": None, "samples_per_s": 0.0}

    # ---- training ----
    def _encode(self, messages, target: str) -> tuple[list[int], list[int]]:
        return encode(self.tokenizer, messages, target, self.settings.max_seq_len)

    def train_sft(self, examples: Sequence[SFTExample], steps: int | None = None, from_base: bool = False) -> PhaseReport:
        """SFT on the examples; each example's loss counts by its ``weight``. ``from_base`` starts the
        phase from the base model and a fresh optimizer instead of the last version (LLM2LLM)."""
        if from_base:
            self.reset()
        encoded = [(self._encode(e.messages, e.target), e.weight) for e in examples]
        return self._phase("sft", encoded, self._plan(len(encoded), steps), self._sft_step)

    def train_dpo(self, pairs: Sequence[PreferencePair], steps: int | None = None, from_base: bool = False) -> PhaseReport:
        if from_base:
            self.reset()
        encoded = [(self._encode(p.messages, p.chosen), self._encode(p.messages, p.rejected)) for p in pairs]
        plan = self._plan(len(encoded), steps)
        used = sorted({i for batch in plan for i in batch})  # reference log-probs only where a batch needs them
        reference: dict[int, tuple[float, float]] = {}
        try:
            with torch.no_grad():  # the reference policy is the model as this phase starts
                self.model.eval()
                for start in range(0, len(used), self.settings.batch_size):
                    chunk = used[start:start + self.settings.batch_size]
                    sides = [target_logprobs(self.model, collate([encoded[i][side] for i in chunk], self._pad,
                                                                 self.device))[0].tolist() for side in (0, 1)]
                    reference.update({i: (c, r) for i, c, r in zip(chunk, *sides)})
        except (torch.OutOfMemoryError, RuntimeError) as exc:  # nothing trained yet: the version stands
            raise TrainingFailed(f"dpo phase failed computing reference log-probs ({type(exc).__name__}: "
                                 f"{str(exc)[:300]}); kept version {self.version}") from None
        items = [(pair, reference.get(i)) for i, pair in enumerate(encoded)]
        return self._phase("dpo", items, plan, self._dpo_step)

    def _plan(self, count: int, steps: int | None) -> list[list[int]]:
        """Which examples each step trains on: epochs of a shuffled order, a batch per step. Seeded by
        the version the phase starts from, so a phase redone after a resume draws the same batches."""
        if not count:
            return []
        rng = random.Random(f"{self.settings.seed}/{self.version}")
        plan, order = [], []
        for _ in range(steps or self.settings.steps):
            batch = []
            while len(batch) < min(self.settings.batch_size, count):
                if not order:
                    order = list(range(count))
                    rng.shuffle(order)
                batch.append(order.pop())
            plan.append(batch)
        return plan

    def _sft_step(self, batch) -> tuple[torch.Tensor, int, float | None]:
        weights = [w for _, w in batch]
        tensors = collate([e for e, _ in batch], self._pad, self.device, None if set(weights) == {1.0} else weights)
        return sft_loss(self.model, tensors), int(tensors["attention_mask"].sum()), None

    def _dpo_step(self, batch) -> tuple[torch.Tensor, int, float | None]:
        chosen = collate([pair[0] for pair, _ in batch], self._pad, self.device)
        rejected = collate([pair[1] for pair, _ in batch], self._pad, self.device)
        ref = torch.tensor([r for _, r in batch], device=self.device)
        chosen_logps, chosen_tokens = target_logprobs(self.model, chosen)
        loss, margin = dpo_loss(chosen_logps, target_logprobs(self.model, rejected)[0],
                                ref[:, 0], ref[:, 1], self.settings.dpo_beta)
        if self.settings.dpo_nll:
            loss = loss - self.settings.dpo_nll * chosen_logps.sum() / chosen_tokens.sum().clamp(min=1)
        tokens = int(chosen["attention_mask"].sum() + rejected["attention_mask"].sum())
        return loss, tokens, float(margin.mean())

    def _phase(self, kind, items: list, plan: list[list[int]], step_fn) -> PhaseReport:
        if not items:
            raise ValueError(f"a {kind} phase needs at least one example (got none)")
        good = {name: p.detach().clone() for name, p in self.model.named_parameters() if p.requires_grad}
        torch.manual_seed(random.Random(f"{self.settings.seed}/{self.version}/torch").getrandbits(63))  # dropout
        losses, margins, tokens = [], [], 0
        start = time.perf_counter()
        try:
            self.model.train()
            for indices in plan:
                batch = [items[i] for i in indices]
                loss, n_tokens, margin = step_fn(batch)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.params, 1.0)
                self.optimizer.step()
                losses.append(loss.item())
                tokens += n_tokens
                elapsed = time.perf_counter() - start
                self.live = {"phase": kind, "step": len(losses), "steps": len(plan), "loss": losses[-1],
                             "samples_per_s": len(losses) * len(batch) / elapsed}
                if margin is not None:
                    margins.append(margin)
                if self.settings.tokens is not None and tokens >= self.settings.tokens:
                    break
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            self._restore(good)
            raise TrainingFailed(f"{kind} phase failed ({type(exc).__name__}: {str(exc)[:300]}); "
                                 f"kept version {self.version}") from None
        finally:
            self.model.eval()
            self.live = dict(self.live, phase=None)
        seconds = time.perf_counter() - start
        self.version += 1
        samples = sum(len(b) for b in plan[:len(losses)])
        return PhaseReport(version=self.version, kind=kind, examples=len(items), steps=len(losses), losses=tuple(losses),
                           margins=tuple(margins), tokens=tokens, seconds=seconds, tokens_per_s=tokens / seconds,
                           samples_per_s=samples / seconds)

    def reset(self) -> None:
        """Back to the base model: the trained weights as they were loaded, a fresh optimizer. The
        version still counts on, so every published model stays distinguishable."""
        self._restore(self.initial)
        self.optimizer = torch.optim.AdamW(self.params, lr=self.settings.lr, weight_decay=self.settings.weight_decay)

    def _restore(self, good: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                if name in good:
                    p.copy_(good[name])
        self.optimizer.zero_grad(set_to_none=True)

    @property
    def _pad(self) -> int:
        return self.tokenizer.pad_token_id

    def loss_on(self, examples: Sequence[SFTExample]) -> float:
        """SFT loss on these examples without training (for checks and reports)."""
        encoded = [self._encode(e.messages, e.target) for e in examples]
        weights = [e.weight for e in examples]
        with torch.no_grad():
            return float(sft_loss(self.model, collate(encoded, self._pad, self.device, weights)))

    def margin_on(self, pairs: Sequence[PreferencePair]) -> float:
        """Mean log-probability margin of chosen over rejected replies under the current weights."""
        with torch.no_grad():
            chosen = collate([self._encode(p.messages, p.chosen) for p in pairs], self._pad, self.device)
            rejected = collate([self._encode(p.messages, p.rejected) for p in pairs], self._pad, self.device)
            return float((target_logprobs(self.model, chosen)[0] - target_logprobs(self.model, rejected)[0]).mean())

    def status(self) -> dict:
        """The running phase's step, loss and samples/s (polled by the driver while it trains)."""
        return dict(self.live, version=self.version)

    # ---- publication ----
    def weights(self, what: Literal["full", "adapter"], on_device: bool = False) -> dict[str, torch.Tensor]:
        """What receivers load: the LoRA adapter only, or full weights (LoRA merged in); copies on
        the CPU, or (``on_device``, for an NCCL broadcast) on the trainer's device."""
        def out(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.detach() if on_device else tensor.detach().cpu().clone()

        if what == "adapter":
            if self.lora_config is None:
                raise ValueError("this trainer does full fine-tuning: there is no adapter to publish")
            from peft import get_peft_model_state_dict

            return {k: out(v) for k, v in get_peft_model_state_dict(self.model).items()}
        if self.lora_config is not None:
            return self._merged_state(out)
        return {k: out(v) for k, v in self.model.state_dict().items()}

    def _merged_state(self, out) -> dict[str, torch.Tensor]:
        """Full weights with the adapter merged, leaving the trainable adapter in place."""
        state = {}
        base = self.model.get_base_model()
        for name, module in base.named_modules():
            if hasattr(module, "get_delta_weight") and "default" in getattr(module, "lora_A", {}):
                state[f"{name}.weight"] = (module.base_layer.weight + module.get_delta_weight("default")).detach()
        seen = {t.data_ptr() for t in state.values()}
        state = {k: out(v) for k, v in state.items()}
        for name, tensor in base.state_dict().items():
            clean = name.replace(".base_layer", "")
            if "lora_" not in name and clean not in state and tensor.data_ptr() not in seen:
                seen.add(tensor.data_ptr())  # tied weights (embeddings and output head) travel once
                state[clean] = out(tensor)
        return state

    def publish_to(self, receivers: dict, what: str, timeout_s: float, hosted: dict[str, str] | None = None):
        """Publish this trainer's current version to model actors (from inside the trainer actor)."""
        from academe.trainers.publish import publish

        return publish(receivers, self.weights(what), self.version, what, self.lora_settings(), timeout_s, hosted)

    def publish_nccl(self, receivers: dict, timeout_s: float):
        """Publish this trainer's current version over NCCL, GPU to GPU, to vLLM engines made with
        ``weight_sync: nccl`` (from inside the trainer actor; the group is made at the first call)."""
        from academe.trainers.nccl_sync import NCCLPublisher

        if not hasattr(self, "_nccl"):
            self._nccl = NCCLPublisher()
        return self._nccl.publish(receivers, lambda: self.weights("full", on_device=True), self.version, timeout_s)

    def lora_settings(self) -> dict | None:
        """The adapter's shape, for receivers that wrap their model to load adapters."""
        s = self.settings
        return None if self.lora_config is None else {"r": s.lora_r, "lora_alpha": s.lora_alpha,
                                                      "target_modules": list(LORA_TARGETS)}

    # ---- checkpoints ----
    def save(self, folder: str | Path, report: dict | None = None) -> Path:
        """Versioned checkpoint: weights (safetensors), optimizer, the trainer state, and (if given)
        the report of the phase that made it, all or nothing (written aside, then renamed)."""
        from safetensors.torch import save_file

        folder = Path(folder) / f"v{self.version:05d}"
        partial = folder.with_name(folder.name + ".partial")
        partial.mkdir(parents=True, exist_ok=True)
        trainable = {n: p.detach().cpu().contiguous() for n, p in self.model.named_parameters() if p.requires_grad}
        save_file(trainable, partial / "weights.safetensors")
        torch.save(self.optimizer.state_dict(), partial / "optimizer.pt")
        state = {"version": self.version, "model": self.spec.display_name, **self._identity()}
        (partial / "trainer_state.json").write_text(json.dumps(state, indent=2))
        if report is not None:
            (partial / REPORT_FILE).write_text(json.dumps(report, indent=2))
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        partial.rename(folder)
        return folder

    def load(self, folder: str | Path) -> int:
        """Load a checkpoint made by ``save``; refuses one from another model or setup, or a corrupt one."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            state = json.loads((folder / "trainer_state.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"checkpoint {folder}: no readable trainer_state.json ({exc})") from None
        for key, mine in self._identity().items():
            if state.get(key) != mine:
                raise CheckpointError(f"checkpoint {folder} is from another model or setup: "
                                      f"{key} is {state.get(key)!r} there, {mine!r} here")
        try:
            weights = load_file(folder / "weights.safetensors")
        except (OSError, SafetensorError) as exc:
            raise CheckpointError(f"checkpoint {folder}: weights.safetensors is unreadable ({exc})") from None
        params = dict(self.model.named_parameters())
        wrong = [n for n, t in weights.items() if n not in params or params[n].shape != t.shape]
        missing = [n for n, p in params.items() if p.requires_grad and n not in weights]
        if wrong or missing:
            raise CheckpointError(f"checkpoint {folder} does not fit this model: "
                                  f"{len(wrong)} unexpected or misshapen and {len(missing)} missing tensors")
        optimizer = None
        if (folder / "optimizer.pt").is_file():
            try:
                optimizer = torch.load(folder / "optimizer.pt", weights_only=True)
            except Exception as exc:  # a truncated or garbled file: torch raises several kinds
                raise CheckpointError(f"checkpoint {folder}: optimizer.pt is unreadable "
                                      f"({type(exc).__name__}: {str(exc)[:200]})") from None
        with torch.no_grad():  # every part was read: only now does anything change
            for name, tensor in weights.items():
                params[name].copy_(tensor)
        if optimizer is not None:
            self.optimizer.load_state_dict(optimizer)
        self.version = int(state["version"])
        return self.version


    def _identity(self) -> dict:
        """What a checkpoint must match to be loaded here."""
        c = self.base_config
        return {"mode": self.settings.mode, "architectures": c.get("architectures"), "vocab_size": c.get("vocab_size"),
                "hidden_size": c.get("hidden_size"), "num_hidden_layers": c.get("num_hidden_layers"),
                "lora_r": self.settings.lora_r if self.lora_config is not None else None}


def checkpoints(folder: str | Path) -> list[Path]:
    """A model's finished checkpoints, oldest first."""
    return sorted(p for p in Path(folder).glob("v*") if p.is_dir() and p.name[1:].isdigit())
