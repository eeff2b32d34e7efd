"""Paths to the real data sets kept beside the project (read by path, never copied in)."""

from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GSM8K = DATA / "gsm8k" / "test_socratic.dev.jsonl"
MATHDIAL = DATA / "mathdial" / "test.dev.jsonl"
