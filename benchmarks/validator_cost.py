"""Validator cost per answer on the demo's ``Book`` schema, in microseconds.

Measures ``validators.pydantic(Book)`` and ``validators.json_schema(Book.model_json_schema())``
in one process on a valid answer, an answer with one bad field, and one with three bad
fields and a forbidden extra key (so the cost of building the error list is seen too).

    python benchmarks/validator_cost.py [--rounds 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from stagedretry import ValidationFailed, validators
from stagedretry.demo.model import Book

VALID: dict[str, Any] = {
    "title": "Dune",
    "subtitle": "",
    "authors": ["Frank Herbert"],
    "year": 1965,
    "publisher": "Chilton Books",
    "place": "Philadelphia",
    "pages": 412,
    "language": "en",
    "genre": "science_fiction",
    "audience": "general",
    "subjects": ["Desert planets", "Ecology"],
    "summary": "A noble family takes over the desert planet Arrakis.",
}
ANSWERS = {
    "valid": json.dumps(VALID),
    "1 bad field": json.dumps({**VALID, "year": "nineteen sixty-five"}),
    "3 bad + extra": json.dumps(
        {**VALID, "year": 3000, "genre": "space", "authors": [], "confidence": 0.9}
    ),
}


def per_call(validate: Callable[[str], object], text: str, rounds: int) -> float:
    """Microseconds per call, the best of five runs of *rounds* calls."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            with contextlib.suppress(ValidationFailed):
                validate(text)
        best = min(best, time.perf_counter() - start)
    return best / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    candidates = {
        "pydantic(Book)": validators.pydantic(Book),
        "json_schema(Book)": validators.json_schema(Book.model_json_schema()),
    }
    print(f"{'validator':<20}" + "".join(f"{name:>16}" for name in ANSWERS))
    for label, validate in candidates.items():
        cells = [per_call(validate, text, args.rounds) for text in ANSWERS.values()]
        print(f"{label:<20}" + "".join(f"{c:>13.1f} µs" for c in cells))


if __name__ == "__main__":
    main()
