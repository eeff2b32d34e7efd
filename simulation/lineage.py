"""Where a run's episodes came from: ``lineage.json`` in a forked or imported run folder.

A fork keeps each of its episodes' parent (run folder, episode, the step it was forked at) and
the agents it substituted; an import names its source file. Replay, compare and the HTML page
read it to link an episode to its parent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import Field

from academe.agents.records import Record

LINEAGE_FILE = "lineage.json"


class Origin(Record):
    """An episode's parent: the run folder it was forked from, its episode there, the fork step."""

    run: str  # the parent run folder (absolute path)
    episode: int = Field(ge=0)
    step: int = Field(ge=0)
    root: int = Field(ge=0, description="the episode of the first, unforked run it descends from: its task and "
                      "seeds are this episode's")


class Lineage(Record):
    kind: str  # "fork" or "import"
    source: str  # the parent run folder, or the imported file (absolute paths)
    episodes: dict[int, Origin] = Field(default_factory=dict)  # this run's episode -> its parent
    agents: dict[str, str] = Field(default_factory=dict)  # role -> what replaced its agent ("student=...")
    stop_after: int | None = None  # a fork that lets only this many new steps be taken per episode
    versions: dict[str, int] = Field(default_factory=dict)  # model -> the parent's checkpoint version it serves


def read_lineage(run_dir: str | Path) -> Lineage | None:
    path = Path(run_dir) / LINEAGE_FILE
    return Lineage.model_validate_json(path.read_text()) if path.is_file() else None


def write_lineage(run_dir: Path, lineage: Lineage) -> None:
    """Written aside and renamed: a run folder has its whole lineage or none."""
    partial = run_dir / (LINEAGE_FILE + ".partial")
    partial.write_text(json.dumps(json.loads(lineage.model_dump_json()), indent=2))
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    partial.rename(run_dir / LINEAGE_FILE)
