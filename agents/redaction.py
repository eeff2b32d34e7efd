"""Secrets from the environment are never written out: not into the log, a run folder's files, nor
an error message.

API keys and tokens live in environment variables (a backend names the variable, never the value).
Error texts are where they leak: an HTTP client's exception may quote the request it made. Every
error text that academe keeps or shows passes through ``redact``, which replaces the value of any
variable whose name says it is secret (``*KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``...)
with the variable's name.
"""

from __future__ import annotations

import os
import re

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH", re.IGNORECASE)
SHORTEST = 8  # shorter values ("1", "true") are settings, not secrets, and would blank ordinary text


def secret_values() -> dict[str, str]:
    """value -> the variable holding it, for every secret-looking variable set now."""
    return {value: name for name, value in os.environ.items()
            if SECRET_NAME.search(name) and len(value) >= SHORTEST}


def redact(text: str) -> str:
    for value, name in sorted(secret_values().items(), key=lambda item: -len(item[0])):
        if value in text:
            text = text.replace(value, f"<${name}>")
    return text


def secrets_in(data: object, path: str = "") -> list[str]:
    """'path holds $NAME' for each string in ``data`` (a config as JSON data) that holds a secret."""
    if isinstance(data, dict):
        return [found for key, value in data.items() for found in secrets_in(value, f"{path}.{key}" if path else key)]
    if isinstance(data, list):
        return [found for i, value in enumerate(data) for found in secrets_in(value, f"{path}.{i}")]
    if isinstance(data, str):
        return [f"{path} holds the value of ${name}" for value, name in secret_values().items() if value in data]
    return []
