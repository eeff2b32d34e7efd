"""Config builders shared by the simulation tests."""

import json

from academe.simulation.config import parse_config
from academe.simulation.log import read_steps

SCRIPTED_STUDENT = {"kind": "scripted", "path": "academe.protocols.oracles:guessing_student", "num_cpus": 0}
SCRIPTED_TEACHER = {"kind": "scripted", "path": "academe.protocols.oracles:socratic_teacher", "num_cpus": 0}


def config(out_dir, student=SCRIPTED_STUDENT, teacher=SCRIPTED_TEACHER, **run):
    return parse_config({
        "run": {"name": "t", "episodes": 12, "concurrency": 12, "out_dir": str(out_dir), **run},
        "protocol": {"name": "socratic", "options": {"max_student_turns": 4}},
        "tasks": {"source": "generated", "steps": 2},
        "models": {"student_model": student, "teacher_model": teacher},
        "agents": {"teacher": {"role": "teacher", "model": "teacher_model"},
                   "student": {"role": "student", "model": "student_model", "sampling": {"max_new_tokens": 12}}},
    })


def tiny_student(path, num_cpus=1):
    return {"kind": "transformers", "path": str(path), "num_cpus": num_cpus}


def transcripts(run_dir) -> dict:
    """episode -> [(step, role, prompt seed, reply text, outcome)]: everything that must not change."""
    out: dict = {}
    for r in read_steps(run_dir):
        key = [(r["step"], t["role"], t["prompt"]["seed"], t["reply"]["text"]) for t in r["turns"]]
        out.setdefault(r["episode"], []).append((r["step"], key, json.dumps(r["outcome"])))
    return {e: sorted(v) for e, v in out.items()}
