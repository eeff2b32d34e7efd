"""No code in the package runs text it reads: no eval/exec, no unpickling, no unsafe YAML or torch loads."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agents", "protocols", "simulation", "trainers")
SOURCES = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def calls(tree: ast.AST):
    """(dotted name, keyword names) of every call in a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            yield name, {k.arg: ast.unparse(k.value) for k in node.keywords if k.arg}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_evaluates_or_unpickles_what_it_reads(path):
    found = []
    for name, keywords in calls(ast.parse(path.read_text(), str(path))):
        if name in ("eval", "exec", "compile", "__import__") or name.startswith(("pickle.", "marshal.", "dill.")):
            found.append(name)
        if name == "yaml.load" or name == "yaml.unsafe_load":
            found.append(name)
        if name == "torch.load" and keywords.get("weights_only") != "True":
            found.append("torch.load without weights_only=True")
    assert not found, f"{path.relative_to(ROOT)}: {found}"


def test_the_scan_sees_the_whole_package():
    assert len(SOURCES) > 40 and ROOT / "simulation" / "runner.py" in SOURCES
