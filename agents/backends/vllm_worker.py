"""Code that runs inside vLLM's worker processes (named to the engine as ``worker_extension_cls``):
loading new weights in place, from a safetensors file the agent's actor wrote to shared memory.

Tensors cannot travel as call arguments (vLLM's RPC turns them into lists), so one file carries a
whole update: one call per update, never one per parameter.
"""

from __future__ import annotations


class WeightLoader:
    """Mixed into vLLM's worker class: ``self`` is the worker."""

    def academe_load_weights(self, path: str) -> int:
        """Load the tensors of ``path`` (HF names) into the running model; returns how many."""
        from safetensors.torch import load_file

        weights = load_file(path)
        self.reload_weights(weights_iterator=iter(weights.items()), is_checkpoint_format=True)
        self._academe_retie_output_head()
        return len(weights)

    def _academe_retie_output_head(self) -> None:
        """With tied embeddings the output head shares the embedding's weight, but on CPU it keeps
        its own packed copy for the logits matmul: pack it again from the new weight, or the
        model would keep producing logits from the old one."""
        model = self.model_runner.get_model()
        head = getattr(model, "lm_head", None)
        inner = getattr(model, "model", None)
        embed = getattr(inner, "embed_tokens", None)
        config = getattr(model, "config", None)
        if head is None or embed is None or not getattr(config, "tie_word_embeddings", False):
            return
        head.weight = embed.weight
        head.quant_method.process_weights_after_loading(head)
