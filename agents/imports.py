"""Code named in a config as ``"package.module:function"``: backends, scripted agents, graders."""

from __future__ import annotations

import importlib
from typing import Callable


def import_function(path: str, what: str) -> Callable:
    """Import ``"package.module:function"``, with an error that says what was expected."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{what} {path!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{what} {path!r}: cannot import {module_name!r} ({exc})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"{what} {path!r}: {module_name} has no function {attr!r}")
    return fn
