"""The demo's output model: a catalogue record as the cataloguing instructions define it."""

# No ``from __future__ import annotations``: the tutorial shows this file in the middle of
# its script, where that import is a SyntaxError.  Nothing here needs it on Python 3.11.
from typing import Literal

from pydantic import BaseModel, Field

Language = Literal["en", "fr", "de", "es", "it", "pt", "nl", "sv", "pl", "ja"]
Genre = Literal[
    "fiction",
    "mystery",
    "science_fiction",
    "fantasy",
    "romance",
    "historical_fiction",
    "poetry",
    "drama",
    "biography",
    "history",
    "science",
    "philosophy",
    "travel",
    "cookery",
    "children",
    "reference",
]
Audience = Literal["children", "young_adult", "general", "academic"]


class Book(BaseModel):
    """One structured catalogue record (sections 2 to 11 of the instructions)."""

    title: str = Field(min_length=1, max_length=200, description="The title proper.")
    subtitle: str = Field(max_length=200, description="Other title information, or ''.")
    authors: list[str] = Field(min_length=1, max_length=4, description="Names in direct order.")
    year: int = Field(ge=1450, le=2025, description="Year of publication.")
    publisher: str = Field(min_length=1, max_length=120)
    place: str = Field(min_length=1, max_length=80, description="First place of publication.")
    pages: int = Field(ge=1, le=5000, description="Pages of the main sequence.")
    language: Language = Field(description="ISO 639-1 code of the text's language.")
    genre: Genre
    audience: Audience
    subjects: list[str] = Field(min_length=1, max_length=5, description="Subject headings.")
    summary: str = Field(min_length=1, max_length=300, description="One or two sentences.")
