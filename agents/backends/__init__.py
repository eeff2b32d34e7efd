"""Model backends: transformers (default), scripted; vLLM and HTTP servers plug in the same way."""
