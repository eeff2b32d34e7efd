"""Pure numeric grading of free-text answers. Model output is parsed, never evaluated."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# A number as people write it: optional sign, thousands separators, decimals ("-1,234.50").
_NUMBER = r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?"
NUMBER = re.compile(rf"(?<![\w.])(?:{_NUMBER})")
# Explicit answer markers, strongest first: GSM8K's "#### 42", then "Answer: 42", "answer is 42".
MARKERS = (
    re.compile(rf"####\s*\$?\s*({_NUMBER})"),
    re.compile(rf"answer\s*(?:is|:|=)\s*\**\s*\$?\s*({_NUMBER})", re.IGNORECASE),
)
_CALCULATOR = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations "<<48/2=24>>"


def to_number(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", "")).normalize()
    except InvalidOperation:
        return None


def numbers(text: str) -> list[Decimal]:
    """Every number in the text, in order (calculator annotations removed)."""
    found = (to_number(m) for m in NUMBER.findall(_CALCULATOR.sub("", text)))
    return [n for n in found if n is not None]


def extract_answer(text: str) -> Decimal | None:
    """The number a reply gives as its final answer: a marked answer, else the last number."""
    for marker in MARKERS:
        marked = marker.findall(text)
        if marked:
            return to_number(marked[-1])
    found = numbers(text)
    return found[-1] if found else None


def is_correct(text: str, answer: str) -> bool:
    given, expected = extract_answer(text), to_number(answer)
    return given is not None and expected is not None and given == expected


def mentions(text: str, answer: str) -> bool:
    """Whether the number ``answer`` appears anywhere in the text (a teacher telling it)."""
    expected = to_number(answer)
    return expected is not None and expected in numbers(text)
