"""Config builders shared by the simulation tests."""

import json

from typer.testing import CliRunner

from academe.simulation.cli import app
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
        key = [(r.step, t.role, t.agent, t.prompt.seed, t.reply.text) for t in r.turns]
        out.setdefault(r.episode, []).append((r.step, key, r.outcome.model_dump_json() if r.outcome else None))
    return {e: sorted(v) for e, v in out.items()}


def program_config(out_dir, model, rounds=2, **options):
    """Socratic-Zero on tiny models: solver and generator each on its own model and trainer."""
    tiny = {"kind": "transformers", "path": str(model), "num_cpus": 0.5, "threads": 1}
    train = {"num_cpus": 0.5, "threads": 1, "settings": {"steps": 2, "batch_size": 4, "lr": 0.01, "max_seq_len": 256}}
    return parse_config({
        "run": {"name": "sz", "seed": 0, "concurrency": 32, "out_dir": str(out_dir)},
        "program": {"name": "socratic-zero", "options": {"rounds": rounds, "k": 4, "new_per_round": 3, **options}},
        "tasks": {"source": "generated", "steps": 1, "limit": 4, "grader": "agents_for_tests:coin_grader"},
        "models": {"solver": tiny, "generator": tiny,
                   "oracle": {"kind": "scripted", "path": "academe.protocols.oracles:socratic_zero_teacher",
                              "num_cpus": 0}},
        "agents": {"solver": {"model": "solver", "sampling": {"temperature": 1.0, "max_new_tokens": 8}},
                   "teacher": {"model": "oracle"},
                   "generator": {"model": "generator", "sampling": {"max_new_tokens": 8}}},
        "training": {"solver": train, "generator": train},
        "evaluation": {"count": 4},
    })


def program_decisions(run_dir) -> list[dict]:
    """Every decision a program logged (its action, with the program state), in order."""
    lines = (run_dir / "program.jsonl").read_text().splitlines()
    return [r["action"] for r in map(json.loads, lines) if r["type"] == "decision"]


def llm2llm_config(out_dir, model, iterations=2, also=None):
    """LLM2LLM on a tiny student; the scripted teacher writes the new items."""
    return parse_config({
        "run": {"name": "l2l", "seed": 0, "concurrency": 16, "out_dir": str(out_dir)},
        "program": {"name": "llm2llm", "options": {"iterations": iterations}},
        "tasks": {"source": "generated", "steps": 1, "limit": 4},
        "models": {"student": {"kind": "transformers", "path": str(model), "num_cpus": 1, "threads": 1},
                   "oracle": {"kind": "scripted", "path": "academe.protocols.oracles:problem_maker", "num_cpus": 0}},
        "agents": {"student": {"model": "student", "sampling": {"max_new_tokens": 8}}, "teacher": {"model": "oracle"}},
        "training": {"student": {"num_cpus": 1, "threads": 1,
                                 "settings": {"steps": 2, "batch_size": 4, "lr": 0.01, "max_seq_len": 256}}},
        "evaluation": {"count": 4, "also": also or {}},
    })


def lion_config(out_dir, model, rounds=2):
    """Lion on a tiny student; the scripted teacher answers from the reference and writes problems; the
    grader is the referee (the referee role is bound to the teacher's model, as in the paper)."""
    return parse_config({
        "run": {"name": "lion", "seed": 0, "concurrency": 16, "out_dir": str(out_dir)},
        "program": {"name": "lion", "options": {"rounds": rounds, "referee": "grader", "new_per_round": 4}},
        "tasks": {"source": "generated", "steps": 1, "limit": 4},
        "models": {"student": {"kind": "transformers", "path": str(model), "num_cpus": 1, "threads": 1},
                   "oracle": {"kind": "scripted", "path": "academe.protocols.oracles:lion_teacher", "num_cpus": 0}},
        "agents": {"student": {"model": "student", "sampling": {"max_new_tokens": 8}}, "teacher": {"model": "oracle"},
                   "referee": {"model": "oracle"}},
        "training": {"student": {"num_cpus": 1, "threads": 1,
                                 "settings": {"steps": 2, "batch_size": 4, "lr": 0.01, "max_seq_len": 256}}},
        "evaluation": {"count": 4},
    })


def lbt_config(out_dir, model, rounds=1):
    """Learning by teaching: a tiny teacher (trained by DPO) and two students of different models; the coin
    grader gives the exams mixed results."""
    tiny = {"kind": "transformers", "path": str(model), "num_cpus": 0.5, "threads": 1}
    return parse_config({
        "run": {"name": "lbt", "seed": 0, "concurrency": 16, "out_dir": str(out_dir)},
        "program": {"name": "lbt", "options": {"rounds": rounds, "rationales": 3, "exam_size": 2}},
        "tasks": {"source": "generated", "steps": 1, "limit": 3, "grader": "agents_for_tests:coin_grader"},
        "models": {"teacher": tiny, "student": tiny, "guesser": SCRIPTED_STUDENT},
        "agents": {"teacher": {"model": "teacher", "sampling": {"temperature": 1.0, "max_new_tokens": 8}},
                   "student": [{"name": "tiny", "model": "student", "sampling": {"max_new_tokens": 6}},
                               {"name": "guesser", "model": "guesser"}]},
        "training": {"teacher": {"num_cpus": 1, "threads": 1,
                                 "settings": {"steps": 2, "batch_size": 4, "lr": 0.01, "max_seq_len": 256}}},
        "evaluation": {"count": 4},
    })


def academe(*args):
    """``academe ARGS`` in this process: the exit code and the output, whitespace folded."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())
