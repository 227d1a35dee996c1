"""Write the demo's legacy catalogue records, deterministically.

``python -m stagedretry.demo._generate > stagedretry/demo/books.jsonl`` rebuilds
the shipped file byte for byte (a test checks that it does).  The records are
made up: names, places and presses are drawn from small fixed lists with a
seeded random generator, in the uneven styles of old catalogue cards.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from typing import Any, Final, TextIO

COUNT: Final = 300
SEED: Final = 20240611

_FORENAMES: Final = (
    "Ada", "Boris", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas",
    "Katarzyna", "Luis", "Maren", "Nils", "Odile", "Pietro", "Quentin", "Rosa", "Sven", "Tomasz",
)  # fmt: skip
_SURNAMES: Final = (
    "Okafor", "Lindqvist", "Moreau", "Tanaka", "Varga", "Castillo", "Novak", "Reyes", "Brandt",
    "Dupont", "Esposito", "Fernandes", "Gallagher", "Haugen", "Iwasaki", "Jansen", "Kowalski",
)  # fmt: skip
_PLACES: Final = (
    "London", "Edinburgh", "Paris", "Lyon", "Berlin", "Leipzig", "Madrid", "Milan", "Lisbon",
    "Amsterdam", "Stockholm", "Krakow", "Tokyo", "New York", "Boston", "Toronto",
)  # fmt: skip
_PRESSES: Final = (
    "Harbor Lane Press", "Lantern & Co.", "Meadow Books Ltd", "Copper Signal Publishing Inc.",
    "Granite House", "Willow Street Editions", "Atlas Verlag GmbH", "Falcon Editorial S.A.",
    "Harbor Lane University Press", "Orchard Press", "Juniper Books", "Raven & Quartz",
)  # fmt: skip
_NOUNS: Final = (
    "harbour", "lighthouse", "orchard", "river", "winter", "lantern", "compass", "garden",
    "island", "valley", "timber", "marble", "falcon", "meadow", "signal", "atlas", "ember",
)  # fmt: skip
_ADJECTIVES: Final = (
    "quiet", "northern", "copper", "hidden", "last", "long", "bright", "distant", "silent",
    "amber", "broken", "early", "golden", "narrow", "patient", "restless",
)  # fmt: skip
_SUBTITLES: Final = (
    "a novel", "stories", "a history", "poems", "a memoir", "essays", "a guide for travellers",
    "recipes from the coast", "an introduction", "letters and diaries", "a play in three acts",
    "a mystery", "a field guide", "tales for children", "",
)  # fmt: skip
_TOPICS: Final = {
    "a novel": "a family that keeps the {adj} {noun} through three generations",
    "stories": "twelve short stories set around a {adj} {noun}",
    "a history": "the building of the {noun} and the trade that grew around it",
    "poems": "poems on the seasons and the {adj} {noun} of the author's childhood",
    "a memoir": "the author's years as keeper of the {noun}",
    "essays": "essays on work, weather and the {adj} {noun}",
    "a guide for travellers": "walks, ferries and lodgings along the {adj} {noun}",
    "recipes from the coast": "recipes collected in the villages near the {noun}",
    "an introduction": "an introduction to the science of the {noun} for students",
    "letters and diaries": "letters and diaries written at the {adj} {noun}",
    "a play in three acts": "a play about a strike at the {noun}",
    "a mystery": "a detective investigates a death at the {adj} {noun}",
    "a field guide": "plants and birds of the {adj} {noun}, with plates",
    "tales for children": "bedtime tales about a fox who lives by the {noun}",
    "": "a study of the {adj} {noun}",
}
_LANGUAGES: Final = (
    ("Text in English.", 70),
    ("", 10),
    ("Text in French.", 5),
    ("In German.", 4),
    ("Spanish text.", 3),
    ("Text in Italian.", 2),
    ("Text in Dutch; summary in English.", 2),
    ("Translated from the Swedish.", 2),
    ("Polish and English.", 1),
    ("Text in Japanese.", 1),
)


def _creator(rng: random.Random) -> str:
    forename = rng.choice(_FORENAMES)
    surname = rng.choice(_SURNAMES)
    style = rng.randrange(5)
    if style == 0:
        born = rng.randrange(1850, 1990)
        died = born + rng.randrange(40, 90) if born < 1940 else ""
        return f"{surname}, {forename}, {born}-{died}"
    if style == 1:
        return f"{surname}, {forename[0]}."
    if style == 2:
        return f"{forename} {surname}"
    if style == 3:
        other = f"{rng.choice(_SURNAMES)}, {rng.choice(_FORENAMES)}"
        return f"{surname}, {forename}; {other}"
    return f"{surname.upper()}, {forename}"


def _imprint(rng: random.Random, year: int) -> str:
    place = rng.choice(_PLACES)
    press = rng.choice(_PRESSES)
    style = rng.randrange(6)
    if style == 0:
        return f"{place} : {press}, {year}."
    if style == 1:
        return f"{place} : {press}, c{year}, printed {year + rng.randrange(1, 4)}"
    if style == 2:
        return f"[{place}] : {press}, [{year}?]"
    if style == 3:
        return f"{place}, {press}, {year}-{year + 2}."
    if style == 4:
        return f"{place} : s.n., {year}."
    return f"Published by {press}, {place}, {year}"


def _extent(rng: random.Random) -> str:
    pages = rng.randrange(48, 720)
    style = rng.randrange(5)
    if style == 0:
        return f"{rng.choice(('viii', 'xii', 'xvi', 'x'))}, {pages} p. ; {rng.randrange(18, 31)} cm"
    if style == 1:
        return f"{pages} pages : illustrations, maps"
    if style == 2:
        return f"2 v. ({pages}, {rng.randrange(48, 400)} p.)"
    if style == 3:
        return f"{pages // 2} leaves"
    return f"{pages} p."


def records(seed: int = SEED, count: int = COUNT) -> Iterator[dict[str, Any]]:
    """The legacy records, in order."""
    rng = random.Random(seed)
    notes_pool = [text for text, _ in _LANGUAGES]
    weights = [weight for _, weight in _LANGUAGES]
    for number in range(1, count + 1):
        adjective = rng.choice(_ADJECTIVES)
        noun = rng.choice(_NOUNS)
        subtitle = rng.choice(_SUBTITLES)
        title = f"The {adjective} {noun}"
        creator = _creator(rng)
        by = creator.split(";")[0]
        statement = f"{title} : {subtitle} / by {by}." if subtitle else f"{title}."
        year = rng.randrange(1880, 2025)
        topic = _TOPICS[subtitle].format(adj=adjective, noun=noun)
        blurb = rng.choice(
            (
                f"About {topic}.",
                f"Describes {topic}. Bibliography: p. {rng.randrange(200, 300)}.",
                f"{topic[0].upper()}{topic[1:]}; a dazzling tour de force.",
                f"Includes index. Covers {topic}.",
            )
        )
        yield {
            "id": f"hl-{number:04d}",
            "title_statement": statement,
            "creator": creator,
            "imprint": _imprint(rng, year),
            "extent": _extent(rng),
            "language_note": rng.choices(notes_pool, weights)[0],
            "notes": blurb,
        }


def write(out: TextIO) -> None:
    """Write every record as one JSON line."""
    for record in records():
        out.write(json.dumps(record, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write(sys.stdout)
